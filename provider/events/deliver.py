"""`umpass deliver`: send the outbox's events to every configured endpoint, for as long as
it runs. Its own process (several may run at once, see queue.py): a slow or dead endpoint
delays only its own deliveries, never a student's request.

Each event is POSTed as JSON ``{"type", "timestamp", "data"}`` with the Standard Webhooks
headers; ``webhook-id`` is the event's id, the receiver's idempotency key (a lease that ran
out, or a crash between the 2xx and recording it, sends an event again: at least once).
"""

from __future__ import annotations

import json
import logging
import secrets
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import requests
from prometheus_client import CollectorRegistry, Counter
from sqlalchemy.orm import Session, sessionmaker

from provider.events import queue
from provider.events.endpoints import DeliverySettings, Endpoint
from provider.events.signing import headers
from provider.storage.engine import bind_of

log = logging.getLogger(__name__)

# The deliver process's own registry, served by `umpass deliver --metrics-port`.
REGISTRY = CollectorRegistry(auto_describe=True)
DELIVERIES = Counter(
    "umpass_webhook_deliveries",
    "Webhook deliveries by endpoint and outcome (delivered; failed: retried later; dead; "
    "lease_lost: failed after another process took the row over)",
    ["endpoint", "outcome"],
    registry=REGISTRY,
)
BATCH = 20


def body_of(claimed: queue.Claimed) -> bytes:
    return json.dumps(
        {
            "type": claimed.event_type,
            "timestamp": claimed.created_at.isoformat(),
            "data": claimed.payload,
        },
        separators=(",", ":"),
        sort_keys=True,
    ).encode()


class Deliverer:
    def __init__(
        self,
        settings: DeliverySettings,
        sessions: sessionmaker[Session],
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.settings = settings
        self.sessions = sessions
        self.clock = clock
        self.owner = secrets.token_hex(8)  # this process, in the lease
        self._local = threading.local()
        # Longer than a whole batch of requests at the timeout (connect + read each), so a
        # live process never loses a lease it is still working through.
        self.lease = timedelta(seconds=BATCH * 2 * settings.timeout + 30)

    @property
    def http(self) -> requests.Session:
        """This thread's HTTP session (`run` gives each endpoint a thread of its own)."""
        session: requests.Session | None = getattr(self._local, "http", None)
        if session is None:
            session = requests.Session()
            session.headers["User-Agent"] = f"umpass-deliver ({self.owner})"
            self._local.http = session
        return session

    def run_once(self) -> int:
        """One batch per endpoint, in turn (`--once` and tests); how many requests were made."""
        return sum(self.run_endpoint(endpoint) for endpoint in self.settings.endpoints)

    def run_endpoint(self, endpoint: Endpoint) -> int:
        """Fan out new events to `endpoint`, then send it one batch; how many were sent."""
        with bind_of(self.sessions).begin() as conn:
            queue.fan_out(conn, [endpoint.name], self.clock())
        with self.sessions.begin() as session:
            batch = queue.claim(session, endpoint.name, self.owner, self.clock(), self.lease, BATCH)
        for claimed in batch:
            self._send(endpoint, claimed)
        return len(batch)

    def run(self, stop: threading.Event, poll: float = 1.0) -> None:
        """Until `stop` is set, each endpoint worked by a thread of its own: one that is slow
        or down (a timeout per request) holds up only its own queue, never another's. The
        leases make threads as safe as the several processes they already are."""
        workers = [
            threading.Thread(
                target=self._work, args=(endpoint, stop, poll), name=f"deliver-{endpoint.name}"
            )
            for endpoint in self.settings.endpoints
        ]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()

    def _work(self, endpoint: Endpoint, stop: threading.Event, poll: float) -> None:
        """One endpoint's loop; waits `poll` seconds when there was nothing to send."""
        while not stop.is_set():
            try:
                busy = self.run_endpoint(endpoint)
            except Exception:  # the database away for a moment: try again, do not die
                log.exception("delivery round failed", extra={"endpoint": endpoint.name})
                busy = 0
            if not busy:
                stop.wait(poll)

    def _send(self, endpoint: Endpoint, claimed: queue.Claimed) -> None:
        body = body_of(claimed)
        error = None
        try:
            answer = self.http.post(
                endpoint.url,
                data=body,
                headers=headers(endpoint.secret, claimed.event_uuid, body),
                timeout=(self.settings.timeout, self.settings.timeout),
                allow_redirects=False,
            )
            if not 200 <= answer.status_code < 300:
                error = f"HTTP {answer.status_code}"
        except requests.RequestException as exc:
            error = type(exc).__name__
        with self.sessions.begin() as session:
            if error is None:
                queue.delivered(session, claimed.delivery_id, self.clock())
                outcome = "delivered"
            else:
                state = queue.failed(
                    session,
                    claimed,
                    self.owner,
                    self.clock(),
                    error,
                    max_attempts=self.settings.max_attempts,
                    backoff=self.settings.backoff,
                    backoff_max=self.settings.backoff_max,
                )
                outcome = {queue.DEAD: "dead", queue.PENDING: "failed"}.get(state, "lease_lost")
        DELIVERIES.labels(endpoint.name, outcome).inc()
        log.info(
            "webhook %s",
            outcome,
            extra={"action": "webhook", "endpoint": endpoint.name, "event": claimed.event_uuid},
        )
