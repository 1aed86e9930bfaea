"""RFC 2920 §3.1 synchronisation, enforced by the server core (``enforce_sync``, the MX's
``smtp.enforce_sync``): byte for byte, a client that sends before the reply it had to wait
for (after HELO/EHLO or DATA, or any command without PIPELINING) is answered 554 5.5.0 and the
session ends (RFC 5321 §7.8); a client that waits, or pipelines only where §3.1 lets it, never
trips it. Bursts are fed in one piece: nothing after a command is parsed before it is
answered, so what the buffer holds then was sent before the reply."""

from __future__ import annotations

from pillarbox.smtp import replies as R
from pillarbox.smtp.sentinels import PAUSED, Sentinel
from pillarbox.smtp.server import (
    DataEnd,
    DataStart,
    ProtocolError,
    ServerConnection,
    Shutdown,
    SmtpServerSettings,
    State,
)

EHLO = b"EHLO c.example\r\n"
HELO = b"HELO c.example\r\n"
MAIL = b"MAIL FROM:<a@c.example>\r\n"
RCPT = b"RCPT TO:<b@mx.test>\r\n"
BODY = b"Subject: hi\r\n\r\nHello.\r\n.\r\n"
SYNC = b"554 5.5.0 synchronization error: sent without waiting for our reply\r\n"


def strict(**settings: object) -> ServerConnection:
    conn = ServerConnection(
        SmtpServerSettings(hostname="mx.test", enforce_sync=True, **settings)  # type: ignore[arg-type]
    )
    conn.greet(R.service_ready("mx.test"))
    conn.data_to_send(0.0)
    return conn


def exchange(conn: ServerConnection, data: bytes) -> tuple[bytes, list[object]]:
    """Feed ``data`` in one piece, accept every decision: what the server wrote, and the
    events (decisions included)."""
    conn.receive_data(data, 0.0)
    events: list[object] = []
    while True:
        event = conn.next_event()
        if event is PAUSED and conn.pending is not None:
            conn.accept()
        elif isinstance(event, Sentinel):
            return conn.data_to_send(0.0), events
        else:
            events.append(event)


def ehlo_done(**settings: object) -> ServerConnection:
    conn = strict(**settings)
    written, _ = exchange(conn, EHLO)
    assert written.startswith(b"250-mx.test\r\n")
    assert (b"250-PIPELINING\r\n" in written) == conn.settings.pipelining
    return conn


def test_a_whole_session_fired_at_once_ends_at_the_ehlo() -> None:
    conn = strict()
    written, events = exchange(conn, EHLO + MAIL + RCPT + b"DATA\r\n" + BODY + b"QUIT\r\n")
    assert written == SYNC
    assert events[-2:] == [ProtocolError(R.SYNC_ERROR), Shutdown(R.SYNC_ERROR)]
    assert conn.state is State.CLOSED


def test_pipelining_where_rfc_2920_allows_it_passes() -> None:
    conn = ehlo_done()
    # MAIL, RCPT and DATA in one group, DATA last; then the content, with QUIT after it
    # (§3.1: content may start a group, QUIT ends one; what follows QUIT does not count).
    written, events = exchange(conn, MAIL + RCPT + b"DATA\r\n")
    assert written == (
        b"250 2.1.0 sender OK\r\n250 2.1.5 recipient OK\r\n354 end data with <CR><LF>.<CR><LF>\r\n"
    )
    assert any(isinstance(e, DataStart) for e in events)
    written, events = exchange(conn, BODY + MAIL + RCPT + b"DATA\r\n")
    assert written.startswith(b"250 ") and written.endswith(
        b"354 end data with <CR><LF>.<CR><LF>\r\n"
    )
    assert any(isinstance(e, DataEnd) for e in events)
    written, _ = exchange(conn, BODY + b"QUIT\r\nanything\r\n")
    assert written.endswith(b"221 2.0.0 bye\r\n")
    assert conn.state is State.CLOSED


def test_content_sent_before_the_354_ends_the_session_at_data() -> None:
    conn = ehlo_done()
    written, events = exchange(conn, MAIL + RCPT + b"DATA\r\n" + BODY)
    assert written == b"250 2.1.0 sender OK\r\n250 2.1.5 recipient OK\r\n" + SYNC
    assert not any(isinstance(e, DataStart | DataEnd) for e in events)
    assert conn.state is State.CLOSED


def test_without_pipelining_every_command_waits_for_its_reply() -> None:
    conn = strict()
    written, _ = exchange(conn, HELO)
    assert written == b"250 mx.test\r\n"
    written, _ = exchange(conn, MAIL)  # one at a time: fine
    assert written == b"250 2.1.0 sender OK\r\n"
    written, _ = exchange(conn, RCPT + RCPT)
    assert written == SYNC
    # Nor when the server does not offer PIPELINING, after EHLO.
    conn = ehlo_done(pipelining=False)
    written, _ = exchange(conn, MAIL + RCPT)
    assert written == SYNC


def test_bdat_chunks_may_be_pipelined() -> None:
    conn = ehlo_done()
    written, events = exchange(conn, MAIL + RCPT + b"BDAT 6\r\nHello.BDAT 0 LAST\r\nQUIT\r\n")
    assert written == (
        b"250 2.1.0 sender OK\r\n250 2.1.5 recipient OK\r\n250 2.0.0 chunk received\r\n"
        b"250 2.0.0 message accepted\r\n221 2.0.0 bye\r\n"
    )
    assert any(isinstance(e, DataEnd) for e in events)


def test_off_by_default_in_the_core() -> None:
    conn = ServerConnection(SmtpServerSettings(hostname="mx.test"))
    conn.greet(R.service_ready("mx.test"))
    conn.data_to_send(0.0)
    written, _ = exchange(conn, HELO + MAIL + RCPT)
    assert written == b"250 mx.test\r\n250 2.1.0 sender OK\r\n250 2.1.5 recipient OK\r\n"
