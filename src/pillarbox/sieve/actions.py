"""What a script decided for a message: frozen action values, applied by delivery
(:mod:`pillarbox.queue.filtering`). The language core never stores or sends anything."""

from __future__ import annotations

from dataclasses import dataclass

from pillarbox.sieve.duplicate import Tracked
from pillarbox.sieve.notify import Mailto


@dataclass(frozen=True, slots=True)
class Keep:
    """Store in the mailbox delivery would have chosen (RFC 5228 §4.3), with IMAP flags."""

    flags: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class FileInto:
    """Store in ``mailbox`` (RFC 5228 §4.1). ``copy`` (RFC 3894) left the implicit keep on;
    ``create`` (RFC 5490 §3.2) asks delivery to create the mailbox if it is missing."""

    mailbox: str
    flags: tuple[str, ...] = ()
    copy: bool = False
    create: bool = False
    #: RFC 8579 §4: the mailbox with this special use, when the account has one, instead.
    specialuse: str | None = None


@dataclass(frozen=True, slots=True)
class Fcc:
    """RFC 8580 §3: store a copy of the reply or notification sent in ``mailbox`` (or the
    one with the ``specialuse`` attribute), with ``flags``, creating it if ``create``."""

    mailbox: str
    flags: tuple[str, ...] = ()
    create: bool = False
    specialuse: str | None = None


@dataclass(frozen=True, slots=True)
class Redirect:
    """Send the message on to ``address`` (RFC 5228 §4.2), an addr-spec."""

    address: str
    copy: bool = False


@dataclass(frozen=True, slots=True)
class Discard:
    """Nothing is stored (RFC 5228 §4.4); present only when no Keep or FileInto is."""


@dataclass(frozen=True, slots=True)
class Vacation:
    """An auto-reply (RFC 5230 §4), subject to the once-per-``days`` rule delivery enforces.
    ``days`` is None when the script gave none (the site default applies), ``seconds`` the
    RFC 6131 period given instead; ``handle`` is the script's :handle or, without one, a
    digest of the parameters (§4.2)."""

    reason: str
    handle: str
    subject: str | None = None
    from_: str | None = None
    addresses: tuple[str, ...] = ()
    days: int | None = None
    mime: bool = False
    seconds: int | None = None
    fcc: Fcc | None = None


@dataclass(frozen=True, slots=True)
class Reject:
    """Refuse the message with ``reason`` (RFC 5429 §2.1); ``extended`` for ereject (§2.2),
    which asks for a refusal in the protocol where one can still be given."""

    reason: str
    extended: bool = False


@dataclass(frozen=True, slots=True)
class Notify:
    """A notification (RFC 5435 §3) by mailto (RFC 5436): ``method`` is the URI as the script
    gave it, ``mailto`` its parse; ``recipients`` those of its addresses no earlier notify
    of the run reached (RFC 5435 §7 lets a method collapse notifications; as Pigeonhole);
    ``importance`` 1 (high) to 3 (low); ``from_`` and ``message`` the script's or None."""

    method: str
    mailto: Mailto
    recipients: tuple[str, ...]
    importance: int = 2
    from_: str | None = None
    message: str | None = None
    fcc: Fcc | None = None


Action = Keep | FileInto | Redirect | Discard | Vacation | Reject | Notify


@dataclass(frozen=True, slots=True)
class Outcome:
    """The actions to take, in script order. ``error`` says why the script failed at run time,
    in which case the actions are only the implicit keep (RFC 5228 §2.10.6). ``message`` is
    the message with the header as ``addheader``/``deleteheader`` left it (RFC 5293), None
    when the script edited nothing: what keep and fileinto store. ``duplicates`` are the ids
    its duplicate tests record (RFC 7352 §3.1: none when it failed)."""

    actions: tuple[Action, ...]
    error: str | None = None
    message: bytes | None = None
    duplicates: tuple[Tracked, ...] = ()
