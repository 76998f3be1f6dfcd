"""An intake is checked as it streams in: what the first pass keeps does not grow with the
intake, yet a user ID twice anywhere is still found, and the realm's check reads the
realm as it comes (no Keycloak here: the listings are plain iterators)."""

from __future__ import annotations

import tracemalloc
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import pytest

from provider.intake.checked import check_intake
from provider.intake.csv_source import DEFAULT_COLUMNS, csv_rows
from provider.intake.keys import key
from provider.intake.realm_check import read_realm
from provider.intake.records import IntakeInvalid, IntakeSourceError, RawRecord, Rules

RULES = Rules(user_id_length=7, today=date(2026, 11, 27))
HEADER = (
    "Student Number,Given Name,Family Name,Email,Mobile,Date of Birth,ID Number,Programme,Language"
)


def _row(n: int, user_id: str | None = None, email: str | None = None) -> RawRecord:
    user_id = user_id or f"s{n:06d}"
    return RawRecord(
        f"line {n + 2}",
        {
            "user_id": f"{user_id}01",
            "first_name": f"Given{n}",
            "last_name": f"Family{n}",
            "email": email or f"{user_id}@example.edu",
            "phone": f"+853{(62, 63, 65, 66)[n % 4]}{n % 1_000_000:06d}",
            "date_of_birth": "2006-05-17",
            "id_number": f"A{n:07d}",
            "programme": "BSc",
            "language": ("en", "zh_Hant", "pt")[n % 3],
        },
    )


def _rows(count: int) -> Iterator[RawRecord]:
    return (_row(n) for n in range(count))  # a generator: never a list of the intake


def _peak_bytes(count: int) -> int:
    """The most memory Python held while checking `count` rows and reading them back."""
    tracemalloc.start()
    try:
        with check_intake(_rows(count), RULES) as checked:
            assert sum(1 for _ in checked.records()) == count
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_checking_an_intake_keeps_a_few_bytes_per_student() -> None:
    _peak_bytes(50)  # the phone and email libraries load their tables once
    small, large = _peak_bytes(1_000), _peak_bytes(5_000)
    per_student = (large - small) / 4_000
    # Three 8-byte keys a student and sorting them; holding the records would be ~1 KB.
    assert per_student < 100, f"{per_student:.0f} bytes per student"


def test_a_user_id_twice_is_found_however_far_apart() -> None:
    rows = [_row(n) for n in range(1_200)]
    rows[1_150] = _row(1_150, user_id="s000003", email="other@example.edu")
    with pytest.raises(IntakeInvalid) as caught:
        check_intake(iter(rows), RULES, chunk_size=100)
    assert [str(p) for p in caught.value.problems] == [
        "line 1152: student s000003 appears twice (also line 5)"
    ]


def test_problems_keep_the_sources_order_and_all_are_counted() -> None:
    rows = [_row(n) for n in range(3_000)]
    for n in range(0, 3_000, 2):
        rows[n] = RawRecord(rows[n].where, {**rows[n].values, "date_of_birth": "2006-02-31"})
    rows[2_999] = _row(2_999, user_id="s000001")  # a duplicate, found after the pass
    with pytest.raises(IntakeInvalid) as caught:
        check_intake(iter(rows), RULES)
    assert caught.value.total == 1_501
    kept = caught.value.problems
    assert len(kept) == 1_000 and str(kept[0]).startswith("line 2: date of birth")
    assert [int(p.where.split()[1]) for p in kept] == sorted(int(p.where.split()[1]) for p in kept)


def test_a_csv_is_read_as_far_as_it_is_needed(tmp_path: Path) -> None:
    good = "dc1234567,Ana,Lei,ana@example.edu,+85362345678,2007-03-14,1234567(8),,en"
    bad = "dc2345678,João,Sousa,j@example.edu,+85362345679,2007-07-30,P4455667,,pt"
    path = tmp_path / "intake.csv"
    path.write_bytes(f"{HEADER}\n{good}\n".encode() + f"{bad}\n".encode("latin-1"))
    rows = csv_rows(path, DEFAULT_COLUMNS)
    assert next(rows).where == "line 2"  # given before the bad line is read
    with pytest.raises(IntakeSourceError, match=r"first bad byte on line 3"):
        next(rows)


def _account(username: str, email: str, account_id: str | None = None) -> dict[str, str]:
    return {"id": account_id or f"id-{username}", "username": username, "email": email}


def test_the_realm_check_finds_each_kind_of_conflict() -> None:
    rows = [
        _row(1, "pending"),  # its pending account, same email: fine
        _row(2, "movedto"),  # a pending account with another email
        _row(3, "staffer"),  # an account that is not a student
        _row(4, "newbies", email="taken@example.edu"),  # its email is someone else's
        _row(5, "donedon"),  # active: left out
        _row(6, "freshie"),  # nothing in the realm: fine
    ]
    pending = [
        _account("pending", "pending@example.edu"),
        _account("movedto", "elsewhere@example.edu"),
        _account("lost", "lost@example.edu", "id-outside"),  # not in this intake
    ]
    active = [_account("donedon", "donedon@example.edu")]
    others = [_account("staffer", "staffer@staff.example.edu"), _account("zz", "taken@example.edu")]
    members = [{"id": "id-pending"}, {"id": "id-movedto"}, {"id": "id-donedon"}]
    with check_intake(iter(rows), RULES) as checked:
        view = read_realm(
            checked.index,
            members=iter(members),
            active=iter(active),
            pending=iter(pending),
            everyone=iter(pending + active + others),
        )
        found = [str(p) for p in view.problems(checked.records())]
    assert found == [
        "line 4: movedto is already in Keycloak with another email: correct the row or the account",
        "line 5: staffer is an account that is not a pending student: nothing of it is changed",
        "line 6: the email of newbies belongs to another account (zz)",
    ]
    assert key("donedon") in view.active and key("freshie") not in view.active
    assert view.outside_group == ["id-outside"]


def test_a_clean_realm_check_does_not_read_the_records_again() -> None:
    with check_intake(_rows(10), RULES) as checked:
        view = read_realm(
            checked.index,
            members=iter([]),
            active=iter([]),
            pending=iter([_account("s000001", "s000001@example.edu")]),
            everyone=iter([_account("s000001", "s000001@example.edu")]),
        )

        def never() -> Iterator[RawRecord]:
            raise AssertionError("read again")
            yield  # pragma: no cover

        assert view.problems(never()) == []
