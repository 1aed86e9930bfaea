"""Signed session cookies and CSRF tokens."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from pillarbox.auth.tokens import token_digest
from pillarbox.web.session import SessionCodec, load_secret

NOW = 1_700_000_000.0


def codec(secret: bytes = b"k" * 32, ttl: float = 3600) -> SessionCodec:
    return SessionCodec(secret, ttl=ttl)


def test_round_trip_and_fingerprint() -> None:
    c = codec()
    session = c.login(7, "$argon2id$hash", NOW)
    decoded = c.decode(c.encode(session), NOW + 10)
    assert decoded == session and decoded.authenticated
    assert decoded.fingerprint == c.fingerprint("$argon2id$hash")
    assert decoded.fingerprint != c.fingerprint("$argon2id$other")


def test_tampering_and_other_keys_are_rejected() -> None:
    c = codec()
    value = c.encode(c.login(7, "h", NOW))
    body, _, mac = value.partition(".")
    # The MAC's first character changed (a fixed "AA" ending was the MAC itself 1 in 4096
    # runs; its last character's low bits are padding a decoder may ignore).
    tampered = ("B" if mac[0] != "B" else "C") + mac[1:]
    assert c.decode(body + "." + tampered, NOW) is None
    forged = c.encode(c.login(8, "h", NOW)).partition(".")[0]
    assert c.decode(forged + "." + mac, NOW) is None
    assert codec(b"x" * 32).decode(value, NOW) is None
    for junk in ("", ".", "abc", "a.b.c", "%%%.%%%", "e30.e30"):
        assert c.decode(junk, NOW) is None


def test_expiry_and_refresh() -> None:
    c = codec(ttl=100)
    session = c.login(1, "h", NOW)
    value = c.encode(session)
    assert c.decode(value, NOW + 99) is not None
    assert c.decode(value, NOW + 101) is None
    assert c.decode(value, NOW - 3600) is None  # issued in the future: forged clock
    assert not c.needs_refresh(session, NOW + 40)
    assert c.needs_refresh(session, NOW + 60)
    refreshed = c.refreshed(session, NOW + 60)
    assert refreshed.sid == session.sid and c.decode(c.encode(refreshed), NOW + 150) is not None


def test_the_announced_end_is_a_whole_second_the_server_already_refuses() -> None:
    """The pages' script says "ended" at :meth:`ends`; a form sent then must be refused, so
    the end is rounded up, never down (rounded down, a session issued at .9 of a second
    outlived its announced end by 0.9 s, and a Send clicked then went out)."""
    c = codec(ttl=16)
    for issued in (NOW, NOW + 0.1, NOW + 0.9):
        session = c.login(1, "h", issued)
        ends = c.ends(session)
        assert isinstance(ends, int)
        assert c.decode(c.encode(session), ends) is None
        assert c.decode(c.encode(session), ends - 1.0) is not None


def test_csrf_token_is_bound_to_the_session() -> None:
    c = codec()
    one, two = c.anonymous(NOW), c.anonymous(NOW)
    assert one.sid != two.sid and not one.authenticated
    token = c.csrf_token(one)
    assert c.csrf_valid(one, token)
    assert not c.csrf_valid(two, token)
    assert not c.csrf_valid(one, None) and not c.csrf_valid(one, "")
    assert not codec(b"y" * 32).csrf_valid(one, token)


def test_a_notice_seal_holds_for_its_session_and_text_only() -> None:
    c = codec()
    one, two = c.login(1, "h", NOW), c.login(2, "h", NOW)
    seal = c.notice_seal(one, "Accepted.")
    assert c.notice_valid(one, "Accepted.", seal)
    assert not c.notice_valid(two, "Accepted.", seal)
    assert not c.notice_valid(one, "Accepted. Call +1 555 0100", seal)
    assert not c.notice_valid(one, "Accepted.", None) and not c.notice_valid(one, "Accepted.", "")
    assert not codec(b"y" * 32).notice_valid(one, "Accepted.", seal)


def test_login_issues_a_new_session_id() -> None:
    c = codec()
    anonymous = c.anonymous(NOW)
    assert c.login(1, "h", NOW).sid != anonymous.sid


def test_secret_is_made_once_private(tmp_path: Path) -> None:
    first = load_secret(tmp_path / "data")
    assert len(first) == 32
    assert load_secret(tmp_path / "data") == first
    mode = stat.S_IMODE(os.stat(tmp_path / "data" / "web-secret").st_mode)
    assert mode == 0o600


def test_token_digest_is_sha256_hex() -> None:
    assert token_digest("abc") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"


def test_password_step_session_grants_nothing_and_expires() -> None:
    from pillarbox.web.session import PENDING_SECONDS

    codec = SessionCodec(b"k" * 32, ttl=3600)
    pending = codec.password_step(7, "$argon2id$hash", 1000.0)
    assert not pending.authenticated and pending.account_id is None
    decoded = codec.decode(codec.encode(pending), 1001.0)
    assert decoded == pending
    assert decoded.pending(1001.0) == 7
    assert decoded.pending(1000.0 + PENDING_SECONDS + 1) is None  # too late for the code
    assert decoded.fingerprint == codec.fingerprint("$argon2id$hash")
    # A logged-in session is never "pending", and an old four-field cookie still decodes.
    full = codec.login(7, "$argon2id$hash", 1000.0)
    assert codec.decode(codec.encode(full), 1001.0) == full
    assert full.pending(1001.0) is None
    assert SessionCodec(b"other key" * 4, ttl=3600).decode(codec.encode(pending), 1001.0) is None
