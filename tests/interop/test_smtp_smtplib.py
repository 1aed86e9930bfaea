"""SMTP with Python's smtplib against the live MX and submission listeners.

What a real sending server and a real mail app do: deliver to hosted mailboxes, get refused
as a relay, authenticate, send as themselves only, over STARTTLS and implicit TLS.
"""

from __future__ import annotations

import smtplib
import ssl
import time
from pathlib import Path

import pytest

from pillarbox import config as cfg
from pillarbox.mail.model import MessageInfo
from pillarbox.mail.parse import parse_message
from pillarbox.store.types import INBOX
from pillarbox.testing.live import TEST_PASSWORD as PASSWORD
from pillarbox.testing.live import LiveServer, loopback_config

pytestmark = pytest.mark.listeners("smtp", "submission", "submissions")


def insecure_context() -> ssl.SSLContext:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def message(sender: str, to: str, subject: str = "hello", body: str = "Hi there.") -> bytes:
    return (
        f"From: {sender}\r\nTo: {to}\r\nSubject: {subject}\r\n"
        f"Message-ID: <{subject.replace(' ', '.')}@example.net>\r\n\r\n{body}\r\n"
    ).encode()


def mailbox(live: LiveServer, address: str, name: str = INBOX) -> list[bytes]:
    async def go() -> list[bytes]:
        account = await live.store.get_account(address)
        assert account is not None
        box = await live.store.get_mailbox(account.id, name)
        records = await live.store.list_messages(box.id)
        return [await live.store.read_blob(r.blob_id) for r in records]

    return live.call(go())


def mx(live: LiveServer) -> smtplib.SMTP:
    client = smtplib.SMTP("127.0.0.1", live.port("smtp"), local_hostname="client.example.net")
    client.ehlo()
    return client


def test_mx_delivers_to_a_hosted_mailbox(live: LiveServer) -> None:
    raw = message("someone@example.net", "alice@example.org")
    with mx(live) as client:
        assert client.has_extn("pipelining") and client.has_extn("chunking")
        assert client.has_extn("starttls") and not client.has_extn("auth")
        client.sendmail("someone@example.net", ["alice@example.org"], raw)
    [stored] = mailbox(live, "alice@example.org")
    assert stored.endswith(raw)
    header = stored[: len(stored) - len(raw)]
    assert header.startswith(b"Return-Path: <someone@example.net>\r\n")
    assert b"Delivered-To: alice@example.org\r\n" in header
    assert b"Received: from client.example.net ([127.0.0.1])" in header
    assert b"for <alice@example.org>" in header


@pytest.mark.parametrize("policy", [True, False])
def test_stored_metadata_is_the_parse_of_the_stored_copy(tmp_path: Path, policy: bool) -> None:
    """Intake parses a message once and derives each stored copy's metadata (the trace and
    policy fields on top move every offset): it must equal a parse of the bytes as stored,
    with the policy's fields and without, for each of several recipients."""
    raw = (
        b"From: Someone <someone@example.net>\r\nTo: alice@example.org\r\n"
        b"Subject: =?utf-8?q?r=C3=A9sum=C3=A9?=\r\nMessage-ID: <parts@example.net>\r\n"
        b"MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b1\r\n\r\n"
        b"--b1\r\nContent-Type: text/plain\r\n\r\nthe text\r\n"
        b"--b1\r\nContent-Type: message/rfc822\r\n\r\nSubject: inner\r\n\r\ninner body\r\n"
        b"--b1\r\nContent-Type: application/pdf; name=a.pdf\r\n"
        b"Content-Transfer-Encoding: base64\r\n\r\nJVBERi0=\r\n--b1--\r\n"
    )
    config = loopback_config(
        tmp_path / "data", only=("smtp",), policy=cfg.PolicySection(enabled=policy)
    )
    with LiveServer(config) as live:
        live.add_domain("example.org")
        recipients = ["alice@example.org", "bob@example.org"]
        for address in recipients:
            live.add_account(address, PASSWORD)
        with mx(live) as client:
            client.sendmail("someone@example.net", recipients, raw)

        async def stored(address: str) -> tuple[bytes, MessageInfo]:
            account = await live.store.get_account(address)
            assert account is not None
            box = await live.store.get_mailbox(account.id, INBOX)
            [record] = await live.store.list_messages(box.id)
            infos = await live.store.message_infos(box.id, [record.uid])
            return await live.store.read_blob(record.blob_id), infos[record.uid]

        for address in recipients:
            copy, info = live.call(stored(address))
            assert copy.endswith(raw)
            assert (b"\r\nX-Pillarbox-Spam: " in b"\r\n" + copy) == policy
            assert info == parse_message(copy)


def test_idle_session_is_told_of_shutdown(tmp_path: Path) -> None:
    """RFC 5321 §3.8: a session waiting for a command when the server stops gets 421 — also
    after a message and more commands, each of which waited for the shutdown too."""
    with LiveServer(loopback_config(tmp_path / "data", only=("smtp",))) as live:
        live.add_domain("example.org")
        live.add_account("alice@example.org", PASSWORD)
        client = mx(live)
        client.sendmail("someone@example.net", ["alice@example.org"], message("a@b", "c@d"))
        assert client.noop()[0] == 250
    code, _ = client.getreply()
    client.close()
    assert code == 421


def test_silent_client_is_timed_out_each_wait_on_its_own(tmp_path: Path) -> None:
    """RFC 5321 §4.5.3.2.7: 421 once a wait for a command outlasts the timeout; each wait
    has its own (pauses shorter than it add up to more than it without harm)."""
    config = loopback_config(
        tmp_path / "data", only=("smtp",), smtp=cfg.SmtpSection(command_timeout=0.4)
    )
    with LiveServer(config) as live:
        client = mx(live)
        client.sock.settimeout(10)
        for _ in range(3):
            time.sleep(0.2)
            assert client.noop()[0] == 250
        assert client.getreply()[0] == 421
        client.close()


def test_mx_over_starttls_records_tls_in_received(live: LiveServer) -> None:
    raw = message("someone@example.net", "bob@example.org")
    with mx(live) as client:
        client.starttls(context=insecure_context())
        client.ehlo()
        client.sendmail("someone@example.net", ["bob@example.org"], raw)
    [stored] = mailbox(live, "bob@example.org")
    assert b"with ESMTPS" in stored and b"(using TLSv1." in stored


@pytest.mark.parametrize(
    ("rcpt", "code"),
    [
        ("nobody@example.org", 550),  # unknown local part: 550 5.1.1 at RCPT, no backscatter
        ("victim@elsewhere.example", 554),  # another domain: relay denied
        ("victim%elsewhere.example@example.org", 550),  # %-hack
        ("elsewhere.example!victim@example.org", 550),  # bang path
        ('"victim@elsewhere.example"@example.org', 550),  # quoted local part
        ("@example.org:victim@elsewhere.example", 554),  # source route: the mailbox counts
        ("victim@[127.0.0.1]", 554),  # address literal
        ("victim@elsewhere.example.", 554),  # trailing dot
    ],
)
def test_mx_is_never_an_open_relay(live: LiveServer, rcpt: str, code: int) -> None:
    with mx(live) as client:
        client.mail("someone@example.net")
        reply_code, _ = client.docmd(f"RCPT TO:<{rcpt}>")
        assert reply_code == code
    assert mailbox(live, "alice@example.org") == []


def test_plus_address_alias_and_catch_all(live: LiveServer) -> None:
    from pillarbox import provisioning

    live.call(provisioning.add_alias(live.store, "sales@example.org", ["alice@example.org"]))
    live.call(provisioning.add_alias(live.store, "@example.org", ["bob@example.org"]))
    with mx(live) as client:
        for rcpt in ("alice+lists@example.org", "sales@example.org", "anything@example.org"):
            client.sendmail("someone@example.net", [rcpt], message("someone@example.net", rcpt))
    assert len(mailbox(live, "alice@example.org")) == 2
    [catch_all] = mailbox(live, "bob@example.org")
    assert b"To: anything@example.org" in catch_all


def test_full_mailbox_fails_only_its_recipient(live: LiveServer) -> None:
    live.add_account("carol@example.org", PASSWORD, quota_bytes=100)
    raw = message("someone@example.net", "alice@example.org, carol@example.org", body="x" * 500)
    with mx(live) as client:
        client.mail("someone@example.net", [f"SIZE={len(raw)}"])
        assert client.rcpt("alice@example.org")[0] == 250
        code, text = client.rcpt("carol@example.org")
        assert code == 452 and b"4.2.2" in text
        assert client.data(raw)[0] == 250
    assert len(mailbox(live, "alice@example.org")) == 1
    assert mailbox(live, "carol@example.org") == []


def submission(live: LiveServer) -> smtplib.SMTP:
    client = smtplib.SMTP("127.0.0.1", live.port("submission"))
    client.starttls(context=insecure_context())
    client.ehlo()
    return client


def test_submission_requires_auth(live: LiveServer) -> None:
    with submission(live) as client:
        code, _ = client.docmd("MAIL FROM:<alice@example.org>")
        assert code == 530


def test_submission_forgets_a_plain_text_login_at_starttls(live: LiveServer) -> None:
    """RFC 3207 §4.2: what the client said before TLS is forgotten, its login too (the live
    configuration allows AUTH without TLS); MAIL wants AUTH again under TLS."""
    with smtplib.SMTP("127.0.0.1", live.port("submission")) as client:
        client.login("alice@example.org", PASSWORD)
        client.starttls(context=insecure_context())
        client.ehlo()
        code, text = client.docmd("MAIL FROM:<alice@example.org>")
        assert (code, text) == (530, b"5.7.0 authentication required")
        client.login("alice@example.org", PASSWORD)
        client.sendmail(
            "alice@example.org",
            ["bob@example.org"],
            message("alice@example.org", "bob@example.org"),
        )
    assert len(mailbox(live, "bob@example.org")) == 1


def test_submission_delivers_locally_and_adds_missing_headers(live: LiveServer) -> None:
    raw = b"From: alice@example.org\r\nTo: bob@example.org\r\nSubject: hi\r\n\r\nHello Bob.\r\n"
    with submission(live) as client:
        client.login("alice@example.org", PASSWORD)
        client.sendmail("alice@example.org", ["bob@example.org"], raw)
    [stored] = mailbox(live, "bob@example.org")
    assert b"\r\nMessage-ID: <" in stored and b"\r\nDate: " in stored
    assert b"with ESMTPSA" in stored
    assert stored.endswith(b"\r\n\r\nHello Bob.\r\n")


def test_submission_refuses_foreign_sender_and_from_header(live: LiveServer) -> None:
    with submission(live) as client:
        client.login("alice@example.org", PASSWORD)
        code, text = client.docmd("MAIL FROM:<bob@example.org>")
        assert code == 550 and b"5.7.1" in text
        client.rset()
        with pytest.raises(smtplib.SMTPDataError) as info:
            client.sendmail(
                "alice@example.org",
                ["bob@example.org"],
                message("bob@example.org", "bob@example.org"),
            )
        assert info.value.smtp_code == 550
    assert mailbox(live, "bob@example.org") == []


@pytest.mark.parametrize(
    "authors",
    [
        b"From: alice@example.org\r\nFrom: bob@example.org\r\n",
        b"From: bob@example.org\r\nFrom: alice@example.org\r\n",
        b"From: alice@example.org\r\nSender: bob@example.org\r\n",
        b"From: alice@example.org\r\nSender: alice@example.org\r\nSender: bob@example.org\r\n",
    ],
)
def test_submission_judges_every_author_field(live: LiveServer, authors: bytes) -> None:
    """Only the first From was checked: a second one (readers differ on which they show;
    RFC 5322 §3.6 allows one) or a Sender ("bob on behalf of alice") passed as someone else."""
    raw = authors + b"To: bob@example.org\r\nSubject: who\r\n\r\nhi\r\n"
    with submission(live) as client:
        client.login("alice@example.org", PASSWORD)
        with pytest.raises(smtplib.SMTPDataError) as info:
            client.sendmail("alice@example.org", ["bob@example.org"], raw)
        assert info.value.smtp_code == 550 and b"5.7.1" in info.value.smtp_error
        own = b"From: alice@example.org\r\nSender: alice@example.org\r\n" + raw[len(authors) :]
        assert client.sendmail("alice@example.org", ["bob@example.org"], own) == {}
    assert len(mailbox(live, "bob@example.org")) == 1


@pytest.mark.parametrize(
    "resent",
    [
        b"Resent-From: bob@example.org\r\n",
        b"Resent-From: alice@example.org\r\nResent-Sender: bob@example.org\r\n",
        b"Resent-To: bob@example.org\r\nResent-Sender: bob@example.org\r\n",
    ],
)
def test_submission_judges_the_resender(live: LiveServer, resent: bytes) -> None:
    """RFC 5322 §3.6.6: on a resent message the newest Resent-From / Resent-Sender name the
    resender, whom readers show as the one who sent it on; it passed unchecked. An older
    block below the login's own (someone else resent it before) is not the login's."""
    rest = b"From: alice@example.org\r\nTo: bob@example.org\r\nSubject: fwd\r\n\r\nhi\r\n"
    with submission(live) as client:
        client.login("alice@example.org", PASSWORD)
        with pytest.raises(smtplib.SMTPDataError) as info:
            client.sendmail("alice@example.org", ["bob@example.org"], resent + rest)
        assert info.value.smtp_code == 550 and b"Resent-From" in info.value.smtp_error
        own = b"Resent-From: alice@example.org\r\nResent-To: bob@example.org\r\n"
        older = b"Resent-From: carol@example.net\r\nResent-To: alice@example.org\r\n"
        assert client.sendmail("alice@example.org", ["bob@example.org"], own + older + rest) == {}
    assert len(mailbox(live, "bob@example.org")) == 1


def test_submission_wrong_password(live: LiveServer) -> None:
    with submission(live) as client, pytest.raises(smtplib.SMTPAuthenticationError) as info:
        client.login("alice@example.org", "not the password")
    assert info.value.smtp_code == 535


def test_submission_remote_recipient_is_queued(live: LiveServer) -> None:
    with submission(live) as client:
        client.login("alice@example.org", PASSWORD)
        client.sendmail(
            "alice@example.org",
            ["friend@elsewhere.example"],
            message("alice@example.org", "friend@elsewhere.example"),
        )
    queue = live.call(live.store.list_queue())
    assert len(queue) == 1
    assert queue[0].sender == "alice@example.org"
    assert [r.address for r in queue[0].recipients] == ["friend@elsewhere.example"]


def test_implicit_tls_submission_with_login_mechanism(live: LiveServer) -> None:
    with smtplib.SMTP_SSL(
        "127.0.0.1", live.port("submissions"), context=insecure_context()
    ) as client:
        client.ehlo()
        assert "LOGIN" in client.esmtp_features["auth"]
        client.user, client.password = "alice@example.org", PASSWORD
        code, _ = client.auth("LOGIN", client.auth_login, initial_response_ok=False)
        assert code == 235
        client.sendmail(
            "alice@example.org",
            ["bob@example.org"],
            message("alice@example.org", "bob@example.org"),
        )
    assert len(mailbox(live, "bob@example.org")) == 1


def test_auth_not_offered_before_tls_when_configured(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import dataclasses

    from pillarbox import config as cfg
    from pillarbox.testing.live import loopback_config

    config = loopback_config(tmp_path, only=["submission"])
    config = dataclasses.replace(config, smtp=cfg.SmtpSection(auth_without_tls=False))
    with LiveServer(config) as live, smtplib.SMTP("127.0.0.1", live.port("submission")) as client:
        client.ehlo()
        assert not client.has_extn("auth")
        client.starttls(context=insecure_context())
        client.ehlo()
        assert client.has_extn("auth")
