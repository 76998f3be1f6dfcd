"""Policies as versioned documents: every version kept, what is current, publishing."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from provider.policies import (
    PolicyFileError,
    accepted_record,
    documents,
    load,
    parse_record,
)
from provider.policies.published import PublishRefused, current, current_versions, publish
from provider.storage.models import AuditEvent

HEADER = "---\nid: {id}\nversion: {version}\ntitle: {title}\n{extra}---\n"


def _write(folder: Path, version: str, body: str = "Text.\n", *, extra: str = "", **kw: str):
    folder.mkdir(exist_ok=True)
    header = HEADER.format(id=folder.name, version=version, title=kw.get("title", "T"), extra=extra)
    (folder / f"{version}.md").write_text(header + body, encoding="utf-8")


def test_every_version_is_kept_oldest_first_with_its_languages(tmp_path: Path) -> None:
    folder = tmp_path / "rules"
    _write(folder, "2026-01", "First.\n")
    _write(folder, "2026-05", "Second.\n", extra="changes: Shorter.\nchanges.pt: Mais curto.\n")
    (folder / "2026-05.pt.md").write_text("Segundo.\n", encoding="utf-8")
    first, second = load(tmp_path)["rules"]
    assert (first.version, second.version) == ("2026-01", "2026-05")
    assert "First." in first.html and "Segundo." in second.html_in("pt")
    assert second.html_in("zh_Hant") == second.html  # no body in that language: English
    assert (second.changes_in("pt"), second.changes_in("en")) == ("Mais curto.", "Shorter.")
    assert first.changes == "" and second.key == "rules@2026-05"


def test_a_later_version_without_a_change_summary_is_refused(tmp_path: Path) -> None:
    folder = tmp_path / "rules"
    _write(folder, "2026-01")
    _write(folder, "2026-05")
    with pytest.raises(PolicyFileError, match="changes"):
        load(tmp_path)


@pytest.mark.parametrize(
    ("name", "header_version"), [("2026-05", "2026-04"), ("v2", "v2"), ("2026-5", "2026-5")]
)
def test_a_file_whose_name_and_header_disagree_or_misname_a_version_is_refused(
    tmp_path: Path, name: str, header_version: str
) -> None:
    folder = tmp_path / "rules"
    folder.mkdir()
    (folder / f"{name}.md").write_text(
        HEADER.format(id="rules", version=header_version, title="T", extra="") + "x\n"
    )
    with pytest.raises(PolicyFileError):
        load(tmp_path)


@pytest.mark.parametrize("policy_id", ["Rules", "rules_2", "règles"])
def test_a_policy_id_the_gate_could_not_read_is_refused(tmp_path: Path, policy_id: str) -> None:
    _write(tmp_path / policy_id, "2026-01")
    with pytest.raises(PolicyFileError, match="policy id"):
        load(tmp_path)


def test_policy_files_render_without_raw_html(tmp_path: Path) -> None:
    _write(tmp_path / "x", "2026-01", "<script>alert(1)</script>\n\n[click](javascript:alert(1))\n")
    (policy,) = load(tmp_path)["x"]
    assert "<script>" not in policy.html
    assert 'href="javascript' not in policy.html
    assert policy.field_name == "accept_x"


def test_the_shipped_policies_each_have_every_version_in_three_languages() -> None:
    shipped = documents()
    assert set(shipped) == {"it-acceptable-use", "privacy-notice"}
    assert [p.version for p in shipped["it-acceptable-use"]] == ["2026-09", "2027-01"]
    for versions in shipped.values():
        for policy in versions:
            for language in ("pt", "zh_Hant"):
                assert policy.html_in(language) != policy.html, (policy.key, language)
                assert policy.title_in(language) != policy.title, (policy.key, language)
            for language in ("pt", "zh_Hant") if policy is not versions[0] else ():
                assert policy.changes_in(language) != policy.changes, (policy.key, language)


def test_evidence_records_round_trip_and_anything_else_is_not_evidence() -> None:
    policy = documents()["privacy-notice"][0]
    record = accepted_record(policy, "2026-12-03T10:00:00Z")
    assert record == "privacy-notice@2026-08:2026-12-03T10:00:00Z"
    parsed = parse_record(record)
    assert parsed is not None and (parsed.key, parsed.at) == (policy.key, "2026-12-03T10:00:00Z")
    for junk in ("", "privacy-notice", "privacy-notice@2026-08", "=cmd@2026-08:x"):
        assert parse_record(junk) is None


def test_before_any_publication_each_policy_is_current_at_its_first_version(
    sessions: sessionmaker[Session],
) -> None:
    with sessions() as db:
        versions = {p.id: p.version for p in current(db)}
    assert versions == {"it-acceptable-use": "2026-09", "privacy-notice": "2026-08"}


def test_publishing_makes_a_version_current_and_is_audited(
    sessions: sessionmaker[Session],
) -> None:
    done = publish(sessions, "it-acceptable-use", "2027-01", "staff:ana")
    assert done.published_by == "staff:ana"
    with sessions() as db:
        now = current_versions(db)
        events = db.scalars(select(AuditEvent).where(AuditEvent.action == "policy.published"))
        (event,) = list(events)
    assert now["it-acceptable-use"].policy.version == "2027-01"
    assert now["it-acceptable-use"].published_by == "staff:ana"
    assert now["privacy-notice"].policy.version == "2026-08"  # the other one unchanged
    assert event.actor == "staff:ana"
    assert event.detail == {"policy": "it-acceptable-use", "version": "2027-01"}


@pytest.mark.parametrize(
    ("policy_id", "version", "why"),
    [
        ("it-acceptable-use", "2026-09", "is current"),  # the current one again
        ("it-acceptable-use", "2030-01", "there is no"),
        ("no-such-policy", "2027-01", "there is no"),
    ],
)
def test_only_a_newer_version_that_exists_can_be_published(
    sessions: sessionmaker[Session], policy_id: str, version: str, why: str
) -> None:
    with pytest.raises(PublishRefused, match=why):
        publish(sessions, policy_id, version, "cli:root")
    with sessions() as db:
        assert not list(db.scalars(select(AuditEvent)))  # a refusal writes nothing


def test_an_older_version_cannot_be_published_over_a_newer_one(
    sessions: sessionmaker[Session],
) -> None:
    publish(sessions, "it-acceptable-use", "2027-01", "cli:root")
    with pytest.raises(PublishRefused, match="2027-01 is current"):
        publish(sessions, "it-acceptable-use", "2027-01", "cli:root")
    with sessions() as db:
        assert {p.id: p.version for p in current(db)}["it-acceptable-use"] == "2027-01"
