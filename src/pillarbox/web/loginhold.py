"""The message being written that a two-step login holds between its password and code steps.

Implementation notes:

- **Why it is held at all.** The password step answers with a redirect to the code page
  (Post/Redirect/Get), so that reloading that page asks for it again instead of posting the
  password once more. A redirect cannot carry the fields of a message being written
  (:mod:`.composeform`), so the process that took the password keeps them, and the code
  page's GET puts them back in its forms; from there they ride in the forms, as before.
- **Bound to the browser and the account.** Held under the pending account and the pending
  session's id, which only this browser's signed cookie names (:mod:`.session`): a request
  finds them only with both, and only until the password step expires (``PENDING_SECONDS``).
- **Bounded.** Only a correct password puts fields here, at most one set per account (the
  account's next password step replaces it), each within ``[web] max_form_bytes`` (the login
  form carried them), all together within ``[web] login_hold_bytes``: over it the oldest
  go first. Never in the store, never in a log.
- **This process only.** With several nodes, the code page's GET may reach one that did not
  take the password (or the server restarted in between): that page says the message was not
  kept, and the compose page offers the browser's copy of it (app.js) after the login.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from pillarbox.web.session import PENDING_SECONDS

Fields = tuple[tuple[str, str], ...]


@dataclass(frozen=True, slots=True)
class _Held:
    sid: str
    until: float
    fields: Fields
    size: int


def held_size(fields: Sequence[tuple[str, str]]) -> int:
    """What ``fields`` count against ``[web] login_hold_bytes``: their names and values as
    UTF-8."""
    return sum(len(name) + len(value.encode()) for name, value in fields)


class LoginHold:
    """Fields of a message being written, held per account for one pending login; ``now`` is
    the caller's clock (seconds), so nothing here reads one."""

    def __init__(self, max_bytes: int) -> None:
        self._max_bytes = max_bytes
        #: By account id, in the order they were held: the oldest (and first to expire) first.
        self._held: dict[int, _Held] = {}
        self._bytes = 0

    def keep(
        self, account_id: int, sid: str, fields: Sequence[tuple[str, str]], now: float
    ) -> None:
        """Hold ``fields`` for ``account_id``'s password step in session ``sid``, in place of
        any the account held. Fields larger than the whole limit are not held (the config
        keeps it at least ``max_form_bytes``, which carried fields are within)."""
        self._remove(account_id)
        size = held_size(fields)
        if size > self._max_bytes:
            return
        while self._held:
            oldest, entry = next(iter(self._held.items()))
            if entry.until > now and self._bytes + size <= self._max_bytes:
                break
            self._remove(oldest)
        self._held[account_id] = _Held(sid, now + PENDING_SECONDS, tuple(fields), size)
        self._bytes += size

    def held(self, account_id: int, sid: str, now: float) -> Fields:
        """The fields held for ``account_id``'s password step in session ``sid``; () when none
        are (none carried, expired, replaced, or held by another process)."""
        entry = self._held.get(account_id)
        if entry is None or entry.sid != sid or entry.until <= now:
            return ()
        return entry.fields

    def drop(self, account_id: int, sid: str) -> None:
        """Forget what session ``sid`` held (its login done, or started again)."""
        entry = self._held.get(account_id)
        if entry is not None and entry.sid == sid:
            self._remove(account_id)

    def _remove(self, account_id: int) -> None:
        entry = self._held.pop(account_id, None)
        if entry is not None:
            self._bytes -= entry.size
