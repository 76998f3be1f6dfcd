"""Delivery off the request: a page that must answer in the same time whether or not a
message goes out (recovery's start) hands the send to a small pool of threads.

The message is rendered in the request (its language is the request's); only the
gateway call runs later. A failure calls `on_failure` (e.g. to give the send back to the
budgets), so the student can ask again at once. The queue is bounded: past `BACKLOG`
waiting sends a new one fails at once (a code that would arrive after it expired helps
nobody), and so does a send that waited longer than its `deadline`.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor

from provider.delivery import DeliveryFailed

log = logging.getLogger(__name__)

WORKERS = 4
BACKLOG = 200

_POOL = ThreadPoolExecutor(max_workers=WORKERS, thread_name_prefix="umpass-delivery")
_slots = threading.BoundedSemaphore(BACKLOG)


def deliver_later(
    send: Callable[[], None], on_failure: Callable[[], None], *, deadline: float = 300.0
) -> Future[None] | None:
    """Send in the background; None when the backlog is full (then `on_failure` ran).
    `deadline`: seconds after which a send still waiting is dropped as failed."""
    slots = _slots  # the slot taken is the one given back, whatever `_slots` is by then
    if not slots.acquire(blocking=False):
        log.warning("delivery backlog full", extra={"action": "deliver_later"})
        _fail(on_failure)
        return None
    queued = time.monotonic()

    def run() -> None:
        try:
            if time.monotonic() - queued > deadline:
                raise DeliveryFailed("waited too long")
            send()
        except DeliveryFailed:
            log.warning("message not delivered", extra={"action": "deliver_later"})
            _fail(on_failure)
        except Exception:  # a thread's error has nobody else to tell it to
            log.exception("delivery failed unexpectedly", extra={"action": "deliver_later"})
            _fail(on_failure)
        finally:
            slots.release()

    return _POOL.submit(run)


def _fail(on_failure: Callable[[], None]) -> None:
    try:
        on_failure()
    except Exception:  # e.g. the database down: logged, since no one waits for this thread
        log.exception("delivery failure not recorded", extra={"action": "deliver_later"})
