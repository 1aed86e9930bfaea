"""Routes from MX answers, envelopes from the server's offer, and host-by-host bookkeeping."""

from __future__ import annotations

import pytest

from pillarbox.dns.resolver import MxHost, MxResult, MxStatus
from pillarbox.errors import ConfigError
from pillarbox.queue.remote import (
    BAD_ADDRESS,
    MX_LOOP,
    NO_ADDRESS,
    NULL_MX,
    REQUIRETLS_UNSUPPORTED,
    SMTPUTF8_UNSUPPORTED,
    TLS_FAILED,
    TLS_UNAVAILABLE,
    TOO_BIG,
    Envelope,
    Job,
    Part,
    RemoteRecipient,
    content_flags,
    envelope,
    is_session_failure,
    is_tls_failure,
    mx_route,
    parse_hostport,
    skipped_greeting,
    split_jobs,
)
from pillarbox.smtp import replies as R
from pillarbox.smtp.client import CLIENT_TIMEOUTS
from pillarbox.smtp.extensions import Capabilities
from pillarbox.smtp.grammar import Body, Notify, OriginalRecipient, Ret
from pillarbox.smtp.replies import Reply

FULL = Capabilities(
    frozenset({"PIPELINING", "SIZE", "8BITMIME", "SMTPUTF8", "DSN", "CHUNKING"}), 1000
)
BARE = Capabilities()
BOB = RemoteRecipient(1, "bob@b.test", frozenset({"SUCCESS", "FAILURE"}), "rfc822;Bob@b.test")
CAROL = RemoteRecipient(2, "carol@b.test")


def job(*recipients: RemoteRecipient, **changes: object) -> Job:
    values: dict[str, object] = {
        "message_id": 7,
        "sender": "alice@a.test",
        "recipients": recipients or (BOB, CAROL),
        "size": 500,
        "ret": "HDRS",
        "envid": "e1",
    }
    values.update(changes)
    return Job(**values)  # type: ignore[arg-type]


def found(*hosts: tuple[int, str]) -> MxResult:
    return MxResult("b.test", MxStatus.FOUND, tuple(MxHost(p, h) for p, h in hosts))


@pytest.mark.parametrize(
    ("result", "hosts", "failure"),
    [
        (found((10, "mx1.b.test"), (20, "mx2.b.test")), ("mx1.b.test", "mx2.b.test"), None),
        (MxResult("b.test", MxStatus.NO_MX), ("b.test",), None),  # implicit MX
        (MxResult("b.test", MxStatus.NULL_MX), (), 556),
        (MxResult("b.test", MxStatus.NO_DOMAIN, reason="nx"), (), 550),
        (MxResult("b.test", MxStatus.TEMPORARY, reason="timeout"), (), 451),
        # RFC 5321 §5.1: only hosts preferred over ourselves
        (found((5, "mx0.b.test"), (10, "mx.a.test"), (20, "mx2.b.test")), ("mx0.b.test",), None),
        (found((10, "mx.a.test"), (20, "mx2.b.test")), (), 554),
    ],
)
def test_mx_route(result: MxResult, hosts: tuple[str, ...], failure: int | None) -> None:
    route = mx_route(result, port=25, myself="MX.A.test.")
    assert route.hosts == hosts
    assert (route.failure.code if route.failure else None) == failure


def test_route_failures_are_the_named_replies() -> None:
    assert mx_route(MxResult("b.test", MxStatus.NULL_MX), port=25, myself="x").failure == NULL_MX
    loop = mx_route(MxResult("mx.a.test", MxStatus.NO_MX), port=25, myself="mx.a.test")
    assert loop.failure is not None and loop.failure.enhanced == MX_LOOP.enhanced


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("relay.example", ("relay.example", 25)),
        ("Relay.Example:587", ("relay.example", 587)),
        ("[2001:db8::1]:2525", ("2001:db8::1", 2525)),
        ("192.0.2.1", ("192.0.2.1", 25)),
    ],
)
def test_parse_hostport(spec: str, expected: tuple[str, int]) -> None:
    assert parse_hostport(spec, 25) == expected


@pytest.mark.parametrize(
    "spec",
    ["host:0", "host:x", ":25", "[::1", "[::1]x", "host:²", "host:99999", "host:" + "9" * 5000],
)
def test_parse_hostport_errors(spec: str) -> None:
    with pytest.raises(ConfigError):
        parse_hostport(spec, 25)


def test_envelope_uses_what_is_offered() -> None:
    env = envelope(job(eight_bit=True), FULL)
    assert isinstance(env, Envelope) and env.dsn
    params = env.mail.params
    assert (params.size, params.body, params.ret, params.envid) == (
        500,
        Body.EIGHT_BIT_MIME,
        Ret.HDRS,
        "e1",
    )
    assert not params.smtputf8
    assert env.rcpts[0].params.notify == frozenset({Notify.SUCCESS, Notify.FAILURE})
    assert env.rcpts[0].params.orcpt == OriginalRecipient("rfc822", "Bob@b.test")
    assert env.rcpts[1].params.notify is None


def test_envelope_without_extensions_sends_no_parameters() -> None:
    env = envelope(job(eight_bit=True), BARE)
    assert isinstance(env, Envelope) and not env.dsn
    assert env.mail.params == type(env.mail.params)()
    assert all(r.params.notify is None and r.params.orcpt is None for r in env.rcpts)


def test_null_sender() -> None:
    env = envelope(job(sender=""), FULL)
    assert isinstance(env, Envelope) and env.mail.path.mailbox is None


@pytest.mark.parametrize(
    ("changes", "offered", "expected"),
    [
        ({"utf8": True}, BARE, SMTPUTF8_UNSUPPORTED),
        ({"sender": "jöran@a.test"}, BARE, SMTPUTF8_UNSUPPORTED),
        ({"size": 1001}, FULL, TOO_BIG),
        ({"recipients": (RemoteRecipient(3, "not an address"),)}, FULL, BAD_ADDRESS),
    ],
)
def test_envelope_refusals(
    changes: dict[str, object], offered: Capabilities, expected: Reply
) -> None:
    assert envelope(job(**changes), offered) == expected


@pytest.mark.parametrize("sender", ["alice@a.test", ""])
def test_requiretls_goes_on_mail_when_offered(sender: str) -> None:
    """RFC 8689 §4.2.1: the parameter is issued on MAIL to a server offering it."""
    offered = Capabilities(FULL.keywords | {"REQUIRETLS"}, FULL.size)
    env = envelope(job(sender=sender, requiretls=True), offered)
    assert isinstance(env, Envelope) and env.mail.params.requiretls
    plain = envelope(job(sender=sender), offered)
    assert isinstance(plain, Envelope) and not plain.mail.params.requiretls


def test_requiretls_is_never_dropped_for_a_message_but_is_for_a_report() -> None:
    """§4.2.1: no server without REQUIRETLS gets a tagged message (5.7.30); §5: a tagged
    report (null reverse-path) still goes, without the parameter."""
    assert envelope(job(requiretls=True), FULL) == REQUIRETLS_UNSUPPORTED
    report = envelope(job(sender="", requiretls=True), FULL)
    assert isinstance(report, Envelope) and not report.mail.params.requiretls


def test_utf8_is_requested_when_offered() -> None:
    env = envelope(job(RemoteRecipient(4, "jörg@b.test")), FULL)
    assert isinstance(env, Envelope) and env.mail.params.smtputf8


def test_content_flags() -> None:
    assert content_flags(b"Subject: x\r\n\r\nplain\r\n") == (False, False)
    assert content_flags(b"Subject: x\r\n\r\nh\xc3\xa9\r\n") == (False, True)
    assert content_flags("Subject: hé\r\n\r\nx\r\n".encode()) == (True, True)


def test_split_jobs() -> None:
    recipients = tuple(RemoteRecipient(i, f"r{i}@b.test") for i in range(250))
    parts = list(split_jobs(job(*recipients), 100))
    assert [len(p.recipients) for p in parts] == [100, 100, 50]
    assert all(p.envid == "e1" for p in parts)


def test_session_failures_leave_recipients_open_for_the_next_host() -> None:
    part = Part(job())
    part.record(1, R.CONNECTION_LOST, "mx1.b.test", dsn=True)
    part.record(2, Reply(421, "4.3.2", "closing"), "mx1.b.test", dsn=True)
    assert not part.complete and len(part.open) == 2
    assert part.open_job().recipients == (BOB, CAROL)
    part.record(1, Reply(250, "2.0.0", "ok"), "mx2.b.test", dsn=False)
    part.record(2, Reply(452, "4.2.2", "full"), "mx2.b.test", dsn=False)
    assert part.complete
    assert part.answers[1].host == "mx2.b.test" and part.answers[1].relayed
    assert part.answers[2].reply.code == 452  # a recipient's 4xx is its answer: no next host


def test_give_up_uses_the_last_failure() -> None:
    part = Part(job())
    part.record(1, Reply(250, "2.0.0", "ok"), "mx1.b.test", dsn=True)
    part.fail_session(Reply(451, "4.4.1", "refused"), "mx2.b.test")
    part.give_up()
    assert part.answers[2].reply.text == "refused" and part.answers[2].host == "mx2.b.test"
    assert not part.answers[1].relayed
    nothing = Part(job())
    nothing.give_up()
    assert nothing.answers[1].reply == NO_ADDRESS


def test_is_session_failure() -> None:
    assert is_session_failure(CLIENT_TIMEOUTS["RCPT"]) and is_session_failure(Reply(421, None, "x"))
    assert not is_session_failure(Reply(451, "4.3.0", "x"))


def test_is_tls_failure() -> None:
    """What MTA-STS "testing" retries without verification (RFC 8461 §5)."""
    assert is_tls_failure(TLS_FAILED.with_text("certificate verify failed"))
    assert is_tls_failure(TLS_UNAVAILABLE) and is_tls_failure(Reply(454, "4.7.0", "no TLS"))
    assert not is_tls_failure(Reply(421, "4.7.0", "too busy")) and not is_tls_failure(NO_ADDRESS)


@pytest.mark.parametrize(
    ("greeting", "skipped"),
    [
        (
            Reply(554, "5.7.1", "no service for you"),
            Reply(451, "4.7.1", "refused service at the greeting: 554 5.7.1 no service for you"),
        ),
        (
            Reply(554, None, "mx.example busy\ntry later"),
            Reply(451, "4.0.0", "refused service at the greeting: 554 mx.example busy try later"),
        ),
        (
            Reply(521, None, "no mail here"),
            Reply(451, "4.0.0", "refused service at the greeting: 521 no mail here"),
        ),
    ],
)
def test_a_5xx_greeting_is_a_transient_failure_of_the_host(greeting: Reply, skipped: Reply) -> None:
    """RFC 5321 §3.1: skipped as Postfix's smtp_skip_5xx_greeting does, the server's words
    kept, transient (retried until ``queue.lifetime``)."""
    assert skipped_greeting(greeting) == skipped
    assert skipped.is_transient
