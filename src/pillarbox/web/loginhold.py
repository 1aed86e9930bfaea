"""The message being written that a two-step login holds between its password and code steps.

Implementation notes:

- **Why it is held at all.** The password step answers with a redirect to the code page
  (Post/Redirect/Get), so that reloading that page asks for it again instead of posting the
  password once more; a wrong code is answered the same way. A redirect cannot carry the
  fields of a message being written (:mod:`.composeform`), so the password step holds them,
  and the code page's GET puts them back in its forms; from there they ride in the forms, as
  before (so a wrong code posted after another login replaced the hold still has them:
  :func:`pillarbox.web.twofactor._code_refused`).
- **In the store, so any node finds it** (DESIGN.md "Beyond one machine": with PostgreSQL any
  node serves any request), and a restart between the steps loses nothing.
- **Bound to the browser and the account.** Held under the pending account and the pending
  session's id, which only this browser's signed cookie names (:mod:`.session`): a request
  finds them only with both, and only until the password step expires (``PENDING_SECONDS``).
- **Sealed at rest.** The text is a user's unsent message: it is sealed with AES-256-GCM under
  ``data_dir/totp-key`` (:mod:`.totpseal`: the key every node needs already, to check codes),
  with a purpose of its own that names the session, and the account as associated data. A
  database dump or backup shows no text, and a hold copied onto another account's or
  session's row does not open. One that does not open here (nodes with different key files)
  is as good as none: the code page says the message was not kept.
- **Bounded.** Only a correct password puts fields here, at most one set per account (the
  account's next password step replaces it), each within ``[web] max_form_bytes`` (the login
  form carried them), all accounts' together within ``[web] login_hold_bytes``, counted as
  their text (:func:`held_size`; sealed they take about a third more): over it those held
  first go. Expired ones go at the next hold and at the retention job's sweep; the code step
  drops the one it used. Never in a log.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime

from pillarbox.observability.log import Log
from pillarbox.store.interface import Store
from pillarbox.store.types import LoginHold
from pillarbox.web.session import PENDING_SECONDS
from pillarbox.web.totpseal import TotpSealer

Fields = tuple[tuple[str, str], ...]

_log = Log("web.2fa")


def held_size(fields: Sequence[tuple[str, str]]) -> int:
    """What ``fields`` count against ``[web] login_hold_bytes``: their names and values as
    UTF-8."""
    return sum(len(name.encode()) + len(value.encode()) for name, value in fields)


def _purpose(sid: str) -> str:
    """The sealing purpose: a hold, of this session (a TOTP secret's purposes differ)."""
    return f"login-hold:{sid}"


class LoginHolds:
    """Holds, finds and drops the fields of messages being written for pending logins, sealed,
    in the store; ``now`` is the caller's clock (Unix seconds)."""

    def __init__(self, store: Store, sealer: TotpSealer, max_bytes: int) -> None:
        self._store = store
        self._sealer = sealer
        self._max_bytes = max_bytes

    async def keep(
        self, account_id: int, sid: str, fields: Sequence[tuple[str, str]], now: float
    ) -> None:
        """Hold ``fields`` for ``account_id``'s password step in session ``sid``, in place of
        any the account held. Fields larger than the whole bound are not held (the config
        keeps it at least ``max_form_bytes``, which carried fields are within)."""
        data = json.dumps([list(pair) for pair in fields], ensure_ascii=False).encode()
        hold = LoginHold(
            account_id=account_id,
            sid=sid,
            sealed=self._sealer.seal(account_id, data, _purpose(sid)),
            size=held_size(fields),
            expires=datetime.fromtimestamp(now + PENDING_SECONDS, UTC),
        )
        await self._store.hold_login_message(
            hold, datetime.fromtimestamp(now, UTC), self._max_bytes
        )

    async def held(self, account_id: int, sid: str, now: float) -> Fields:
        """The fields held for ``account_id``'s password step in session ``sid``; () when none
        are (none carried, expired, replaced, or sealed under another key)."""
        sealed = await self._store.held_login_message(
            account_id, sid, datetime.fromtimestamp(now, UTC)
        )
        if sealed is None:
            return ()
        data = self._sealer.unseal(account_id, sealed, _purpose(sid))
        if data is None:
            _log.warning(
                "held message does not open under data_dir/totp-key: every node needs the "
                "same file",
                account_id=account_id,
            )
            return ()
        # Sealed by keep() (the seal authenticates it): a JSON array of [name, value] pairs.
        return tuple((name, value) for name, value in json.loads(data))

    async def drop(self, account_id: int, sid: str) -> None:
        """Forget what session ``sid`` held (its login done)."""
        await self._store.drop_login_message(account_id, sid)
