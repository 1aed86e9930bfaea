"""Metrics of two ``pillarbox serve`` processes over one PostgreSQL store: each node counts its
own sessions and messages; the queue gauges read the shared store, so both nodes report the
cluster's queue (docs/metrics.md, "Several nodes").

Skipped without a PostgreSQL server (``$PILLARBOX_TEST_POSTGRES`` or 127.0.0.1:5432).
"""

from __future__ import annotations

import http.client
import smtplib
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from pillarbox.testing.live import TEST_PASSWORD as PASSWORD
from pillarbox.testing.nodes import Node, node_pair
from pillarbox.testing.polling import wait_for
from pillarbox.testing.postgres import TestDatabase, needs_postgres

pytestmark = needs_postgres()

USER = "alice@example.org"
LISTENERS = ("smtp", "submission", "metrics")


Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(node: Node) -> Samples:
    connection = http.client.HTTPConnection("127.0.0.1", node.port("metrics"), timeout=30)
    try:
        connection.request("GET", "/metrics")
        response = connection.getresponse()
        assert response.status == 200
        body = response.read().decode()
    finally:
        connection.close()
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(body)
        for sample in family.samples
    }


def test_counters_per_node_and_the_queue_cluster_wide(
    tmp_path: Path, database: TestDatabase
) -> None:
    url = database.new_store_url()
    a, b = node_pair(tmp_path, url, USER, PASSWORD, listeners=LISTENERS)
    with a, b:
        # Through node A only, to a domain no DNS answers for: it stays queued (deferred).
        with smtplib.SMTP("127.0.0.1", a.port("submission"), timeout=30) as client:
            client.login(USER, PASSWORD)
            client.sendmail(USER, ["bob@elsewhere.test"], b"Subject: out\r\n\r\nhi\r\n")
        accepted = (
            "pillarbox_smtp_messages_total",
            frozenset({("listener", "submission"), ("outcome", "accepted")}),
        )
        queued = ("pillarbox_queue_messages", frozenset())

        def both_see_it() -> tuple[Samples, Samples] | None:
            on_a, on_b = scrape(a), scrape(b)
            return (on_a, on_b) if on_a.get(queued) == on_b.get(queued) == 1 else None

        on_a, on_b = wait_for(both_see_it, "the queued message in both nodes' queue gauge")
        assert (on_a[accepted], on_b[accepted]) == (1, 0)
        # Whichever node's runner claimed it made the one attempt: the cluster's count is
        # the sum over the nodes, while both report the same (shared) queue.
        attempts = ("pillarbox_delivery_attempts_total", frozenset({("result", "deferred")}))
        deferred = ("pillarbox_queue_recipients", frozenset({("state", "deferred")}))

        def attempted() -> tuple[Samples, Samples] | None:
            on_a, on_b = scrape(a), scrape(b)
            done = on_a[attempts] + on_b[attempts] == 1
            return (on_a, on_b) if done and on_a[deferred] == on_b[deferred] == 1 else None

        on_a, on_b = wait_for(attempted, "one deferred attempt, by either node")
        assert on_a[queued] == on_b[queued] == 1
