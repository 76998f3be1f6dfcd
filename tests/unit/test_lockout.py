from datetime import UTC, datetime, timedelta

from provider.flows import lockout

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
