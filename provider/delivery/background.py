"""Delivery off the request: a page that must answer in the same time whether or not a
message goes out (recovery's start) hands the send to a small pool of threads.

The message is rendered in the request (its language is the request's); only the
gateway call runs later. A failure calls `on_failure` (e.g. to give the send back to the
budgets), so the student can ask again at once. A send still queued when the process
stops is lost: the student asks again.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor

from provider.delivery import DeliveryFailed

log = logging.getLogger(__name__)

_POOL = ThreadPoolExecutor(max_workers=4, thread_name_prefix="umpass-delivery")


def deliver_later(send: Callable[[], None], on_failure: Callable[[], None]) -> Future[None]:
    def run() -> None:
        try:
            send()
        except DeliveryFailed:
            log.warning("message not delivered", extra={"action": "deliver_later"})
            on_failure()
        except Exception:  # a thread's error has nobody else to tell it to
            log.exception("delivery failed unexpectedly", extra={"action": "deliver_later"})
            on_failure()

    return _POOL.submit(run)
