"""Scraping a live server's metrics listener over real HTTP, and reading the samples with
prometheus_client's own parser: what the metrics tests of every area compare before and after
the traffic they make."""

from __future__ import annotations

import http.client

from prometheus_client.parser import text_string_to_metric_families

from pillarbox.testing.live import LiveServer

#: (sample name, its labels) → value.
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def get_metrics(
    server: LiveServer, path: str = "/metrics", method: str = "GET", **headers: str
) -> tuple[int, dict[str, str], str]:
    """One request to the metrics listener: status, headers (lower-case names), body."""
    connection = http.client.HTTPConnection("127.0.0.1", server.port("metrics"), timeout=30)
    try:
        connection.request(method, path, headers=headers)
        response = connection.getresponse()
        body = response.read().decode()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, body
    finally:
        connection.close()


def scrape(server: LiveServer, **headers: str) -> Samples:
    """The samples of one successful scrape (``headers``: its credentials, if any)."""
    status, answered, body = get_metrics(server, **headers)
    assert status == 200, body
    assert answered["content-type"].startswith("text/plain")
    return parse(body)


def parse(body: str) -> Samples:
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(body)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    """A sample's value, 0 when the series is absent."""
    return samples.get((name, frozenset(labels.items())), 0.0)


def moved(before: Samples, after: Samples, name: str, **labels: str) -> float:
    return value(after, name, **labels) - value(before, name, **labels)
