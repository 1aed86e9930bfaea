"""Reading and managing mail over IMAP (RFC 9051 / RFC 3501), through imapclient.

imapclient is untyped; this module is the typed face that ``pillarbox mail`` and
``pillarbox import imap`` use, and every value that comes back from it is converted here.
Messages are addressed by UID (RFC 9051 §2.3.1.1), which stays valid across sessions, unlike
sequence numbers. Fetching uses ``BODY.PEEK[]`` (RFC 9051 §6.4.5), so only an explicit choice
marks a message seen: ``read`` does (unless ``--peek``); ``reply``, ``forward`` and
``save-attachments`` do not.
"""

from __future__ import annotations

import contextlib
import imaplib
import ssl
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pillarbox.errors import NotFound
from pillarbox.mail.decode import decode_words, header_bytes_to_text
from pillarbox.mailclient.transport import (
    ConnectionFailed,
    Endpoint,
    TlsMode,
    translated_errors,
)

SEEN = "\\Seen"
FLAGGED = "\\Flagged"
ANSWERED = "\\Answered"
DELETED = "\\Deleted"
FORWARDED = "$Forwarded"  # RFC 5788 keyword registry

#: How long one IDLE lasts before DONE and a fresh IDLE (RFC 2177 §3 asks for at most 29
#: minutes). Short, because imapclient's ``idle_check`` waits on the socket and cannot see a
#: response imaplib has already buffered: an EXISTS arriving in the same segment as the
#: ``+ idling`` continuation (mail that came between SELECT and IDLE) would otherwise wait for
#: the next change. ``idle_done`` reads the buffer, so such an EXISTS is late by this at most.
IDLE_RECHECK = 5.0
#: Without IDLE, how often ``watch`` polls with NOOP (RFC 9051 §6.1.2).
POLL_INTERVAL = 15.0

_SUMMARY_ITEMS = ["ENVELOPE", "FLAGS", "INTERNALDATE", "RFC822.SIZE"]
#: UIDs per FETCH RFC822.SIZE when listing a folder's sizes (imapclient sends every UID
#: spelled out; servers limit command lines, Dovecot to 64 KB).
_SIZE_CHUNK = 500


@dataclass(frozen=True, slots=True)
class Folder:
    name: str
    flags: tuple[str, ...]
    messages: int | None
    unseen: int | None


@dataclass(frozen=True, slots=True)
class Summary:
    uid: int
    date: datetime | None
    sender: str
    subject: str
    flags: tuple[str, ...]
    size: int


@dataclass(frozen=True, slots=True)
class Listed:
    """A LIST answer: folder name, attributes (``\\Noselect``, ``\\Sent``…), delimiter."""

    name: str
    attributes: tuple[str, ...]
    delimiter: str | None


@dataclass(frozen=True, slots=True)
class FullMessage:
    uid: int
    raw: bytes
    flags: frozenset[str]
    internal_date: datetime | None


class ImapSession:
    """One logged-in connection. Methods that take a folder select it first (read-only unless
    they change something), so each command is independent of the last."""

    def __init__(self, client: Any) -> None:
        self._client = client
        self._selected: tuple[str, bool] | None = None

    @property
    def capabilities(self) -> frozenset[str]:
        return frozenset(_text(c).upper() for c in self._client.capabilities())

    def _select(self, folder: str, *, readonly: bool) -> dict[bytes, Any]:
        if self._selected == (folder, readonly):
            return {}
        info: dict[bytes, Any] = self._client.select_folder(folder, readonly=readonly)
        self._selected = (folder, readonly)
        return info

    def folders(self) -> list[Folder]:
        """Every folder with its message and unseen counts (STATUS, RFC 9051 §6.3.11)."""
        found: list[Folder] = []
        for flags, _delimiter, name in self._client.list_folders():
            flag_names = tuple(_text(f) for f in flags)
            if any(f.lower() in ("\\noselect", "\\nonexistent") for f in flag_names):
                found.append(Folder(name, flag_names, None, None))
                continue
            status = self._client.folder_status(name, ["MESSAGES", "UNSEEN"])
            found.append(Folder(name, flag_names, int(status[b"MESSAGES"]), int(status[b"UNSEEN"])))
        return found

    def search(self, folder: str, criteria: Sequence[object]) -> list[int]:
        self._select(folder, readonly=True)
        charset = "UTF-8" if any(_non_ascii(c) for c in criteria) else None
        return sorted(int(u) for u in self._client.search(list(criteria), charset=charset))

    def summaries(self, folder: str, uids: Sequence[int]) -> list[Summary]:
        if not uids:
            return []
        self._select(folder, readonly=True)
        fetched: dict[int, dict[bytes, Any]] = self._client.fetch(list(uids), _SUMMARY_ITEMS)
        wanted = set(uids)  # unsolicited FETCH responses may add others
        return [_summary(uid, fetched[uid]) for uid in sorted(fetched) if uid in wanted]

    def raw_message(self, folder: str, uid: int) -> bytes:
        self._select(folder, readonly=True)
        fetched = self._client.fetch([uid], ["BODY.PEEK[]"])
        if uid not in fetched or b"BODY[]" not in fetched[uid]:
            raise NotFound(f"no message with UID {uid} in {folder}")
        data: bytes = fetched[uid][b"BODY[]"]
        return data

    def _existing(self, folder: str, uids: Sequence[int]) -> list[int]:
        self._select(folder, readonly=False)
        present = {int(u) for u in self._client.search(["UID", _uid_set(uids)])}
        missing = sorted(set(uids) - present)
        if missing:
            raise NotFound(f"no message with UID {', '.join(map(str, missing))} in {folder}")
        return sorted(present)

    def set_flags(
        self, folder: str, uids: Sequence[int], flags: Sequence[str], *, on: bool
    ) -> None:
        targets = self._existing(folder, uids)
        if on:
            self._client.add_flags(targets, list(flags), silent=True)
        else:
            self._client.remove_flags(targets, list(flags), silent=True)

    def move(self, folder: str, uids: Sequence[int], destination: str) -> None:
        targets = self._existing(folder, uids)
        if "MOVE" in self.capabilities:  # RFC 6851
            self._client.move(targets, destination)
            return
        self._client.copy(targets, destination)  # RFC 6851 §3.3's fallback
        self._expunge(targets)

    def delete(self, folder: str, uids: Sequence[int]) -> None:
        self._expunge(self._existing(folder, uids))

    def _expunge(self, uids: list[int]) -> None:
        self._client.add_flags(uids, [DELETED], silent=True)
        if "UIDPLUS" in self.capabilities:  # RFC 4315 §2.1: expunge only these
            self._client.uid_expunge(uids)
        else:
            self._client.expunge()

    def watch(
        self,
        folder: str,
        on_new: Callable[[Summary], None],
        *,
        count: int | None = None,
        timeout: float | None = None,
        on_ready: Callable[[bool], None] = lambda idle: None,
        clock: Callable[[], float] = time.monotonic,
    ) -> int:
        """Report messages arriving in ``folder`` until ``count`` have or ``timeout`` seconds
        pass (forever if neither); returns how many were reported. Uses IDLE (RFC 2177) when
        offered, else polls with NOOP; ``on_ready(uses_idle)`` is called once the folder is
        selected, so that anything arriving from then on will be reported."""
        info: dict[bytes, Any] = self._client.select_folder(folder, readonly=True)
        self._selected = (folder, True)
        highest = int(info.get(b"UIDNEXT", 1)) - 1 if b"UIDNEXT" in info else self._highest()
        deadline = None if timeout is None else clock() + timeout
        use_idle = "IDLE" in self.capabilities
        on_ready(use_idle)
        reported = 0
        while count is None or reported < count:
            remaining = None if deadline is None else deadline - clock()
            if remaining is not None and remaining <= 0:
                break
            if not self._wait_for_change(use_idle, remaining, clock):
                continue
            new = [u for u in self._client.search(["UID", f"{highest + 1}:*"]) if u > highest]
            for summary in self.summaries(folder, new)[
                : None if count is None else count - reported
            ]:
                on_new(summary)
                reported += 1
            highest = max([highest, *new])
        return reported

    def _wait_for_change(
        self, use_idle: bool, remaining: float | None, clock: Callable[[], float]
    ) -> bool:
        """Block until the server reports a change, up to ``remaining`` seconds; True if it
        reported new messages (EXISTS, RFC 9051 §7.4.1)."""
        if not use_idle:
            time.sleep(POLL_INTERVAL if remaining is None else min(POLL_INTERVAL, remaining))
            _, responses = self._client.noop()
            return any(_is_exists(r) for r in responses)
        wait = IDLE_RECHECK if remaining is None else min(IDLE_RECHECK, remaining)
        self._client.idle()
        started = clock()
        try:
            while clock() - started < wait:
                responses = self._client.idle_check(timeout=max(0.0, wait - (clock() - started)))
                if any(_is_exists(r) for r in responses):
                    return True
        finally:
            # What imapclient's idle_check could not see (see IDLE_RECHECK) comes out here.
            _, after = self._client.idle_done()
        return any(_is_exists(r) for r in after)

    def _highest(self) -> int:
        uids = self._client.search(["ALL"])
        return max((int(u) for u in uids), default=0)

    def append(self, folder: str, raw: bytes, flags: Sequence[str] = ()) -> None:
        self._client.append(folder, raw, flags=list(flags))

    def sent_folder(self) -> str:
        """Where sent mail is kept: the folder LIST marks ``\\Sent`` (RFC 6154 §2; Dovecot,
        Gmail and Pillarbox mark it in a plain LIST), else ``Sent`` under the personal
        namespace's prefix (``INBOX.Sent`` on Courier)."""
        for folder in self.listing():
            if any(attribute.lower() == "\\sent" for attribute in folder.attributes):
                return folder.name
        return self.personal_prefix() + "Sent"

    # -- copying a whole account (``pillarbox import imap``) ------------------------------------

    def listing(self) -> list[Listed]:
        """Every folder with its attributes (LIST, RFC 9051 §6.3.9; with the RFC 6154
        special-use attributes where the server gives them there, as Dovecot and Gmail do)."""
        return [
            Listed(name, tuple(_text(f) for f in flags), _text(delimiter) if delimiter else None)
            for flags, delimiter, name in self._client.list_folders()
        ]

    def personal_prefix(self) -> str:
        """The prefix of the personal namespace (RFC 2342 §5): ``INBOX.`` on Courier and
        Cyrus, where every folder lies below INBOX; empty without NAMESPACE."""
        if "NAMESPACE" not in self.capabilities:
            return ""
        personal = self._client.namespace().personal or ()
        return _text(personal[0][0]) if personal else ""

    def folder_state(self, folder: str) -> tuple[int, int]:
        """``(UIDVALIDITY, UIDNEXT)`` of a folder, selected read-only (RFC 9051 §7.1)."""
        self._selected = None
        info = self._select(folder, readonly=True)
        uidnext = int(info[b"UIDNEXT"]) if b"UIDNEXT" in info else self._highest() + 1
        return int(info[b"UIDVALIDITY"]), uidnext

    def sizes_after(self, folder: str, uid: int) -> dict[int, int]:
        """UID → size of every message above ``uid`` (``n:*`` names the last message even when
        it is below ``n``, RFC 9051 §6.4.8, so that one is left out)."""
        self._select(folder, readonly=True)
        uids = sorted(u for u in (int(n) for n in self._client.search(["UID", f"{uid + 1}:*"])))
        sizes: dict[int, int] = {}
        for start in range(0, len(uids), _SIZE_CHUNK):  # keep each command line short
            chunk = [u for u in uids[start : start + _SIZE_CHUNK] if u > uid]
            if chunk:
                fetched = self._client.fetch(chunk, ["RFC822.SIZE"])
                sizes.update({int(u): int(d[b"RFC822.SIZE"]) for u, d in fetched.items()})
        return sizes

    def full_messages(self, folder: str, uids: Sequence[int]) -> list[FullMessage]:
        """Bytes, flags and internal date of each of ``uids`` still there, in UID order;
        ``BODY.PEEK[]`` leaves ``\\Seen`` alone (RFC 9051 §6.4.5)."""
        self._select(folder, readonly=True)
        fetched = self._client.fetch(list(uids), ["FLAGS", "INTERNALDATE", "BODY.PEEK[]"])
        wanted = set(uids)
        found: list[FullMessage] = []
        for uid in sorted(int(u) for u in fetched):
            data = fetched[uid]
            if uid not in wanted or b"BODY[]" not in data:
                continue
            when = data.get(b"INTERNALDATE")
            found.append(
                FullMessage(
                    uid,
                    bytes(data[b"BODY[]"]),
                    frozenset(_text(f) for f in data.get(b"FLAGS", ())),
                    # imapclient gives local time without a zone: make it aware
                    when.astimezone() if isinstance(when, datetime) else None,
                )
            )
        return found


@contextmanager
def open_imap(
    endpoint: Endpoint,
    username: str,
    password: str,
    *,
    context: ssl.SSLContext,
    timeout: float,
) -> Iterator[ImapSession]:
    """A logged-in session; every library error inside the ``with`` is translated."""
    from imapclient import IMAPClient  # type: ignore[import-untyped]  # lazy: CLI start-up

    with translated_errors(f"IMAP server {endpoint}"):
        client = IMAPClient(
            endpoint.host,
            port=endpoint.port,
            ssl=endpoint.tls is TlsMode.IMPLICIT,
            ssl_context=context,
            timeout=timeout,
        )
        try:
            if endpoint.tls is TlsMode.STARTTLS:
                if not client.has_capability("STARTTLS"):
                    raise ConnectionFailed(
                        f"IMAP server {endpoint} does not offer STARTTLS; refusing to log in "
                        "in clear"
                    )
                client.starttls(ssl_context=context)
            client.login(username, password)
            yield ImapSession(client)
            client.logout()
        except BaseException:
            with contextlib.suppress(OSError, imaplib.IMAP4.error):  # keep the first error
                client.shutdown()
            raise


# -- conversions from imapclient's values -------------------------------------------------------


def _text(value: object) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def _non_ascii(value: object) -> bool:
    return isinstance(value, str) and not value.isascii()


def _header_text(value: object) -> str:
    if value is None:
        return ""
    raw = value if isinstance(value, bytes) else str(value).encode("utf-8", "replace")
    return decode_words(header_bytes_to_text(raw))


def _summary(uid: int, data: dict[bytes, Any]) -> Summary:
    envelope = data.get(b"ENVELOPE")
    sender = ""
    subject = ""
    sent: datetime | None = None
    if envelope is not None:
        subject = _header_text(envelope.subject)
        sent = envelope.date
        if envelope.from_:
            first = envelope.from_[0]
            name = _header_text(first.name)
            address = f"{_text(first.mailbox or b'')}@{_text(first.host or b'')}"
            sender = name or address
    return Summary(
        uid=int(uid),
        date=sent or data.get(b"INTERNALDATE"),
        sender=sender,
        subject=subject,
        flags=tuple(_text(f) for f in data.get(b"FLAGS", ())),
        size=int(data.get(b"RFC822.SIZE", 0)),
    )


def _is_exists(response: object) -> bool:
    return isinstance(response, tuple) and len(response) >= 2 and response[1] == b"EXISTS"


def _uid_set(uids: Sequence[int]) -> str:
    return ",".join(str(u) for u in sorted(set(uids)))
