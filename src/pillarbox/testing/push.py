"""Waiting in a test for what a server pushes unasked: IMAP IDLE and NOTIFY responses, the
store's change feed across PostgreSQL nodes, the kept lookups a NOTIFY makes a node forget.

Nothing on these paths polls: an IMAP session waits on its client, the change feed and its own
deadline only (``net/imap.py``), and a PostgreSQL node reads its LISTEN connection as
notifications come (``store/postgres/notify.py``). What arrives unasked was therefore pushed,
and a push that is lost is not made up for by a later look, so the test fails. The one fallback
there is, a node's kept lookups expiring (``directory_ttl_ms``), a test sets far longer than
:data:`PUSH_WAIT`.

So the bound is not a latency the server promises, only how long a test gives a loaded machine
(two cores, several test processes, a node per process) before calling a push lost: a
one-second bound was the property's stand-in and failed on nothing but load.
"""

from __future__ import annotations

import imaplib

#: Seconds a test waits for a push before calling it lost.
PUSH_WAIT = 10.0


def unasked_line(imap: imaplib.IMAP4, within: float = PUSH_WAIT) -> bytes:
    """The next line the server sends ``imap`` unasked (no command in progress), without its
    CRLF, waiting at most ``within`` seconds (past it, ``TimeoutError``)."""
    timeout = imap.sock.gettimeout()
    imap.sock.settimeout(within)
    try:
        return imap.readline().rstrip(b"\r\n")
    finally:
        imap.sock.settimeout(timeout)
