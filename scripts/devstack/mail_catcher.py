"""Development only: an SMTP server on loopback that keeps every email in a folder.

    python -m devstack.mail_catcher --port 1025 --dir var/mail   (scripts/dev runs it)

Each message becomes `NNNN-<time>-<recipient>.eml` (as it arrived) and a `.txt` beside it,
decoded (headers and the plain-text body, quoted-printable undone: links stay whole).
The service's /dev/mail page shows the same folder in a browser.
"""

from __future__ import annotations

import argparse
import re
import signal
import sys
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller

from provider.dev_mail import decoded, parse


class FolderHandler:
    """aiosmtpd handler: one .eml and one decoded .txt per message."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._lock = threading.Lock()
        folder.mkdir(parents=True, exist_ok=True)

    def save(self, raw: bytes, recipients: list[str]) -> Path:
        with self._lock:
            number = len(list(self.folder.glob("*.eml"))) + 1
            now = datetime.now(UTC)
            stamp = now.strftime("%Y%m%d-%H%M%S")
            to = re.sub(r"[^A-Za-z0-9@._+-]", "_", (recipients or ["nobody"])[0])[:60]
            path = self.folder / f"{number:04d}-{stamp}-{to}.eml"
            path.write_bytes(raw)
            mail = parse(raw, path.name, now.strftime("%Y-%m-%d %H:%M:%S UTC"))
            path.with_suffix(".txt").write_text(decoded(mail), encoding="utf-8")
            return path

    async def handle_DATA(self, _server: Any, _session: Any, envelope: Any) -> str:
        self.save(envelope.original_content or envelope.content, list(envelope.rcpt_tos))
        return "250 OK"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="mail_catcher", description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=1025)
    parser.add_argument("--dir", default="var/mail")
    args = parser.parse_args(argv)
    folder = Path(args.dir)
    controller = Controller(FolderHandler(folder), hostname=args.host, port=args.port)
    controller.start()
    print(f"[mail] catching email on {args.host}:{args.port} into {folder}/", file=sys.stderr)
    stopped = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stopped.set())
    stopped.wait()
    controller.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
