"""The POP3 server core's state table, limits, timers and application contract."""

from __future__ import annotations

import ast
import base64
from pathlib import Path

import pytest

import pillarbox.pop3
from pillarbox.errors import ConfigError
from pillarbox.pop3 import (
    NEED_DATA,
    PAUSED,
    Disconnect,
    DisconnectReason,
    MaildropMessage,
    Pop3Limits,
    Pop3Server,
    Pop3Settings,
    Pop3UsageError,
    Retrieve,
    SaslResponse,
    SaslStart,
    State,
    Update,
    UserPass,
    responses,
)
from pillarbox.pop3.commands import Verb
from pillarbox.pop3.server import APPLICATION_TURN, TRANSITIONS, Step

SETTINGS = Pop3Settings(hostname="pop.example.com")
LISTING = [MaildropMessage(10, 5), MaildropMessage(11, 6)]


def _server(settings: Pop3Settings = SETTINGS, **kwargs: object) -> Pop3Server:
    kwargs.setdefault("tls_active", True)
    server = Pop3Server(settings, now=0.0, **kwargs)  # type: ignore[arg-type]
    server.data_to_send(0.0)
    return server


def _feed(server: Pop3Server, data: bytes, now: float = 0.0) -> object:
    server.receive_data(data, now)
    return server.next_event()


def _logged_in(settings: Pop3Settings = SETTINGS) -> Pop3Server:
    server = _server(settings)
    assert _feed(server, b"USER mrose\r\nPASS secret\r\n") == UserPass("mrose", "secret")
    server.accept_login(7, LISTING)
    server.data_to_send(0.0)
    assert server.state is State.TRANSACTION
    return server


def _reply(server: Pop3Server, line: bytes) -> bytes:
    event = _feed(server, line + b"\r\n")
    assert event is NEED_DATA or isinstance(event, Disconnect)
    return server.data_to_send(0.0)


# -- the state table ---------------------------------------------------------------------------
VALID_ARGS = {
    Verb.USER: b" mrose",
    Verb.PASS: b" secret",
    Verb.APOP: b" mrose c4c9334bac560ecc979e58001b3e22fb",
    Verb.AUTH: b" SCRAM-SHA-256",
    Verb.LIST: b" 1",
    Verb.RETR: b" 1",
    Verb.DELE: b" 1",
    Verb.TOP: b" 1 1",
    Verb.UIDL: b" 1",
}


@pytest.mark.parametrize("verb", list(Verb))
@pytest.mark.parametrize("state", [State.AUTHORIZATION, State.TRANSACTION])
def test_every_command_in_every_client_state(verb: Verb, state: State) -> None:
    """RFC 1939 §3: a command in the wrong state gets -ERR; one the table allows does not get
    the wrong-state reply."""
    server = _server() if state is State.AUTHORIZATION else _logged_in()
    server.receive_data(verb.value.encode() + VALID_ARGS.get(verb, b"") + b"\r\n", 0.0)
    server.next_event()
    wire = server.data_to_send(0.0)
    wrong_state = (responses.WRONG_STATE.encode(), responses.PASS_WITHOUT_USER.encode())
    if (state, verb) in TRANSITIONS:
        assert wire not in wrong_state
    else:
        assert wire in wrong_state
        assert server.state is state


def test_the_table_reaches_every_state_and_answers_only_leave_application_turns() -> None:
    targets = set(TRANSITIONS.values())
    assert targets | {State.AUTHORIZATION} == set(State)
    for (state, step), _ in TRANSITIONS.items():
        if isinstance(step, Step) and step not in (Step.USER_REJECTED, Step.SASL_RESPONSE):
            assert state in APPLICATION_TURN | {State.SASL_CLIENT}


@pytest.mark.parametrize(
    "answer",
    [
        lambda s: s.accept_login(1, []),
        lambda s: s.reject_login(responses.AUTH_FAILED),
        lambda s: s.sasl_challenge(b""),
        lambda s: s.tls_started(),
        lambda s: s.message_chunk(b"x"),
        lambda s: s.end_message(),
        lambda s: s.fail_message(responses.MESSAGE_GONE),
        lambda s: s.complete_update(),
        lambda s: s.fail_update(),
    ],
)
def test_answers_out_of_turn_are_usage_errors(answer: object) -> None:
    for server in (_server(), _logged_in()):
        with pytest.raises(Pop3UsageError):
            answer(server)  # type: ignore[operator]


def test_positive_replies_cannot_reject() -> None:
    server = _server()
    _feed(server, b"USER a\r\nPASS b\r\n")
    with pytest.raises(Pop3UsageError):
        server.reject_login(responses.NOOP)
    server = _logged_in()
    assert isinstance(_feed(server, b"RETR 1\r\n"), Retrieve)
    with pytest.raises(Pop3UsageError):
        server.fail_message(responses.NOOP)


def test_invalid_listing_leaves_the_login_pending() -> None:
    server = _server()
    _feed(server, b"USER a\r\nPASS b\r\n")
    server.data_to_send(0.0)
    with pytest.raises(Pop3UsageError):
        server.accept_login(1, [MaildropMessage(1, 1), MaildropMessage(1, 1)])
    assert server.state is State.CHECKING_PASSWORD
    server.reject_login(responses.SYS_TEMP)
    assert server.data_to_send(0.0) == responses.SYS_TEMP.encode()


# -- greeting, capabilities, TLS policy --------------------------------------------------------
def test_greeting() -> None:
    server = Pop3Server(SETTINGS, now=0.0)
    assert server.data_to_send(0.0) == b"+OK pop.example.com POP3 server ready\r\n"
    apop = Pop3Settings(hostname="h", apop=True)
    server = Pop3Server(apop, now=0.0, apop_timestamp="<1.2@h>")
    assert server.data_to_send(0.0) == b"+OK h POP3 server ready <1.2@h>\r\n"


@pytest.mark.parametrize(
    ("apop", "timestamp"), [(True, None), (False, "<1.2@h>"), (True, "1.2@h"), (True, "<a b@h>")]
)
def test_apop_timestamp_must_match_the_setting(apop: bool, timestamp: str | None) -> None:
    with pytest.raises(Pop3UsageError):
        Pop3Server(Pop3Settings(hostname="h", apop=apop), now=0.0, apop_timestamp=timestamp)


def test_capabilities_follow_tls_state() -> None:
    plain = _server(tls_active=False, starttls_available=True)
    assert "STLS" in plain.capabilities()
    assert "USER" not in plain.capabilities()
    assert "SASL SCRAM-SHA-256" in plain.capabilities()
    loopback = _server(tls_active=False, insecure_auth_allowed=True)
    assert "USER" in loopback.capabilities()
    assert "SASL PLAIN SCRAM-SHA-256" in loopback.capabilities()
    assert "STLS" not in loopback.capabilities()
    only_plain = _server(Pop3Settings(hostname="h", sasl_mechanisms=("PLAIN",)), tls_active=False)
    assert not any(line.startswith("SASL") for line in only_plain.capabilities())
    assert _reply(only_plain, b"AUTH") == b"+OK SASL mechanisms follow\r\n.\r\n"


def test_tls_started_forgets_user_and_input() -> None:
    server = _server(tls_active=False, starttls_available=True, insecure_auth_allowed=True)
    assert _reply(server, b"USER mrose") == responses.USER_ACCEPTED.encode()
    event = _feed(server, b"STLS\r\nPASS injected\r\n")
    assert event == pillarbox.pop3.StartTls()
    assert server.next_event() is PAUSED
    server.receive_data(b"QUIT\r\n", 0.0)  # handshake bytes the adapter should not feed
    server.tls_started()
    assert server.tls_active
    assert server.next_event() is NEED_DATA
    assert server.data_to_send(0.0) == responses.STLS_BEGIN.encode()
    assert _reply(server, b"PASS secret") == responses.PASS_WITHOUT_USER.encode()


def test_implicit_tls_offers_no_stls() -> None:
    server = _server(tls_active=True, starttls_available=True)
    assert "STLS" not in server.capabilities()
    assert _reply(server, b"STLS") == responses.TLS_ALREADY_ACTIVE.encode()


# -- SASL -------------------------------------------------------------------------------------
def test_sasl_exchange_carries_decoded_data() -> None:
    server = _server()
    assert _feed(server, b"AUTH scram-sha-256 " + base64.b64encode(b"n,,n=u,r=x") + b"\r\n") == (
        SaslStart("SCRAM-SHA-256", b"n,,n=u,r=x")
    )
    server.sasl_challenge(b"r=xy,s=c2FsdA==,i=4096")
    assert server.data_to_send(0.0) == b"+ " + base64.b64encode(b"r=xy,s=c2FsdA==,i=4096") + (
        b"\r\n"
    )
    assert _feed(server, base64.b64encode(b"c=biws,r=xy,p=proof") + b"\r\n") == SaslResponse(
        b"c=biws,r=xy,p=proof"
    )
    server.sasl_challenge(b"v=signature")
    server.data_to_send(0.0)
    assert _feed(server, b"\r\n") == SaslResponse(b"")
    server.accept_login(1, [])
    assert server.data_to_send(0.0) == b"+OK maildrop has 0 messages (0 octets)\r\n"


def test_empty_initial_response() -> None:
    assert _feed(_server(), b"AUTH PLAIN =\r\n") == SaslStart("PLAIN", b"")


def test_sasl_lines_may_be_longer_than_commands() -> None:
    server = _server()
    assert _feed(server, b"AUTH SCRAM-SHA-256\r\n") == SaslStart("SCRAM-SHA-256", None)
    server.sasl_challenge(b"")
    long_response = base64.b64encode(b"x" * 3000)
    assert _feed(server, long_response + b"\r\n") == SaslResponse(b"x" * 3000)
    server.reject_login(responses.SYS_TEMP)
    server.data_to_send(0.0)
    assert _reply(server, b"NOOP " + b"x" * 600) == responses.LINE_TOO_LONG.encode()


def test_overlong_sasl_line_aborts_the_exchange() -> None:
    server = _server()
    _feed(server, b"AUTH SCRAM-SHA-256\r\n")
    server.sasl_challenge(b"")
    server.data_to_send(0.0)
    assert _feed(server, b"A" * 9000 + b"\r\nCAPA\r\n") is NEED_DATA
    assert server.data_to_send(0.0).startswith(responses.LINE_TOO_LONG.encode() + b"+OK")
    assert server.state is State.AUTHORIZATION


# -- failed logins ----------------------------------------------------------------------------
def test_auth_failure_reply_is_held_back() -> None:
    server = _server()
    _feed(server, b"USER a\r\nPASS b\r\nNOOP\r\n", now=100.0)
    server.data_to_send(100.0)
    server.reject_login(responses.AUTH_FAILED)
    assert server.next_event() is PAUSED
    assert server.deadline() == 102.0
    assert server.data_to_send(101.0) == b""
    server.handle_timeout(102.0)
    assert server.data_to_send(102.0) == responses.AUTH_FAILED.encode()
    assert server.next_event() is NEED_DATA
    assert server.data_to_send(102.0) == responses.WRONG_STATE.encode()


@pytest.mark.parametrize("reply", [responses.IN_USE, responses.LOGIN_DELAY, responses.SYS_TEMP])
def test_other_refusals_are_immediate_and_not_counted(reply: responses.Reply) -> None:
    server = _server(Pop3Settings(hostname="h", limits=Pop3Limits(max_auth_failures=1)))
    for _ in range(3):
        _feed(server, b"USER a\r\nPASS b\r\n")
        server.reject_login(reply)
        assert server.data_to_send(0.0) == b"+OK send PASS\r\n" + reply.encode()
    assert not server.closed


def test_auth_failures_close_the_connection() -> None:
    limits = Pop3Limits(max_auth_failures=2, auth_failure_delay=0)
    server = _server(Pop3Settings(hostname="h", limits=limits))
    for attempt in range(2):
        _feed(server, b"AUTH PLAIN AGEAYg==\r\n")
        server.reject_login(responses.AUTH_FAILED)
        assert server.data_to_send(0.0) == responses.AUTH_FAILED.encode()
        assert server.closed is (attempt == 1)
    assert server.next_event() == Disconnect(DisconnectReason.TOO_MANY_AUTH_FAILURES)


# -- TRANSACTION details ----------------------------------------------------------------------
def test_update_carries_exactly_the_marked_uids() -> None:
    server = _logged_in()
    assert _reply(server, b"DELE 1") == b"+OK message 1 deleted\r\n"
    assert _reply(server, b"RSET") == b"+OK maildrop has 2 messages (11 octets)\r\n"
    assert _reply(server, b"DELE 2") == b"+OK message 2 deleted\r\n"
    assert _feed(server, b"QUIT\r\n") == Update((11,))
    assert server.next_event() is PAUSED
    assert server.deadline() is None
    server.complete_update()
    assert server.data_to_send(0.0) == (
        b"+OK pop.example.com POP3 server signing off (1 messages left)\r\n"
    )
    assert server.next_event() == Disconnect(DisconnectReason.QUIT)


def test_failed_update_is_reported() -> None:
    server = _logged_in()
    _reply(server, b"DELE 1")
    assert _feed(server, b"QUIT\r\n") == Update((10,))
    server.fail_update()
    assert server.data_to_send(0.0) == b"-ERR [SYS/TEMP] some deleted messages not removed\r\n"
    assert server.next_event() == Disconnect(DisconnectReason.QUIT)


def test_retrieve_refused_before_any_chunk() -> None:
    server = _logged_in()
    assert _feed(server, b"RETR 2\r\n") == Retrieve(2, 11, None)
    server.fail_message(responses.MESSAGE_GONE)
    assert server.data_to_send(0.0) == responses.MESSAGE_GONE.encode()
    assert server.state is State.TRANSACTION


def test_retrieve_aborted_mid_message_closes_without_terminator() -> None:
    server = _logged_in()
    assert _feed(server, b"TOP 1 0\r\n") == Retrieve(1, 10, 0)
    assert server.message_chunk(b"H: v\r\n") is True
    server.fail_message(responses.MESSAGE_UNAVAILABLE)
    assert server.data_to_send(0.0) == b"+OK top of message follows\r\nH: v\r\n"
    assert server.next_event() == Disconnect(DisconnectReason.MESSAGE_ABORTED)


def test_top_tells_the_application_to_stop() -> None:
    server = _logged_in()
    _feed(server, b"TOP 1 0\r\n")
    assert server.message_chunk(b"H: v\r\n\r\nbody\r\n") is False
    server.end_message()
    assert server.data_to_send(0.0) == b"+OK top of message follows\r\nH: v\r\n\r\n.\r\n"


def test_lf_line_ends_are_accepted() -> None:
    server = _logged_in()
    assert _reply(server, b"STAT\n"[:-1]) == b"+OK 2 11\r\n"
    server.receive_data(b"NOOP\nNOOP\n", 0.0)
    assert server.next_event() is NEED_DATA
    assert server.data_to_send(0.0) == b"+OK\r\n+OK\r\n"


# -- limits -----------------------------------------------------------------------------------
def test_command_line_limit_counts_crlf() -> None:
    server = _logged_in()
    assert _reply(server, b"NOOP" + b" " * 506) == b"+OK\r\n"  # 510 + CRLF = 512
    assert _reply(server, b"NOOP" + b" " * 507) == responses.LINE_TOO_LONG.encode()


def test_endless_line_is_discarded_as_it_arrives() -> None:
    server = _logged_in()
    for _ in range(64):
        server.receive_data(b"x" * 65536, 0.0)
        assert server.next_event() is NEED_DATA
    assert server.data_to_send(0.0) == b""
    assert _reply(server, b"\r\nNOOP") == responses.LINE_TOO_LONG.encode() + b"+OK\r\n"


def test_flooding_while_the_application_works_closes() -> None:
    server = _logged_in()
    assert isinstance(_feed(server, b"RETR 1\r\n"), Retrieve)
    server.receive_data(b"NOOP\r\n" * 30000, 0.0)
    assert server.next_event() is PAUSED  # 180 KB pipelined: still within the limit
    server.receive_data(b"\n" * 120_000, 0.0)  # empty lines count too
    assert server.next_event() == Disconnect(DisconnectReason.INPUT_OVERFLOW)
    assert server.message_chunk(b"late") is False  # answers after the close are dropped
    server.end_message()


def test_eof_while_the_application_works_waits_for_its_answer() -> None:
    server = _logged_in()
    assert isinstance(_feed(server, b"DELE 1\r\nRETR 2\r\nQUIT\r\n"), Retrieve)
    server.receive_data(b"", 0.0)
    assert server.next_event() is PAUSED
    server.end_message()
    # The QUIT that came before the EOF still counts: it is a clean QUIT.
    assert server.next_event() == Update((10,))
    server.complete_update()
    assert server.next_event() == Disconnect(DisconnectReason.QUIT)


def test_eof_without_quit_produces_no_update() -> None:
    server = _logged_in()
    _reply(server, b"DELE 1")
    assert _feed(server, b"") == Disconnect(DisconnectReason.PEER_CLOSED)
    server.receive_data(b"QUIT\r\n", 0.0)
    assert server.next_event() == Disconnect(DisconnectReason.PEER_CLOSED)


# -- timers -----------------------------------------------------------------------------------
def test_idle_timer_counts_input_and_output() -> None:
    server = _logged_in()
    assert server.deadline() == 600.0
    server.handle_timeout(599.0)
    assert not server.closed
    server.receive_data(b"RETR 1\r\n", 500.0)
    assert isinstance(server.next_event(), Retrieve)
    assert server.deadline() is None  # the application's turn: not idle
    server.handle_timeout(5000.0)
    assert not server.closed
    server.message_chunk(b"x" * 10)
    server.end_message()
    assert server.deadline() == 1100.0
    assert server.data_to_send(1500.0) != b""  # a slow client read the message until 1500
    assert server.deadline() == 2100.0
    server.handle_timeout(2100.0)
    assert server.closed
    assert server.data_to_send(2100.0) == b""  # RFC 1939 §3: no response on autologout
    assert server.next_event() == Disconnect(DisconnectReason.IDLE_TIMEOUT)
    assert server.deadline() is None


def test_a_client_not_logged_in_by_the_login_deadline_gets_err_and_is_closed() -> None:
    server = _server()
    assert server.deadline() == 180.0
    assert _reply(server, b"CAPA").startswith(b"+OK")  # at 0: input does not move it
    assert _feed(server, b"USER mrose\r\n", 100.0) is NEED_DATA
    assert server.data_to_send(100.0) == b"+OK send PASS\r\n"
    assert server.deadline() == 180.0
    server.handle_timeout(179.0)
    assert not server.closed
    server.handle_timeout(180.0)
    assert server.data_to_send(180.0) == b"-ERR no login in time, closing connection\r\n"
    assert server.next_event() == Disconnect(DisconnectReason.LOGIN_TIMEOUT)


def test_the_login_deadline_ends_with_the_login() -> None:
    server = _logged_in()
    assert server.deadline() == 600.0  # the idle timer alone
    server.handle_timeout(180.0)
    assert not server.closed


# -- settings ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("make", "key"),
    [
        (lambda: Pop3Limits(idle_timeout=599), "pop3.limits.idle_timeout"),
        (lambda: Pop3Limits(login_timeout=0), "pop3.limits.login_timeout"),
        (lambda: Pop3Limits(login_timeout=601), "pop3.limits.login_timeout"),
        (lambda: Pop3Limits(max_command_line=254), "pop3.limits.max_command_line"),
        (lambda: Pop3Limits(max_sasl_line=300), "pop3.limits.max_sasl_line"),
        (lambda: Pop3Limits(max_buffered_input=100), "pop3.limits.max_buffered_input"),
        (lambda: Pop3Limits(max_errors=0), "pop3.limits.max_errors"),
        (lambda: Pop3Limits(max_auth_failures=0), "pop3.limits.max_auth_failures"),
        (lambda: Pop3Limits(auth_failure_delay=-1), "pop3.limits.auth_failure_delay"),
        (lambda: Pop3Settings(hostname="a b"), "pop3.hostname"),
        (lambda: Pop3Settings(hostname="h", implementation="x\r\n"), "pop3.implementation"),
        (lambda: Pop3Settings(hostname="h", sasl_mechanisms=("plain",)), "pop3.sasl_mechanisms"),
        (lambda: Pop3Settings(hostname="h", expire=-1), "pop3.expire"),
        (lambda: Pop3Settings(hostname="h", expire="SOON"), "pop3.expire"),  # type: ignore[arg-type]
        (lambda: Pop3Settings(hostname="h", login_delay=-5), "pop3.login_delay"),
    ],
)
def test_invalid_settings(make: object, key: str) -> None:
    with pytest.raises(ConfigError) as caught:
        make()  # type: ignore[operator]
    assert caught.value.key == key


# -- the core does no I/O ---------------------------------------------------------------------
def test_core_imports_no_io_modules() -> None:
    forbidden = {"asyncio", "socket", "ssl", "time", "threading", "selectors", "os"}
    for path in Path(pillarbox.pop3.__file__).parent.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = (
                [alias.name for alias in node.names]
                if isinstance(node, ast.Import)
                else [node.module or ""]
                if isinstance(node, ast.ImportFrom)
                else []
            )
            for name in names:
                assert name.split(".")[0] not in forbidden, f"{path.name} imports {name}"


def test_public_api_is_exported() -> None:
    for name in pillarbox.pop3.__all__:
        assert hasattr(pillarbox.pop3, name)
