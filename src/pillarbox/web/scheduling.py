"""Scheduling messages the webmail sends: iTIP (RFC 5546) over iMIP (RFC 6047) — an
attendee's REPLY (:mod:`.invitations`) and an organizer's REQUEST and CANCEL (the Calendar
page's attendees, :mod:`.calendarpage`); and those CalDAV's implicit scheduling sends for
what a phone stores (RFC 6638, :mod:`.caldav`: REQUEST, CANCEL and REPLY, :func:`send_reply`).

Implementation notes:

- **The message** (RFC 6047 §2.4): a short ``text/plain`` and the iCalendar object as a
  ``text/calendar; method=…`` alternative (the parameter names the object's METHOD, §2.4),
  from the identity that organizes or answers.
- **One path out**: every message goes through :func:`pillarbox.queue.intake.submit`, as the
  webmail's own sending does: the sender checks, the account's sending limits, DKIM signing,
  the queue. The attendees typed in the Calendar page's form are read by the compose form's
  parser and held to its ``[web] max_recipients`` (:func:`attendees_field`): the same checks
  as a message, no others.
- **Who organizes**: an event without an ORGANIZER, or whose ORGANIZER is one of the
  account's identities, is the account's to schedule (:func:`meeting_of`); one organized by
  someone else (an accepted invitation) is not: its attendees are shown, not edited, and
  saving it sends nothing.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from email.headerregistry import Address
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime

from starlette.requests import Request

from pillarbox import ical
from pillarbox.blocking import run_blocking
from pillarbox.errors import UserError
from pillarbox.mail.trace import make_message_id
from pillarbox.observability.log import Log
from pillarbox.queue.intake import submit
from pillarbox.services import Services
from pillarbox.store.types import Account, Identity
from pillarbox.web import identities
from pillarbox.web.app import client_ip
from pillarbox.web.composing import parse_people
from pillarbox.web.reading import Person

_log = Log("web.scheduling")

#: The subject's first word per method sent.
_SUBJECTS = {"REQUEST": "Invitation", "CANCEL": "Cancelled"}
#: A REPLY's subject's first word per PARTSTAT answered (RFC 5546 §3.2.3).
ANSWERED = {"ACCEPTED": "Accepted", "TENTATIVE": "Tentative", "DECLINED": "Declined"}


def imip_message(
    sender: Person, to: Sequence[str], subject: str, text: str, itip: bytes, method: str,
    *, hostname: str, now: datetime,
) -> bytes:  # fmt: skip
    """An iMIP message (RFC 6047 §2.4) carrying ``itip``, whose METHOD is ``method``."""
    message = EmailMessage(policy=SMTP)
    message["Date"] = format_datetime(now)
    local, _, domain = sender.address.rpartition("@")
    message["From"] = Address(sender.name, local, domain)
    message["To"] = ", ".join(to)
    message["Subject"] = subject
    message["Message-ID"] = make_message_id(secrets.token_hex(12), hostname)
    message.set_content(text)
    message.add_alternative(
        itip, maintype="text", subtype="calendar", params={"method": method, "charset": "utf-8"}
    )
    return message.as_bytes()


def attendees_field(text: str, *, max_recipients: int) -> list[Person]:
    """The addresses of the form's Attendees field (comma-separated, as the compose form's To),
    each once; ``UserError`` for an invalid one or more than a message may have."""
    valid, invalid = parse_people(text)
    if invalid:
        raise UserError("not a valid attendee address: " + ", ".join(invalid))
    unique = list({p.address.lower(): p for p in valid}.values())
    if len(unique) > max_recipients:
        raise UserError(f"at most {max_recipients} attendees")
    return unique


@dataclass(frozen=True, slots=True)
class Meeting:
    """An event's scheduling as the account sees it."""

    #: The identity the account organizes it as; None when someone else organizes it.
    organizer: Identity | None
    #: Its organizer's address as stored ("" for an event without one).
    organizer_address: str
    attendees: tuple[ical.Attendee, ...]


async def meeting_of(services: Services, account: Account, data: bytes | None) -> Meeting:
    """The scheduling of a stored event (``data``; None for a new one)."""
    known = await identities.identities_of(services, account)
    if data is None:
        return Meeting(identities.default_identity(known), "", ())
    organizer, attendees = await run_blocking(ical.event_attendees, data)
    if not organizer:
        return Meeting(identities.default_identity(known), "", attendees)
    mine = next((i for i in known if i.address.lower() == organizer.lower()), None)
    return Meeting(mine, organizer, attendees)


async def send_itip(
    request: Request, services: Services, account: Account, identity: Identity, data: bytes,
    method: str, recipients: Sequence[str],
) -> str:  # fmt: skip
    """Send the stored event ``data`` as ``method`` (REQUEST or CANCEL) to ``recipients``
    from ``identity``; "" when the submission took it, else why not (the event is already
    saved: the page shows this as a warning)."""
    now = datetime.now(UTC)
    itip = await run_blocking(ical.itip_request, data, method, now)
    title = await _title(data)
    sender = identities.sender(identity, account)
    who = sender.name or sender.address
    text = (
        f"{who} invites you to {title}.\n"
        if method == "REQUEST"
        else f"{who} has cancelled {title}.\n"
    )
    return await _submit_imip(
        request, services, account, identity, recipients,
        f"{_SUBJECTS[method]}: {title}", text, itip, method, now,
    )  # fmt: skip


async def send_reply(
    request: Request, services: Services, account: Account, identity: Identity, data: bytes,
    partstat: str, organizer: str,
) -> str:  # fmt: skip
    """Send ``identity``'s answer ``partstat`` (one of :data:`pillarbox.ical.ANSWERS`) to the
    stored event ``data`` as a METHOD:REPLY (RFC 5546 §3.2.3) to its ``organizer``; "" when
    the submission took it, else why not."""
    now = datetime.now(UTC)
    reply = await run_blocking(ical.itip_reply, data, identity.address, partstat, now)
    title = await _title(data)
    sender = identities.sender(identity, account)
    verb = ANSWERED[partstat]
    return await _submit_imip(
        request, services, account, identity, [organizer], f"{verb}: {title}",
        f"{sender.name or sender.address} has answered the invitation: {verb.lower()}.\n",
        reply, "REPLY", now,
    )  # fmt: skip


async def _title(data: bytes) -> str:
    fields = await run_blocking(ical.stored_fields, data)
    return " ".join(fields.summary.split()) or "(no title)"


async def _submit_imip(
    request: Request, services: Services, account: Account, identity: Identity,
    recipients: Sequence[str], subject: str, text: str, itip: bytes, method: str, now: datetime,
) -> str:  # fmt: skip
    """The iMIP message through the submission path; "" when it was taken, else why not."""
    raw = imip_message(
        identities.sender(identity, account), recipients, subject, text, itip, method,
        hostname=services.hostname, now=now,
    )  # fmt: skip
    submitted = await submit(
        services,
        account,
        raw,
        identity.address,
        recipients,
        client_ip=client_ip(request),
        tls=request.url.scheme == "https",
    )
    _log.info(
        "invitation sent" if method != "REPLY" else "invitation answered",
        account=account.address,
        method=method,
        recipients=len(recipients),
        reply=str(submitted.reply.code),
    )
    refused = "; ".join(f"{address}: {reply.text}" for address, reply in submitted.refused)
    if not submitted.ok:
        return f"not sent: {refused or submitted.reply.text}"
    return f"not sent to {refused}" if refused else ""


async def send_updates(
    request: Request, services: Services, account: Account, meeting: Meeting, data: bytes,
    previous: bytes | None, invited: Sequence[Person], *, changed: bool = True,
) -> str:  # fmt: skip
    """After the organizer saved ``data`` (``previous`` before, None when new): the REQUEST
    to every attendee (RFC 5546 §3.2.2; an update to those invited before) — only to those
    newly invited when not ``changed`` (nothing the attendees' copies hold changed) — and to
    those taken off the list a CANCEL naming them (§3.2.5). What was not sent, "" when all
    was."""
    if meeting.organizer is None:
        return ""
    warnings = []
    before = {a.address.lower() for a in meeting.attendees}
    asked = invited if changed else [p for p in invited if p.address.lower() not in before]
    if asked:
        sent = await send_itip(
            request, services, account, meeting.organizer, data, "REQUEST",
            [p.address for p in asked],
        )  # fmt: skip
        warnings.append(sent)
    kept = {p.address.lower() for p in invited}
    removed = [a for a in meeting.attendees if a.address.lower() not in kept]
    if removed and previous is not None:
        person = identities.sender(meeting.organizer, account)
        cancelled = await run_blocking(
            ical.with_attendees, previous, person.address, person.name,
            [(a.address, a.name) for a in removed],
        )  # fmt: skip
        sent = await send_itip(
            request, services, account, meeting.organizer, cancelled, "CANCEL",
            [a.address for a in removed],
        )  # fmt: skip
        warnings.append(sent)
    return "; ".join(w for w in warnings if w)
