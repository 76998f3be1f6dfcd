"""The vendored ALTCHA widget is exactly what its checksums say, and it is the build the
identify page loads."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import provider

VENDOR = Path(provider.__file__).parent / "static" / "vendor" / "altcha"


def test_the_vendored_files_match_their_checksums() -> None:
    listed = {}
    for line in (VENDOR / "SHA256SUMS").read_text().splitlines():
        digest, name = line.split()
        listed[name] = digest
    assert set(listed) == {"altcha.min.js", "altcha.css", "pbkdf2.js", "LICENSE.txt"}
    for name, digest in listed.items():
        assert hashlib.sha256((VENDOR / name).read_bytes()).hexdigest() == digest, name
    version = (VENDOR / "VERSION").read_text().strip()
    assert version.split(".")[0] == "3"  # widget 3.x speaks the protocol altcha 2.x verifies
    assert f"ALTCHA widget {version}" in (VENDOR / "README.md").read_text()
    assert "MIT" in (VENDOR / "LICENSE.txt").read_text()


def test_the_page_loads_the_vendored_build_and_no_other_script() -> None:
    template = (Path(provider.__file__).parent / "templates" / "flow" / "identify.html").read_text()
    scripts = re.findall(r"<script [^>]*filename='([^']+)'", template)
    assert scripts == ["vendor/altcha/altcha.min.js", "js/challenge.js"]
    assert template.count("<script") == 2
