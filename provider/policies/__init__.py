"""The campus IT policies: versioned documents, every version kept, beside this module.

Layout: one folder per policy, one file per version and language::

    provider/policies/<policy id>/<version>.md            English, with a small header
    provider/policies/<policy id>/<version>.<language>.md  the body in that language

Versions are ``YYYY-MM`` (when it was written), so their order is their text's order. The
header holds ``id`` and ``version`` (checked against the path, so a copied file cannot
pass for another), the ``title`` and ``title.<language>``, and from the second version on
``changes`` and ``changes.<language>``: the plain-words change summary shown to a student
who accepted an earlier version. Every file is rendered with raw HTML switched off, so a
policy file cannot inject markup or script.

Which version is *current* is not decided here: a version on disk is only a document until
it is published (`provider.policies.published`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

from markdown_it import MarkdownIt
from markupsafe import Markup

POLICY_DIR = Path(__file__).resolve().parent
VERSION = re.compile(r"\d{4}-\d{2}")
POLICY_ID = re.compile(r"[a-z0-9-]+")
# What a stored acceptance looks like: "id@version:time".
_RECORD = re.compile(r"(?P<id>[a-z0-9-]+)@(?P<version>\d{4}-\d{2}):(?P<at>\S+)")


class PolicyFileError(Exception):
    """A policy file that would show the wrong thing; the message names the file."""


@dataclass(frozen=True)
class Policy:
    """One version of one policy, in every language it has."""

    id: str
    version: str
    title: str
    html: Markup
    # Titles in other languages, from header lines such as "title.zh_Hant: ...".
    titles: dict[str, str] = field(default_factory=dict)
    # Bodies in other languages, from the files beside it ("<version>.<language>.md").
    bodies: dict[str, Markup] = field(default_factory=dict)
    # What changed since the version before ("" for a first version), per language.
    changes: str = ""
    changes_by_language: dict[str, str] = field(default_factory=dict)

    def title_in(self, language: str) -> str:
        return self.titles.get(language, self.title)

    def html_in(self, language: str) -> Markup:
        return self.bodies.get(language, self.html)

    def changes_in(self, language: str) -> str:
        return self.changes_by_language.get(language, self.changes)

    @property
    def key(self) -> str:
        """``id@version``: how evidence, audit and the admin pages name this version."""
        return f"{self.id}@{self.version}"

    @property
    def field_name(self) -> str:
        return "accept_" + re.sub(r"[^a-z0-9]+", "_", self.id.lower())


def _render(markdown: str) -> Markup:
    renderer = MarkdownIt("commonmark", {"html": False})
    # Headings inside a policy sit below the page's own h1 and the policy's h2.
    html = renderer.render(markdown).replace("<h2>", "<h3>").replace("</h2>", "</h3>")
    return Markup(html)  # noqa: S704 - raw HTML is off


def _by_suffix(meta: dict[str, str], name: str) -> dict[str, str]:
    return {k.split(".", 1)[1]: v for k, v in meta.items() if k.startswith(name + ".")}


def _parse(path: Path) -> Policy:
    text = path.read_text(encoding="utf-8")
    try:
        _, header, body = text.split("---\n", 2)
        meta = {k.strip(): v.strip() for k, v in (ln.split(":", 1) for ln in header.splitlines())}
        policy_id, version, title = meta["id"], meta["version"], meta["title"]
    except (ValueError, KeyError):
        raise PolicyFileError(f"{path}: needs a header with id, version and title") from None
    if (policy_id, version) != (path.parent.name, path.stem):
        raise PolicyFileError(f"{path}: its header says {policy_id}@{version}")
    bodies = {
        translated.suffixes[-2].lstrip("."): _render(translated.read_text(encoding="utf-8"))
        for translated in sorted(path.parent.glob(f"{version}.*.md"))
    }
    return Policy(
        id=policy_id,
        version=version,
        title=title,
        html=_render(body),
        titles=_by_suffix(meta, "title"),
        bodies=bodies,
        changes=meta.get("changes", ""),
        changes_by_language=_by_suffix(meta, "changes"),
    )


def load(directory: Path) -> dict[str, tuple[Policy, ...]]:
    """Every policy in `directory` with all its versions, oldest first."""
    out: dict[str, tuple[Policy, ...]] = {}
    for folder in sorted(p for p in directory.iterdir() if p.is_dir() and p.name[0] != "_"):
        # "<version>.md" is a version; "<version>.<language>.md" is its body in a language.
        files = sorted(p for p in folder.glob("*.md") if len(p.suffixes) == 1)
        if not files:
            continue
        if not POLICY_ID.fullmatch(folder.name):
            # The id is part of every "id@version:time" record, which the realm's policy
            # gate reads as such: anything else there would stop it reading the list.
            raise PolicyFileError(f"{folder}: a policy id is lower-case letters, digits and -")
        for path in files:
            if not VERSION.fullmatch(path.stem):
                raise PolicyFileError(f"{path}: a version is named YYYY-MM")
        versions = tuple(_parse(p) for p in files)
        for later in versions[1:]:
            if not later.changes:
                raise PolicyFileError(f"{folder}/{later.version}.md: says nothing under 'changes'")
        out[folder.name] = versions
    return out


@cache
def documents() -> dict[str, tuple[Policy, ...]]:
    """The policies shipped with the service (read once per process)."""
    return load(POLICY_DIR)


def find(policy_id: str, version: str) -> Policy | None:
    return next((p for p in documents().get(policy_id, ()) if p.version == version), None)


def accepted_record(policy: Policy, at: str) -> str:
    """How one acceptance is stored on the account: ``id@version:time``."""
    return f"{policy.key}:{at}"


@dataclass(frozen=True)
class Acceptance:
    policy_id: str
    version: str
    at: str

    @property
    def key(self) -> str:
        return f"{self.policy_id}@{self.version}"


def parse_record(record: str) -> Acceptance | None:
    """An ``id@version:time`` read back from an account; None for anything else."""
    found = _RECORD.fullmatch(record.strip())
    if found is None:
        return None
    return Acceptance(found["id"], found["version"], found["at"])


def changes_since(records: list[str]) -> dict[str, tuple[str, list[Policy]]]:
    """For each policy with a version later than the one `records` (``id@version:time``)
    accepted last: that version, and each later one (with its change summary). An account
    keeps every version it accepted; the newest of them is what the student last read."""
    newest: dict[str, str] = {}
    for record in filter(None, map(parse_record, records)):
        newest[record.policy_id] = max(record.version, newest.get(record.policy_id, ""))
    out: dict[str, tuple[str, list[Policy]]] = {}
    for policy_id, version in newest.items():
        later = [p for p in documents().get(policy_id, ()) if p.version > version]
        if later:
            out[policy_id] = (version, later)
    return out
