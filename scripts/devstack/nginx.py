"""Debian's nginx as the stack's TLS-terminating reverse proxy, from its own config.

`nginx -c DIR/nginx.conf -p DIR`, with the pid file, logs and temp paths inside DIR.
HTTPS only, on loopback ports (cookies ignore ports, so one host name serves all):

* the service: round-robin over its replicas (no sticky sessions);
* Keycloak: round-robin over the nodes' HTTP ports (never their management ports);
* the demo campus app;
* a stand-in SMS gateway that answers 204 and keeps each message in `logs/sms.jsonl`.

A dead upstream is skipped: a refused connection or a connect timeout moves the request
to the next server (POSTs included, since nothing was sent); a 503 does not (it is the
service's calm answer while its database or Redis is down, not a dead replica).
`set_upstreams` rewrites the config and reloads without dropping connections.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from devstack.processes import children, command_line, read_pidfile, terminate, wait_until
from devstack.tls import Certificates

START_TIMEOUT = 10.0
INSTALL_HINT = "apt-get install -y nginx (scripts/stack installs it when missing)"
TEMP_PATHS = ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")


class NginxError(Exception):
    """nginx could not be configured or started; the message says what to fix."""


@dataclass
class Nginx:
    directory: Path
    certificates: Certificates
    service_port: int
    keycloak_port: int
    demo_port: int
    sms_port: int
    service_upstreams: list[int] = field(default_factory=list)
    keycloak_upstreams: list[int] = field(default_factory=list)
    demo_upstream: int = 0

    @property
    def conf(self) -> Path:
        return self.directory / "nginx.conf"

    @property
    def pidfile(self) -> Path:
        return self.directory / "nginx.pid"

    @property
    def logs(self) -> Path:
        return self.directory / "logs"

    @property
    def sms_url(self) -> str:
        return f"https://localhost:{self.sms_port}/sms"

    def url(self, port: int) -> str:
        return f"https://localhost:{port}"

    def render(self) -> str:
        if not self.service_upstreams or not self.keycloak_upstreams or not self.demo_upstream:
            raise NginxError("nginx needs at least one service replica, Keycloak node and demo")
        d = self.directory
        temp = "\n".join(f"  {name}_temp_path {d}/temp/{name};" for name in TEMP_PATHS)
        # A dead server is skipped for fail_timeout, then tried again by live traffic.
        service = "\n".join(
            f"    server 127.0.0.1:{p} max_fails=1 fail_timeout=3s;" for p in self.service_upstreams
        )
        keycloak = "\n".join(
            f"    server 127.0.0.1:{p} max_fails=1 fail_timeout=3s;"
            for p in self.keycloak_upstreams
        )
        user = "user nobody nogroup;" if os.geteuid() == 0 else ""
        return f"""# Written by scripts/devstack/nginx.py for one throwaway stack; do not edit.
{user}
worker_processes 2;
pid {self.pidfile};
error_log {self.logs}/nginx-error.log warn;

events {{
  worker_connections 2048;
}}

http {{
{temp}
  # The path, never the query string: it carries the policy gate's ticket, Keycloak's
  # session codes and the login_hint (a user ID) — deploy/nginx.conf does the same.
  log_format upstream '$remote_addr [$time_iso8601] "$request_method $uri" $status '
                      'upstream=$upstream_addr rt=$request_time urt=$upstream_response_time';
  log_format sms escape=json '{{"time":"$time_iso8601","body":"$request_body"}}';
  access_log {self.logs}/nginx-access.log upstream;
  server_tokens off;
  client_max_body_size 2m;
  large_client_header_buffers 4 32k;

  ssl_certificate {self.certificates.cert_file};
  ssl_certificate_key {self.certificates.key_file};
  ssl_protocols TLSv1.2 TLSv1.3;
  ssl_session_cache shared:tls:4m;

  proxy_http_version 1.1;
  proxy_connect_timeout 2s;
  proxy_read_timeout 120s;
  # Only a replica that cannot be reached is skipped (and counted as failed): a 503 is
  # the service's own calm answer (its database or Redis is down), the same on every replica.
  proxy_next_upstream error timeout;
  proxy_next_upstream_tries 3;
  # Keycloak's and the service's cookies and redirects make large response headers.
  proxy_buffer_size 32k;
  proxy_buffers 8 32k;
  proxy_busy_buffers_size 64k;
  # HSTS from nginx only where the upstream sends none (the service and Keycloak send
  # their own; two headers would be one too many).
  map $upstream_http_strict_transport_security $hsts {{
    "" "max-age=63072000";
    default "";
  }}

  upstream umpass_service {{
{service}
    # Below gunicorn's 5 s keep-alive: nginx must never reuse a connection the replica
    # is closing (a POST sent on it could not be retried).
    keepalive 32;
    keepalive_timeout 4s;
  }}
  upstream umpass_keycloak {{
{keycloak}
    keepalive 32;
    keepalive_timeout 4s;
  }}
  upstream umpass_demo {{
    server 127.0.0.1:{self.demo_upstream};
  }}

  # The service trusts exactly one proxy (UMPASS_TRUSTED_PROXIES=1) and believes the
  # LAST X-Forwarded-For entry. nginx APPENDS the address it saw, so a client's own
  # X-Forwarded-For stays in front, unbelieved (the tests prove the service ignores it).
  server {{
    listen 127.0.0.1:{self.service_port} ssl http2;
    server_name localhost;
    add_header Strict-Transport-Security $hsts always;
    location / {{
      proxy_pass http://umpass_service;
      proxy_set_header Host $http_host;
      proxy_set_header Connection "";  # upstream keep-alive (a location's own headers
                                        # replace every inherited proxy_set_header)
      proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
      proxy_set_header X-Forwarded-Proto $scheme;
    }}
  }}

  # Keycloak (--proxy-headers=xforwarded, trusting 127.0.0.1): nginx is the edge, so it
  # OVERWRITES X-Forwarded-For with the one address it saw; a client cannot add its own.
  server {{
    listen 127.0.0.1:{self.keycloak_port} ssl http2;
    server_name localhost;
    add_header Strict-Transport-Security $hsts always;
    location / {{
      proxy_pass http://umpass_keycloak;
      proxy_set_header Host $http_host;
      proxy_set_header Connection "";
      proxy_set_header X-Forwarded-For $remote_addr;
      proxy_set_header X-Forwarded-Proto $scheme;
      proxy_set_header X-Forwarded-Host $host;
      proxy_set_header X-Forwarded-Port $server_port;
    }}
  }}

  server {{
    listen 127.0.0.1:{self.demo_port} ssl http2;
    server_name localhost;
    add_header Strict-Transport-Security $hsts always;
    location / {{
      proxy_pass http://umpass_demo;
      proxy_set_header Host $http_host;
      proxy_set_header Connection "";
      proxy_set_header X-Forwarded-For $remote_addr;
      proxy_set_header X-Forwarded-Proto $scheme;
    }}
  }}

  # A stand-in SMS gateway: the production service refuses the file outbox. The body
  # is only read (and so logged) when proxied, hence the hop to /ok on this server.
  server {{
    listen 127.0.0.1:{self.sms_port} ssl;
    server_name localhost;
    location = /sms {{
      access_log {self.logs}/sms.jsonl sms;
      proxy_pass https://127.0.0.1:{self.sms_port}/ok;
    }}
    location = /ok {{
      access_log off;
      return 204;
    }}
    location / {{
      return 404;
    }}
  }}
}}
"""

    def write(self) -> None:
        self.logs.mkdir(parents=True, exist_ok=True)
        for name in TEMP_PATHS:
            path = self.directory / "temp" / name
            path.mkdir(parents=True, exist_ok=True)
            if os.geteuid() == 0:  # workers run as nobody and buffer bodies here
                nobody = pwd.getpwnam("nobody")
                os.chown(path, nobody.pw_uid, nobody.pw_gid)
        self.conf.write_text(self.render())
        self._run("-t")

    def _run(self, *extra: str) -> None:
        binary = shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin")
        if binary is None:
            raise NginxError(f"nginx is not installed: {INSTALL_HINT}")
        result = subprocess.run(
            [binary, "-q", "-c", str(self.conf), "-p", str(self.directory), *extra],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            check=False,
            timeout=START_TIMEOUT,
        )
        if result.returncode != 0:
            raise NginxError(f"nginx {' '.join(extra) or 'start'} failed: {result.stderr[-400:]}")

    def pid(self) -> int | None:
        """The master's pid while it runs from our config."""
        return read_pidfile(self.pidfile, lambda pid: str(self.conf).encode() in command_line(pid))

    def start(self) -> None:
        """Write the config and start the master (it daemonizes once listening)."""
        if self.pid() is not None:
            return
        self.write()
        self._run()
        if not wait_until(lambda: self.pid() is not None, START_TIMEOUT):
            raise NginxError(f"nginx did not start; see {self.logs}/nginx-error.log")

    def set_upstreams(
        self, *, service: list[int] | None = None, keycloak: list[int] | None = None
    ) -> None:
        """Route to exactly these ports from now on (a graceful reload)."""
        if service is not None:
            self.service_upstreams = list(service)
        if keycloak is not None:
            self.keycloak_upstreams = list(keycloak)
        master = self.pid()
        self.write()
        if master is None:
            return
        old = children(master)
        self._run("-s", "reload")

        def handed_over() -> bool:  # the old workers have handed over and gone
            now = children(master)
            return bool(now) and not (now & old)

        wait_until(handed_over, START_TIMEOUT)

    def stop(self) -> bool:
        """Fast shutdown (SIGTERM); True when it was running."""
        pid = self.pid()
        if pid is None:
            return False
        terminate(pid, START_TIMEOUT, gone=lambda: self.pid() is None)
        return True
