"""The hashed lock files hold what pyproject.toml asks for: a dependency added, or a range
moved past its pin, without `scripts/lock` fails here with the command to run, before an
install on a fresh machine fails (or installs something other than what was asked)."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import NormalizedName, canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[2]
REFRESH = "run scripts/lock, then commit requirements.lock and requirements-dev.lock"
HASH = re.compile(r"--hash=sha256:[0-9a-f]{64}")

Lock = dict[NormalizedName, tuple[Version, frozenset[str]]]


def read_lock(name: str) -> Lock:
    """Each `name==version` of a lock with its hashes; anything else in it fails the test."""
    text = re.sub(r"\\\n", " ", (ROOT / name).read_text(encoding="utf-8"))
    entries: Lock = {}
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()  # a hash never holds '#'
        if not line:
            continue
        pin, *options = line.split()
        package, sep, version = pin.partition("==")
        assert sep, f"{name}: {pin!r} is not pinned to one version; {REFRESH}"
        hashes = frozenset(options)
        assert hashes, f"{name}: {pin} has no --hash; {REFRESH}"
        odd = [option for option in options if not HASH.fullmatch(option)]
        assert not odd, f"{name}: {pin} carries {odd} besides its hashes; {REFRESH}"
        entries[canonicalize_name(package)] = (Version(version), hashes)
    return entries


def wanted(*, dev: bool) -> list[Requirement]:
    with (ROOT / "pyproject.toml").open("rb") as f:
        pyproject = tomllib.load(f)
    names = pyproject["project"]["dependencies"] + pyproject["build-system"]["requires"]
    if dev:
        names += pyproject["project"]["optional-dependencies"]["dev"]
    return [Requirement(name) for name in names]


@pytest.mark.parametrize(
    ("lock_name", "dev"), [("requirements-dev.lock", True), ("requirements.lock", False)]
)
def test_lock_pins_every_dependency_of_pyproject_within_its_range(
    lock_name: str, dev: bool
) -> None:
    lock = read_lock(lock_name)
    stale = []
    for requirement in wanted(dev=dev):
        pinned = lock.get(canonicalize_name(requirement.name))
        if pinned is None:
            stale.append(f"{requirement} is not in it")
        elif not requirement.specifier.contains(pinned[0], prereleases=True):
            stale.append(f"{requirement.name} {pinned[0]} is outside {requirement.specifier}")
    assert not stale, f"{lock_name} is older than pyproject.toml: {'; '.join(stale)}; {REFRESH}"


def test_service_lock_is_the_dev_lock_without_the_dev_tools() -> None:
    """What the tests ran with is what deploys: same versions, same files."""
    dev = read_lock("requirements-dev.lock")
    service = read_lock("requirements.lock")
    differ = sorted(name for name, pin in service.items() if dev.get(name) != pin)
    assert not differ, f"requirements.lock and requirements-dev.lock differ on {differ}; {REFRESH}"
    runtime = {canonicalize_name(r.name) for r in wanted(dev=False)}
    dev_tools = {canonicalize_name(r.name) for r in wanted(dev=True)} - runtime
    assert not dev_tools & service.keys(), f"requirements.lock holds dev tools; {REFRESH}"
