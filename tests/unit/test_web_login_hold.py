"""The message a two-step login holds between its steps (:mod:`pillarbox.web.loginhold`):
found only under its account and session, until the password step expires, one per account,
and within its byte limit, the oldest going first."""

from __future__ import annotations

from pillarbox.web.loginhold import LoginHold, held_size
from pillarbox.web.session import PENDING_SECONDS

T = 1_000_000.0
MESSAGE = (("to", "bob@example.org"), ("body", "Grüße, \r\nBob"))


def test_found_only_under_its_account_and_session_until_the_step_expires() -> None:
    hold = LoginHold(1024)
    hold.keep(1, "sid-a", MESSAGE, T)
    assert hold.held(1, "sid-a", T) == MESSAGE
    assert hold.held(1, "sid-a", T + PENDING_SECONDS - 1) == MESSAGE  # read again: a reload
    assert hold.held(1, "sid-b", T) == ()
    assert hold.held(2, "sid-a", T) == ()
    assert hold.held(1, "sid-a", T + PENDING_SECONDS) == ()


def test_one_per_account_and_dropped_only_by_its_session() -> None:
    hold = LoginHold(1024)
    hold.keep(1, "sid-a", MESSAGE, T)
    hold.keep(1, "sid-b", (("subject", "newer"),), T + 1)
    assert hold.held(1, "sid-a", T + 1) == ()
    assert hold.held(1, "sid-b", T + 1) == (("subject", "newer"),)
    hold.drop(1, "sid-a")
    assert hold.held(1, "sid-b", T + 1) == (("subject", "newer"),)
    hold.drop(1, "sid-b")
    assert hold.held(1, "sid-b", T + 1) == ()


def test_the_limit_lets_the_oldest_go_first() -> None:
    size = held_size(MESSAGE)
    assert size == len("to") + 15 + len("body") + len("Grüße, \r\nBob".encode())
    hold = LoginHold(3 * size)
    for account in (1, 2, 3):
        hold.keep(account, f"sid-{account}", MESSAGE, T + account)
    hold.keep(4, "sid-4", MESSAGE, T + 4)  # a fourth does not fit: the first goes
    assert hold.held(1, "sid-1", T + 4) == ()
    assert all(hold.held(a, f"sid-{a}", T + 4) == MESSAGE for a in (2, 3, 4))
    # Replacing an account's message frees its bytes: nothing else has to go.
    hold.keep(3, "sid-3b", MESSAGE, T + 5)
    assert all(hold.held(a, s, T + 5) == MESSAGE for a, s in ((2, "sid-2"), (3, "sid-3b")))
    assert hold.held(4, "sid-4", T + 5) == MESSAGE
    # One past its password step's expiry goes first, and its bytes with it.
    later = T + 2 + PENDING_SECONDS
    hold.keep(5, "sid-5", MESSAGE, later)
    assert hold.held(2, "sid-2", later) == ()
    assert hold.held(4, "sid-4", later) == MESSAGE
    # Larger than the whole limit: not held, and nothing else goes for it.
    hold.keep(6, "sid-6", (("body", "x" * 4 * size),), later)
    assert hold.held(6, "sid-6", later) == ()
    assert all(hold.held(a, s, later) == MESSAGE for a, s in ((4, "sid-4"), (5, "sid-5")))
