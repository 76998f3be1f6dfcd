"""Delivery off the request: failures give the send back, the backlog is bounded, a send
that waited past its deadline is dropped as failed."""

from __future__ import annotations

import logging
import threading

from provider.delivery import DeliveryFailed, background


def test_a_failed_send_calls_its_failure_once() -> None:
    failed = threading.Event()

    def refuse() -> None:
        raise DeliveryFailed("down")

    future = background.deliver_later(refuse, failed.set)
    assert future is not None
    future.result(timeout=5)
    assert failed.is_set()


def test_a_send_past_its_deadline_is_dropped(monkeypatch) -> None:
    sent, failed = threading.Event(), threading.Event()
    future = background.deliver_later(sent.set, failed.set, deadline=-1.0)
    assert future is not None
    future.result(timeout=5)
    assert failed.is_set() and not sent.is_set()


def test_a_full_backlog_fails_at_once_and_frees_its_slots(monkeypatch) -> None:
    monkeypatch.setattr(background, "_slots", threading.BoundedSemaphore(1))
    release = threading.Event()
    first = background.deliver_later(lambda: release.wait(5) and None, lambda: None)
    refused = threading.Event()
    assert background.deliver_later(lambda: None, refused.set) is None
    assert refused.is_set()
    release.set()
    assert first is not None
    first.result(timeout=5)
    again = background.deliver_later(lambda: None, lambda: None)
    assert again is not None
    again.result(timeout=5)


def test_a_slot_goes_back_to_the_backlog_it_was_taken_from(monkeypatch) -> None:
    """A send still running when the backlog is replaced (a test's patch undone, here)
    gives its slot back to the one it took it from, never to the new one."""
    taken_from = threading.BoundedSemaphore(1)
    monkeypatch.setattr(background, "_slots", taken_from)
    release = threading.Event()
    running = background.deliver_later(lambda: release.wait(5) and None, lambda: None)
    assert running is not None
    monkeypatch.setattr(background, "_slots", threading.BoundedSemaphore(1))
    release.set()
    running.result(timeout=5)  # raised "released too many times" into the new one before
    assert taken_from.acquire(blocking=False)


def test_a_failing_failure_handler_is_logged_not_lost() -> None:
    seen: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = seen.append  # type: ignore[method-assign]
    background.log.addHandler(handler)

    def boom() -> None:
        raise RuntimeError("database down")

    def refuse() -> None:
        raise DeliveryFailed("down")

    try:
        future = background.deliver_later(refuse, boom)
        assert future is not None
        future.result(timeout=5)
    finally:
        background.log.removeHandler(handler)
    assert any(r.getMessage() == "delivery failure not recorded" for r in seen)
