"""The outbox's backlog as Prometheus gauges, for the web service's scrape (read from the
database: the deliver processes count their own requests, see deliver.py).

`umpass_webhook_deliveries_waiting{endpoint,state}`: rows per endpoint that are pending
(not yet accepted, retrying included) or dead (undelivered after every try; an admin
sends them again). Alert on dead > 0, or pending growing.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy.orm import Session, sessionmaker

from provider.events import queue


class OutboxCollector(Collector):
    def __init__(self, reads: sessionmaker[Session]) -> None:
        self.reads = reads

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily(
            "umpass_webhook_deliveries_waiting",
            "Event deliveries not accepted yet (pending) or given up (dead), per endpoint",
            labels=["endpoint", "state"],
        )
        with self.reads() as db:
            for endpoint, state, n in queue.counts(db):
                if state != queue.DELIVERED:
                    family.add_metric([endpoint, state], n)
        yield family
