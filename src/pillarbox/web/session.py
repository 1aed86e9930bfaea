"""Signed session cookies and CSRF tokens.

Implementation notes:

- **Stateless, signed.** The cookie is ``base64url(JSON) "." base64url(HMAC-SHA256)`` under a
  server secret kept in the data directory (so sessions survive a restart and every node
  sharing the data directory accepts them). Nothing secret is in the payload: a session id,
  the account id, a fingerprint of the account's password hash, the issue time.
- **Invalidation.** The fingerprint is an HMAC of the stored password hash: changing or
  resetting the password ends every session of the account at once. Sessions expire ``ttl``
  seconds after they were last refreshed (refreshed when half that time has passed, so an
  active user stays logged in and an idle one does not). Idle means no action of the person:
  the live feed (``LIVE_FEED_PATH``, which the browser reopens by itself) and the re-reads the
  script makes on its events (``BACKGROUND_HEADER``) refresh nothing, and a feed ends when the
  session it was opened with does (:mod:`.live`), so a page left alone ends like any other.
  Logging out records the session id (its digest, as an ``ended-session`` row of the account's
  tokens, in the shared store) and every later request with it is anonymous
  (:func:`.app.end_session`): replacing the cookie in one browser would leave a copy of it
  good until it expired. Both checks are answered from the store's kept lookups
  (``KEPT_TOKEN_KINDS``, the account by id): the writing node forgets them at once, other
  nodes on their notification (``docs/security.md`` gives the bounds).
- **Sealed notices.** A message a redirect carries in the address it sends the browser to
  (an invitation's answer, a warning from sending) travels with an HMAC of the session id and
  the text, and is shown only when that holds (:func:`.app.sealed`).
- **Fixation.** Logging in always issues a new session id.
- **The end is known.** No absolute lifetime caps the idle one: "stay signed in"
  (:func:`.webmail.stay_signed_in`) refreshes a session as any request past half its ``ttl``
  does. ``ENDS_COOKIE`` tells the pages' script when the session ends, to warn before (the
  ``[web] session_warning`` seconds) and to say when it has.
- **Two steps** (accounts with a second factor, :mod:`.twofactor`): a correct password
  issues a session that is still anonymous (``account_id`` None, so no page, API call or
  form accepts it) and names the account in ``pending_account`` with the time the password
  was checked; only the code step turns it into a logged-in session, with a new id. The
  pending state lives in this browser's signed cookie (bound to it, nothing to steal from
  the server) and expires after ``PENDING_SECONDS``.
- **CSRF** (OWASP "synchronizer token", stateless variant): the token is
  ``HMAC(secret, "csrf" || session id)``; every state-changing request carries it in a form
  field or the ``X-CSRF-Token`` header and is refused without it. Anonymous visitors have a
  session id too, so the login form is protected as well. ``SameSite=Lax`` on the cookie is
  the second layer.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import math
import os
import secrets
from dataclasses import dataclass, replace
from pathlib import Path

COOKIE = "pb_session"
#: When the session ends (Unix seconds), beside it for the pages' script: readable by it, unlike
#: the session's own (HttpOnly), and rewritten with it, so every tab sees a refresh any of them
#: caused.
ENDS_COOKIE = "pb_session_ends"
#: The live feed's path: its requests (an EventSource reconnecting on its own) are no activity.
LIVE_FEED_PATH = "/events"
#: Set by the pages' script on a request it makes by itself (re-reading a page a live-update
#: event said changed), not for the person: such a request refreshes no session either. A
#: client can only make its own session shorter with it.
BACKGROUND_HEADER = "x-pillarbox-background"
CSRF_FIELD = "csrf"
CSRF_HEADER = "x-csrf-token"
SECRET_FILE = "web-secret"
_SECRET_BYTES = 32
#: Seconds between the password step of a two-step login and its code step at most.
PENDING_SECONDS = 300.0


def load_secret(data_dir: Path) -> bytes:
    """The server's signing key, made (mode 0600) on first use."""
    path = data_dir / SECRET_FILE
    try:
        secret = path.read_bytes()
        if len(secret) >= _SECRET_BYTES:
            return secret
    except FileNotFoundError:
        pass
    data_dir.mkdir(parents=True, exist_ok=True)
    secret = secrets.token_bytes(_SECRET_BYTES)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(secret)
        handle.flush()
        os.fsync(handle.fileno())
    return secret


@dataclass(frozen=True, slots=True)
class Session:
    sid: str
    issued: float
    account_id: int | None = None
    #: Of the logged-in account's password hash; of the pending one's during a two-step login.
    fingerprint: str = ""
    #: The account whose password was right and whose second factor is still to come.
    pending_account: int | None = None
    #: When that password was checked.
    pending_since: float = 0.0

    @property
    def authenticated(self) -> bool:
        return self.account_id is not None

    def pending(self, now: float) -> int | None:
        """The account waiting for its second factor, if its password step is recent."""
        if self.account_id is None and now - PENDING_SECONDS <= self.pending_since <= now + 60:
            return self.pending_account
        return None


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class SessionCodec:
    """Issues, signs and checks sessions; ``ttl`` in seconds."""

    def __init__(self, secret: bytes, *, ttl: float) -> None:
        self._secret = secret
        self.ttl = ttl

    def _mac(self, purpose: bytes, data: bytes) -> bytes:
        return hmac.digest(self._secret, purpose + b"\x00" + data, hashlib.sha256)

    def fingerprint(self, password_hash: str) -> str:
        return _b64(self._mac(b"password", password_hash.encode()))[:22]

    def anonymous(self, now: float) -> Session:
        return Session(sid=secrets.token_urlsafe(18), issued=now)

    def login(self, account_id: int, password_hash: str, now: float) -> Session:
        return Session(
            sid=secrets.token_urlsafe(18),
            issued=now,
            account_id=account_id,
            fingerprint=self.fingerprint(password_hash),
        )

    def password_step(self, account_id: int, password_hash: str, now: float) -> Session:
        """An anonymous session (new id) waiting for ``account_id``'s second factor."""
        return Session(
            sid=secrets.token_urlsafe(18),
            issued=now,
            fingerprint=self.fingerprint(password_hash),
            pending_account=account_id,
            pending_since=now,
        )

    def encode(self, session: Session) -> str:
        fields: list[object] = [
            session.sid, session.issued, session.account_id, session.fingerprint
        ]  # fmt: skip
        if session.pending_account is not None:
            fields += [session.pending_account, session.pending_since]
        payload = json.dumps(fields, separators=(",", ":")).encode()
        return f"{_b64(payload)}.{_b64(self._mac(b'session', payload))}"

    def decode(self, value: str, now: float) -> Session | None:
        """The session in a cookie, or None if it is forged, malformed or expired."""
        body, _, mac = value.partition(".")
        try:
            payload = _unb64(body)
            valid = hmac.compare_digest(_unb64(mac), self._mac(b"session", payload))
            if not valid:
                return None
            sid, issued, account_id, fingerprint, *pending = json.loads(payload)
        except (ValueError, TypeError):
            return None
        pending_account: int | None = None
        pending_since = 0.0
        if pending:
            if len(pending) != 2 or not isinstance(pending[0], int):
                return None
            if not isinstance(pending[1], (int, float)):
                return None
            pending_account, pending_since = pending[0], float(pending[1])
        if not isinstance(sid, str) or not isinstance(issued, (int, float)):
            return None
        if not now - self.ttl <= issued <= now + 60:
            return None
        if account_id is not None and not isinstance(account_id, int):
            return None
        return Session(
            sid, float(issued), account_id, str(fingerprint), pending_account, pending_since
        )

    def ends(self, session: Session) -> int:
        """The first whole second at which :meth:`decode` refuses ``session`` unless it is
        refreshed first. Rounded up, not down: the pages' script says the session has ended
        at this second, and a form sent then must meet a server that agrees."""
        return math.floor(session.issued + self.ttl) + 1

    def needs_refresh(self, session: Session, now: float) -> bool:
        return now - session.issued > self.ttl / 2

    def refreshed(self, session: Session, now: float) -> Session:
        return replace(session, issued=now)

    def csrf_token(self, session: Session) -> str:
        return _b64(self._mac(b"csrf", session.sid.encode()))[:32]

    def csrf_valid(self, session: Session, token: str | None) -> bool:
        return token is not None and hmac.compare_digest(token, self.csrf_token(session))

    def notice_seal(self, session: Session, text: str) -> str:
        """The seal of a message the server put in a page's address for this session (what
        an invitation answer or a send did): a page shows such text only under its seal, so a
        link made elsewhere cannot put its own words on our page (content spoofing)."""
        return _b64(self._mac(b"notice", session.sid.encode() + b"\x00" + text.encode()))[:22]

    def notice_valid(self, session: Session, text: str, seal: str | None) -> bool:
        return seal is not None and hmac.compare_digest(seal, self.notice_seal(session, text))
