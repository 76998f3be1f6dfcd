from datetime import UTC, datetime, timedelta

from sqlalchemy import event
from sqlalchemy.orm import sessionmaker

from provider.guards import lockout
from provider.storage.models import IdentifyLockout

T0 = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)


def _allowed(sessions, key: str, now: datetime) -> bool:
    return lockout.begin_attempt(sessions, key, now) is None


def _fail(sessions, key: str, now: datetime) -> bool:
    allowed = _allowed(sessions, key, now)
    if allowed:
        lockout.record_failure(sessions, key, now)
    return allowed


def test_five_failures_lock_for_15_minutes_then_30(sessions) -> None:
    assert all(_fail(sessions, "dc12345", T0) for _ in range(5))
    assert not _allowed(sessions, "dc12345", T0 + timedelta(minutes=14))
    assert _allowed(sessions, "dc12345", T0 + timedelta(minutes=15, seconds=1))
    lockout.record_failure(sessions, "dc12345", T0 + timedelta(minutes=16))
    t1 = T0 + timedelta(minutes=16)
    assert all(_fail(sessions, "dc12345", t1) for _ in range(4))  # 5 in a row again
    assert not _allowed(sessions, "dc12345", t1 + timedelta(minutes=29))
    assert _allowed(sessions, "dc12345", t1 + timedelta(minutes=30, seconds=1))


def test_success_resets_the_count(sessions) -> None:
    for _ in range(4):
        _fail(sessions, "dc12345", T0)
    assert _allowed(sessions, "dc12345", T0)
    lockout.record_success(sessions, "dc12345", T0)
    assert all(_fail(sessions, "dc12345", T0) for _ in range(4))
    assert _allowed(sessions, "dc12345", T0)


def test_clear_lifts_a_lock(sessions) -> None:
    for _ in range(5):
        _fail(sessions, "dc12345", T0)
    lockout.clear(sessions, "dc12345")
    assert _allowed(sessions, "dc12345", T0)


def test_lock_key_is_bounded_and_normalised() -> None:
    assert lockout.lock_key(" DC 12345 ") == "dc12345"
    assert len(lockout.lock_key("x" * 500)) == 32
    assert lockout.lock_key("   ") == "-"


def test_identify_typing_never_reaches_a_recovery_counter() -> None:
    assert lockout.lock_key("r/dc12345") != lockout.recovery_key("dc12345")
    assert "/" not in lockout.lock_key("R/DC12345/x")


def test_parallel_attempts_cannot_pass_the_limit(sessions) -> None:
    # Ten attempts counted before any of them fails: only five may go on.
    results = [lockout.begin_attempt(sessions, "dc99999", T0) for _ in range(10)]
    assert results.count(None) == 5


def test_lock_reports_when_it_ends(sessions) -> None:
    for _ in range(5):
        _fail(sessions, "dc12345", T0)
    assert lockout.begin_attempt(sessions, "dc12345", T0) == T0 + timedelta(minutes=15)


def test_attempts_that_never_came_back_end_like_a_lock(sessions) -> None:
    """Five counts without an outcome (a crash after each): the ID waits out one lock's
    length from the last of them, never for good."""
    for _ in range(5):
        assert _allowed(sessions, "dc55555", T0)
    assert lockout.begin_attempt(sessions, "dc55555", T0 + timedelta(minutes=5)) == (
        T0 + timedelta(minutes=15)
    )
    assert _allowed(sessions, "dc55555", T0 + timedelta(minutes=15, seconds=1))


def test_an_attempt_the_service_could_not_answer_is_released(sessions) -> None:
    for _ in range(5):
        assert _allowed(sessions, "dc66666", T0)
        lockout.release_attempt(sessions, "dc66666")
    assert _allowed(sessions, "dc66666", T0)


WINDOW = timedelta(hours=1)


def _hot(sessions, key: str, now: datetime, after_locks: int = 2) -> lockout.Hot | None:
    return lockout.hot(sessions, key, now, after_locks=after_locks, window=WINDOW)


def _lock_once(sessions, key: str, now: datetime) -> lockout.Lock | None:
    started = None
    for _ in range(5):
        assert _allowed(sessions, key, now)
        started = lockout.record_failure(sessions, key, now)
    return started


def test_the_fifth_failure_reports_the_lock_it_starts(sessions) -> None:
    first = _lock_once(sessions, "dc12345", T0)
    assert first == lockout.Lock(T0 + timedelta(minutes=15), 1)
    second = _lock_once(sessions, "dc12345", T0 + timedelta(minutes=16))
    assert second == lockout.Lock(T0 + timedelta(minutes=46), 2)


def test_an_id_locked_twice_in_a_row_is_hot_for_a_window_after_the_lock(sessions) -> None:
    _lock_once(sessions, "zz00001", T0)  # whether or not such a student exists
    assert _hot(sessions, "zz00001", T0 + timedelta(minutes=15, seconds=1)) is None  # once
    second = T0 + timedelta(minutes=16)
    _lock_once(sessions, "zz00001", second)
    lock_ends = second + timedelta(minutes=30)
    hot = _hot(sessions, "zz00001", second)
    assert hot == lockout.Hot(lock_ends, lock_ends + WINDOW)
    assert not hot.needs_check(second)  # locked: nothing is compared yet
    assert hot.needs_check(lock_ends)
    assert hot.needs_check(lock_ends + WINDOW - timedelta(seconds=1))
    assert not hot.needs_check(lock_ends + WINDOW)
    assert _hot(sessions, "zz00001", lock_ends + WINDOW) is None  # waited out
    assert _hot(sessions, "zz00001", lock_ends, after_locks=3) is None
    assert _hot(sessions, "zz00001", lock_ends, after_locks=0) is None  # switched off


def test_success_or_the_help_desk_ends_the_check(sessions) -> None:
    for key in ("dc11111", "dc22222"):
        _lock_once(sessions, key, T0)
        _lock_once(sessions, key, T0 + timedelta(minutes=16))
    after = T0 + timedelta(minutes=47)
    lockout.record_success(sessions, "dc11111", after)
    lockout.clear(sessions, "dc22222")
    assert _hot(sessions, "dc11111", after) is None
    assert _hot(sessions, "dc22222", after) is None


def _allowed_in_a_row(sessions, key: str, now: datetime) -> int:
    """How many attempts in a row may go on now (each counted, none answered yet)."""
    n = 0
    while _allowed(sessions, key, now):
        n += 1
        assert n <= lockout.MAX_FAILURES
    return n


def test_a_lock_ends_at_its_very_moment(sessions) -> None:
    for _ in range(5):
        _fail(sessions, "dc12345", T0)
    ends = T0 + timedelta(minutes=15)
    assert lockout.begin_attempt(sessions, "dc12345", ends - timedelta(seconds=1)) == ends
    assert _allowed(sessions, "dc12345", ends)


def test_locks_double_up_to_a_day(sessions) -> None:
    t = T0
    for minutes in (15, 30, 60, 120, 240, 480, 960, 1440, 1440):
        for _ in range(5):
            assert _fail(sessions, "dc12345", t)
        assert lockout.begin_attempt(sessions, "dc12345", t) == t + timedelta(minutes=minutes)
        t += timedelta(minutes=minutes)


def test_success_resets_the_lock_length_too(sessions) -> None:
    for _ in range(5):
        _fail(sessions, "dc12345", T0)
    t1 = T0 + timedelta(minutes=15)
    assert _allowed(sessions, "dc12345", t1)
    lockout.record_success(sessions, "dc12345", t1)
    for _ in range(5):
        _fail(sessions, "dc12345", t1)
    assert lockout.begin_attempt(sessions, "dc12345", t1) == t1 + timedelta(minutes=15)


def test_each_id_counts_alone(sessions) -> None:
    for _ in range(4):
        _fail(sessions, "dc11111", T0)
    _fail(sessions, "dc22222", T0)  # the other ID's attempt leaves this count as it is
    lockout.release_attempt(sessions, "dc22222")
    assert _allowed(sessions, "dc11111", T0)
    assert not _allowed(sessions, "dc11111", T0)


def test_a_released_attempt_gives_back_exactly_one(sessions) -> None:
    lockout.release_attempt(sessions, "dc12345")  # nothing to give back: never below zero
    assert _allowed(sessions, "dc12345", T0)
    lockout.release_attempt(sessions, "dc12345")
    lockout.release_attempt(sessions, "dc12345")  # the count stays at zero
    assert _allowed(sessions, "dc12345", T0) and _allowed(sessions, "dc12345", T0)
    lockout.release_attempt(sessions, "dc12345")
    assert _allowed_in_a_row(sessions, "dc12345", T0) == 4  # 1 counted + 4 = 5


def test_help_desk_clear_forgets_the_failures(sessions) -> None:
    for _ in range(4):
        _fail(sessions, "dc12345", T0)
    lockout.clear(sessions, "dc12345")
    assert _allowed_in_a_row(sessions, "dc12345", T0) == 5


def test_a_full_count_ends_at_its_very_moment_and_counts_afresh(sessions) -> None:
    for _ in range(5):
        assert _allowed(sessions, "dc55555", T0)
    ends = T0 + timedelta(minutes=15)
    assert lockout.begin_attempt(sessions, "dc55555", ends - timedelta(seconds=1)) == ends
    assert _allowed_in_a_row(sessions, "dc55555", ends) == 5


def test_a_full_count_after_an_earlier_lock_still_ends(sessions) -> None:
    """A lock ran its course, then five attempts never came back: one lock's length
    later the ID may try again (it used to stay locked until the help desk cleared it)."""
    for _ in range(5):
        _fail(sessions, "dc12345", T0)
    t1 = T0 + timedelta(minutes=16)
    for _ in range(5):
        assert _allowed(sessions, "dc12345", t1)
    assert lockout.begin_attempt(sessions, "dc12345", t1) == t1 + timedelta(minutes=15)
    assert _allowed(sessions, "dc12345", t1 + timedelta(minutes=15))


def test_a_full_count_ending_resets_only_its_own_id(sessions) -> None:
    for _ in range(3):
        _fail(sessions, "dc11111", T0)  # three failures, recorded at the same moment
    for _ in range(5):
        assert _allowed(sessions, "dc55555", T0)
    assert _allowed(sessions, "dc55555", T0 + timedelta(minutes=15))
    assert _allowed_in_a_row(sessions, "dc11111", T0 + timedelta(minutes=15)) == 2


def test_a_parallel_first_attempt_is_counted_too(sessions) -> None:
    """Between this attempt finding no row and creating it, a parallel first attempt
    creates it: both are counted, on the one row."""
    parallel = sessionmaker(sessions.kw["bind"], expire_on_commit=False)  # another request
    pool = sessions.kw["bind"].pool
    raced = []

    def other_attempt_first(*_connection: object) -> None:
        # A connection going back to the pool: the transaction that found no row is over.
        if raced:
            return
        raced.append(True)
        assert lockout.begin_attempt(parallel, "dc12345", T0) is None

    event.listen(pool, "checkin", other_attempt_first)
    try:
        assert lockout.begin_attempt(sessions, "dc12345", T0) is None
    finally:
        event.remove(pool, "checkin", other_attempt_first)
    assert raced
    with sessions() as session:
        assert session.get(IdentifyLockout, "dc12345").failures == 2
    assert _allowed_in_a_row(sessions, "dc12345", T0) == 3


def test_the_row_says_when_it_last_changed(sessions) -> None:
    """`umpass purge` forgets counts by their age: each change stamps the request's time."""

    def row() -> IdentifyLockout:
        with sessions() as session:
            return session.get(IdentifyLockout, "dc12345")

    assert _allowed(sessions, "dc12345", T0)
    assert (row().failures, row().lock_count, row().updated_at) == (1, 0, T0)
    t1 = T0 + timedelta(minutes=1)
    lockout.record_success(sessions, "dc12345", t1)
    assert (row().failures, row().updated_at) == (0, t1)


def test_one_lock_is_enough_when_the_setting_says_one(sessions) -> None:
    _lock_once(sessions, "dc33333", T0)
    ended = T0 + timedelta(minutes=15)
    assert _hot(sessions, "dc33333", ended, after_locks=1) == lockout.Hot(ended, ended + WINDOW)


def test_a_lock_records_when_it_started(sessions) -> None:
    """The help desk's list and the mass-lockout banner read when each lock began."""
    started = T0 + timedelta(minutes=3)
    _lock_once(sessions, "dc44444", started)
    with sessions() as session:
        assert session.get(IdentifyLockout, "dc44444").locked_at == started


def test_success_leaves_no_trace_of_an_ended_lock(sessions) -> None:
    """What the help desk's lockouts page reads: after a success, the row holds no count,
    no lock length and no lock end, even of a lock that had already ended."""
    for _ in range(5):
        _fail(sessions, "dc12345", T0)
    t1 = T0 + timedelta(minutes=15, seconds=1)
    assert _allowed(sessions, "dc12345", t1)
    lockout.record_success(sessions, "dc12345", t1)
    with sessions() as session:
        row = session.get(IdentifyLockout, "dc12345")
        assert (row.failures, row.lock_count, row.locked_until, row.updated_at) == (0, 0, None, t1)
