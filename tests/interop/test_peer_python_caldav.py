"""RFC 4791's server-side ``expand`` (§9.6.5) and ``free-busy-query`` (§7.10) asked for by a
real CalDAV client library, python-caldav (PyPI ``caldav``), over HTTPS.

vdirsyncer (test_peer_vdirsyncer_caldav.py) syncs whole objects and asks for neither; this
client's ``search(..., expand=True, server_expand=True)`` sends ``calendar-data`` with
``expand`` and reads the instances back, and ``freebusy_request`` sends a free-busy-query.
It is a development dependency (``.[dev]``); the test is skipped where it is not installed.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from pillarbox.testing.icalendars import WEEKLY, event
from pillarbox.testing.live import TEST_PASSWORD, LiveServer
from pillarbox.testing.webclient import tls_paths

caldav = pytest.importorskip("caldav", reason="python-caldav is not installed")

pytestmark = pytest.mark.listeners("http", "https")


def test_python_caldav_expands_on_the_server_and_asks_free_busy(live: LiveServer) -> None:
    client = caldav.DAVClient(
        f"https://127.0.0.1:{live.port('https')}/dav/",
        username="alice@example.org",
        password=TEST_PASSWORD,
        ssl_verify_cert=str(tls_paths(live.config)[0]),
    )
    (calendar,) = client.principal().calendars()
    calendar.save_event(WEEKLY)
    calendar.save_event(event("tentative", "20250107T081500Z", extra="STATUS:TENTATIVE\r\n"))
    start, end = datetime(2025, 1, 5, tzinfo=UTC), datetime(2025, 1, 25, tzinfo=UTC)

    found = calendar.search(start=start, end=end, event=True, expand=True, server_expand=True)
    instances = sorted(
        (str(e.icalendar_component["RECURRENCE-ID"].to_ical().decode()), e.icalendar_component)
        for e in found
    )
    # The server's expansion: RECURRENCE-IDs in UTC (the client's own would keep the TZID),
    # the 13th left out (EXDATE), the 20th moved to the 21st.
    assert [rid for rid, _ in instances] == [
        "20250106T080000Z",
        "20250107T081500Z",
        "20250120T080000Z",
    ]
    assert all("RRULE" not in c for _, c in instances)
    moved = instances[2][1]
    assert moved.decoded("DTSTART") == datetime(2025, 1, 21, 13, 0, tzinfo=UTC)

    busy = calendar.freebusy_request(start, end).icalendar_component
    assert busy.name == "VFREEBUSY"
    periods = [
        (p.params["FBTYPE"], p.to_ical().decode())
        for p in (busy["FREEBUSY"] if isinstance(busy["FREEBUSY"], list) else [busy["FREEBUSY"]])
    ]
    assert periods == [
        ("BUSY", "20250106T080000Z/20250106T083000Z"),
        ("BUSY-TENTATIVE", "20250107T081500Z/20250107T091500Z"),
        ("BUSY", "20250121T130000Z/20250121T133000Z"),
    ]


def test_python_caldav_given_the_bare_server_url_finds_the_calendars(live: LiveServer) -> None:
    """A client given ``https://host/`` PROPFINDs ``/`` first: the 301 to ``/dav/`` (as the
    well-known paths answer) leads it to the principal; GET ``/`` is still the webmail."""
    client = caldav.DAVClient(
        f"https://127.0.0.1:{live.port('https')}/",
        username="alice@example.org",
        password=TEST_PASSWORD,
        ssl_verify_cert=str(tls_paths(live.config)[0]),
    )
    (calendar,) = client.principal().calendars()
    assert calendar.url.path.startswith("/dav/calendars/alice@example.org/")
