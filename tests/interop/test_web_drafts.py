"""The webmail's compose leftovers over real HTTP against the live server: a saved draft keeps
its attachments (the form, the Drafts message an IMAP client reads, the send), a forward's may
be left out one by one, sending returns to the page composed from with its notice, and the spam
verdict buttons are offered only where they mean something."""

from __future__ import annotations

import email
import html
import re
import time
from email import policy
from email.message import EmailMessage
from pathlib import Path

import pytest
from imapclient import IMAPClient

from pillarbox import config as cfg
from pillarbox.mail.parse import parse_message
from pillarbox.store.types import INBOX, SpecialUse
from pillarbox.testing.live import TEST_PASSWORD, LiveServer, loopback_config
from pillarbox.testing.webclient import (
    WebSession,
    deliver,
    mailbox_id,
    simple_message,
    special_mailbox_id,
)

pytestmark = pytest.mark.listeners("http", "imap")

ALICE = "alice@example.org"
BOB = "bob@example.org"
_KEEP = re.compile(r'<input type="checkbox" name="keep" value="([^"]+)" checked> ([^<]+) <')
#: One text part and two attachments, as a mail app would send them.
_TWO_FILES = (
    b"From: c@example.net\r\nTo: alice@example.org\r\nSubject: pics\r\nMIME-Version: 1.0\r\n"
    b'Content-Type: multipart/mixed; boundary="b"\r\n\r\n'
    b"--b\r\nContent-Type: text/plain\r\n\r\noriginal text\r\n"
    b"--b\r\nContent-Type: image/png; name=a.png\r\nContent-Disposition: attachment; "
    b"filename=a.png\r\nContent-Transfer-Encoding: base64\r\n\r\niVBORw0KGgo=\r\n"
    b"--b\r\nContent-Type: text/csv\r\nContent-Disposition: attachment; filename=b.csv\r\n\r\n"
    b"x,y\r\n1,2\r\n--b--\r\n"
)


def kept(page: str) -> dict[str, str]:
    """The stored attachments a compose page lists, file name → its ``keep`` value."""
    return {html.unescape(name).strip(): value for value, name in _KEEP.findall(page)}


def attached(raw: bytes) -> dict[str, bytes]:
    """A message's attachments as a mail app reads them, file name → decoded bytes."""
    message = email.message_from_bytes(raw, policy=policy.default)
    assert isinstance(message, EmailMessage)
    return {
        str(part.get_filename()): part.get_payload(decode=True)
        for part in message.iter_attachments()
    }


def uids_in(live: LiveServer, address: str, name: str = INBOX) -> list[int]:
    box = mailbox_id(live, address, name)
    return [r.uid for r in live.call(live.store.list_messages(box))]


def raw_in(live: LiveServer, box: int, uid: int) -> bytes:
    record = live.call(live.store.get_message(box, uid))
    assert record is not None
    return live.call(live.store.read_blob(record.blob_id))


def _draft_uid(live: LiveServer) -> int:
    [uid] = uids_in(live, ALICE, "Drafts")
    return uid


def test_a_saved_draft_keeps_its_attachments(live: LiveServer, alice: WebSession) -> None:
    saved = alice.post(
        "/compose",
        {"to": BOB, "subject": "files", "body": "two files", "action": "save"},
        files=[
            ("attachment", ("report.pdf", b"%PDF-1.4 report", "application/pdf")),
            ("attachment", ("notes.txt", b"some notes\n", "text/plain")),
        ],
    )
    assert saved.status_code == 200 and "Draft saved" in saved.text
    assert "Attach files again" not in saved.text
    drafts = special_mailbox_id(live, ALICE, SpecialUse.DRAFTS)
    first = _draft_uid(live)
    # The page after saving lists them from the saved draft: a second save keeps them.
    assert set(kept(saved.text)) == {"report.pdf", "notes.txt"}
    # A mail app opening the draft over IMAP sees the attachment parts.
    with IMAPClient("127.0.0.1", port=live.port("imap"), ssl=False) as imap:
        imap.login(ALICE, TEST_PASSWORD)
        imap.select_folder("Drafts", readonly=True)
        structure = str(imap.fetch([first], ["BODYSTRUCTURE"])[first][b"BODYSTRUCTURE"])
    assert "report.pdf" in structure and "notes.txt" in structure
    reopened = alice.get(f"/compose?draft={drafts}:{first}")
    assert reopened.status_code == 200
    files = kept(reopened.text)
    assert set(files) == {"report.pdf", "notes.txt"}
    # Saved again with one unticked and a new one added: the draft holds the other two.
    again = alice.post(
        "/compose",
        {
            "to": BOB,
            "subject": "files",
            "body": "two files",
            "draft_uid": first,
            "keep": files["report.pdf"],
            "action": "save",
        },
        files={"attachment": ("more.csv", b"a,b\n", "text/csv")},
    )
    assert again.status_code == 200
    second = _draft_uid(live)
    assert second != first
    assert set(kept(again.text)) == {"report.pdf", "more.csv"}
    assert set(attached(raw_in(live, drafts, second))) == {"report.pdf", "more.csv"}
    # Sent from the reopened draft without uploading anything: the recipient gets both.
    files = kept(alice.get(f"/compose?draft={drafts}:{second}").text)
    sent = alice.post(
        "/compose",
        {
            "to": BOB,
            "subject": "files",
            "body": "two files",
            "draft_uid": second,
            "keep": list(files.values()),
            "action": "send",
        },
    )
    assert sent.status_code == 303
    assert uids_in(live, ALICE, "Drafts") == []
    [bob_uid] = uids_in(live, BOB)
    raw = raw_in(live, mailbox_id(live, BOB), bob_uid)
    assert attached(raw) == {"report.pdf": b"%PDF-1.4 report", "more.csv": b"a,b\n"}


def test_a_forward_keeps_or_leaves_out_each_attachment(live: LiveServer, alice: WebSession) -> None:
    box, uid = deliver(live, ALICE, _TWO_FILES)
    page = alice.get(f"/compose?forward={box}:{uid}")
    files = kept(page.text)
    assert set(files) == {"a.png", "b.csv"}
    form = {"to": BOB, "subject": "Fwd: pics", "body": "fyi", "forwarding": f"{box}:{uid}"}
    # Saved as a draft, the forward holds the attachments kept.
    saved = alice.post("/compose", {**form, "keep": files["a.png"], "action": "save"})
    assert set(kept(saved.text)) == {"a.png"}
    drafts = special_mailbox_id(live, ALICE, SpecialUse.DRAFTS)
    draft = parse_message(raw_in(live, drafts, _draft_uid(live)))
    assert [a.filename for a in draft.attachments] == ["a.png"]
    sent = alice.post(
        "/compose",
        {
            **form,
            "draft_uid": _draft_uid(live),
            "keep": list(kept(saved.text).values()),
            "action": "send",
        },
    )
    assert sent.status_code == 303
    forwarded = raw_in(live, mailbox_id(live, BOB), uids_in(live, BOB)[0])
    assert b'filename="a.png"' in forwarded and b"iVBORw0KGgo=" in forwarded
    assert b"b.csv" not in forwarded


def test_the_apis_forward_carries_every_attachment(live: LiveServer, alice: WebSession) -> None:
    """The JSON API's ``forwarding`` sends all the original's attachments, and a draft saved
    with it holds them too (it held none)."""
    box, uid = deliver(live, ALICE, _TWO_FILES)
    call = {"to": BOB, "subject": "Fwd: pics", "body": "fyi", "forwarding": f"{box}:{uid}"}
    draft = alice.api("POST", "/drafts", call)
    assert draft.status_code == 201
    saved = raw_in(live, draft.json()["mailbox"], draft.json()["uid"])
    assert set(attached(saved)) == {"a.png", "b.csv"}
    assert alice.api("POST", "/send", call).json()["sent"] is True
    forwarded = raw_in(live, mailbox_id(live, BOB), uids_in(live, BOB)[0])
    assert attached(forwarded) == {
        "a.png": bytes.fromhex("89504e470d0a1a0a"),
        "b.csv": b"x,y\r\n1,2",
    }


def test_the_api_keeps_a_drafts_attachments(live: LiveServer, alice: WebSession) -> None:
    """``keep`` over the JSON API: a saved draft answers the references of its attachments, a
    later save or send carries those named (with a new upload) and leaves the others out, and
    a forward with ``keep`` carries only what it names."""
    png = {"filename": "d.png", "content_type": "image/png", "data": "iVBORw0KGgo="}
    call = {"to": BOB, "subject": "files", "body": "kept", "attachments": [png]}
    box, uid = deliver(live, ALICE, _TWO_FILES)
    first = alice.api("POST", "/drafts", {**call, "forwarding": f"{box}:{uid}"})
    assert first.status_code == 201
    keep = first.json()["keep"]
    drafts = first.json()["mailbox"]
    assert set(attached(raw_in(live, drafts, first.json()["uid"]))) == {"a.png", "b.csv", "d.png"}
    assert len(keep) == 3 and all(k.startswith(f"{drafts}:{first.json()['uid']}:") for k in keep)
    csv = {"filename": "c.csv", "content_type": "text/csv", "data": "YSxi"}
    # Saved again without a forward: the draft's own files named, one of them left out.
    second = alice.api(
        "POST",
        "/drafts",
        {**call, "attachments": [csv], "draft_uid": first.json()["uid"], "keep": keep[1:]},
    )
    assert second.status_code == 201
    again = attached(raw_in(live, drafts, second.json()["uid"]))
    assert again == {
        "b.csv": b"x,y\r\n1,2",
        "d.png": bytes.fromhex("89504e470d0a1a0a"),
        "c.csv": b"a,b",
    }
    assert uids_in(live, ALICE, "Drafts") == [second.json()["uid"]]
    sent = alice.api(
        "POST",
        "/send",
        {
            **call,
            "attachments": [],
            "draft_uid": second.json()["uid"],
            "keep": second.json()["keep"],
        },
    )
    assert sent.json() == {"sent": True, "warning": ""}
    assert uids_in(live, ALICE, "Drafts") == []
    assert attached(raw_in(live, mailbox_id(live, BOB), uids_in(live, BOB)[0])) == again
    # A forward naming one of the original's files sends that one only.
    only = {**call, "attachments": [], "forwarding": f"{box}:{uid}", "keep": [f"{box}:{uid}:3"]}
    assert alice.api("POST", "/send", only).json()["sent"] is True
    forwarded = raw_in(live, mailbox_id(live, BOB), uids_in(live, BOB)[1])
    assert attached(forwarded) == {"b.csv": b"x,y\r\n1,2"}


def test_the_apis_keep_is_bounded_and_checked(live: LiveServer, alice: WebSession) -> None:
    """The document states ``keep``'s bound (``web.max_attachments``); a call over it, or
    naming another account's attachment, is refused and nothing is saved."""
    document = alice.client.get("/api/v1/openapi.json").json()
    draft = document["components"]["schemas"]["Draft"]["properties"]
    limit = live.server.config.web.max_attachments
    assert draft["keep"]["maxItems"] == limit
    over = {"to": BOB, "keep": [f"1:1:{n}" for n in range(limit + 1)]}
    refused = alice.api("POST", "/drafts", over)
    assert refused.status_code == 400 and "keep" in refused.json()["error"]
    bob_box, bob_uid = deliver(live, BOB, _TWO_FILES)
    theirs = alice.api("POST", "/drafts", {"to": BOB, "keep": [f"{bob_box}:{bob_uid}:2"]})
    assert theirs.status_code in (403, 404)
    assert uids_in(live, ALICE, "Drafts") == []


def test_kept_attachments_stay_within_the_message_size_limit(tmp_path: Path) -> None:
    """Kept attachments add up over saves past what one upload may carry: a draft or a send
    larger than ``smtp.max_message_size`` is refused, with the text kept."""
    smtp = cfg.SmtpSection(max_message_size=64 * 1024)
    with LiveServer(loopback_config(tmp_path / "data", only=["http"], smtp=smtp)) as server:
        server.add_domain("example.org")
        server.add_account(ALICE, TEST_PASSWORD)
        server.add_account(BOB, TEST_PASSWORD)
        web = WebSession(server)
        assert web.login(ALICE).status_code == 303
        form = {"to": BOB, "subject": "big", "body": "kept text"}
        first = web.post(
            "/compose",
            {**form, "action": "save"},
            files={"attachment": ("one.bin", b"1" * 30_000, "application/octet-stream")},
        )
        assert first.status_code == 200
        second = web.post(
            "/compose",
            {**form, "keep": list(kept(first.text).values()), "action": "save"},
            files={"attachment": ("two.bin", b"2" * 30_000, "application/octet-stream")},
        )
        assert second.status_code == 400
        assert "at most 65,536 may be sent" in second.text and "kept text" in second.text
        sent = web.post(
            "/compose",
            {**form, "keep": list(kept(first.text).values()), "action": "send"},
            files={"attachment": ("two.bin", b"2" * 30_000, "application/octet-stream")},
        )
        assert sent.status_code == 400 and "at most 65,536 may be sent" in sent.text
        assert uids_in(server, BOB) == []
        web.close()


_CARRIED_FIELD = re.compile(r'<input type="hidden" name="carried\.([^"]+)" value="([^"]*)">')


def test_a_message_sent_after_the_session_ended_is_kept_through_the_login(
    tmp_path: Path,
) -> None:
    """Without script: the session ends while a message is written, and Send is pressed. The
    answer is the login page holding the message's fields (not its files, not its draft_uid);
    a wrong password keeps them; the login saves the message in Drafts and opens it there."""
    web_section = cfg.WebSection(session_ttl=2.0)
    config = loopback_config(tmp_path / "data", only=["http"], web=web_section)
    with LiveServer(config) as server:
        server.add_domain("example.org")
        server.add_account(ALICE, TEST_PASSWORD)
        server.add_account(BOB, TEST_PASSWORD)
        web = WebSession(server)
        assert web.login(ALICE).status_code == 303
        token = web.csrf("/compose")
        box, uid = deliver(server, ALICE, _TWO_FILES)
        _, older = deliver(server, ALICE, simple_message("older version"), "Drafts")
        time.sleep(2.5)
        text = 'Dear Bob,\r\n\r\na long "letter" <with> & marks.\r\n'
        form = {
            "csrf": token,
            "to": BOB,
            "subject": "long one",
            "body": text,
            "forwarding": f"{box}:{uid}",
            "keep": f"{box}:{uid}:3",
            "draft_uid": str(older),
            "action": "send",
        }
        sent = web.client.post(
            "/compose", data=form, files={"attachment": ("new.txt", b"new", "text/plain")}
        )
        assert sent.status_code == 401 and "Log in again" in sent.text
        carried = {k: html.unescape(v) for k, v in _CARRIED_FIELD.findall(sent.text)}
        assert carried == {
            "to": BOB,
            "subject": "long one",
            "body": text,
            "forwarding": f"{box}:{uid}",
            "keep": f"{box}:{uid}:3",
        }
        # A draft_uid slipped into the login's fields is not taken either: whoever logs in
        # there keeps the draft of theirs it names.
        fields = {f"carried.{k}": v for k, v in {**carried, "draft_uid": str(older)}.items()}
        login = {"csrf": web.csrf("/login"), "username": ALICE, "next": "/compose", **fields}
        wrong = web.client.post("/login", data={**login, "password": "nope"})
        assert wrong.status_code == 401
        assert dict(_CARRIED_FIELD.findall(wrong.text))["subject"] == "long one"
        done = web.client.post("/login", data={**login, "password": TEST_PASSWORD})
        assert done.status_code == 303
        drafts = special_mailbox_id(server, ALICE, SpecialUse.DRAFTS)
        [kept_older, draft_uid] = uids_in(server, ALICE, "Drafts")
        assert kept_older == older
        assert done.headers["location"] == f"/compose?draft={drafts}:{draft_uid}"
        raw = raw_in(server, drafts, draft_uid)
        assert b"Subject: long one" in raw and b"<with> & marks." in raw
        assert attached(raw) == {"b.csv": b"x,y\r\n1,2"}  # the file uploaded is not there
        page = web.get(done.headers["location"]).text
        assert "a long &#34;letter&#34; &lt;with&gt; &amp; marks." in page
        assert uids_in(server, BOB) == []  # kept, not sent: Send is the user's to press again
        web.close()


def test_a_message_too_long_to_carry_is_said_so_and_the_login_still_works(
    tmp_path: Path,
) -> None:
    """The login's form is held to ``[web] max_form_bytes`` (1 MiB): a message whose carried
    fields would not fit in it (posted as multipart, with CRLF line breaks) is not put in the
    login page — that login would be refused whole (413) — the page says it was too long (the
    browser's own copy is offered back by the compose page, test_browser_session.py), and
    the login works. A message that fits rides in a multipart form: 300,000 "é" are 600 KB
    as UTF-8, 1.8 MB percent-encoded, and are kept to the letter."""
    config = loopback_config(tmp_path / "data", only=["http"])
    with LiveServer(config) as server:
        server.add_domain("example.org")
        server.add_account(ALICE, TEST_PASSWORD)
        server.add_account(BOB, TEST_PASSWORD)
        limit = server.config.web.max_form_bytes
        web = WebSession(server)
        form = {"csrf": "ended", "to": BOB, "subject": "long one", "action": "send"}
        body = ("x" * 99 + "\n") * (limit // 100)  # 1 MiB less 76 bytes, 1 MiB + 10 KB as CRLF
        too_long = web.client.post(
            "/compose", data={**form, "body": body}, files={"attachment": ("", b"", "text/plain")}
        )
        assert too_long.status_code == 303
        assert "reason=unkept" in too_long.headers["location"]
        page = web.get(too_long.headers["location"])
        assert "too long to carry" in page.text and "carried." not in page.text
        assert web.login(ALICE).status_code == 303
        web.close()

        web = WebSession(server)
        accented = "é" * 300_000
        kept = web.client.post(
            "/compose",
            data={**form, "body": accented},
            files={"attachment": ("", b"", "text/plain")},
        )
        assert kept.status_code == 401 and 'enctype="multipart/form-data"' in kept.text
        carried = {k: html.unescape(v) for k, v in _CARRIED_FIELD.findall(kept.text)}
        assert carried["body"] == accented
        login = {"csrf": web.csrf("/login"), "username": ALICE, "password": TEST_PASSWORD}
        fields = {**login, "next": "/compose", **{f"carried.{k}": v for k, v in carried.items()}}
        # Percent-encoded the same fields would be refused, the login with them.
        assert web.client.post("/login", data=fields).status_code == 413
        # As the browser posts that form: multipart (httpx sends files= requests so).
        done = web.client.post("/login", data=fields, files={"none": ("", b"", "text/plain")})
        assert done.status_code == 303 and done.headers["location"].startswith("/compose?draft=")
        drafts = special_mailbox_id(server, ALICE, SpecialUse.DRAFTS)
        [uid] = uids_in(server, ALICE, "Drafts")
        draft = email.message_from_bytes(raw_in(server, drafts, uid), policy=policy.default)
        text = draft.get_body(("plain",))
        assert isinstance(text, EmailMessage) and text.get_content().strip() == accented
        assert uids_in(server, BOB) == []
        web.close()


def test_another_accounts_attachment_cannot_be_kept(live: LiveServer, alice: WebSession) -> None:
    bob_box, bob_uid = deliver(live, BOB, _TWO_FILES)
    form = {"to": ALICE, "subject": "x", "body": "y", "keep": f"{bob_box}:{bob_uid}:2"}
    for action in ("send", "save"):
        response = alice.post("/compose", {**form, "action": action})
        assert response.status_code == 400 and "iVBORw0KGgo" not in response.text
    assert uids_in(live, ALICE) == [] and uids_in(live, ALICE, "Drafts") == []


# -- where sending returns to ----------------------------------------------------------------------


def test_sending_returns_to_the_folder_composed_from(live: LiveServer, alice: WebSession) -> None:
    assert alice.post("/folders", {"name": "Projects"}).status_code == 303
    archive = mailbox_id(live, ALICE, "Projects")
    folder = f"/mail/{archive}?sort=subject&done=read&count=2"  # an earlier notice: dropped
    compose = alice.get("/compose", headers={"referer": f"{alice.client.base_url}{folder}"})
    assert f'name="back" value="/mail/{archive}?sort=subject"' in compose.text
    assert f'href="/mail/{archive}?sort=subject">Cancel' in compose.text
    sent = alice.post(
        "/compose",
        {
            "to": BOB,
            "subject": "s",
            "body": "b",
            "back": f"/mail/{archive}?sort=subject",
            "action": "send",
        },
    )
    assert sent.status_code == 303
    assert sent.headers["location"] == f"/mail/{archive}?sort=subject&sent=1"
    assert "Message sent." in alice.get(sent.headers["location"]).text
    # Another site's page, or not a mail page, is not returned to.
    for back in ("//evil.example/mail", "/settings", "https://evil.example/mail/1"):
        other = alice.post(
            "/compose", {"to": BOB, "subject": "s", "body": "b", "back": back, "action": "send"}
        )
        assert other.headers["location"] == f"/mail/{mailbox_id(live, ALICE)}?sent=1"


def test_a_reply_returns_to_the_message(live: LiveServer, alice: WebSession) -> None:
    box, uid = deliver(live, ALICE, simple_message("question", sender=BOB))
    page = alice.get(f"/compose?reply={box}:{uid}")
    assert f'name="back" value="/mail/{box}/{uid}"' in page.text
    sent = alice.post(
        "/compose",
        {
            "to": BOB,
            "subject": "Re: question",
            "body": "answer",
            "replying_to": f"{box}:{uid}",
            "back": f"/mail/{box}/{uid}",
            "action": "send",
        },
    )
    assert sent.headers["location"] == f"/mail/{box}/{uid}?sent=1"
    view = alice.get(sent.headers["location"])
    assert view.status_code == 200 and 'id="sent-notice">Message sent.' in view.text


def test_a_reopened_draft_returns_to_drafts(live: LiveServer, alice: WebSession) -> None:
    alice.post("/compose", {"to": BOB, "subject": "d", "body": "b", "action": "save"})
    drafts = special_mailbox_id(live, ALICE, SpecialUse.DRAFTS)
    page = alice.get(f"/compose?draft={drafts}:{_draft_uid(live)}")
    assert f'name="back" value="/mail/{drafts}"' in page.text


# -- spam verdicts -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("folder", "offered"),
    [(INBOX, "spam"), ("Trash", "spam"), ("Junk", "notspam"), ("Sent", None), ("Drafts", None)],
)
def test_spam_verdicts_are_offered_where_they_mean_something(
    live: LiveServer, alice: WebSession, folder: str, offered: str | None
) -> None:
    box, uid = deliver(live, ALICE, simple_message("verdict", sender=BOB), folder)
    for page in (alice.get(f"/mail/{box}").text, alice.get(f"/mail/{box}/{uid}").text):
        buttons = set(re.findall(r'name="action" value="(spam|notspam)"', page))
        assert buttons == ({offered} if offered else set())


def test_no_spam_verdict_in_a_folder_shared_by_another(live: LiveServer, alice: WebSession) -> None:
    """Bob may read, write and delete in Alice's Inbox, but "Spam" there would move her
    message to his Junk: not offered."""
    inbox = mailbox_id(live, ALICE)
    _, uid = deliver(live, ALICE, simple_message("shared", sender=BOB))
    shared = alice.post(f"/mail/{inbox}/sharing", {"grantee": BOB, "preset": "read-write"})
    assert shared.status_code == 303
    bob = WebSession(live)
    assert bob.login(BOB).status_code == 303
    listing, view = bob.get(f"/mail/{inbox}").text, bob.get(f"/mail/{inbox}/{uid}").text
    bob.close()
    assert 'value="delete"' in listing and 'value="delete"' in view  # the rights allow it
    for page in (listing, view):
        assert not re.findall(r'name="action" value="(spam|notspam)"', page)


def test_a_reopened_reply_draft_still_answers(live: LiveServer, alice: WebSession) -> None:
    """The draft keeps what it answers (X-Pillarbox-Draft, as Roundcube's X-Draft-Info):
    reopened and sent, the original is marked \\Answered; the field never goes out."""
    box, uid = deliver(live, ALICE, simple_message("question", sender=BOB))
    reply = {"to": BOB, "subject": "Re: question", "body": "later", "replying_to": f"{box}:{uid}"}
    assert alice.post("/compose", {**reply, "action": "save"}).status_code == 200
    drafts = special_mailbox_id(live, ALICE, SpecialUse.DRAFTS)
    saved = _draft_uid(live)
    assert f"X-Pillarbox-Draft: reply={box}:{uid}".encode() in raw_in(live, drafts, saved)
    page = alice.get(f"/compose?draft={drafts}:{saved}").text
    assert ">Reply</h1>" in page and f'name="replying_to" value="{box}:{uid}"' in page
    sent = alice.post(
        "/compose", {**reply, "draft_uid": saved, "back": f"/mail/{drafts}", "action": "send"}
    )
    assert sent.status_code == 303
    record = live.call(live.store.get_message(box, uid))
    assert record is not None and "\\Answered" in record.flags
    [bob_uid] = uids_in(live, BOB)
    assert b"X-Pillarbox-Draft" not in raw_in(live, mailbox_id(live, BOB), bob_uid)


def test_a_failed_send_keeps_the_files_just_uploaded(live: LiveServer, alice: WebSession) -> None:
    """A typo in To: not sent, and the file uploaded with it is kept in Drafts and listed on
    the form, so the corrected send carries it without attaching it again."""
    form = {"to": "bob@", "subject": "report", "body": "see file"}
    failed = alice.post(
        "/compose",
        {**form, "action": "send"},
        files={"attachment": ("report.pdf", b"%PDF-1.4 report", "application/pdf")},
    )
    assert failed.status_code == 400
    assert "saved in Drafts with its attachments" in failed.text
    files = kept(failed.text)
    assert set(files) == {"report.pdf"}
    draft_uid = _draft_uid(live)
    assert f'name="draft_uid" value="{draft_uid}"' in failed.text
    sent = alice.post(
        "/compose",
        {**form, "to": BOB, "keep": files["report.pdf"], "draft_uid": draft_uid, "action": "send"},
    )
    assert sent.status_code == 303 and uids_in(live, ALICE, "Drafts") == []
    raw = raw_in(live, mailbox_id(live, BOB), uids_in(live, BOB)[0])
    assert attached(raw) == {"report.pdf": b"%PDF-1.4 report"}


def test_move_preselects_no_folder(live: LiveServer, alice: WebSession) -> None:
    """The Move choice starts at "Move to…", not at the first folder (Drafts): pressed
    unchosen, nothing moves and the page says why."""
    inbox = mailbox_id(live, ALICE)
    _, uid = deliver(live, ALICE, simple_message("stay"))
    for page in (alice.get(f"/mail/{inbox}").text, alice.get(f"/mail/{inbox}/{uid}").text):
        assert re.search(r'name="target">\s*<option value="">Move to…</option>', page)
    moved = alice.post(f"/mail/{inbox}/actions", {"uid": uid, "action": "move", "target": ""})
    assert moved.status_code == 303 and "done=nofolder" in moved.headers["location"]
    assert "choose the folder to move to first" in alice.get(moved.headers["location"]).text
    assert uids_in(live, ALICE) == [uid]
    bob_box = mailbox_id(live, BOB)
    assert alice.post(f"/mail/{bob_box}/actions", {"uid": 1, "action": "move"}).status_code == 404
