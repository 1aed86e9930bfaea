"""The web interface over real HTTP against the live server: sessions, CSRF, ownership (another
account's ids are 404), every page and action, compose/send through the submission path,
uploads and their limits, live updates, settings, admin, autoconfig."""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import html
import json
import logging
import plistlib
import re
import smtplib
import socket
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import dns.message
import dns.name
import dns.query
import dns.rdataclass
import dns.rdatatype
import httpx
import pytest
from imapclient import IMAPClient

from pillarbox import config as cfg
from pillarbox.dns.hosted import hosted_records, record_policy
from pillarbox.mail.parse import parse_message, part_text
from pillarbox.queue.dkim import DkimAlgorithm, generate_key
from pillarbox.store.open import is_postgresql, open_store
from pillarbox.store.types import (
    INBOX,
    DkimKeyRecord,
    MetadataLimits,
    NewQueueRecipient,
    SpecialUse,
)
from pillarbox.testing.command import run_pillarbox
from pillarbox.testing.davclient import dav_client
from pillarbox.testing.live import NO_DNS, TEST_PASSWORD, LiveServer, free_port, loopback_config
from pillarbox.testing.polling import wait_for
from pillarbox.testing.testca import make_ca
from pillarbox.testing.webclient import (
    WebSession,
    deliver,
    mailbox_id,
    simple_message,
    special_mailbox_id,
)
from pillarbox.web.downloads import CONTENT_CSP
from pillarbox.web.reading import body_parts
from pillarbox.web.session import BACKGROUND_HEADER, ENDS_COOKIE
from pillarbox.web.threads import MAX_THREAD_LINES

pytestmark = pytest.mark.listeners("http")

ALICE = "alice@example.org"
BOB = "bob@example.org"


@pytest.fixture
def admin(live: LiveServer) -> Iterator[WebSession]:
    live.add_account("root@example.org", TEST_PASSWORD, is_admin=True)
    session = WebSession(live)
    assert session.login("root@example.org").status_code == 303
    yield session
    session.close()


def uids_in(live: LiveServer, address: str, name: str = INBOX) -> list[int]:
    box = mailbox_id(live, address, name)
    return [r.uid for r in live.call(live.store.list_messages(box))]


def flags_of(live: LiveServer, box: int, uid: int) -> frozenset[str]:
    record = live.call(live.store.get_message(box, uid))
    assert record is not None
    return record.flags


def raw_in(live: LiveServer, box: int, uid: int) -> bytes:
    record = live.call(live.store.get_message(box, uid))
    assert record is not None
    return live.call(live.store.read_blob(record.blob_id))


# -- sessions and login --------------------------------------------------------------------------


@contextlib.contextmanager
def web_only(tmp_path: Path, web: cfg.WebSection) -> Iterator[LiveServer]:
    """A server with the web listener alone, configured by ``web``, and alice's account."""
    with LiveServer(loopback_config(tmp_path / "data", only=["http"], web=web)) as server:
        server.add_domain("example.org")
        server.add_account(ALICE, TEST_PASSWORD)
        yield server


def test_login_sets_a_hardened_cookie_and_headers(live: LiveServer) -> None:
    web = WebSession(live)
    page = web.get("/login")
    cookie = page.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Secure" not in cookie
    assert "script-src 'self'" in page.headers["content-security-policy"]
    assert page.headers["x-content-type-options"] == "nosniff"
    assert page.headers["x-frame-options"] == "SAMEORIGIN"
    response = web.login(ALICE)
    assert response.status_code == 303 and response.headers["location"] == "/mail"
    assert "pb_session=" in response.headers["set-cookie"]
    assert web.get("/mail", follow_redirects=True).url.path == f"/mail/{mailbox_id(live, ALICE)}"


def test_wrong_password_then_rate_limited(live: LiveServer) -> None:
    web = WebSession(live)
    assert re.search(r'<input id="username"[^>]* autofocus', web.get("/login").text)
    wrong = web.login(ALICE, "wrong password!")
    assert wrong.status_code == 401 and "Wrong address or password." in wrong.text
    # The address is kept and the cursor is put where the retyping goes.
    assert re.search(r'<input id="password"[^>]* autofocus', wrong.text)
    assert not re.search(r'<input id="username"[^>]* autofocus', wrong.text)
    statuses = [web.login(ALICE, "wrong password!").status_code for _ in range(5)]
    assert 429 in statuses
    limited = web.login(ALICE)  # even the right password waits now
    assert limited.status_code == 429 and "Try again" in limited.text


def test_login_without_csrf_token_is_refused(live: LiveServer) -> None:
    web = WebSession(live)
    web.get("/login")
    response = web.client.post(
        "/login", data={"username": ALICE, "password": TEST_PASSWORD, "next": "/mail"}
    )
    assert response.status_code == 303
    assert response.headers["location"].startswith("/login?")
    assert "reason=expired" in response.headers["location"]  # no session: log in afresh
    assert web.get("/mail").status_code == 303  # not logged in


def test_login_redirect_stays_on_this_site(live: LiveServer) -> None:
    web = WebSession(live)
    token = web.csrf()
    response = web.client.post(
        "/login",
        data={"csrf": token, "username": ALICE, "password": TEST_PASSWORD, "next": "//evil.test/"},
    )
    assert response.headers["location"] == "/mail"


def test_logout_ends_the_session(alice: WebSession) -> None:
    assert alice.get("/settings").status_code == 200
    out = alice.post("/logout")
    assert out.status_code == 303
    # A person on a shared machine sees that it worked.
    assert (
        '<p class="notice" role="status">You are logged out.</p>'
        in alice.get(out.headers["location"]).text
    )
    assert alice.get("/settings").headers["location"].startswith("/login?next=%2Fsettings")


def test_a_copy_of_the_cookie_is_refused_after_logout(live: LiveServer) -> None:
    """The cookie is signed, not stored: logging out replaced it in this browser only, and a
    copy taken before (a shared machine, a proxy log) kept the pages and the API open until
    it expired, or for ever while used (each use refreshed it). Another session lives on,
    and the ended session's record is not among the tokens a user can list or revoke."""
    web, other = WebSession(live), WebSession(live)
    assert web.login(ALICE).status_code == 303 and other.login(ALICE).status_code == 303
    copy = httpx.Client(base_url=web.base, follow_redirects=False)
    copy.cookies.set("pb_session", web.client.cookies["pb_session"])
    assert copy.get("/settings").status_code == 200
    assert web.post("/logout").status_code == 303
    assert copy.get("/settings").headers["location"].startswith("/login?")
    assert copy.get("/api/v1/mailboxes").status_code == 401
    assert other.get("/settings").status_code == 200
    assert other.api("GET", "/tokens").json() == []
    account = live.call(live.store.get_account(ALICE))
    assert account is not None
    ended = live.call(live.store.list_tokens(account.id))
    assert [t.kind.value for t in ended] == ["ended-session"]
    assert other.post(f"/settings/tokens/{ended[0].id}/revoke").status_code == 404
    assert other.api("POST", "/tokens", {"kind": "ended-session"}).status_code == 400
    assert copy.get("/settings").status_code == 303
    copy.close()
    web.close()
    other.close()


def test_stay_signed_in_refreshes_the_session(tmp_path: Path) -> None:
    """The warning's "Stay signed in": the pages say when the session ends (and the ends
    cookie beside the session's, for their script); the POST needs the CSRF token, refreshes
    the session however young (a request refreshes one past half its life only), answers JSON
    to the script and a redirect to the page a form came from; an ended session is not
    brought back."""
    with web_only(tmp_path, cfg.WebSection(session_ttl=30.0, session_warning=10.0)) as server:
        web = WebSession(server)
        assert web.login(ALICE).status_code == 303
        ends = int(web.client.cookies[ENDS_COOKIE])
        assert abs(ends - (time.time() + 30)) < 5
        page = web.get("/settings").text
        assert f'data-ends="{ends}"' in page and 'data-warning="10"' in page
        time.sleep(1.1)
        refused = web.post("/session/extend", csrf=False)
        assert refused.headers["location"].startswith("/login?")
        assert int(web.client.cookies[ENDS_COOKIE]) == ends  # 1 s of 30: not refreshed
        answer = web.post("/session/extend", headers={"accept": "application/json"})
        assert answer.status_code == 200
        assert answer.json()["ends"] == int(web.client.cookies[ENDS_COOKIE]) > ends
        back = web.post("/session/extend", {"return_to": "/settings?saved=x"})
        assert back.status_code == 303 and back.headers["location"] == "/settings?saved=x"
        assert (
            web.post("/session/extend", {"return_to": "//evil.test/"}).headers["location"]
            == "/mail"
        )
        assert web.post("/logout").status_code == 303
        gone = web.post("/session/extend", headers={"accept": "application/json"})
        assert gone.status_code == 303 and "reason=expired" in gone.headers["location"]
        web.close()


def test_the_live_feed_and_background_reads_are_no_activity(tmp_path: Path) -> None:
    """Idle means no action of the person: past half the session's life, neither the live
    feed (which the browser reopens by itself) nor a page re-read the script marks as its own
    refreshes the session. The feed still works, ends when its session does, and is refused
    when the browser reopens it: a page left alone is logged out at its idle limit."""
    ttl = 6.0
    with web_only(tmp_path, cfg.WebSection(session_ttl=ttl)) as server:
        web = WebSession(server)
        assert web.login(ALICE).status_code == 303
        ends = int(web.client.cookies[ENDS_COOKIE])
        inbox = f"/mail/{mailbox_id(server, ALICE)}"
        time.sleep(max(0.0, ends - ttl / 2 - time.time()) + 0.2)
        reread = web.get(inbox, headers={BACKGROUND_HEADER: "1"})
        assert reread.status_code == 200 and "set-cookie" not in reread.headers
        with web.client.stream("GET", "/events", timeout=ttl * 3) as stream:
            assert stream.status_code == 200 and "set-cookie" not in stream.headers
            lines = stream.iter_lines()
            assert next(lines) == "retry: 3000"
            box, _ = deliver(server, ALICE, simple_message("live"))
            data = next(line for line in lines if line.startswith("data:"))
            assert json.loads(data.removeprefix("data: ")) == {"mailbox": box, "kind": "exists"}
            for _line in lines:
                pass  # until the server ends the stream, at the session's end
        assert ends <= time.time() < ends + 2
        assert int(web.client.cookies[ENDS_COOKIE]) == ends
        assert web.get("/events").status_code == 401
        assert "/login" in web.get("/mail").headers["location"]
        web.close()


def test_a_client_leaving_mid_body_is_a_log_line_not_a_traceback(
    live: LiveServer, caplog: pytest.LogCaptureFixture
) -> None:
    """A POST whose client hangs up before the body it announced: uvicorn logged "Exception
    in ASGI application" with a traceback at ERROR each time (any visitor could fill the log
    with them); it is the peer's doing, one info line."""
    caplog.set_level(logging.INFO)
    with socket.create_connection(("127.0.0.1", live.port("http")), timeout=10) as sock:
        sock.sendall(
            b"POST /login HTTP/1.1\r\nHost: mx.test\r\nContent-Length: 1000\r\n"
            b"Content-Type: application/x-www-form-urlencoded\r\n\r\nusername=a"
        )
    wait_for(
        lambda: any("client went away" in r.getMessage() for r in caplog.records),
        "the hang-up logged",
        timeout=10,
    )
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert WebSession(live).get("/login").status_code == 200


def test_forged_cookie_is_anonymous(live: LiveServer, alice: WebSession) -> None:
    value = alice.client.cookies["pb_session"]
    body, _, mac = value.partition(".")
    alice.client.cookies.clear()
    alice.client.cookies.set("pb_session", body + "." + mac[::-1])
    assert alice.get("/settings").status_code == 303


AUTH_PAGES = [
    "/mail",
    "/mail/1",
    "/mail/1/1",
    "/mail/1/1/frame",
    "/mail/1/1/part/1",
    "/mail/1/1/source",
    "/compose",
    "/settings",
    "/settings/mobileconfig",
    "/admin",
    "/admin/queue",
]


@pytest.mark.parametrize("path", AUTH_PAGES)
def test_pages_require_login(live: LiveServer, path: str) -> None:
    response = WebSession(live).get(path)
    assert response.status_code == 303
    assert response.headers["location"].startswith("/login?next=")


def test_event_stream_requires_login(live: LiveServer) -> None:
    assert WebSession(live).get("/events").status_code == 401


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/me"),
        ("GET", "/mailboxes"),
        ("POST", "/send"),
        ("GET", "/admin/domains"),
        ("GET", "/addresses"),
        ("POST", "/identities"),
    ],
)
def test_api_requires_credentials(live: LiveServer, method: str, path: str) -> None:
    response = WebSession(live).client.request(method, "/api/v1" + path, json={})
    assert response.status_code == 401
    assert response.json() == {"error": "authentication required"}


CSRF_POSTS = [
    ("/logout", {}),
    ("/folders", {"name": "Sneaky"}),
    ("/mail/{inbox}/actions", {"uid": "{uid}", "action": "delete"}),
    ("/mail/{inbox}/empty", {}),
    ("/compose", {"to": BOB, "subject": "forged", "body": "x", "action": "send"}),
    ("/settings/profile", {"display_name": "Mallory"}),
    ("/settings/api-token", {"label": "stolen"}),
    ("/settings/vacation", {"vacation_enabled": "1", "vacation_body": "forged"}),
    ("/settings/identities", {"id": "", "address": "alice+forged@example.org"}),
]


@pytest.mark.parametrize(("path", "data"), CSRF_POSTS)
def test_state_changes_without_csrf_are_refused(
    live: LiveServer, alice: WebSession, path: str, data: dict[str, str]
) -> None:
    inbox = mailbox_id(live, ALICE)
    _, uid = deliver(live, ALICE, simple_message())
    url = path.format(inbox=inbox)
    fields = {k: v.format(uid=uid) for k, v in data.items()}
    for token in (None, "not-the-token"):
        sent = dict(fields) if token is None else {**fields, "csrf": token}
        response = alice.post(url, sent, csrf=False)
        if url == "/compose":  # the login page, keeping the message (test_web_drafts)
            assert response.status_code == 401
            assert '<input type="hidden" name="carried.subject" value="forged">' in response.text
            continue
        assert response.status_code == 303
        assert "reason=stale" in response.headers["location"]
    assert uids_in(live, ALICE) == [uid]
    assert uids_in(live, BOB) == []
    assert alice.get("/settings").status_code == 200  # still logged in
    account = live.call(live.store.get_account(ALICE))
    assert account is not None and account.display_name == ""
    assert live.call(live.store.list_identities(account.id)) == []


def test_api_session_calls_need_the_csrf_header(alice: WebSession) -> None:
    response = alice.client.post("/api/v1/mailboxes", json={"name": "X"})
    assert response.status_code == 403
    assert alice.api("POST", "/mailboxes", {"name": "X"}).status_code == 201


# -- ownership: another account's ids are 404 -------------------------------------------------


def test_another_accounts_message_is_not_found(live: LiveServer, alice: WebSession) -> None:
    bob_box, bob_uid = deliver(live, BOB, simple_message("for bob only"))
    base = f"/mail/{bob_box}/{bob_uid}"
    for path in (
        f"/mail/{bob_box}",
        base,
        base + "/frame",
        base + "/part/1",
        base + "/source",
        f"/compose?reply={bob_box}:{bob_uid}",
        f"/compose?forward={bob_box}:{bob_uid}",
    ):
        response = alice.get(path)
        assert response.status_code == 404, path
        assert "for bob only" not in response.text
    for action in ("read", "delete", "spam"):
        assert (
            alice.post(f"/mail/{bob_box}/actions", {"uid": bob_uid, "action": action}).status_code
            == 404
        )
    assert alice.post(f"/mail/{bob_box}/empty").status_code == 404
    assert alice.post(f"/mail/{bob_box}/delete").status_code == 404
    inbox = mailbox_id(live, ALICE)
    moved = alice.post(f"/mail/{inbox}/actions", {"uid": 1, "action": "move", "target": bob_box})
    assert moved.status_code == 404
    api = f"/mailboxes/{bob_box}/messages/{bob_uid}"
    for path in (api, api + "/raw", api + "/parts/1", f"/mailboxes/{bob_box}/messages"):
        assert alice.api("GET", path).status_code == 404
    assert (
        alice.api(
            "POST", f"/mailboxes/{bob_box}/actions", {"action": "delete", "uids": [bob_uid]}
        ).status_code
        == 404
    )
    sent = alice.post(
        "/compose",
        {
            "to": BOB,
            "subject": "x",
            "body": "y",
            "action": "send",
            "forwarding": f"{bob_box}:{bob_uid}",
            "keep": f"{bob_box}:{bob_uid}:1",
        },
    )
    assert sent.status_code == 400 and "for bob only" not in sent.text
    assert uids_in(live, BOB) == [bob_uid]
    assert "\\Seen" not in flags_of(live, bob_box, bob_uid)


# -- list, view, parts ---------------------------------------------------------------------------


def test_list_pages_sorts_and_filters(live: LiveServer, alice: WebSession) -> None:
    for n in range(7):
        deliver(
            live,
            ALICE,
            simple_message(f"subject {n:02}", f"body number {n}", sender=f"s{n}@example.net"),
        )
    inbox = mailbox_id(live, ALICE)
    page1 = alice.get(f"/mail/{inbox}?size=3&sort=subject&order=asc")
    assert page1.status_code == 200
    subjects = re.findall(r">(subject \d\d)<", page1.text)
    assert subjects == ["subject 00", "subject 01", "subject 02"]
    assert "1–3 of 7" in page1.text and 'rel="next"' in page1.text
    page3 = alice.get(f"/mail/{inbox}?size=3&sort=subject&order=asc&page=3")
    assert re.findall(r">(subject \d\d)<", page3.text) == ["subject 06"]
    desc = alice.get(f"/mail/{inbox}?sort=subject&order=desc")
    assert re.findall(r">(subject \d\d)<", desc.text)[0] == "subject 06"
    found = alice.get(f"/mail/{inbox}?q=%22number+4%22")
    assert re.findall(r">(subject \d\d)<", found.text) == ["subject 04"]
    by_sender = alice.get(f"/mail/{inbox}?from=s5@")
    assert re.findall(r">(subject \d\d)<", by_sender.text) == ["subject 05"]
    unread = alice.get(f"/mail/{inbox}?unseen=1")
    assert len(re.findall(r">(subject \d\d)<", unread.text)) == 7
    assert alice.get(f"/mail/{inbox}?since=2030-01-01").text.count(">subject 0") == 0


def test_message_view_marks_read_and_shows_headers(live: LiveServer, alice: WebSession) -> None:
    raw = simple_message(
        "=?utf-8?q?Gr=C3=BC=C3=9Fe?=",
        "Plain body & <b>not bold</b>",
        headers="Cc: Dave <dave@example.net>\r\n"
        "Authentication-Results: mx.test; spf=pass smtp.mailfrom=example.net; dkim=fail\r\n"
        "Authentication-Results: forged.example; dmarc=pass\r\n",
    )
    box, uid = deliver(live, ALICE, raw)
    page = alice.get(f"/mail/{box}/{uid}")
    assert page.status_code == 200
    assert "Grüße" in page.text
    assert "Dave &lt;dave@example.net&gt;" in page.text
    assert "Plain body &amp; &lt;b&gt;not bold&lt;/b&gt;" in page.text
    assert "SPF pass" in page.text and "DKIM fail" in page.text
    assert "DMARC" not in page.text  # another server's Authentication-Results is ignored
    assert "\\Seen" in flags_of(live, box, uid)
    source = alice.get(f"/mail/{box}/{uid}/source")
    assert source.headers["content-type"].startswith("text/plain")
    assert source.headers["content-security-policy"] == "default-src 'none'; sandbox"
    assert "=?utf-8?q?Gr=C3=BC=C3=9Fe?=" in source.text


@pytest.mark.listeners("http", "https")
def test_every_response_of_foreign_bytes_is_sandboxed(live: LiveServer, alice: WebSession) -> None:
    """A message, its parts, a calendar object and a contact card are bytes someone else
    wrote: every route serving them sends the sandbox CSP (never the pages', under which a
    browser rendering the API's message/rfc822 ran it with this origin's script allowed),
    nosniff, and a download's Content-Disposition (the source view, text/plain, excepted)."""
    page = "<html><body><script>alert(document.cookie)</script></body></html>"
    raw = (
        "From: x@example.net\r\nTo: alice@example.org\r\nSubject: trap\r\n"
        'MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary="b"\r\n\r\n'
        "--b\r\nContent-Type: text/plain\r\n\r\nsee attached\r\n"
        '--b\r\nContent-Type: text/html\r\nContent-Disposition: attachment; filename="a.html"'
        f"\r\n\r\n{page}\r\n--b--\r\n"
    ).encode()
    box, uid = deliver(live, ALICE, raw)
    event = (
        "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//t//EN\r\nBEGIN:VEVENT\r\nUID:e1\r\n"
        "DTSTAMP:20310101T000000Z\r\nDTSTART:20310101T100000Z\r\n"
        f"SUMMARY:{page}\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n"
    )
    card = f"BEGIN:VCARD\r\nVERSION:3.0\r\nUID:c1\r\nFN:{page}\r\nEND:VCARD\r\n"
    calendar = "/dav/calendars/alice@example.org/personal/e1.ics"
    book = "/dav/addressbooks/alice@example.org/contacts/c1.vcf"
    with dav_client(live, ALICE) as dav:
        headers = {"content-type": "text/calendar"}
        assert dav.put(calendar, content=event, headers=headers).status_code == 201
        headers = {"content-type": "text/vcard"}
        assert dav.put(book, content=card, headers=headers).status_code == 201
        served = {"caldav": dav.get(calendar), "carddav": dav.get(book)}
    api = f"/mailboxes/{box}/messages/{uid}"
    served |= {
        "part": alice.get(f"/mail/{box}/{uid}/part/2"),
        "api raw": alice.api("GET", f"{api}/raw"),
        "api part": alice.api("GET", f"{api}/parts/2"),
        "export": alice.get("/contacts/export.vcf"),
        "api export": alice.api("GET", "/contacts/export"),
    }
    for route, response in served.items():
        assert response.status_code == 200, route
        assert response.headers["content-security-policy"] == CONTENT_CSP, route
        assert response.headers["x-content-type-options"] == "nosniff", route
        assert response.headers["content-disposition"].startswith("attachment;"), route
    assert served["api raw"].content == raw
    source = alice.get(f"/mail/{box}/{uid}/source")
    assert source.headers["content-type"].startswith("text/plain")
    assert source.headers["content-security-policy"] == CONTENT_CSP


@pytest.mark.listeners("http", "smtp")
def test_spam_verdict_of_mail_from_the_mx_is_shown(live: LiveServer, alice: WebSession) -> None:
    """Mail through the MX carries the filter's X-Pillarbox-Spam; the view explains it."""
    no_from = b"To: alice@example.org\r\nSubject: anonymous\r\n\r\nwho am I?\r\n"
    with smtplib.SMTP("127.0.0.1", live.port("smtp"), local_hostname="client.test") as client:
        client.sendmail("x@example.net", [ALICE], no_from)
    [uid] = uids_in(live, ALICE)
    box = mailbox_id(live, ALICE)
    page = alice.get(f"/mail/{box}/{uid}")
    spam = page.text.split("<dt>Spam check</dt>")[1].split("</dd>")[0]
    assert "score 1.0 · Inbox" in spam
    assert re.search(r"\+1\.0</span> no From address</li>", spam)
    api = alice.get(f"/api/v1/mailboxes/{box}/messages/{uid}").json()
    assert api["spam"]["action"] == "inbox" and api["spam"]["score"] == 1.0
    assert [r["code"] for r in api["spam"]["reasons"]] == ["NO_FROM"]
    # Mail that never passed the filter (here: stored directly) shows no verdict, even when
    # its sender wrote one.
    forged = simple_message(headers="X-Pillarbox-Spam: score=-50.0; action=inbox; reasons=none\r\n")
    box, uid = deliver(live, ALICE, forged)
    assert "Spam check" not in alice.get(f"/mail/{box}/{uid}").text


HOSTILE = (
    b"From: Mallory <m@evil.example>\r\nTo: alice@example.org\r\nSubject: hostile\r\n"
    b'MIME-Version: 1.0\r\nContent-Type: multipart/related; boundary="b"\r\n\r\n'
    b"--b\r\nContent-Type: text/html; charset=utf-8\r\n\r\n"
    b"<html><head><script>alert('head')</script><style>body{background:url(http://evil.example/bg)}</style></head>"
    b'<body onload="alert(\'onload\')"><h1>Offer</h1><img src="http://evil.example/track.png">'
    b'<img src="cid:logo@x"><a href="javascript:alert(\'link\')">click</a>'
    b'<form action="http://evil.example/steal"><input name="p"></form>'
    b'<iframe src="http://evil.example/"></iframe><svg onload="alert(1)"></svg>'
    b'<a href="https://ok.example/">ok</a></body></html>\r\n'
    b"--b\r\nContent-Type: image/png\r\nContent-ID: <logo@x>\r\n"
    b"Content-Transfer-Encoding: base64\r\n\r\n"
    b"iVBORw0KGgo=\r\n--b--\r\n"
)


def test_hostile_html_is_sanitised_and_framed(live: LiveServer, alice: WebSession) -> None:
    box, uid = deliver(live, ALICE, HOSTILE)
    page = alice.get(f"/mail/{box}/{uid}")
    assert "1 remote image blocked" in page.text
    assert 'sandbox="allow-same-origin allow-popups' in page.text
    assert "allow-scripts" not in page.text
    frame = alice.get(f"/mail/{box}/{uid}/frame")
    csp = frame.headers["content-security-policy"]
    assert "default-src 'none'" in csp and "sandbox" in csp and "https:" not in csp
    body = frame.text
    for bad in ("<script", "onload", "javascript:", "<form", "<iframe", "evil.example", "alert"):
        assert bad not in body, bad
    assert f'src="/mail/{box}/{uid}/part/2?inline=1"' in body
    assert 'href="https://ok.example/"' in body and 'rel="noopener noreferrer"' in body
    loaded = alice.get(f"/mail/{box}/{uid}/frame?images=1")
    assert 'src="http://evil.example/track.png"' in loaded.text
    assert "img-src 'self' data: https: http:" in loaded.headers["content-security-policy"]
    image = alice.get(f"/mail/{box}/{uid}/part/2?inline=1")
    assert image.headers["content-type"] == "image/png"
    assert image.content.startswith(b"\x89PNG")


def test_html_past_max_html_tags_is_cut_and_the_reader_told(
    live: LiveServer, alice: WebSession
) -> None:
    """Found by fuzz/html_sanitize.py: nh3's parser is quadratic in open elements (224 KB of
    ``<b></p>`` took a minute on the event loop); past ``[web] max_html_tags`` (10000 by
    default) the body is cut, on the pool, and the page says so."""
    html = "Content-Type: text/html; charset=utf-8\r\n"
    hostile = "<b></p>" * 6000 + "<p>tail-marker</p>"
    box, uid = deliver(live, ALICE, simple_message(body=hostile, headers=html))
    page = alice.get(f"/mail/{box}/{uid}")
    assert "too large to show whole" in page.text
    frame = alice.get(f"/mail/{box}/{uid}/frame")
    assert frame.status_code == 200 and "tail-marker" not in frame.text
    assert frame.text.count("<b>") == 5000
    api = alice.get(f"/api/v1/mailboxes/{box}/messages/{uid}").json()
    assert api["html_truncated"] is True
    whole = deliver(live, ALICE, simple_message("Short", body="<p>x</p>", headers=html))
    assert "too large" not in alice.get(f"/mail/{whole[0]}/{whole[1]}").text


def test_attachment_download(live: LiveServer, alice: WebSession) -> None:
    raw = (
        b"From: c@example.net\r\nTo: alice@example.org\r\nSubject: files\r\nMIME-Version: 1.0\r\n"
        b'Content-Type: multipart/mixed; boundary="b"\r\n\r\n'
        b"--b\r\nContent-Type: text/plain\r\n\r\n"
        b"see attached\r\n--b\r\nContent-Type: text/html\r\n"
        b"Content-Disposition: attachment; filename*=utf-8''r%C3%A9sum%C3%A9.html\r\n\r\n"
        b"<script>alert(1)</script>\r\n--b--\r\n"
    )
    box, uid = deliver(live, ALICE, raw)
    page = alice.get(f"/mail/{box}/{uid}")
    assert "résumé.html" in page.text
    download = alice.get(f"/mail/{box}/{uid}/part/2")
    assert download.headers["content-type"] == "application/octet-stream"
    assert download.headers["content-disposition"].startswith("attachment;")
    assert "filename*=UTF-8''r%C3%A9sum%C3%A9.html" in download.headers["content-disposition"]
    assert download.content == b"<script>alert(1)</script>"
    assert alice.get(f"/mail/{box}/{uid}/part/9").status_code == 404
    assert alice.get(f"/mail/{box}/{uid}/part/x.y").status_code == 404


def test_attachment_name_with_a_line_break_downloads_and_forwards(
    live: LiveServer, alice: WebSession
) -> None:
    """Any sender can put CR LF in a file name (RFC 2231 and RFC 2047 encode any octet): the
    download's Content-Disposition then made uvicorn drop the connection without an answer,
    and forwarding the message was a 500 (the email package refuses the header). The name
    keeps its text with the line break as a space."""
    raw = (
        b"From: c@example.net\r\nTo: alice@example.org\r\nSubject: crlf\r\nMIME-Version: 1.0\r\n"
        b'Content-Type: multipart/mixed; boundary="b"\r\n\r\n'
        b"--b\r\nContent-Type: text/plain\r\n\r\nsee attached\r\n"
        b"--b\r\nContent-Type: application/octet-stream\r\n"
        b"Content-Disposition: attachment; filename*=utf-8''a%0D%0AX-Injected%3A%201.txt\r\n\r\n"
        b"payload\r\n--b--\r\n"
    )
    box, uid = deliver(live, ALICE, raw)
    download = alice.get(f"/mail/{box}/{uid}/part/2")
    assert download.status_code == 200 and download.content == b"payload"
    assert 'filename="a  X-Injected: 1.txt"' in download.headers["content-disposition"]
    sent = alice.api(
        "POST", "/send", {"to": BOB, "subject": "Fwd: crlf", "forwarding": f"{box}:{uid}"}
    )
    assert sent.status_code == 200, sent.text
    (copy,) = [raw_in(live, mailbox_id(live, BOB), u) for u in uids_in(live, BOB)]
    assert b"\nX-Injected" not in copy and b'filename="a  X-Injected: 1.txt"' in copy


def test_api_attachment_type_and_name_never_reach_a_header_unclean(
    live: LiveServer, alice: WebSession
) -> None:
    """An API caller's content type with parameters and a line break, or a file name with
    one, is a clean attachment (the type then application/octet-stream), not a 500."""
    attachment = {"filename": "b\r\nBcc: x@example.net", "data": "eQ=="}
    typed = {**attachment, "content_type": 'text/plain; charset="x\r\nX-Injected: 1"'}
    sent = alice.api("POST", "/send", {"to": BOB, "subject": "typed", "attachments": [typed]})
    assert sent.status_code == 200, sent.text
    (copy,) = [raw_in(live, mailbox_id(live, BOB), u) for u in uids_in(live, BOB)]
    assert b"\nX-Injected" not in copy and b"\nBcc" not in copy
    assert b"Content-Type: application/octet-stream" in copy
    assert b'filename="b  Bcc: x@example.net"' in copy


def test_thread_lists_the_conversation(live: LiveServer, alice: WebSession) -> None:
    box, first = deliver(live, ALICE, simple_message("Plan", message_id="<p1@example.net>"))
    deliver(
        live,
        ALICE,
        simple_message(
            "Re: Plan",
            "agreed",
            message_id="<p2@example.net>",
            headers="In-Reply-To: <p1@example.net>\r\nReferences: <p1@example.net>\r\n",
        ),
    )
    deliver(live, ALICE, simple_message("Unrelated", message_id="<u@example.net>"))
    page = alice.get(f"/mail/{box}/{first}")
    assert "Conversation (2)" in page.text and "Re: Plan" in page.text
    assert "Unrelated" not in page.text.split("Conversation")[1]


def dated(subject: str, hour: int, message_id: str, parent: str = "") -> bytes:
    refs = f"In-Reply-To: <{parent}>\r\nReferences: <{parent}>\r\n" if parent else ""
    return (
        f"From: Carol <carol@example.net>\r\nTo: {ALICE}\r\nSubject: {subject}\r\n"
        f"Date: Mon, 01 Jan 2024 {hour:02d}:00:00 +0000\r\nMessage-ID: <{message_id}>\r\n"
        f"{refs}\r\nbody of {message_id}\r\n"
    ).encode()


_THREAD_ROW = re.compile(r'<tr class="([^"]*)" data-href="/mail/\d+/(\d+)" data-depth="(\d+)"')


def thread_rows(page: httpx.Response) -> list[tuple[int, int, bool]]:
    """(uid, depth, starts a conversation) of each row of a threaded list."""
    return [
        (int(uid), int(depth), "thread-start" in classes)
        for classes, uid, depth in _THREAD_ROW.findall(page.text)
    ]


def test_threaded_list_groups_conversations(live: LiveServer, alice: WebSession) -> None:
    box, plan = deliver(live, ALICE, dated("Plan", 10, "a@x"))
    _, other = deliver(live, ALICE, dated("Unrelated", 11, "u@x"))
    _, reply = deliver(live, ALICE, dated("Re: Plan", 12, "b@x", parent="a@x"))
    _, deeper = deliver(live, ALICE, dated("Re: Re: Plan", 13, "c@x", parent="b@x"))
    _, lunch = deliver(live, ALICE, dated("Lunch", 14, "l@x"))
    flat = alice.get(f"/mail/{box}")
    assert thread_rows(flat) == [] and 'id="view-threads"' in flat.text
    page = alice.get(f"/mail/{box}?view=threads")
    assert "3 conversations, 5 messages" in page.text
    # Newest activity first; inside a thread, replies under what they answer.
    assert thread_rows(page) == [
        (lunch, 0, True),
        (plan, 0, True),
        (reply, 1, False),
        (deeper, 2, False),
        (other, 0, True),
    ]
    assert '<span class="thread-size" title="3 messages in this conversation">3</span>' in page.text
    api = alice.api("GET", f"/mailboxes/{box}/threads").json()
    assert (api["threads"], api["messages"], api["pages"]) == (3, 5, 1)
    assert [[(m["uid"], m["depth"]) for m in c["messages"]] for c in api["conversations"]] == [
        [(lunch, 0)],
        [(plan, 0), (reply, 1), (deeper, 2)],
        [(other, 0)],
    ]
    # Pages hold whole threads, about `size` messages each.
    paged = [thread_rows(alice.get(f"/mail/{box}?view=threads&size=2&page={n}")) for n in (1, 2, 3)]
    assert [[uid for uid, _, _ in rows] for rows in paged] == [
        [lunch],
        [plan, reply, deeper],
        [other],
    ]
    assert "page 2 of 3" in alice.get(f"/mail/{box}?view=threads&size=2&page=2").text
    # New mail and deletions reach the cached threads.
    _, late = deliver(live, ALICE, dated("Re: Unrelated", 15, "v@x", parent="u@x"))
    alice.post(f"/mail/{box}/actions", {"action": "delete", "uid": [reply], "back": "/"})
    assert thread_rows(alice.get(f"/mail/{box}?view=threads")) == [
        (other, 0, True),
        (late, 1, False),
        (lunch, 0, True),
        (plan, 0, True),
        (deeper, 1, False),  # its parent is gone: it answers the thread's root now
    ]
    # A filtered list shows matches, not conversations.
    filtered = alice.get(f"/mail/{box}?view=threads&subject=plan")
    assert thread_rows(filtered) == [] and "search results are listed flat" in filtered.text


@pytest.mark.listeners("http", "imap")
def test_threaded_list_shows_the_imap_threads(live: LiveServer, alice: WebSession) -> None:
    """The web's conversations are the stored threads, the ones IMAP clients see through
    THREADID (RFC 8474 §5.2): a message linked through a reply filed in another folder joins
    the conversation; a message that only shares a subject does not (RFC 5256 REFERENCES
    would group it). Each conversation counts its unread messages."""
    box, plan = deliver(live, ALICE, dated("Plan", 10, "a@x"))
    deliver(live, ALICE, dated("Re: Plan", 11, "b@x", parent="a@x"), "Archive")
    _, budget = deliver(live, ALICE, dated("Budget", 12, "c@x", parent="b@x"))
    _, lunch = deliver(live, ALICE, dated("Lunch", 9, "l@x"))
    _, same_subject = deliver(live, ALICE, dated("Re: Lunch", 13, "d@x"))
    page = alice.get(f"/mail/{box}?view=threads")
    assert "3 conversations, 4 messages" in page.text
    assert thread_rows(page) == [
        (same_subject, 0, True),
        (plan, 0, True),
        (budget, 0, False),  # its parent is in Archive: a second tree of the conversation
        (lunch, 0, True),
    ]
    assert '<span class="thread-unread" title="2 unread in this conversation">' in page.text
    alice.post(f"/mail/{box}/actions", {"action": "read", "uid": [plan], "back": "/"})
    api = alice.api("GET", f"/mailboxes/{box}/threads").json()
    assert [(c["thread"], c["unread"]) for c in api["conversations"]][1:2] == [
        (re.findall(r'data-thread="(T\d+)"', page.text)[1], 1)
    ]
    client = IMAPClient("127.0.0.1", port=live.port("imap"), ssl=False, timeout=10)
    try:
        client.login(ALICE, TEST_PASSWORD)
        client.select_folder(INBOX)
        fetched = client.fetch([plan, budget, lunch, same_subject], ["THREADID"])
        ids = {uid: data[b"THREADID"][0].decode() for uid, data in fetched.items()}
        assert [[m["uid"] for m in c["messages"]] for c in api["conversations"]] == [
            client.search(["THREADID", ids[uid]]) for uid in (same_subject, plan, lunch)
        ]
        assert [c["thread"] for c in api["conversations"]] == [
            ids[same_subject],
            ids[plan],
            ids[lunch],
        ]
        assert ids[plan] == ids[budget]
    finally:
        client.logout()
    # The message view lists the same conversation.
    opened = alice.get(f"/mail/{box}/{budget}")
    assert "Conversation (2)" in opened.text and "Lunch" not in opened.text.split("Conversation")[1]


def test_a_long_conversation_fills_a_page_alone(live: LiveServer, alice: WebSession) -> None:
    """A conversation past MAX_THREAD_LINES shows its first lines and says how many more;
    its unread count covers them all; it counts MAX_THREAD_LINES toward the page, so the next
    conversation starts the next page."""
    box, root = deliver(live, ALICE, dated("Long", 1, "r@x"))
    replies = MAX_THREAD_LINES + 2
    for n in range(replies):
        deliver(live, ALICE, dated("Re: Long", 2, f"r{n}@x", parent="r@x"))
    _, older = deliver(live, ALICE, dated("Older", 0, "o@x"))
    alice.post(f"/mail/{box}/actions", {"action": "read", "uid": [root], "back": "/"})
    first = alice.api("GET", f"/mailboxes/{box}/threads?size=50").json()
    assert (first["threads"], first["messages"], first["pages"]) == (2, replies + 2, 2)
    [long] = first["conversations"]
    assert (len(long["messages"]), long["more"], long["unread"]) == (
        MAX_THREAD_LINES,
        replies + 1 - MAX_THREAD_LINES,
        replies,
    )
    assert long["messages"][0]["uid"] == root and long["messages"][1]["depth"] == 1
    page = alice.get(f"/mail/{box}?view=threads&size=50")
    assert f"… and {replies + 1 - MAX_THREAD_LINES} more in this conversation" in page.text
    second = alice.api("GET", f"/mailboxes/{box}/threads?size=50&page=2").json()
    assert [[m["uid"] for m in c["messages"]] for c in second["conversations"]] == [[older]]
    assert alice.api("GET", f"/mailboxes/{box}/threads?page=3").json()["conversations"] == []


# -- actions -------------------------------------------------------------------------------------


def test_flag_read_move_delete_spam_and_empty(live: LiveServer, alice: WebSession) -> None:
    inbox = mailbox_id(live, ALICE)
    uids = [deliver(live, ALICE, simple_message(f"m{n}"))[1] for n in range(4)]
    act = f"/mail/{inbox}/actions"
    assert alice.post(act, {"uid": uids[:2], "action": "read"}).status_code == 303
    assert "\\Seen" in flags_of(live, inbox, uids[0]) and "\\Seen" in flags_of(live, inbox, uids[1])
    alice.post(act, {"uid": [uids[0]], "action": "unread"})
    assert "\\Seen" not in flags_of(live, inbox, uids[0])
    alice.post(act, {"uid": [uids[2]], "action": "flag"})
    assert "\\Flagged" in flags_of(live, inbox, uids[2])
    flagged = alice.get(f"/mail/{inbox}?flagged=1")
    assert re.findall(r">m\d<", flagged.text) == [">m2<"]
    archive = special_mailbox_id(live, ALICE, SpecialUse.ARCHIVE)
    alice.post(act, {"uid": [uids[0]], "action": "move", "target": archive})
    assert len(uids_in(live, ALICE, "Archive")) == 1
    alice.post(act, {"uid": [uids[1]], "action": "spam"})
    [junk_uid] = uids_in(live, ALICE, "Junk")
    junk = special_mailbox_id(live, ALICE, SpecialUse.JUNK)
    assert "$Junk" in flags_of(live, junk, junk_uid)
    assert spam_model_counts(live, ALICE) == (0, 1)  # the filter learnt it as spam
    alice.post(f"/mail/{junk}/actions", {"uid": [junk_uid], "action": "notspam"})
    assert uids_in(live, ALICE, "Junk") == []
    assert spam_model_counts(live, ALICE) == (1, 0)  # and unlearnt it, as ham
    back = uids_in(live, ALICE)[-1]
    assert "$NotJunk" in flags_of(live, inbox, back) and "$Junk" not in flags_of(live, inbox, back)
    alice.post(act, {"uid": [uids[3]], "action": "delete"})
    assert len(uids_in(live, ALICE, "Trash")) == 1
    trash = special_mailbox_id(live, ALICE, SpecialUse.TRASH)
    assert alice.post(f"/mail/{inbox}/empty").status_code == 400  # only Trash and Junk
    assert alice.post(f"/mail/{trash}/empty", {"confirmed": "1"}).status_code == 303
    assert uids_in(live, ALICE, "Trash") == []
    assert alice.post(act, {"uid": [back], "action": "explode"}).status_code == 400


def test_folders_create_rename_delete(live: LiveServer, alice: WebSession) -> None:
    created = alice.post("/folders", {"name": "Projects/2024"})
    assert created.status_code == 303
    new_id = int(created.headers["location"].rsplit("/", 1)[1])
    assert "2024" in alice.get(f"/mail/{new_id}").text
    assert alice.post(f"/mail/{new_id}/rename", {"name": "Projects/2025"}).status_code == 303
    # Rename pressed without changing the name: back to the folder, no error page.
    unchanged = alice.post(f"/mail/{new_id}/rename", {"name": "Projects/2025 "})
    assert unchanged.status_code == 303 and unchanged.headers["location"] == f"/mail/{new_id}"
    names = {
        m.name
        for m in live.call(live.store.list_mailboxes(live.call(live.store.get_account(ALICE)).id))
    }  # type: ignore[union-attr]
    assert "Projects/2025" in names and "Projects/2024" not in names
    assert alice.post(f"/mail/{new_id}/delete", {"confirmed": "1"}).status_code == 303
    inbox = mailbox_id(live, ALICE)
    refused = alice.post(f"/mail/{inbox}/delete")
    assert refused.status_code == 400 and "cannot be deleted" in refused.text
    assert alice.post("/folders", {"name": "bad*name"}).status_code == 400


# -- compose -------------------------------------------------------------------------------------


def test_a_send_whose_copy_a_full_mailbox_could_not_keep_says_so_on_the_next_page(
    live: LiveServer, alice: WebSession
) -> None:
    """The warning travels in the address of the page after sending, under its seal: that
    page shows it; the same address opened in another session shows only "Message sent."."""
    account = live.call(live.store.get_account(ALICE))
    assert account is not None
    live.call(live.store.set_quota(account.id, None, 1))  # the first send's copy fills it
    for subject in ("Fits", "Full"):
        form = {"to": "bob@example.org", "subject": subject, "body": "Hi.\n", "action": "send"}
        response = alice.post("/compose", form)
    assert response.status_code == 303
    page = html.unescape(alice.get(response.headers["location"]).text)
    assert "Message sent." in page and "your mailbox is full: no copy was kept in Sent" in page
    other = WebSession(live)  # Alice again, in another browser: another session
    assert other.login(ALICE).status_code == 303
    elsewhere = html.unescape(other.get(response.headers["location"]).text)
    other.close()
    assert "Message sent." in elsewhere and "your mailbox is full" not in elsewhere


def test_send_with_attachment_reaches_a_local_user(live: LiveServer, alice: WebSession) -> None:
    response = alice.post(
        "/compose",
        {
            "to": "Bob <bob@example.org>",
            "subject": "Report ✓",
            "body": "See the file.\n",
            "action": "send",
        },
        files={"attachment": ("data.bin", b"\x00\x01binary", "application/octet-stream")},
    )
    assert response.status_code == 303
    assert "sent=1" in response.headers["location"]
    [bob_uid] = uids_in(live, BOB)
    raw = raw_in(live, mailbox_id(live, BOB), bob_uid)
    assert b"Received:" in raw
    assert parse_message(raw).subject == "Report ✓"
    assert b'filename="data.bin"' in raw and b"Bcc" not in raw
    [sent_uid] = uids_in(live, ALICE, "Sent")
    sent = special_mailbox_id(live, ALICE, SpecialUse.SENT)
    assert "\\Seen" in flags_of(live, sent, sent_uid)
    bob = WebSession(live)
    bob.login(BOB)
    page = bob.get(f"/mail/{mailbox_id(live, BOB)}/{bob_uid}")
    assert "Report ✓" in page.text and "data.bin" in page.text
    download = bob.get(f"/mail/{mailbox_id(live, BOB)}/{bob_uid}/part/2")
    assert download.content == b"\x00\x01binary"


RICH = (
    '<div>Yes, <b>noon</b>!</div><ul><li>soup</li></ul><a href="javascript:alert(1)">x</a>'
    '<img src="https://tracker.example/p.gif"><script>alert(1)</script>'
)


def test_rich_text_reply_is_sanitised_and_has_a_text_part(
    live: LiveServer, alice: WebSession
) -> None:
    box, uid = deliver(live, ALICE, simple_message("Lunch?", message_id="<lunch@example.net>"))
    response = alice.post(
        "/compose",
        {
            "to": BOB,
            "subject": "Re: Lunch?",
            "body": "the plain box is ignored when the editor posts HTML",
            "html": RICH,
            "in_reply_to": "lunch@example.net",
            "references": "lunch@example.net",
            "replying_to": f"{box}:{uid}",
            "action": "send",
        },
    )
    assert response.status_code == 303
    [bob_uid] = uids_in(live, BOB)
    raw = raw_in(live, mailbox_id(live, BOB), bob_uid)
    info = parse_message(raw)
    assert info.in_reply_to == "lunch@example.net" and info.references == ("lunch@example.net",)
    bodies = body_parts(info)
    assert bodies.plain is not None and bodies.html is not None
    plain = part_text(raw, bodies.plain).replace("\r\n", "\n")
    assert plain == "Yes, *noon*!\n\n- soup\n\nx\n"
    html = part_text(raw, bodies.html)
    assert "<b>noon</b>" in html and "<li>soup</li>" in html
    assert "script" not in html and "javascript" not in html and "tracker" not in html
    assert "\\Answered" in flags_of(live, box, uid)
    bob = WebSession(live)
    bob.login(BOB)
    frame = bob.get(f"/mail/{mailbox_id(live, BOB)}/{bob_uid}/frame")
    assert "<b>noon</b>" in frame.text
    bob.close()


def test_rich_text_draft_reopens_in_the_editor(live: LiveServer, alice: WebSession) -> None:
    saved = alice.post(
        "/compose", {"to": BOB, "subject": "later", "body": "", "html": RICH, "action": "save"}
    )
    assert 'id="rich-toggle" checked' in saved.text  # the form comes back in rich mode
    [draft_uid] = uids_in(live, ALICE, "Drafts")
    drafts = special_mailbox_id(live, ALICE, SpecialUse.DRAFTS)
    reopened = alice.get(f"/compose?draft={drafts}:{draft_uid}")
    editor = reopened.text.split('id="f-rich"')[1].split("</div>\n")[0]
    assert "<b>noon</b>" in editor and "<script" not in editor
    assert 'id="rich-toggle" checked' in reopened.text


def test_invalid_addresses_are_shown_inline(live: LiveServer, alice: WebSession) -> None:
    response = alice.post(
        "/compose",
        {
            "to": "bob@example.org, not an address",
            "cc": "x@",
            "subject": "s",
            "body": "kept text",
            "action": "send",
        },
    )
    assert response.status_code == 400
    assert 'id="e-to"' in response.text and "not an address" in response.text
    assert 'id="e-cc"' in response.text
    assert "kept text" in response.text  # the draft is not lost
    assert uids_in(live, BOB) == []
    empty = alice.post("/compose", {"to": "", "subject": "s", "body": "b", "action": "send"})
    assert empty.status_code == 400 and "add at least one recipient" in empty.text


def test_unknown_local_recipient_is_refused(live: LiveServer, alice: WebSession) -> None:
    response = alice.post(
        "/compose", {"to": "nobody@example.org", "subject": "s", "body": "b", "action": "send"}
    )
    assert response.status_code == 400
    assert "nobody@example.org" in response.text
    assert uids_in(live, ALICE, "Sent") == []


def test_reply_quotes_and_threads(live: LiveServer, alice: WebSession) -> None:
    box, uid = deliver(
        live,
        ALICE,
        simple_message(
            "Lunch?",
            "Shall we meet\nat noon?",
            sender="bob@example.org",
            to="alice@example.org, carol@example.net",
            message_id="<lunch@example.org>",
            headers="References: <earlier@example.org>\r\n",
        ),
    )
    page = alice.get(f"/compose?reply={box}:{uid}&all=1")
    assert 'value="Re: Lunch?"' in page.text
    assert "&gt; Shall we meet\n&gt; at noon?" in page.text
    assert 'name="references" value="earlier@example.org lunch@example.org"' in page.text
    assert "carol@example.net" in page.text  # reply-all keeps the other recipient
    to = re.search(r'id="f-to" name="to" value="([^"]*)"', page.text)
    assert to is not None and "bob@example.org" in to.group(1) and ALICE not in to.group(1)
    response = alice.post(
        "/compose",
        {
            "to": "bob@example.org",
            "subject": "Re: Lunch?",
            "body": "Yes.",
            "in_reply_to": "<lunch@example.org>",
            "references": "<earlier@example.org> <lunch@example.org>",
            "replying_to": f"{box}:{uid}",
            "action": "send",
        },
    )
    assert response.status_code == 303
    raw = raw_in(live, mailbox_id(live, BOB), uids_in(live, BOB)[0])
    assert b"In-Reply-To: <lunch@example.org>" in raw
    assert b"References: <earlier@example.org> <lunch@example.org>" in raw
    assert "\\Answered" in flags_of(live, box, uid)


def test_forward_carries_attachments(live: LiveServer, alice: WebSession) -> None:
    raw = (
        b"From: c@example.net\r\nTo: alice@example.org\r\nSubject: pics\r\nMIME-Version: 1.0\r\n"
        b'Content-Type: multipart/mixed; boundary="b"\r\n\r\n'
        b"--b\r\nContent-Type: text/plain\r\n\r\n"
        b"original text\r\n--b\r\nContent-Type: image/png; name=a.png\r\n"
        b"Content-Transfer-Encoding: base64\r\n\r\niVBORw0KGgo=\r\n--b--\r\n"
    )
    box, uid = deliver(live, ALICE, raw)
    page = alice.get(f"/compose?forward={box}:{uid}")
    assert 'value="Fwd: pics"' in page.text and "original text" in page.text
    # The form lists the original's attachments, each to keep or leave out.
    assert f'name="keep" value="{box}:{uid}:2" checked> a.png' in page.text
    assert (
        alice.post(
            "/compose",
            {
                "to": BOB,
                "subject": "Fwd: pics",
                "body": "fyi",
                "forwarding": f"{box}:{uid}",
                "keep": f"{box}:{uid}:2",
                "action": "send",
            },
        ).status_code
        == 303
    )
    forwarded = raw_in(live, mailbox_id(live, BOB), uids_in(live, BOB)[0])
    assert b'filename="a.png"' in forwarded and b"iVBORw0KGgo=" in forwarded


def test_drafts_save_and_reopen_and_send(live: LiveServer, alice: WebSession) -> None:
    saved = alice.post(
        "/compose", {"to": BOB, "subject": "later", "body": "half-written", "action": "save"}
    )
    assert saved.status_code == 200 and "Draft saved" in saved.text
    [draft_uid] = uids_in(live, ALICE, "Drafts")
    drafts = special_mailbox_id(live, ALICE, SpecialUse.DRAFTS)
    assert {"\\Draft", "\\Seen"} <= flags_of(live, drafts, draft_uid)
    reopened = alice.get(f"/compose?draft={drafts}:{draft_uid}")
    assert (
        "half-written" in reopened.text and f'name="draft_uid" value="{draft_uid}"' in reopened.text
    )
    again = alice.post(
        "/compose",
        {"to": BOB, "subject": "later", "body": "done", "draft_uid": draft_uid, "action": "save"},
    )
    assert again.status_code == 200
    [second] = uids_in(live, ALICE, "Drafts")
    assert second != draft_uid
    alice.post(
        "/compose",
        {"to": BOB, "subject": "later", "body": "done", "draft_uid": second, "action": "send"},
    )
    assert uids_in(live, ALICE, "Drafts") == []
    assert len(uids_in(live, BOB)) == 1
    inbox = mailbox_id(live, ALICE)
    assert alice.get(f"/compose?draft={inbox}:1").status_code == 404


def test_oversized_upload_is_refused_before_it_is_read(live: LiveServer, alice: WebSession) -> None:
    cookie = alice.client.cookies["pb_session"]
    with socket.create_connection(("127.0.0.1", live.port("http")), timeout=10) as sock:
        sock.sendall(
            b"POST /compose HTTP/1.1\r\nHost: x\r\n"
            b"Content-Type: multipart/form-data; boundary=z\r\n"
            + f"Cookie: pb_session={cookie}\r\nContent-Length: {200 * 1024 * 1024}\r\n\r\n".encode()
        )
        reply = b""
        while chunk := sock.recv(65536):
            reply += chunk
    assert reply.startswith(b"HTTP/1.1 413")
    assert b"the limit is 25 MB" in reply


def test_web_limits_come_from_the_config(tmp_path: Path) -> None:
    """The ``[web]`` section sets the page size and the upload limit the app enforces."""
    web = cfg.WebSection(page_size=2, max_upload_bytes=2 * cfg.MIB)
    with web_only(tmp_path, web) as server:
        for n in range(3):
            deliver(server, ALICE, simple_message(f"limit {n}"))
        session = WebSession(server)
        assert session.login(ALICE).status_code == 303
        page = session.get(f"/mail/{mailbox_id(server, ALICE)}")
        assert "1–2 of 3" in page.text
        assert "up to 2.0 MB in all" in session.get("/compose").text
        big = session.post(
            "/compose",
            {"to": BOB, "body": "x", "action": "send"},
            files={"attachment": ("big.bin", b"x" * (3 * cfg.MIB), "application/octet-stream")},
        )
        assert big.status_code == 413 and "the limit is 2 MB" in big.text
        session.close()


def test_streamed_upload_over_the_limit_is_cut_off(live: LiveServer, alice: WebSession) -> None:
    chunk = b"x" * (1024 * 1024)
    token = alice.csrf("/settings")

    def body() -> Iterator[bytes]:
        yield (
            f'--z\r\nContent-Disposition: form-data; name="csrf"\r\n\r\n{token}\r\n--z\r\n'
            'Content-Disposition: form-data; name="attachment"; filename="big.bin"\r\n\r\n'
        ).encode()
        for _ in range(40):
            yield chunk

    try:
        response = alice.client.post(
            "/compose", content=body(), headers={"content-type": "multipart/form-data; boundary=z"}
        )
    except httpx.HTTPError:
        pass  # the server may close while the client still sends: also a refusal
    else:
        assert response.status_code == 413
    assert uids_in(live, ALICE, "Drafts") == [] and uids_in(live, ALICE, "Sent") == []


def test_stale_session_on_compose_leads_to_login(live: LiveServer) -> None:
    """The login page answers at once, holding the message (test_web_drafts: kept in Drafts
    by the login) and the page to return to."""
    web = WebSession(live)
    web.get("/login")
    response = web.client.post(
        "/compose",
        data={"csrf": "old", "to": BOB, "body": "my text", "action": "send"},
        headers={"referer": f"{web.base}/compose?reply=1:1"},
    )
    assert response.status_code == 401 and "Log in again" in response.text
    assert '<input type="hidden" name="next" value="/compose?reply=1:1">' in response.text
    assert '<input type="hidden" name="carried.body" value="my text">' in response.text
    # A refused form with nothing to keep is sent to the login page as before.
    empty = web.client.post("/compose", data={"csrf": "old", "action": "send"})
    assert empty.status_code == 303 and "reason=expired" in empty.headers["location"]


# -- live updates ------------------------------------------------------------------------------


def test_server_sent_events_announce_new_mail(live: LiveServer, alice: WebSession) -> None:
    with alice.client.stream("GET", "/events", timeout=10) as stream:
        assert stream.headers["content-type"].startswith("text/event-stream")
        lines = stream.iter_lines()
        assert next(lines) == "retry: 3000"
        box, _ = deliver(live, ALICE, simple_message("live"))
        seen: list[str] = []
        for line in lines:
            seen.append(line)
            if line.startswith("data:"):
                break
        event = json.loads(seen[-1].removeprefix("data: "))
        assert "event: change" in seen and event == {"mailbox": box, "kind": "exists"}


def test_server_sent_events_skip_what_no_page_shows(live: LiveServer, alice: WebSession) -> None:
    """A METADATA change (an IMAP client's annotation) sends no event: the next event is the
    new mail that came after it."""
    account = live.call(live.store.get_account(ALICE))
    assert account is not None
    with alice.client.stream("GET", "/events", timeout=10) as stream:
        lines = stream.iter_lines()
        assert next(lines) == "retry: 3000"
        limits = MetadataLimits(max_entries=10, max_total=10_000)
        live.call(live.store.set_metadata(account.id, None, {"/private/comment": b"x"}, limits))
        box, _ = deliver(live, ALICE, simple_message("after the annotation"))
        data = next(line for line in lines if line.startswith("data:"))
        assert json.loads(data.removeprefix("data: ")) == {"mailbox": box, "kind": "exists"}


# -- settings ------------------------------------------------------------------------------------


def test_display_name_and_password_change(live: LiveServer, alice: WebSession) -> None:
    assert alice.post("/settings/profile", {"display_name": "Alice A."}).status_code == 303
    account = live.call(live.store.get_account(ALICE))
    assert account is not None and account.display_name == "Alice A."
    other = WebSession(live)
    other.login(ALICE)
    wrong = alice.post(
        "/settings/password",
        {
            "current_password": "nope",
            "new_password": "another long password",
            "confirm_password": "another long password",
        },
    )
    assert wrong.status_code == 400 and "current password is wrong" in wrong.text
    changed = alice.post(
        "/settings/password",
        {
            "current_password": TEST_PASSWORD,
            "new_password": "another long password",
            "confirm_password": "another long password",
        },
    )
    assert changed.status_code == 303
    assert alice.get("/settings").status_code == 200  # this session continues
    assert other.get("/settings").status_code == 303  # every other one ended
    assert WebSession(live).login(ALICE, "another long password").status_code == 303


def test_password_change_rate_limited_is_429_with_retry_after(
    live: LiveServer, alice: WebSession
) -> None:
    """A throttled current-password check is "too many requests" (RFC 6585 §4), in the
    settings form and the JSON API alike — never a 400 the client would not retry."""
    form = {"current_password": "nope", "new_password": "x" * 20, "confirm_password": "x" * 20}
    statuses = [alice.post("/settings/password", form).status_code for _ in range(6)]
    assert statuses[0] == 400 and statuses[-1] == 429
    limited = alice.post("/settings/password", {**form, "current_password": TEST_PASSWORD})
    assert limited.status_code == 429 and int(limited.headers["retry-after"]) >= 1
    assert "too many failed attempts" in limited.text and 'id="password"' in limited.text
    api = alice.api("POST", "/password", {"current": TEST_PASSWORD, "new": "y" * 20})
    assert api.status_code == 429 and int(api.headers["retry-after"]) >= 1
    assert "too many" in api.json()["error"]


def test_api_tokens_authenticate_and_revoke(live: LiveServer, alice: WebSession) -> None:
    page = alice.post("/settings/api-token", {"label": "script"})
    secret = re.search(r'id="new-secret">([^<]+)<', page.text)
    assert secret is not None
    bearer = {"authorization": f"Bearer {secret.group(1)}"}
    client = httpx.Client(base_url=alice.base)
    me = client.get("/api/v1/me", headers=bearer)
    assert me.status_code == 200 and me.json()["address"] == ALICE
    created = client.post("/api/v1/mailboxes", json={"name": "ByToken"}, headers=bearer)
    assert created.status_code == 201  # no CSRF token needed with a bearer token
    assert client.get("/api/v1/me", headers={"authorization": "Bearer wrong"}).status_code == 401
    [token] = alice.api("GET", "/tokens").json()
    assert (
        alice.post(f"/settings/tokens/{token['id']}/revoke", {"confirmed": "1"}).status_code == 303
    )
    assert client.get("/api/v1/me", headers=bearer).status_code == 401


def test_app_passwords_are_issued_and_listed(live: LiveServer, alice: WebSession) -> None:
    page = alice.post("/settings/app-password", {"label": "Thunderbird"})
    secret = re.search(r'id="new-secret">([^<]+)<', page.text)
    assert secret is not None and re.fullmatch(r"([a-z2-9]{5}-){3}[a-z2-9]{5}", secret.group(1))
    assert "Thunderbird" in alice.get("/settings").text
    assert secret.group(1) not in alice.get("/settings").text  # shown once
    # A mail program's password (IMAP takes it: tests/unit/test_auth_directory.py), not the
    # web's: no web login, no password change with it.
    assert WebSession(live).login(ALICE, secret.group(1)).status_code == 401
    changed = alice.post(
        "/settings/password",
        {
            "current_password": secret.group(1),
            "new_password": "taken over by the phone",
            "confirm_password": "taken over by the phone",
        },
    )
    assert changed.status_code == 400 and "current password is wrong" in changed.text


def test_vacation_and_forwarding_are_stored(live: LiveServer, alice: WebSession) -> None:
    refused = alice.post("/settings/vacation", {"vacation_enabled": "1", "vacation_body": ""})
    assert refused.status_code == 400 and "auto-reply text" in refused.text
    assert (
        alice.post(
            "/settings/vacation",
            {
                "vacation_enabled": "1",
                "vacation_subject": "Away",
                "vacation_body": "Back Monday.",
                "vacation_until": "2030-02-01",
            },
        ).status_code
        == 303
    )
    bad = alice.post("/settings/forwarding", {"forward_to": "nope"})
    assert bad.status_code == 400
    assert alice.post("/settings/forwarding", {"forward_to": "me@example.net"}).status_code == 303
    account = live.call(live.store.get_account(ALICE))
    assert account is not None
    settings = live.call(live.store.get_settings(account.id))
    assert settings.vacation_enabled and settings.vacation_body == "Back Monday."
    assert settings.vacation_until is not None and settings.vacation_until.year == 2030
    assert settings.forward_to == ("me@example.net",) and not settings.forward_keep_copy


# -- admin ---------------------------------------------------------------------------------------


def test_admin_is_for_admins_only(alice: WebSession) -> None:
    assert alice.get("/admin").status_code == 403
    assert alice.post("/admin/domains/add", {"name": "x.test"}).status_code == 403
    assert alice.api("GET", "/admin/domains").status_code == 403


def test_admin_domains_accounts_aliases(live: LiveServer, admin: WebSession) -> None:
    assert "Dashboard" in admin.get("/admin").text
    assert admin.post("/admin/domains/add", {"name": "Example.COM"}).status_code == 303
    assert live.call(live.store.get_domain("example.com")) is not None
    records = admin.get("/admin/domains/example.com")
    assert "v=DMARC1" in records.text and "MX" in records.text
    assert admin.post("/admin/domains/add", {"name": "bad domain"}).status_code == 400
    added = admin.post(
        "/admin/accounts/add",
        {"address": "dora@example.com", "password": "short", "display_name": "Dora"},
    )
    assert added.status_code == 400 and "password rejected" in added.text
    admin.post(
        "/admin/accounts/add",
        {"address": "dora@example.com", "password": TEST_PASSWORD, "quota_mb": "10"},
    )
    dora = live.call(live.store.get_account("dora@example.com"))
    assert dora is not None and dora.quota_bytes == 10 * 1024 * 1024
    admin.post(
        "/admin/accounts/quota",
        {"address": "dora@example.com", "quota_mb": "", "quota_messages": "5"},
    )
    dora = live.call(live.store.get_account("dora@example.com"))
    assert dora is not None and dora.quota_bytes is None and dora.quota_messages == 5
    assert (
        admin.post(
            "/admin/accounts/password",
            {"address": "dora@example.com", "password": "a new long password"},
        ).status_code
        == 303
    )
    assert WebSession(live).login("dora@example.com", "a new long password").status_code == 303
    assert (
        admin.post(
            "/admin/aliases/add",
            {"address": "sales@example.com", "targets": "dora@example.com, bob@example.org"},
        ).status_code
        == 303
    )
    assert "sales@example.com" in admin.get("/admin/aliases").text
    assert (
        admin.post("/admin/domains/remove", {"name": "example.com", "confirmed": "1"}).status_code
        == 400
    )  # in use
    admin.post("/admin/aliases/remove", {"address": "sales@example.com", "confirmed": "1"})
    admin.post("/admin/accounts/remove", {"address": "dora@example.com", "confirmed": "1"})
    assert (
        admin.post("/admin/domains/remove", {"name": "example.com", "confirmed": "1"}).status_code
        == 303
    )
    assert live.call(live.store.get_domain("example.com")) is None
    assert (
        admin.post(
            "/admin/accounts/remove", {"address": "root@example.org", "confirmed": "1"}
        ).status_code
        == 400
    )


def test_admin_queue_retry_and_remove(live: LiveServer, admin: WebSession) -> None:
    queued = live.call(
        live.store.enqueue(
            "alice@example.org", b"Subject: q\r\n\r\nbody\r\n", [NewQueueRecipient("x@remote.test")]
        )
    )
    page = admin.get("/admin/queue")
    assert "x@remote.test" in page.text
    assert admin.post("/admin/queue/retry", {"id": queued.id}).status_code == 303
    assert admin.api("GET", "/admin/queue").json()[0]["recipients"][0]["address"] == "x@remote.test"
    # The page's retry wakes the queue runner, as the API's does: an attempt at once (the DNS
    # lookup fails here), not at the runner's next scan (queue.poll_interval, 30 s).
    wait_for(
        lambda: live.call(live.store.list_queue())[0].recipients[0].attempts,
        "an attempt",
        timeout=8,
    )
    assert admin.post("/admin/queue/remove", {"id": queued.id, "confirmed": "1"}).status_code == 303
    assert live.call(live.store.list_queue()) == []
    assert admin.post("/admin/queue/remove", {"id": "999", "confirmed": "1"}).status_code == 404


def test_admin_queue_retry_wakes_every_node(live: LiveServer, admin: WebSession) -> None:
    """On PostgreSQL the page's and the API's Retry wake every node's runner, as ``pillarbox
    queue retry`` does (NOTIFY): the node that served the page is not the only one delivering.
    Another node is played by a second store on the same database, in this process; on SQLite
    there is one server and no other store hears (the test above covers its own runner)."""
    if not is_postgresql(live.config.store.url):
        pytest.skip("one server per SQLite store: nothing else to wake")
    other = open_store(live.config.store.url, live.config.data_dir)
    woken = threading.Semaphore(0)
    other.on_queue_wake(woken.release)
    live.call(other.open())
    try:
        queued = live.call(
            live.store.enqueue(
                ALICE, b"Subject: q\r\n\r\nbody\r\n", [NewQueueRecipient("x@remote.test")]
            )
        )
        assert admin.post("/admin/queue/retry", {"id": queued.id}).status_code == 303
        assert woken.acquire(timeout=10), "the other node was not woken by the page"
        assert admin.api("POST", f"/admin/queue/{queued.id}/retry").status_code == 200
        assert woken.acquire(timeout=10), "the other node was not woken by the API"
    finally:
        live.call(other.close())


_ACTIVITY_ROW = re.compile(
    r'<tr><th scope="row"><time datetime="([^"]+)">[^<]*</time></th>'
    r"<td>(\d+)</td><td>(\d+)</td><td>(\d+)</td><td>(\d+)</td></tr>"
)


def activity_rows(page: httpx.Response) -> list[tuple[str, tuple[int, ...]]]:
    return [(start, tuple(map(int, counts))) for start, *counts in _ACTIVITY_ROW.findall(page.text)]


def test_admin_dashboard_charts_mail_over_time(live: LiveServer, admin: WebSession) -> None:
    now = datetime.now(UTC)
    if now.minute in (29, 59) and now.second > 50:  # keep the test within one (Kolkata) hour
        time.sleep(12)
        now = datetime.now(UTC)
    hour = now.replace(minute=0, second=0, microsecond=0)

    def store(name: str, when: datetime, serial: int) -> None:
        raw = simple_message(f"activity {serial}")
        box = mailbox_id(live, ALICE, name)
        live.call(live.store.append(box, raw, parse_message(raw), internal_date=when))

    for serial in range(2):
        store(INBOX, hour - timedelta(hours=2, minutes=-5), serial)
    store("Junk", hour - timedelta(hours=2, minutes=-30), 2)
    store("Sent", now, 3)
    store("Sent", now, 4)
    store(INBOX, hour - timedelta(days=3), 5)  # only in the 30-day view
    live.call(
        live.store.enqueue(ALICE, b"Subject: q\r\n\r\nbody\r\n", [NewQueueRecipient("x@r.test")])
    )
    page = admin.get("/admin")
    rows = activity_rows(page)
    assert len(rows) == 48 and rows[-1][0] == hour.isoformat()
    assert rows[-1][1] == (0, 0, 2, 1)  # delivered, of which spam, sent, queued
    assert rows[-3] == ((hour - timedelta(hours=2)).isoformat(), (3, 1, 0, 0))
    assert all(counts == (0, 0, 0, 0) for _, counts in rows[:-3] + rows[-2:-1])
    # The chart draws the same numbers: one point per interval and series, titled with its value,
    # the highest (3) at the top of the axis.
    label = (hour - timedelta(hours=2)).strftime("%H:%M")
    assert f'cy="12.0" r="2.5"><title>{label} — delivered: 3</title>' in page.text
    assert f"<title>{label} — of which spam (Junk): 1</title>" in page.text
    assert f"<title>{hour:%H:%M} — still queued: 1</title>" in page.text
    assert "delivered: 3</li>" in page.text and "sent: 2</li>" in page.text  # the legend's sums
    days = activity_rows(admin.get("/admin?range=30d"))
    day = hour.replace(hour=0)
    assert len(days) == 30 and days[-1][0] == day.isoformat()
    assert days[-4] == ((day - timedelta(days=3)).isoformat(), (1, 0, 0, 0))
    api = admin.api("GET", "/admin/activity?range=30d").json()
    assert api["step_seconds"] == 86400
    assert [i["delivered"] for i in api["intervals"]] == [c[0] for _, c in days]
    # An admin reading in Kolkata (UTC+05:30) gets its hours, which start at half past in UTC:
    # the two messages of 5 past and the spam of half past fall in different hours. The
    # datetime attribute stays in UTC; the text and the chart's labels are local.
    admin.client.cookies.set("tz", "Asia/Kolkata")
    page = admin.get("/admin")
    kolkata = dict(activity_rows(page))
    current = hour + timedelta(minutes=30 if now.minute >= 30 else -30)
    assert len(kolkata) == 48 and max(kolkata) == current.isoformat()
    assert kolkata[current.isoformat()] == (0, 0, 2, 1)
    assert kolkata[(hour - timedelta(hours=2, minutes=30)).isoformat()] == (2, 0, 0, 0)
    assert kolkata[(hour - timedelta(hours=1, minutes=30)).isoformat()] == (1, 1, 0, 0)
    assert '<th scope="col">Hour (Asia/Kolkata)</th>' in page.text
    junk_hour = (hour - timedelta(hours=1, minutes=30)).astimezone(ZoneInfo("Asia/Kolkata"))
    assert f"<title>{junk_hour:%H:%M} — of which spam (Junk): 1</title>" in page.text
    assert f">{junk_hour:%Y-%m-%d %H:%M} IST</time>" in page.text


# -- JSON API ------------------------------------------------------------------------------------


def test_openapi_document_lists_every_route(live: LiveServer) -> None:
    from pillarbox.web.api import OPERATIONS

    document = httpx.get(f"http://127.0.0.1:{live.port('http')}/api/v1/openapi.json").json()
    assert document["openapi"].startswith("3.1")
    served = {(method.upper(), path) for path, ops in document["paths"].items() for method in ops}
    assert len(served) == len(OPERATIONS)
    assert ("GET", "/api/v1/mailboxes/{mailbox}/messages/{uid}") in served
    assert ("POST", "/api/v1/send") in served


def test_api_mail_round_trip(live: LiveServer, alice: WebSession) -> None:
    deliver(live, ALICE, HOSTILE)
    [inbox] = [m for m in alice.api("GET", "/mailboxes").json() if m["name"] == "INBOX"]
    assert inbox["unseen"] == 1
    page = alice.api("GET", f"/mailboxes/{inbox['id']}/messages?q=Offer").json()
    assert page["total"] == 1 and page["messages"][0]["subject"] == "hostile"
    uid = page["messages"][0]["uid"]
    message = alice.api("GET", f"/mailboxes/{inbox['id']}/messages/{uid}").json()
    assert message["blocked_remote_images"] == 1 and "<script" not in message["html"]
    # Every member of the answer is declared in the OpenAPI schema (html_truncated was not).
    schemas = alice.api("GET", "/openapi.json").json()["components"]["schemas"]
    declared = schemas["Message"]["properties"]
    assert list(message) == list(declared)
    assert list(message["attachments"][0]) == list(declared["attachments"]["items"]["properties"])
    assert alice.api("GET", f"/mailboxes/{inbox['id']}/messages/{uid}/raw").content == HOSTILE
    assert alice.api(
        "POST", f"/mailboxes/{inbox['id']}/actions", {"action": "flag", "uids": [uid]}
    ).json() == {"ok": True}
    assert "\\Flagged" in flags_of(live, inbox["id"], uid)
    bad = alice.api("POST", f"/mailboxes/{inbox['id']}/actions", {"action": "flag", "uids": "1"})
    assert bad.status_code == 400
    sent = alice.api(
        "POST",
        "/send",
        {
            "to": BOB,
            "subject": "api",
            "body": "via JSON",
            "attachments": [
                {"filename": "a.txt", "content_type": "text/plain", "data": "aGVsbG8="}
            ],
        },
    )
    assert sent.status_code == 200 and sent.json()["sent"] is True
    assert len(uids_in(live, BOB)) == 1
    refused = alice.api("POST", "/send", {"to": "bogus", "body": "x"})
    assert refused.status_code == 400 and "to" in refused.json()["fields"]
    assert alice.api("POST", "/send", None, content=b"not json").status_code == 400
    draft = alice.api("POST", "/drafts", {"to": BOB, "subject": "d", "body": "b"})
    assert draft.status_code == 201
    assert (
        alice.api("PUT", "/settings/vacation", {"enabled": True, "body": "away"}).status_code == 200
    )
    assert alice.api("GET", "/settings").json()["vacation"]["enabled"] is True
    token = alice.api("POST", "/tokens", {"kind": "app-password", "label": "phone"}).json()
    assert token["kind"] == "app-password" and token["secret"]
    assert alice.api("DELETE", f"/tokens/{token['id']}").json() == {"ok": True}
    assert alice.api("DELETE", f"/tokens/{token['id']}").status_code == 404
    assert {s["protocol"] for s in alice.api("GET", "/client-setup").json()} <= {
        "IMAP",
        "POP3",
        "SMTP",
        "ManageSieve",
    }


def test_api_admin(live: LiveServer, admin: WebSession) -> None:
    assert admin.api("POST", "/admin/domains", {"name": "api.test"}).status_code == 201
    assert admin.api("POST", "/admin/domains", {"name": "api.test"}).status_code == 409
    assert (
        admin.api(
            "POST",
            "/admin/accounts",
            {"address": "x@api.test", "password": TEST_PASSWORD, "quota_bytes": 1000},
        ).status_code
        == 201
    )
    assert (
        admin.api(
            "PUT", "/admin/accounts/x@api.test/quota", {"quota_bytes": None, "quota_messages": 3}
        ).status_code
        == 200
    )
    assert (
        admin.api(
            "POST", "/admin/aliases", {"address": "@api.test", "targets": ["x@api.test"]}
        ).status_code
        == 201
    )
    dns = admin.api("GET", "/admin/domains/api.test/dns").json()
    assert any(r["type"] == "MX" for r in dns["records"])
    board = admin.api("GET", "/admin/dashboard").json()
    assert board["domains"] == 2 and board["accounts"] == 4
    assert admin.api("DELETE", "/admin/aliases/@api.test").status_code == 200
    assert admin.api("DELETE", "/admin/accounts/x@api.test").status_code == 200
    assert admin.api("DELETE", "/admin/domains/api.test").status_code == 200
    assert admin.api("DELETE", "/admin/domains/api.test").status_code == 404


def test_admin_dns_records_are_the_ones_the_cli_prints_and_the_dns_server_serves(
    tmp_path: Path,
) -> None:
    """One source for the records to publish: with ``dns.addresses`` set, the admin page shows
    the host's A record and an SPF naming the address, not ``v=spf1 mx -all``; a key retired
    long ago is no longer listed."""
    dns = cfg.DnsSection(nameserver=NO_DNS, timeout=1.0, addresses=("192.0.2.7",))
    with LiveServer(loopback_config(tmp_path / "data", only=["http"], dns=dns)) as server:
        server.add_domain("example.org")
        server.add_account("root@example.org", TEST_PASSWORD, is_admin=True)
        old = datetime.now(UTC) - timedelta(days=400)
        key = generate_key(DkimAlgorithm.RSA_SHA256, now=old, selector="old", rsa_bits=1024)
        record = DkimKeyRecord("example.org", "old", "rsa-sha256", key.private_pem, old)
        server.call(server.store.add_dkim_key(record))
        server.call(server.store.retire_dkim_key("example.org", "old", old))
        admin = WebSession(server)
        assert admin.login("root@example.org").status_code == 303
        shown = admin.api("GET", "/admin/domains/example.org/dns").json()["records"]
        expected = server.call(
            hosted_records(
                server.store,
                "example.org",
                mail_host=server.config.server.hostname,
                addresses=dns.addresses,
                now=datetime.now(UTC),
                policy=record_policy(server.config),
            )
        )
        assert [(r["name"], r["type"], r["value"]) for r in shown] == [
            (r.name, r.type, r.value) for r in expected.records
        ]
        assert ("example.org", "TXT", "v=spf1 ip4:192.0.2.7 -all") in {
            (r["name"], r["type"], r["value"]) for r in shown
        }
        assert "192.0.2.7" in admin.get("/admin/domains/example.org").text
        # Unsigned, with the self-signed certificate: no TLSA, DNSKEY nor DS, and why not.
        secure = admin.api("GET", "/admin/domains/example.org/dns").json()
        assert (secure["tlsa"], secure["dnskey"], secure["ds"]) == (None, None, None)
        assert "self-signed certificate is made anew" in secure["no_tlsa"]
        page = html.unescape(admin.get("/admin/domains/example.org").text)
        assert "DNSSEC: the zone is not signed" in page and "\tDS\t" not in page


def test_admin_domain_page_shows_the_tlsa_dnskey_and_ds_dns_records_prints(
    tmp_path: Path,
) -> None:
    """With ``[dns] dnssec`` and a certificate whose key stays, the domain page and its API
    show the MX host's TLSA and the zone's DNSKEY and DS in ``pillarbox dns records``'s words
    (its zone-file fragment, line for line), and the DNSKEY is the one our DNS server serves."""
    host = "mail.example.org"
    cert, key = make_ca(tmp_path).issue(host)
    dns_port = free_port("127.0.0.1")
    base = loopback_config(tmp_path / "data", only=["http"])
    config = dataclasses.replace(
        base,
        server=dataclasses.replace(base.server, hostname=host),
        tls=cfg.TlsSection(cert=str(cert), key=str(key)),
        dns=dataclasses.replace(
            base.dns,
            addresses=("192.0.2.7",),
            authoritative_enabled=True,
            authoritative_address="127.0.0.1",
            authoritative_port=dns_port,
            dnssec=True,
        ),
    )
    (tmp_path / "pillarbox.toml").write_text(cfg.render_toml(config))
    assert run_pillarbox(tmp_path, "domain", "add", "example.org").returncode == 0
    printed = run_pillarbox(tmp_path, "dns", "records", "example.org")
    assert printed.returncode == 0, printed.stderr
    with LiveServer(config) as server:
        server.add_account("root@example.org", TEST_PASSWORD, is_admin=True)
        admin = WebSession(server)
        assert admin.login("root@example.org").status_code == 303
        shown = admin.api("GET", "/admin/domains/example.org/dns").json()
        # The CLI prints the same fragment, then the MTA-STS policy.
        assert printed.stdout.startswith(shown["zone"]), (printed.stdout, shown["zone"])
        assert "\tDS\t" in shown["zone"] and "\tTLSA\t" in shown["zone"]
        tlsa, dnskey, ds = shown["tlsa"], shown["dnskey"], shown["ds"]
        assert (tlsa["name"], tlsa["type"]) == (f"_25._tcp.{host}", "TLSA")
        assert tlsa["value"].startswith("3 1 1 ") and shown["no_tlsa"] == ""
        assert (dnskey["name"], dnskey["type"], ds["name"], ds["type"]) == (
            "example.org",
            "DNSKEY",
            "example.org",
            "DS",
        )
        assert f"{ds['value']}" in printed.stdout and dnskey["value"].startswith("257 3 13 ")
        page = admin.get("/admin/domains/example.org")
        text = html.unescape(page.text)
        for record in (tlsa, dnskey, ds):
            assert f"<code>{record['value']}</code>" in text, record["type"]
        assert shown["zone"] in text
        assert "give the registrar the DS record(s) for the parent zone" in text
        assert shown["dnskeys"] == [dnskey | {"purpose": dnskey["purpose"]}]
        assert shown["ds_records"] == [ds]
        # The CDS and CDNSKEY our DNS server serves for a parent that scans: that DS and key.
        cds, cdnskey = shown["cds_records"]
        assert (cds["type"], cds["value"]) == ("CDS", ds["value"])
        assert (cdnskey["type"], cdnskey["value"]) == ("CDNSKEY", dnskey["value"])
        assert f"<code>{cdnskey['value']}</code>" in text and "CDS/CDNSKEY published" in text
        # A rollover started: the page and the API show both keys, and every DS the parent
        # should have, the next one's saying from when.
        started = run_pillarbox(tmp_path, "dns", "rollover", "example.org")
        assert started.returncode == 0, started.stderr
        rolling = admin.api("GET", "/admin/domains/example.org/dns").json()
        assert rolling["dnskey"] == dnskey and rolling["ds"]["value"] == ds["value"]
        assert [k["purpose"].rsplit(", ", 1)[1] for k in rolling["dnskeys"]] == [
            "active",
            "published",
        ]
        old_ds, next_ds = rolling["ds_records"]
        assert (
            old_ds["value"] == ds["value"] and "kept until the next key's DS" in old_ds["purpose"]
        )
        assert "the next key's DS, for the registrar from " in next_ds["purpose"]
        assert next_ds["value"] in started.stdout
        text = html.unescape(admin.get("/admin/domains/example.org").text)
        for record in (*rolling["dnskeys"], *rolling["ds_records"]):
            assert f"<code>{record['value']}</code>" in text, record
        assert "a key rollover is under way" in text
        # The DNSKEYs are the ones the DNS server serves, asked for over UDP (its zone was
        # never built before: it reads both keys at once).
        query = dns.message.make_query("example.org", "DNSKEY", want_dnssec=True)
        reply = dns.query.udp(query, "127.0.0.1", port=dns_port, timeout=5)
        served = reply.find_rrset(
            reply.answer,
            dns.name.from_text("example.org."),
            dns.rdataclass.IN,
            dns.rdatatype.DNSKEY,
        )
        shown_keys = set()
        for record in rolling["dnskeys"]:
            flags, _protocol, _algorithm, key_text = record["value"].split()
            shown_keys.add((int(flags), base64.b64decode(key_text)))
        assert {(rd.flags, rd.key) for rd in served} == shown_keys


# -- autoconfig ----------------------------------------------------------------------------------


@pytest.mark.listeners("http", "imaps", "submissions", "submission")
def test_client_autoconfiguration(live: LiveServer, alice: WebSession) -> None:
    thunderbird = alice.get(
        "/.well-known/autoconfig/mail/config-v1.1.xml?emailaddress=alice@example.org"
    )
    assert thunderbird.status_code == 200
    assert f"<port>{live.port('imaps')}</port>" in thunderbird.text
    assert "<socketType>SSL</socketType>" in thunderbird.text and "mx.test" in thunderbird.text
    assert alice.get("/mail/config-v1.1.xml?emailaddress=a@elsewhere.test").status_code == 404
    request = (
        b"<Autodiscover><Request><EMailAddress>bob@example.org</EMailAddress>"
        b"</Request></Autodiscover>"
    )
    outlook = alice.client.post("/autodiscover/autodiscover.xml", content=request)
    assert outlook.status_code == 200 and "<LoginName>bob@example.org</LoginName>" in outlook.text
    profile = plistlib.loads(alice.get("/settings/mobileconfig").content)
    [payload] = profile["PayloadContent"]
    assert payload["EmailAddress"] == ALICE
    assert payload["IncomingMailServerPortNumber"] == live.port("imaps")
    assert payload["OutgoingMailServerPortNumber"] == live.port("submissions")
    settings = alice.get("/settings").text
    assert str(live.port("submission")) in settings and "STARTTLS" in settings
    assert "ManageSieve" not in settings  # its listener is off here
    assert "managesieve" not in thunderbird.text.lower()


@pytest.mark.listeners("http", "imaps", "submission", "managesieve")
def test_client_setup_lists_managesieve_when_its_listener_runs(
    live: LiveServer, alice: WebSession
) -> None:
    sieve = {
        "protocol": "ManageSieve",
        "host": "mx.test",
        "port": live.port("managesieve"),
        "security": "STARTTLS",
    }
    servers = alice.api("GET", "/client-setup").json()
    assert servers[-1] == sieve and [s["protocol"] for s in servers] == [
        "IMAP",
        "SMTP",
        "ManageSieve",
    ]
    page = alice.get("/settings").text
    row = (
        f"<tr><td>ManageSieve</td><td>mx.test</td><td>{live.port('managesieve')}</td>"
        "<td>STARTTLS</td></tr>"
    )
    assert row in page and "filter editors" in page
    # The autoconfig formats have no element for it: the mail servers only.
    thunderbird = alice.get(
        "/.well-known/autoconfig/mail/config-v1.1.xml?emailaddress=alice@example.org"
    )
    assert thunderbird.status_code == 200 and str(live.port("managesieve")) not in thunderbird.text
    assert thunderbird.text.count("<incomingServer") == 1


def test_open_event_streams_do_not_hold_up_shutdown(tmp_path: Path) -> None:
    live = LiveServer(loopback_config(tmp_path / "data", only=["http"]))
    live.__enter__()
    try:
        live.add_domain("example.org")
        live.add_account(ALICE, TEST_PASSWORD)
        web = WebSession(live)
        web.login(ALICE)
        opened, ended = threading.Event(), threading.Event()

        def follow() -> None:
            with web.client.stream("GET", "/events", timeout=30) as stream:
                opened.set()
                for _line in stream.iter_lines():
                    pass
            ended.set()

        reader = threading.Thread(target=follow, daemon=True)
        reader.start()
        # The stream is open before the server stops (a fixed 0.3 s was not always enough
        # for the request to arrive under CI's load, and the test then stopped no stream).
        assert opened.wait(20)
    finally:
        started = time.monotonic()
        live.__exit__(None, None, None)
    assert time.monotonic() - started < live.config.server.shutdown_grace
    assert ended.wait(5)  # the stream was closed cleanly, not left hanging


def test_mark_unread_from_the_message_view_returns_to_the_list(
    live: LiveServer, alice: WebSession
) -> None:
    box, uid = deliver(live, ALICE, simple_message("read me later"))
    alice.get(f"/mail/{box}/{uid}")
    response = alice.post(
        f"/mail/{box}/actions", {"uid": uid, "action": "unread", "back": f"/mail/{box}/{uid}"}
    )
    assert response.headers["location"] == f"/mail/{box}?done=unread&count=1"
    assert "\\Seen" not in flags_of(live, box, uid)
    flagged = alice.post(
        f"/mail/{box}/actions", {"uid": uid, "action": "flag", "back": f"/mail/{box}/{uid}"}
    )
    assert flagged.headers["location"] == f"/mail/{box}/{uid}?done=flag&count=1"
    shown = alice.get(flagged.headers["location"]).text
    notice = r'<p class="notice" role="status"[^>]* id="action-done">1 message flagged.</p>'
    assert re.search(notice, shown)


def test_sent_and_drafts_list_the_recipients(live: LiveServer, alice: WebSession) -> None:
    """Every row of one's own Sent would say "From: Alice": there the list names the To and
    Cc recipients instead, as mail programs do."""
    sent = special_mailbox_id(live, ALICE, SpecialUse.SENT)
    raw = simple_message(
        "Minutes", sender=ALICE, to="Bob <bob@example.org>", headers="Cc: dave@example.net\r\n"
    )
    deliver(live, ALICE, raw, mailbox="Sent")
    page = alice.get(f"/mail/{sent}").text
    assert '<th scope="col">To</th>' in page
    assert '<td class="from">Bob, dave@example.net</td>' in page
    inbox = alice.get(f"/mail/{mailbox_id(live, ALICE)}").text
    assert ">From</a></th>" in inbox and '<th scope="col">To</th>' not in inbox


def test_a_page_past_the_end_shows_the_last_page(live: LiveServer, alice: WebSession) -> None:
    """Deleting the only message on the last page returns to the last page there is, with
    the notice, not to an empty "3–2 of 2" page."""
    inbox = mailbox_id(live, ALICE)
    uids = [deliver(live, ALICE, simple_message(f"m{n}"))[1] for n in range(3)]
    back = f"/mail/{inbox}?size=2&page=2"
    deleted = alice.post(
        f"/mail/{inbox}/actions", {"uid": [uids[0]], "action": "delete", "back": back}
    )
    gone = alice.get(deleted.headers["location"])
    assert gone.status_code == 303
    assert gone.headers["location"] == f"/mail/{inbox}?size=2&done=trash&count=1&page=1"
    page = alice.get(gone.headers["location"]).text
    assert re.findall(r">m\d<", page) == [">m2<", ">m1<"]
    assert "1 message moved to Trash." in page
    threads = alice.get(f"/mail/{inbox}?view=threads&size=1&page=7")
    assert threads.headers["location"] == f"/mail/{inbox}?view=threads&size=1&page=2"
    assert (
        alice.get(f"/mail/{inbox}?q=m1&page=3").headers["location"] == f"/mail/{inbox}?q=m1&page=1"
    )
    assert alice.get(f"/mail/{inbox}?q=nothing&page=3").status_code == 200  # none at all


def test_the_page_after_an_action_says_what_it_did(live: LiveServer, alice: WebSession) -> None:
    """A list action answers with a notice naming the count and where the messages went;
    pressing a button with nothing ticked says so instead of silently doing nothing."""
    inbox = mailbox_id(live, ALICE)
    uids = [deliver(live, ALICE, simple_message(f"m{n}"))[1] for n in range(3)]
    live.create_mailbox(ALICE, "Projects")
    projects = mailbox_id(live, ALICE, "Projects")
    act = f"/mail/{inbox}/actions"

    def notice(response: httpx.Response) -> str:
        assert response.status_code == 303
        page = alice.get(response.headers["location"]).text
        found = re.search(r'<p class="notice" role="status"[^>]*id="action-done">([^<]*)</p>', page)
        return found.group(1) if found else ""

    back = f"/mail/{inbox}?q=m&sent=1&done=read&count=9"  # an earlier notice is not kept
    moved = alice.post(act, {"uid": uids[:2], "action": "move", "target": projects, "back": back})
    assert moved.headers["location"] == f"/mail/{inbox}?q=m&done=move&count=2&to={projects}"
    assert notice(moved) == "2 messages moved to Projects."
    links = re.findall(r'href="(\?[^"]*)"', alice.get(moved.headers["location"]).text)
    assert any("q=m" in link for link in links)  # the search stays in sort and view links…
    assert not [link for link in links if "done=" in link]  # …the notice does not
    spam = alice.post(act, {"uid": [uids[2]], "action": "spam"})
    assert notice(spam) == "1 message moved to Junk."
    assert notice(alice.post(act, {"action": "read"})) == (
        "No message selected: tick the box beside each message to act on first."
    )
    in_projects = f"/mail/{projects}/actions"
    there = uids_in(live, ALICE, "Projects")
    assert notice(alice.post(in_projects, {"uid": there, "action": "delete"})) == (
        "2 messages moved to Trash."
    )
    trash = special_mailbox_id(live, ALICE, SpecialUse.TRASH)
    [first, _] = uids_in(live, ALICE, "Trash")
    deleted = alice.post(
        f"/mail/{trash}/actions", {"uid": [first], "action": "delete", "confirmed": "1"}
    )
    assert notice(deleted) == "1 message deleted for good."
    # The query names a notice; only the fixed texts are ever shown, nothing made up in a link.
    page = alice.get(f"/mail/{inbox}?done=%3Cb%3Ephish&count=2").text
    assert 'id="action-done"' not in page


def spam_model_counts(live: LiveServer, address: str) -> tuple[int, int]:
    """(ham, spam) messages the account's own spam model was trained with."""

    async def go() -> tuple[int, int]:
        account = await live.store.get_account(address)
        assert account is not None
        counts, _ = await live.store.spam_model(account.id, [])
        return counts.ham, counts.spam

    return live.call(go())


@pytest.mark.parametrize("number", ["²", "٣", "9" * 20, "9" * 5000])
def test_numbers_in_forms_that_are_no_numbers_are_refused(
    live: LiveServer, alice: WebSession, number: str
) -> None:
    """Form fields that name messages, folders and drafts by number: "²" and "٣" pass
    ``str.isdigit`` ("²" then fails ``int``, "٣" is read as 3: another folder), 20 digits
    overflow the store's 64-bit integers, 5,000 pass Python's limit on digits. Each is the
    user's mistake (refused or ignored), never a server error nor another folder."""
    inbox = mailbox_id(live, ALICE)
    [uid] = [deliver(live, ALICE, simple_message("keep"))[1]]
    act = f"/mail/{inbox}/actions"
    assert alice.post(act, {"uid": [number], "action": "read"}).status_code == 303
    assert alice.post(act, {"uid": [uid], "action": "move", "target": number}).status_code == 400
    assert uids_in(live, ALICE) == [uid]
    assert (
        alice.api("POST", "/drafts", {"to": ALICE, "draft_uid": int("9" * 20)}).status_code == 400
    )


def test_quotas_beyond_what_the_store_holds_are_refused(
    live: LiveServer, admin: WebSession
) -> None:
    for megabytes, messages in (("inf", ""), ("1e999", ""), ("", "9" * 20), ("1e300", "")):
        answer = admin.post(
            "/admin/accounts/add",
            {
                "address": "erin@example.com",
                "password": TEST_PASSWORD,
                "quota_mb": megabytes,
                "quota_messages": messages,
            },
        )
        assert answer.status_code == 400, (megabytes, messages)
    assert live.call(live.store.get_account("erin@example.com")) is None


def test_api_time_zone_round_trip(alice: WebSession) -> None:
    """The account's time zone over the JSON API: read in /settings, set by name, an unknown
    name refused 400 (the settings form's check), "" back to the browser's; every member of
    the answers declared in the schema."""
    schemas = alice.api("GET", "/openapi.json").json()["components"]["schemas"]
    settings = alice.api("GET", "/settings").json()
    assert list(settings) == list(schemas["Settings"]["properties"])
    assert settings["time_zone"] == ""
    answer = alice.api("PUT", "/settings/time-zone", {"time_zone": "America/New_York"})
    assert answer.status_code == 200 and answer.json() == {"time_zone": "America/New_York"}
    assert alice.api("GET", "/settings").json()["time_zone"] == "America/New_York"
    unknown = alice.api("PUT", "/settings/time-zone", {"time_zone": "Mars/Olympus_Mons"})
    assert unknown.status_code == 400 and "unknown time zone" in unknown.json()["error"]
    assert alice.api("PUT", "/settings/time-zone", {"time_zone": 3}).status_code == 400
    assert alice.api("GET", "/settings").json()["time_zone"] == "America/New_York"
    assert alice.api("PUT", "/settings/time-zone", {"time_zone": ""}).json() == {"time_zone": ""}
    assert alice.api("GET", "/settings").json()["time_zone"] == ""


def test_the_shortcuts_switch_is_the_accounts(live: LiveServer, alice: WebSession) -> None:
    """WCAG 2.1.4's switch is kept with the account: the settings form (no script needed)
    turns the shortcuts off, every page of another login says so to app.js, and the API
    reads and sets the same switch."""
    assert 'data-shortcuts="off"' not in alice.get("/mail").text
    assert alice.post("/settings/shortcuts", {}).status_code == 303  # the box left unticked
    account = live.call(live.store.get_account(ALICE))
    assert account is not None
    assert not live.call(live.store.get_settings(account.id)).shortcuts
    elsewhere = WebSession(live)  # another browser
    try:
        assert elsewhere.login(ALICE).status_code == 303
        page = elsewhere.get("/settings").text
        assert '<html lang="en"' in page and 'data-shortcuts="off"' in page
        assert 'id="shortcuts-on" checked' not in page
        assert elsewhere.api("GET", "/settings").json()["shortcuts"] is False
        answer = elsewhere.api("PUT", "/settings/shortcuts", {"shortcuts": True})
        assert answer.status_code == 200 and answer.json() == {"shortcuts": True}
        assert elsewhere.api("PUT", "/settings/shortcuts", {"shortcuts": "no"}).status_code == 400
    finally:
        elsewhere.close()
    assert 'data-shortcuts="off"' not in alice.get("/mail").text
    assert 'id="shortcuts-on" checked' in alice.get("/settings").text
    assert alice.post("/settings/shortcuts", {"shortcuts": "1"}).status_code == 303
    assert live.call(live.store.get_settings(account.id)).shortcuts
