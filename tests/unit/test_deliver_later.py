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
    assert background.deliver_later(lambda: None, lambda: None) is not None


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
