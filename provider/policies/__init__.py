"""The campus IT policies: versioned documents, one Markdown file each, beside this module.

Policies are Markdown files in provider/policies/ with a small header (id, version,
title); the same policy in another language is a header-less body beside it,
``<file>.<language>.md`` (``privacy-notice.zh_Hant.md``), of the same version. They are
rendered with raw HTML switched off, so a policy file cannot inject markup or script.
What was accepted (id, version, time) goes into the flow and, at activation, onto the
Keycloak account.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

from markdown_it import MarkdownIt
from markupsafe import Markup

POLICY_DIR = Path(__file__).resolve().parent


@dataclass(frozen=True)
class Policy:
    id: str
    version: str
    title: str
    html: Markup
    # Titles in other languages, from header lines such as "title.zh_Hant: ...".
    titles: dict[str, str] = field(default_factory=dict)
    # Bodies in other languages, from the files beside it ("<file>.<language>.md").
    bodies: dict[str, Markup] = field(default_factory=dict)

    def title_in(self, language: str) -> str:
        return self.titles.get(language, self.title)

    def html_in(self, language: str) -> Markup:
        return self.bodies.get(language, self.html)

    @property
    def field_name(self) -> str:
        return "accept_" + re.sub(r"[^a-z0-9]+", "_", self.id.lower())


def _render(markdown: str) -> Markup:
    renderer = MarkdownIt("commonmark", {"html": False})
    # Headings inside a policy sit below the page's own h1 and the policy's h2.
    html = renderer.render(markdown).replace("<h2>", "<h3>").replace("</h2>", "</h3>")
    return Markup(html)  # noqa: S704 - raw HTML is off


def _parse(path: Path) -> Policy:
    text = path.read_text(encoding="utf-8")
    _, header, body = text.split("---\n", 2)
    meta = dict(line.split(":", 1) for line in header.strip().splitlines())
    meta = {k.strip(): v.strip() for k, v in meta.items()}
    titles = {k.split(".", 1)[1]: v for k, v in meta.items() if k.startswith("title.")}
    bodies = {
        translated.suffixes[-2].lstrip("."): _render(translated.read_text(encoding="utf-8"))
        for translated in sorted(path.parent.glob(f"{path.stem}.*.md"))
    }
    return Policy(
        id=meta["id"],
        version=meta["version"],
        title=meta["title"],
        html=_render(body),
        titles=titles,
        bodies=bodies,
    )


@cache
def current_policies() -> tuple[Policy, ...]:
    # "name.md" is a policy; "name.<language>.md" is its body in that language.
    originals = (p for p in sorted(POLICY_DIR.glob("*.md")) if len(p.suffixes) == 1)
    return tuple(_parse(p) for p in originals)


def accepted_record(policy: Policy, at: str) -> str:
    """How one acceptance is stored on the account: ``id@version:time``."""
    return f"{policy.id}@{policy.version}:{at}"
