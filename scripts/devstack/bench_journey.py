"""Benchmark: how long a first-time student takes to activate, on a phone, in Chromium.

    scripts/bench journey [--rounds 3] [--languages en,zh-TW,pt] [--shots DIR]

Starts its own Keycloak (test instance, free ports; the realm's production password
hashing), the service as a real `umpass serve` process, the demo campus app, an SMTP
catcher and the SMS outbox. Then Debian's Chromium, at a 360x740 viewport, plays a
first-time student in each language on three paths:

* keep: from the address the activation letter gives (`<base>/activate/`, the identify
  page; the start page at `/` is for whoever types the bare address, about 18 s more),
  policies, contacts (the Registry's kept), password, done;
* change: the same, with a new email and a new mobile number (each proven by its code);
* first sign-in: the demo app's sign-in link, Keycloak's username page, the activation,
  and back through Keycloak to the app, signed in.

Each journey's time is the wall time measured for the server and the page loads, plus a
fixed human pace computed (never slept) by devstack.journey_pace: reading at 200 words
(400 CJK characters) a minute, policy bodies skimmed at 1,000 words a minute, typing at
2.5 characters a second, 2 s per tap or choice, 20 s per one-time code fetched. A warm-up
journey per path (not reported) runs first; with several rounds the median is reported.

Prints a table per path and language and last
`RESULT journey_keep_s=… journey_change_s=… journey_first_sign_in_s=… …` (English as the
headline, then `_zh_`/`_pt_` keys). Targets (the issue's, not asserted): keep ≤ 180 s,
change ≤ 240 s.
"""

from __future__ import annotations

import argparse
import email
import email.policy
import json
import os
import re
import secrets
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from urllib.parse import urlsplit

from aiosmtpd.controller import Controller
from playwright.sync_api import Browser, Page, sync_playwright
from rich.console import Console
from rich.table import Table

from devstack import keycloak as kc_server
from devstack.background import Background, start_background
from devstack.bench_stack import ADMIN_USER, BenchStack, bench_realm_on
from devstack.journey_pace import Tally, reading_seconds
from devstack.journey_walk import CodeSource, NewContacts, Student, Walk
from devstack.processes import free_port
from keycloak_config.apply import ApplyOptions, apply_realm
from provider.config import load_settings
from provider.contact_input import ContactRejected, clean_phone
from provider.progress import progress_bar
from provider.proofing import normalize_id_last4
from provider.services import Services
from provider.storage import migrate
from provider.students import NewStudent, create_pending_student

console = Console(stderr=True)
wide = Console(stderr=True, width=max(console.width, 150))  # the table, even in a log file
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--headless", "--disable-gpu", "--no-first-run"]
VIEWPORT = {"width": 360, "height": 740}
PASSWORD = "harbour kettle saffron 2029"  # noqa: S105 - a benchmark passphrase
DOB = date(2006, 11, 23)  # day and month of two digits each: the same typing in any order
ID_NUMBER = "1234567(8)"
LANGUAGES = {"en": "en", "zh-TW": "zh", "pt": "pt"}  # browser locale: RESULT key part
PATHS = ("keep", "change", "first_sign_in")
TARGETS_S = {"keep": 180.0, "change": 240.0}
CODE_TIMEOUT_S = 30.0
KEYCLOAK_START_TIMEOUT_S = 900.0  # a machine shared with other Keycloaks starts slowly
_CODE = re.compile(r"\b(\d{6})\b")


# -- where codes arrive ---------------------------------------------------------------


@dataclass
class _Mails:
    received: list[tuple[list[str], str]] = field(default_factory=list)  # (to, plain text)
    lock: threading.Lock = field(default_factory=threading.Lock)

    async def handle_DATA(self, server: object, session: object, envelope: object) -> str:
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)  # type: ignore[attr-defined]
        body = message.get_body(preferencelist=("plain",))
        text = body.get_content() if body is not None else ""  # type: ignore[attr-defined]
        with self.lock:
            self.received.append(([t.lower() for t in envelope.rcpt_tos], text))  # type: ignore[attr-defined]
        return "250 OK"


@dataclass
class Deliveries:
    """The SMTP catcher (in this process) and the SMS outbox file the service writes."""

    mails: _Mails
    outbox: Path

    def texts(self, channel: str, to: str) -> list[str]:
        if channel == "email":
            with self.mails.lock:
                return [text for rcpt, text in self.mails.received if to.lower() in rcpt]
        if not self.outbox.exists():
            return []
        lines = [json.loads(line) for line in self.outbox.read_text("utf-8").splitlines()]
        return [line["text"] for line in lines if line["to"] == to]

    def count(self, channel: str, to: str) -> int:
        return len(self.texts(channel, to))

    def wait_code(self, channel: str, to: str, after: int) -> str:
        deadline = time.monotonic() + CODE_TIMEOUT_S
        while time.monotonic() < deadline:
            texts = self.texts(channel, to)
            if len(texts) > after:
                match = _CODE.search(texts[-1])
                if match:
                    return match.group(1)
            time.sleep(0.05)  # polling a mailbox: the code's arrival is what is awaited
        raise RuntimeError(f"no code by {channel} within {CODE_TIMEOUT_S:.0f} s")

    def source(self) -> CodeSource:
        return CodeSource(count=self.count, wait_code=self.wait_code)


@contextmanager
def smtp_catcher() -> Iterator[tuple[_Mails, int]]:
    mails = _Mails()
    port = free_port()
    controller = Controller(mails, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield mails, port
    finally:
        controller.stop()


# -- students ---------------------------------------------------------------------------


def _mobile() -> str:
    """A fresh valid Macau mobile number (not every 6xxxxxxx is allocated)."""
    while True:
        try:
            return clean_phone(f"+8536{secrets.randbelow(10**7):07d}")
        except ContactRejected:
            continue


def _enrol(svc: Services, n: int) -> Student:
    user_id = f"j{n:06d}"
    email_address = f"{user_id}@registry.example.edu"
    phone = _mobile()
    issued = create_pending_student(
        svc,
        NewStudent(user_id, "Mei", "Ho", email_address, phone, DOB, ID_NUMBER),
    )
    return Student(
        user_id, issued.code, DOB, normalize_id_last4(ID_NUMBER) or "", email_address, phone
    )


def _new_contacts(student: Student) -> NewContacts:
    phone = _mobile()
    return NewContacts(f"{student.user_id}.new@mail.example.com", phone.removeprefix("+853"), phone)


# -- one journey --------------------------------------------------------------------------


@dataclass(frozen=True)
class Site:
    service: str
    demo: str  # the demo app's base, …/demo


@dataclass(frozen=True)
class Journey:
    path: str
    language: str
    tally: Tally
    trail: list[str]


def walk_once(
    browser: Browser,
    site: Site,
    student: Student,
    codes: CodeSource,
    path: str,
    language: str,
    shots: Path | None,
) -> Journey:
    context = browser.new_context(viewport=VIEWPORT, locale=language)
    page = context.new_page()
    page.set_default_timeout(60_000)
    walk = Walk(
        page,
        student,
        PASSWORD,
        codes,
        new_contacts=_new_contacts(student) if path == "change" else None,
        shots=shots,
    )
    try:
        if path == "first_sign_in":
            walk.run(f"{site.demo}/login", ends=_signed_in_at(site.demo))
        else:
            # Where the activation letter sends the student (`umpass letters`: <base>/activate/).
            walk.run(f"{site.service}/activate/", ends=_at_step("done"))
            walk.read_final("done")
        return Journey(path, language, walk.tally, walk.trail)
    except Exception as exc:
        # What the page showed when the walker gave up, for whoever reads the traceback.
        if shots is not None:
            shots.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(shots / "stuck.png"))
            (shots / "stuck.html").write_text(page.content())
        raise RuntimeError(f"{path} ({language}) stuck at {page.url} after {walk.trail}") from exc
    finally:
        context.close()


def _at_step(step: str) -> Callable[[Page], bool]:
    return lambda page: urlsplit(page.url).path.endswith(f"/activate/{step}")


def _signed_in_at(demo: str) -> Callable[[Page], bool]:
    return lambda page: page.url.startswith(demo) and page.locator("#who").count() > 0


# -- the run ------------------------------------------------------------------------------


@contextmanager
def _keycloak(url: str | None, **extra_env: str) -> Iterator[BenchStack]:
    """The given Keycloak (a realm of this run's, deleted afterwards), or our own test
    instance, given time to start on a busy machine."""
    if url:
        with bench_realm_on(
            url.rstrip("/"),
            os.environ.get("KEYCLOAK_ADMIN_USER", "admin"),
            os.environ["KEYCLOAK_ADMIN_PASSWORD"],
            **extra_env,
        ) as stack:
            yield stack
        return
    admin_password = secrets.token_urlsafe(16)
    kc_server.stop("test")
    http_port, management_port = free_port(), free_port()
    kc_server.start(
        "test",
        http_port=http_port,
        management_port=management_port,
        admin_user=ADMIN_USER,
        admin_password=admin_password,
        timeout=KEYCLOAK_START_TIMEOUT_S,
    )
    try:
        with bench_realm_on(
            f"http://127.0.0.1:{http_port}", ADMIN_USER, admin_password, **extra_env
        ) as stack:
            yield stack
    finally:
        kc_server.stop("test")


def _load() -> str:
    return " ".join(f"{x:.1f}" for x in os.getloadavg())


def run(
    rounds: int, languages: list[str], paths: list[str], shots: Path | None, keycloak: str | None
) -> int:
    service_port, demo_port = free_port(), free_port()
    site = Site(f"http://127.0.0.1:{service_port}", f"http://127.0.0.1:{demo_port}/demo")
    console.print(
        f"[bold]starting {'a realm on ' + keycloak if keycloak else 'Keycloak'}[/] "
        f"(production hashing), the service, the demo app; load average {_load()}"
    )
    results: dict[tuple[str, str], list[Journey]] = {}
    with (
        smtp_catcher() as (mails, smtp_port),
        _keycloak(
            keycloak,
            UMPASS_IDENTIFY_LIMIT="100000 per minute",
            UMPASS_SEND_LIMIT="100000 per hour",
            UMPASS_BASE_URL=site.service,
            UMPASS_DEMO_BASE_URL=site.demo,
            UMPASS_SMTP_HOST="127.0.0.1",
            UMPASS_SMTP_PORT=str(smtp_port),
        ) as stack,
    ):
        env = {**stack.env, "UMPASS_OIDC_KEY_FILE": str(stack.workdir / "oidc-signing-key.pem")}
        apply_realm(ApplyOptions.from_env(env, theme=True, with_demo=True))
        svc = Services.assemble(load_settings(env))
        migrate.upgrade(svc.engine)
        parts: list[Background] = []
        try:
            parts.append(
                start_background(
                    "service",
                    [
                        sys.executable,
                        "-m",
                        "provider.cli",
                        "serve",
                        "--host",
                        "127.0.0.1",
                        "--port",
                        str(service_port),
                        "--workers",
                        "1",
                        "--threads",
                        "8",
                    ],
                    service_port,
                    "/healthz",
                    env,
                    stack.workdir / "service.log",
                )
            )
            parts.append(
                start_background(
                    "demo app",
                    [sys.executable, "-m", "devstack.demo_app", "--port", str(demo_port)],
                    demo_port,
                    "/demo/",
                    env,
                    stack.workdir / "demo.log",
                )
            )
            codes = Deliveries(mails, Path(env["UMPASS_SMS_OUTBOX"])).source()
            results = _walk_all(svc, site, codes, rounds, languages, paths, shots)
        finally:
            for part in parts:
                part.stop()
    console.print(f"load average at the end: {_load()} (measured times grow with it)")
    _report(results, languages, paths)
    return 0


def _walk_all(
    svc: Services,
    site: Site,
    codes: CodeSource,
    rounds: int,
    languages: list[str],
    paths: list[str],
    shots: Path | None,
) -> dict[tuple[str, str], list[Journey]]:
    results: dict[tuple[str, str], list[Journey]] = {}
    plan = [(p, "en", -1) for p in paths]  # warm-up: not reported
    plan += [(p, lang, r) for r in range(rounds) for p in paths for lang in languages]
    with (
        sync_playwright() as playwright,
        progress_bar(console=console, transient=False, label_width=30) as progress,
    ):
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        task = progress.add_task("journeys", total=len(plan))
        try:
            for n, (path, language, round_) in enumerate(plan):
                label = "warm-up" if round_ < 0 else f"round {round_ + 1}"
                progress.update(task, description=f"{path} {language} ({label})")
                folder = shots / f"{path}-{language}" if shots and round_ <= 0 else None
                journey = walk_once(browser, site, _enrol(svc, n), codes, path, language, folder)
                if round_ >= 0:
                    results.setdefault((path, language), []).append(journey)
                progress.advance(task)
        finally:
            browser.close()
    return results


def _median(journeys: list[Journey]) -> Journey:
    ordered = sorted(journeys, key=lambda j: j.tally.total_s())
    return ordered[(len(ordered) - 1) // 2]


def _clock(seconds: float) -> str:
    return f"{int(seconds // 60)}:{seconds % 60:04.1f}"


def _report(
    results: dict[tuple[str, str], list[Journey]], languages: list[str], paths: list[str]
) -> None:
    table = Table(
        "path",
        "lang",
        "pages",
        "reading",
        "typing",
        "taps",
        "codes",
        "measured",
        "waited",
        "total",
        "target",
        title="A first-time student on a 360 px phone (s; median round)",
    )
    result: dict[str, float] = {}
    for path in paths:
        for language in languages:
            t = _median(results[(path, language)]).tally
            read = f"{t.reading_s():.0f} ({t.read.words}w {t.read.cjk_chars}字"
            read += f" +{t.skimmed.words}w {t.skimmed.cjk_chars}字 skimmed)"
            target = TARGETS_S.get(path)
            verdict = ""
            if target is not None:
                verdict = f"{'✓' if t.total_s() <= target else '✗'} {_clock(target)}"
            table.add_row(
                path.replace("_", " "),
                language,
                str(t.pages),
                read,
                f"{t.typing_s():.0f} ({t.typed_chars} ch)",
                f"{t.taps_s():.0f} ({t.taps})",
                f"{t.codes_s():.0f} ({t.codes})",
                f"{t.measured_s:.1f}",
                f"{t.waited_s:.1f}",
                f"{t.total_s():.0f} ({_clock(t.total_s())})",
                verdict,
            )
            suffix = "" if language == "en" else f"_{LANGUAGES.get(language, language)}"
            result[f"journey_{path}{suffix}_s"] = t.total_s()
            if language == "en":
                result[f"journey_{path}_measured_s"] = t.measured_s
        table.add_section()
    wide.print(table)
    for path in paths:
        pages = " > ".join(_median(results[(path, languages[0])]).trail)
        console.print(f"[dim]{path} ({languages[0]}):[/] {pages}")
        for language in languages:
            by_page = _median(results[(path, language)]).tally.read_by_page
            words = ", ".join(f"{name} {reading_seconds(n):.0f}s" for name, n in by_page.items())
            console.print(f"[dim]  reading {language}:[/] {words}")
    headline = [f"journey_{p}_s" for p in paths]
    keys = headline + [k for k in result if k not in headline]
    print("RESULT " + " ".join(f"{k}={result[k]:.1f}" for k in keys if k in result))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="scripts/bench journey")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--keycloak",
        help="a running Keycloak to use (KEYCLOAK_ADMIN_USER / KEYCLOAK_ADMIN_PASSWORD); "
        "its login theme is what it serves",
    )
    parser.add_argument("--languages", default=",".join(LANGUAGES))
    parser.add_argument("--paths", default=",".join(PATHS), help="keep, change, first_sign_in")
    parser.add_argument(
        "--shots",
        default="artifacts/journey",
        help="screenshots of the first round's pages (empty: none)",
    )
    args = parser.parse_args(argv)
    languages = [lang.strip() for lang in args.languages.split(",") if lang.strip()]
    paths = [p.strip() for p in args.paths.split(",") if p.strip() in PATHS]
    shots = Path(args.shots) if args.shots else None
    return run(max(1, args.rounds), languages, paths, shots, args.keycloak)


if __name__ == "__main__":
    sys.exit(main())
