"""NUL in what clients send, against the live server on PostgreSQL, whose ``text`` refuses
NUL: a URL with ``%00``, a JSON body with ``\\u0000``, a form field with ``%00``, an iCalendar
object holding one, an SMTP ENVID or ORCPT with ``+00`` each get the protocol's error, where
they were server errors (the statement failed; SMTP answered 451, so the client retried); the
server then goes on serving. Skipped when no PostgreSQL server is reachable."""

from __future__ import annotations

import smtplib
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from pillarbox import config as cfg
from pillarbox.testing.davclient import dav_client
from pillarbox.testing.icalendars import event
from pillarbox.testing.live import TEST_PASSWORD, LiveServer, loopback_config
from pillarbox.testing.postgres import TestDatabase, needs_postgres
from pillarbox.testing.webclient import WebSession

pytestmark = needs_postgres()

ALICE = "alice@example.org"
START = "20260105T100000Z"


@pytest.fixture
def live(tmp_path: Path, database: TestDatabase) -> Iterator[LiveServer]:
    config = loopback_config(
        tmp_path / "data",
        only=("http", "https", "submission"),
        store=cfg.StoreSection(url=database.new_store_url()),
    )
    with LiveServer(config) as server:
        server.add_domain("example.org")
        server.add_account(ALICE, TEST_PASSWORD)
        yield server


@pytest.fixture
def web(live: LiveServer) -> Iterator[WebSession]:
    session = WebSession(live)
    assert session.login(ALICE).status_code == 303
    yield session
    session.close()


@pytest.fixture
def dav(live: LiveServer) -> Iterator[httpx.Client]:
    with dav_client(live, ALICE) as client:
        yield client


def test_a_url_with_nul_is_a_bad_request(web: WebSession, dav: httpx.Client) -> None:
    inbox = web.api("GET", "/mailboxes").json()[0]["id"]
    acl = web.api("PUT", f"/mailboxes/{inbox}/acl/a%00b@example.org", json={"rights": "lr"})
    assert (acl.status_code, acl.json()) == (400, {"error": "NUL (%00) in the URL"})
    assert dav.get(f"/dav/addressbooks/{ALICE}/contacts/a%00b.vcf").status_code == 400
    assert dav.get(f"/dav/calendars/{ALICE}/personal/a.ics?x=%00").status_code == 400
    assert dav.get(f"/dav/addressbooks/{ALICE}/contacts/").status_code != 400


def test_a_json_body_with_nul_is_a_bad_request(web: WebSession) -> None:
    refused = web.api("PUT", "/settings/profile", json={"display_name": "Al\x00ice"})
    assert (refused.status_code, refused.json()) == (
        400,
        {"error": "the body holds a NUL character"},
    )
    token = web.api("POST", "/tokens", json={"kind": "api", "label": ["x", {"y": "\x00"}]})
    assert token.status_code == 400
    assert web.api("PUT", "/settings/profile", json={"display_name": "Alice"}).status_code == 200
    assert web.api("GET", "/me").json()["display_name"] == "Alice"


def test_a_form_field_with_nul_is_a_bad_request(web: WebSession) -> None:
    assert web.post("/settings/profile", {"display_name": "Al\x00ice"}).status_code == 400
    assert web.post("/settings/profile", {"display_name": "Alice"}).status_code == 303


def test_an_icalendar_object_with_nul_is_invalid_calendar_data(dav: httpx.Client) -> None:
    path = f"/dav/calendars/{ALICE}/personal/nul.ics"
    headers = {"content-type": "text/calendar; charset=utf-8"}
    body = event("nul\x00uid", START)
    refused = dav.put(path, content=body.encode(), headers=headers)
    assert refused.status_code == 403
    assert "valid-calendar-data" in refused.text
    assert dav.put(path, content=event("fine", START).encode(), headers=headers).status_code == 201


REMOTE = "someone@remote.example"
MESSAGE = b"From: alice@example.org\r\nTo: someone@remote.example\r\n\r\nHi\r\n"


def test_an_envid_with_nul_is_refused_in_smtp(live: LiveServer) -> None:
    with smtplib.SMTP("127.0.0.1", live.port("submission")) as client:
        client.login(ALICE, TEST_PASSWORD)
        assert client.mail(ALICE, ["ENVID=a+00b"]) == (501, b"5.5.4 invalid command arguments")
        assert client.sendmail(ALICE, [REMOTE], MESSAGE, mail_options=["ENVID=a+2Bb"]) == {}


def test_an_orcpt_with_nul_is_refused_in_smtp(live: LiveServer) -> None:
    with smtplib.SMTP("127.0.0.1", live.port("submission")) as client:
        client.login(ALICE, TEST_PASSWORD)
        assert client.mail(ALICE)[0] == 250
        refused = client.rcpt(REMOTE, ["ORCPT=rfc822;a+00b@example.org"])
        assert refused == (501, b"5.5.4 invalid command arguments")
        client.rset()
        assert (
            client.sendmail(ALICE, [REMOTE], MESSAGE, rcpt_options=[f"ORCPT=rfc822;{REMOTE}"]) == {}
        )
