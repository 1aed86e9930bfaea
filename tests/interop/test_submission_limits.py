"""Per-account sending limits on the live submission listener (smtplib, AUTH after STARTTLS),
the admin CLI, the webmail and the admin API: what a compromised account may send.

Runs on PostgreSQL too with ``PILLARBOX_TEST_STORE`` set (see :func:`loopback_config`).
"""

from __future__ import annotations

import json
import logging
import smtplib
import ssl
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from pillarbox import config as cfg
from pillarbox.policy import reporting
from pillarbox.store.types import SendingUsage
from pillarbox.testing.command import run_pillarbox
from pillarbox.testing.live import TEST_PASSWORD as PASSWORD
from pillarbox.testing.live import LiveServer, loopback_config
from pillarbox.testing.webclient import WebSession

ALICE = "alice@example.org"
BOB = "bob@example.org"
ADMIN = "root@example.org"


def limits_of(messages: int = 0, recipients: int = 0, first_time: int = 0) -> dict[str, object]:
    return {
        "submission_limits": cfg.SubmissionLimitsSection(
            messages_per_day=messages,
            recipients_per_day=recipients,
            first_time_recipients_per_day=first_time,
        )
    }


@pytest.fixture
def limits() -> dict[str, object]:
    """The test's ``[submission_limits]`` (a test overrides it with a parametrize)."""
    return limits_of()


@pytest.fixture
def live(tmp_path: Path, limits: dict[str, object]) -> Iterator[LiveServer]:
    """Submission with passwords only under TLS, a catch-all at example.org (any address there
    is a deliverable recipient), and the test's limits."""
    config = loopback_config(
        tmp_path / "data",
        only=["submission", "http"],
        smtp=cfg.SmtpSection(auth_without_tls=False, max_connections_per_ip=1000),
        **limits,
    )
    with LiveServer(config) as server:
        server.add_domain("example.org")
        server.add_account(ALICE, PASSWORD)
        server.add_account(BOB, PASSWORD)
        server.add_account(ADMIN, PASSWORD, is_admin=True)
        server.call(server.store.add_alias("@example.org", [BOB]))
        yield server


def submission(live: LiveServer) -> smtplib.SMTP:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    client = smtplib.SMTP("127.0.0.1", live.port("submission"), local_hostname="client.test")
    client.starttls(context=context)
    client.login(ALICE, PASSWORD)
    return client


def message(to: str = BOB, sender: str = ALICE, subject: str = "hi") -> bytes:
    return f"From: {sender}\r\nTo: {to}\r\nSubject: {subject}\r\n\r\nHello.\r\n".encode()


def usage(live: LiveServer, address: str = ALICE) -> tuple[int, int, int]:
    async def go() -> SendingUsage:
        account = await live.store.get_account(address)
        assert account is not None
        return await live.store.sending_usage(account.id, datetime.now(UTC) - timedelta(days=1))

    found = live.call(go())
    return found.messages, found.recipients, found.first_time


def refusal(limit: str, value: int) -> bytes:
    return (
        f"4.7.1 this account's limit of {limit} per 24 hours ({value}) is reached; try again later"
    ).encode()


@pytest.mark.parametrize("limits", [limits_of(messages=3)])
def test_fourth_message_is_refused_at_rcpt(
    live: LiveServer, caplog: pytest.LogCaptureFixture
) -> None:
    with submission(live) as client:
        for n in range(3):
            assert client.sendmail(ALICE, [BOB], message(subject=f"n{n}")) == {}
        # Pipelined, as a client sends them: the refusal as it is on the wire.
        with caplog.at_level(logging.WARNING, logger="pillarbox"):
            client.send(f"MAIL FROM:<{ALICE}>\r\nRCPT TO:<{BOB}>\r\nRSET\r\n")
            assert client.file is not None
            replies = [client.file.readline() for _ in range(3)]
        assert replies[0].startswith(b"250 ")
        assert replies[1] == (
            b"451 4.7.1 this account's limit of messages per 24 hours (3) is reached;"
            b" try again later\r\n"
        )
        assert replies[2].startswith(b"250 ")
        # The session goes on: the limit is the account's, not the connection's.
        assert client.noop()[0] == 250
    assert usage(live) == (3, 3, 1)
    [warning] = [r for r in caplog.records if r.getMessage() == "sending limit reached"]
    assert warning.levelno == logging.WARNING
    fields = warning.__dict__["fields"]
    assert (fields["account"], fields["limit"], fields["allowed"]) == (ALICE, "messages", 3)
    assert fields["remote"] == "127.0.0.1" and fields["conn"]  # the session's line


@pytest.mark.parametrize("limits", [limits_of(messages=2, recipients=3)])
def test_only_accepted_messages_count(live: LiveServer) -> None:
    with submission(live) as client:
        # DATA refused (a From address alice does not own): nothing counted.
        with pytest.raises(smtplib.SMTPDataError) as refused:
            client.sendmail(ALICE, [BOB], message(sender="mallory@example.org"))
        assert refused.value.smtp_code == 550
        # A transaction given up with RSET: nothing counted either.
        client.mail(ALICE)
        assert client.rcpt(BOB)[0] == 250
        client.rset()
        assert usage(live) == (0, 0, 0)

        assert client.sendmail(ALICE, [BOB, "carol@example.org"], message()) == {}
        assert usage(live) == (1, 2, 2)
        # One recipient left: the next is refused, the accepted one keeps its place.
        client.mail(ALICE)
        assert client.rcpt("dave@example.org")[0] == 250
        assert client.rcpt("erin@example.org") == (451, refusal("recipients", 3))
        assert client.data(message(to="dave@example.org"))[0] == 250
        assert usage(live) == (2, 3, 3)
        client.mail(ALICE)
        assert client.rcpt(BOB) == (451, refusal("messages", 2))
        client.rset()
    assert usage(live) == (2, 3, 3)


@pytest.mark.parametrize("limits", [limits_of(first_time=2)])
def test_first_time_recipients_are_limited_known_ones_pass(live: LiveServer) -> None:
    async def known_long_ago() -> None:
        account = await live.store.get_account(ALICE)
        assert account is not None
        then = datetime.now(UTC) - timedelta(days=3)
        await live.store.record_sending(
            account.id,
            ["k1@example.org", "k2@example.org"],
            then,
            window_start=then - timedelta(days=1),
            memory_start=then - timedelta(days=365),
        )

    live.call(known_long_ago())
    with submission(live) as client:
        client.mail(ALICE)
        assert client.rcpt("n1@example.org")[0] == 250
        assert client.rcpt("n2@example.org")[0] == 250
        assert client.rcpt("n3@example.org") == (451, refusal("first-time recipients", 2))
        assert client.rcpt("k1@example.org")[0] == 250
        assert client.data(message())[0] == 250
        assert usage(live) == (1, 3, 2)
        # The next day's allowance is spent; known recipients (now n1 too) still pass.
        client.mail(ALICE)
        assert client.rcpt("n3@example.org")[0] == 451
        assert client.rcpt("k2@example.org")[0] == 250
        assert client.rcpt("n1@example.org")[0] == 250
        assert client.data(message())[0] == 250
    assert usage(live) == (2, 5, 2)


@pytest.mark.parametrize("limits", [limits_of(messages=2)])
def test_cli_override_takes_effect(live: LiveServer, tmp_path: Path) -> None:
    site = tmp_path / "site"
    site.mkdir()
    (site / "pillarbox.toml").write_text(cfg.render_toml(live.config))

    def limits_cli(*options: str) -> dict[str, object]:
        done = run_pillarbox(site, "user", "limits", ALICE, *options, "--json")
        assert done.returncode == 0, done.stderr
        shown: dict[str, object] = json.loads(done.stdout)
        return shown

    shown = limits_cli("--messages", "1")
    assert shown["own"] == {"messages": 1, "recipients": None, "first_time": None}
    assert shown["limits"] == {"messages": 1, "recipients": 0, "first_time": 0}
    with submission(live) as client:
        assert client.sendmail(ALICE, [BOB], message()) == {}
        client.mail(ALICE)
        assert client.rcpt(BOB) == (451, refusal("messages", 1))
        client.rset()
        assert limits_cli("--messages", "0")["limits"] == {
            "messages": 0,
            "recipients": 0,
            "first_time": 0,
        }
        assert client.sendmail(ALICE, [BOB], message()) == {}  # 0: unlimited
        shown = limits_cli("--messages", "default")
        assert shown["own"] == {"messages": None, "recipients": None, "first_time": None}
        assert shown["sent"] == {"messages": 2, "recipients": 2, "first_time": 1}
        client.mail(ALICE)
        assert client.rcpt(BOB) == (451, refusal("messages", 2))
        client.rset()
    text = run_pillarbox(site, "user", "limits", ALICE)
    assert text.returncode == 0, text.stderr
    assert "messages: 2 sent of 2 (default)" in text.stdout
    bad = run_pillarbox(site, "user", "limits", ALICE, "--first-time", "-1")
    assert bad.returncode == 1 and "first_time limit must be 0 (unlimited)" in bad.stderr
    assert run_pillarbox(site, "user", "limits", ALICE, "--messages", "many").returncode == 2
    unknown = run_pillarbox(site, "user", "limits", "nobody@example.org", "--messages", "1")
    assert unknown.returncode == 1


def test_zero_is_unlimited_and_still_remembered(live: LiveServer) -> None:
    with submission(live) as client:
        for n in range(5):
            to = [f"r{n}-{k}@example.org" for k in range(3)]
            assert client.sendmail(ALICE, to, message(subject=f"n{n}")) == {}
    # Counted even when unlimited: a limit set later knows who the account wrote to.
    assert usage(live) == (5, 15, 15)


@pytest.mark.parametrize("limits", [limits_of(messages=1)])
def test_webmail_is_limited_and_says_why(live: LiveServer) -> None:
    alice = WebSession(live)
    try:
        assert alice.login(ALICE).status_code == 303
        form = {"to": BOB, "subject": "first", "body": "b", "action": "send"}
        assert alice.post("/compose", form).status_code == 303
        refused = alice.post("/compose", {**form, "subject": "second"})
        assert refused.status_code == 400
        assert "this account&#39;s limit of messages per 24 hours (1) is reached" in refused.text
        api = alice.api("POST", "/send", {"to": BOB, "subject": "third", "body": "b"})
        assert api.status_code == 400
        assert "(1) is reached" in api.json()["fields"]["to"]
    finally:
        alice.close()
    assert usage(live) == (1, 1, 1)


@pytest.mark.parametrize("limits", [limits_of(messages=1, first_time=1)])
def test_reports_the_server_sends_are_not_limited(live: LiveServer) -> None:
    """DMARC and TLS reports go out through submission from an account, to first-time
    recipients at every domain reported on: the server's own mail, outside the limits."""
    services = live.server.context
    assert services is not None
    account = live.call(live.store.get_account(ALICE))
    assert account is not None

    def report(to: list[str]) -> bytes:
        return message(to=", ".join(to), subject="Report Domain: example.net")

    for n in range(3):
        destinations = [reporting.Destination(f"rua{n}-{k}@example.org") for k in range(2)]
        allowed, ok, code = live.call(
            reporting.submit_report(services, account, destinations, report)
        )
        assert ok and code == "250" and len(allowed) == 2
    assert usage(live) == (0, 0, 0)
    # The account's own mail is still limited, and counted.
    with submission(live) as client:
        assert client.sendmail(ALICE, [BOB], message()) == {}
        client.mail(ALICE)
        assert client.rcpt(BOB)[0] == 451
        client.rset()
    assert usage(live) == (1, 1, 1)


def test_admin_api_and_form_set_an_accounts_limits(live: LiveServer) -> None:
    admin = WebSession(live)
    try:
        assert admin.login(ADMIN).status_code == 303
        path = f"/admin/accounts/{ALICE}/sending-limits"
        shown = admin.api("GET", path)
        assert shown.status_code == 200, shown.text
        assert shown.json()["own"] == {"messages": None, "recipients": None, "first_time": None}
        put = admin.api("PUT", path, {"messages": 1, "recipients": None, "first_time": 0})
        assert put.status_code == 200, put.text
        assert put.json()["limits"] == {"messages": 1, "recipients": 0, "first_time": 0}
        assert admin.api("PUT", path, {"messages": -1}).status_code == 400
        with submission(live) as client:
            assert client.sendmail(ALICE, [BOB], message()) == {}
            client.mail(ALICE)
            assert client.rcpt(BOB)[0] == 451
            client.rset()
        # The accounts page shows the use and sets the limits (empty field: the default).
        page = admin.get("/admin/accounts")
        assert "Last 24 hours: 1 of 1 messages" in page.text
        form = {"address": ALICE, "messages": "", "recipients": "", "first_time": ""}
        assert admin.post("/admin/accounts/limits", form).status_code == 303
        assert admin.api("GET", path).json()["own"]["messages"] is None
        bad = admin.post("/admin/accounts/limits", {**form, "messages": "x"})
        assert bad.status_code == 400 and "whole numbers" in bad.text
    finally:
        admin.close()
