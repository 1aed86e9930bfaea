"""Invitations in the webmail: a message carrying an iTIP scheduling message (RFC 5546) over
iMIP (RFC 6047) shows its event with the answers it takes, and an answer updates the account's
calendar and tells the organizer.

Implementation notes:

- **Which part**: the first ``text/calendar`` leaf of the message (RFC 6047 §2.4; not inside
  an attached message), no larger than ``[calendars] max_invitation_bytes``; parsed by
  ``icalendar`` off the event loop (:func:`pillarbox.ical.read_invitation`). A part too large,
  not UTF-8, or not a scheduling message gets a note instead of the summary.
- **REQUEST** (RFC 5546 §3.2.2): Accept, Tentative or Decline store the event in the default
  calendar (``personal``, else the first; replacing the object of the same UID there, so an
  updated invitation updates it) without its METHOD (RFC 4791 §4.1) and with the reader's
  PARTSTAT, through :func:`.calendarpage.store_event` (what a CalDAV PUT does: phones see
  it), then send a METHOD:REPLY (§3.2.3, :func:`.scheduling.send_reply`) to the organizer
  through the submission path the webmail's own sending takes, from the identity the
  invitation addressed, and what became of it written on the stored copy's ORGANIZER as
  SCHEDULE-STATUS (RFC 6638 §7.3, :func:`.scheduling.record_statuses`, as for a phone's
  answer). Once the REPLY is sent, the invitation's message is marked
  ``\\Answered`` as a client marks what it replied to (RFC 9051 §2.3.2) — in a folder shared
  with the reader, only with the right to set it (RFC 4314 §4: "w").
- **CANCEL** (§3.2.5): "Remove from calendar" deletes the object of that UID from every
  calendar of the account holding it whose ORGANIZER is the CANCEL's (§3.2.5: only the
  organizer cancels; an attendee knowing the UID of the reader's own event, or of one
  someone else organizes, cannot have it removed).
- **REPLY** (§3.2.3), the organizer's side: the event of that UID in the account's calendars
  (the first holding it) is checked against the answer (:func:`pillarbox.ical.check_reply`:
  the replier one of its attendees, the SEQUENCE not older than the stored one); "Update the
  event" sets only that attendee's PARTSTAT in the stored object, edited in place (what a
  phone wrote stays), and stored as a CalDAV PUT stores it.
- **Who sent it** (RFC 6047 §3, without S/MIME to tell the signer): the message's From and
  Sender (each of its mailboxes) are held against the ATTENDEE a REPLY names, and against a
  REQUEST's or a CANCEL's ORGANIZER. When one differs, the page warns
  (:func:`originator_warning`); a REPLY is then applied, a CANCEL's event removed, only when
  the reader ticks "apply it anyway" / "remove it anyway" (§3 step 2: warn, encourage
  ignoring it, let the user decide), and the POST is refused without that tick.
- The reader is the attendee whose address is one of the account's identities; a REQUEST
  naming none of them (sent to a list, say) is answered as the default identity.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, tzinfo
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from pillarbox import ical
from pillarbox.blocking import run_blocking
from pillarbox.calendars import default_calendar, object_name
from pillarbox.errors import NotFound, UserError
from pillarbox.identities import identities_of
from pillarbox.mail.model import Envelope
from pillarbox.mail.parse import UnknownTransferEncoding, decoded_part
from pillarbox.mail.people import people
from pillarbox.observability.log import Log
from pillarbox.services import Services
from pillarbox.store.types import Account, CalendarObject, Identity
from pillarbox.web import identities
from pillarbox.web.app import (
    field_text,
    posted_form,
    redirect,
    require_account,
    sealed,
    web,
)
from pillarbox.web.caldav import account_calendars
from pillarbox.web.calendarpage import span_text, store_event
from pillarbox.web.mailaccess import SENT_NOT_KEPT, MailAccess, Opened
from pillarbox.web.reading import calendar_part
from pillarbox.web.scheduling import ANSWERED, record_statuses, send_reply

_log = Log("web.invitations")

#: The form's answers to a REQUEST and the PARTSTAT each writes (RFC 5546 §3.2.3).
_ANSWERS = {"accept": "ACCEPTED", "tentative": "TENTATIVE", "decline": "DECLINED"}
#: A REPLY's PARTSTAT as the organizer reads it (RFC 5545 §3.2.12).
_REPLIED = {
    "ACCEPTED": "accepted",
    "TENTATIVE": "accepted tentatively",
    "DECLINED": "declined",
    "DELEGATED": "delegated",
    "NEEDS-ACTION": "has not decided yet",
}


@dataclass(frozen=True, slots=True)
class Summary:
    """What the message page shows of an invitation: its summary, or a note why not."""

    invitation: ical.Invitation | None
    note: str = ""
    #: The reader's answer as the stored event has it ("" when the event is not stored).
    answered: str = ""
    in_calendar: bool = False
    #: When the event is, in the reader's time zone.
    when: str = ""
    #: A REPLY set against the organizer's stored event (None: not a REPLY, or no such event).
    reply: ical.ReplyCheck | None = None
    #: What a REPLY says, as a sentence ("Ann accepted").
    replied: str = ""
    #: Why the message may not come from whom it names (RFC 6047 §3); "" when it does.
    warning: str = ""


async def _part_data(services: Services, opened: Opened) -> bytes | None:
    """The text/calendar part's bytes; ``UserError`` when it cannot be read as one."""
    part = calendar_part(opened.info)
    if part is None:
        return None
    limit = services.config.calendars.max_invitation_bytes
    if part.body_end - part.body_start > limit * 2:  # base64 grows a third; bounded early
        raise UserError("the invitation is too large to show")
    try:
        data = decoded_part(opened.raw, part)
    except UnknownTransferEncoding:
        raise UserError("the invitation's transfer encoding is unknown") from None
    if len(data) > limit:
        raise UserError("the invitation is too large to show")
    return data


async def shown(
    services: Services, account: Account, opened: Opened, zone: tzinfo
) -> Summary | None:
    """The invitation a message carries, as its page shows it (times in ``zone``); None
    without one."""
    try:
        data = await _part_data(services, opened)
        if data is None:
            return None
        invitation = await run_blocking(ical.read_invitation, data)
    except UserError as exc:
        return Summary(None, str(exc))
    except ical.InvalidObject as exc:
        _log.info("invitation unreadable", account=account.address, reason=str(exc))
        return Summary(None, "this message carries calendar data that cannot be read")
    when = "" if invitation.start is None else span_text(invitation.start, invitation.end, zone)
    if invitation.method == "REPLY":
        return await _reply_shown(services, account, opened, invitation, data, when)
    warning = _organizer_warning(opened.info.envelope, invitation)
    addresses = {i.address.lower() for i in await identities_of(services, account)}
    mine = next((a for a in invitation.attendees if a.address.lower() in addresses), None)
    calendars = await services.store.list_calendars(account.id)
    calendar = await default_calendar(services, account, calendars)
    try:
        stored = await services.store.calendar_object_by_uid(account.id, calendar, invitation.uid)
    except NotFound:
        return Summary(invitation, when=when, warning=warning)
    answered = ""
    if mine is not None:
        answered = await run_blocking(ical.partstat_of, stored.data, mine.address)
    return Summary(invitation, answered=answered, in_calendar=True, when=when, warning=warning)


def originator_warning(envelope: Envelope, named: str, role: str) -> str:
    """Why the message may not be from ``named`` (the REPLY's ATTENDEE or the REQUEST's
    ORGANIZER, whose ``role`` the sentence names): a mailbox of its From or Sender that is
    not that address (RFC 6047 §3; the parser gives Sender the From's value when absent,
    RFC 5322 §3.6.2); "" when every one is."""
    senders = {p.address.lower(): p for p in [*people(envelope.from_), *people(envelope.sender)]}
    others = [str(p) for address, p in senders.items() if address != named.lower()]
    if not others:
        return ""
    return (
        f"This message was sent by {', '.join(others)}, not by the {role} it names "
        f"({named}): it may not come from them."
    )


def _organizer_warning(envelope: Envelope, invitation: ical.Invitation) -> str:
    """Why a REQUEST or a CANCEL may not be from its organizer (RFC 6047 §3); a CANCEL
    naming none (RFC 5546 §3.2.5 requires one) has nobody it could be from."""
    if invitation.method not in ("REQUEST", "CANCEL"):
        return ""
    if invitation.organizer:
        return originator_warning(envelope, invitation.organizer, "organizer")
    if invitation.method == "CANCEL":
        return "This cancellation names no organizer: it may not come from whoever made the event."
    return ""


async def _holding(
    services: Services, account: Account, uid: str
) -> list[tuple[str, CalendarObject]]:
    """(calendar, object) of each of the account's calendars holding an event of ``uid``."""
    held = []
    for calendar in await services.store.list_calendars(account.id):
        try:
            found = await services.store.calendar_object_by_uid(account.id, calendar.name, uid)
        except NotFound:
            continue
        held.append((calendar.name, found))
    return held


def _replied(check: ical.ReplyCheck) -> str:
    """What a REPLY says, as the organizer reads it: "Ann accepted"."""
    who = check.name or check.attendee
    return f"{who} {_REPLIED.get(check.partstat, check.partstat.lower())}"


async def _reply_shown(
    services: Services, account: Account, opened: Opened, invitation: ical.Invitation,
    data: bytes, when: str,
) -> Summary:  # fmt: skip
    held = await _holding(services, account, invitation.uid)
    if not held:
        return Summary(invitation, "The event this answers is not in your calendars.", when=when)
    try:
        check = await run_blocking(ical.check_reply, held[0][1].data, data)
    except ical.InvalidObject as exc:
        return Summary(invitation, f"This answer cannot be applied: {exc}.", when=when)
    return Summary(
        invitation, when=when, in_calendar=True, reply=check, replied=_replied(check),
        warning=originator_warning(opened.info.envelope, check.attendee, "attendee"),
    )  # fmt: skip


async def _answer(
    request: Request, access: MailAccess, opened: Opened, data: bytes, partstat: str
) -> str:
    """Store the event with the reader's answer and send the REPLY, the message then marked
    \\Answered (as far as the reader's rights on its folder allow); the notice to show."""
    services, account = access.services, access.account
    invitation = await run_blocking(ical.read_invitation, data)
    if invitation.method != "REQUEST":
        raise UserError("only an invitation (a REQUEST) takes an answer")
    known: list[Identity] = await identities_of(services, account)
    identity = identities.identity_for(known, [a.address for a in invitation.attendees])
    stored = await run_blocking(ical.accepted_object, data, identity.address, partstat)
    # The default calendar (made first if the account has none).
    calendar = await default_calendar(services, account, await account_calendars(request, account))
    current: CalendarObject | None
    try:
        current = await services.store.calendar_object_by_uid(account.id, calendar, invitation.uid)
        name = current.name
    except NotFound:
        current, name = None, object_name(invitation.uid)
    saved = await store_event(services, account, calendar, name, stored, current)
    if not invitation.organizer or "@" not in invitation.organizer:
        return "Saved in your calendar (the invitation names no organizer to answer)."
    delivery = await send_reply(
        request,
        services,
        account,
        identity,
        data,
        partstat,
        invitation.organizer,
        sent_copy=True,
    )
    # RFC 6638 §7.3: what became of the REPLY, on the ORGANIZER of the copy, as a phone's
    # answer over CalDAV records it.
    await record_statuses(
        services, account, calendar, saved, current.data if current else None, [delivery]
    )
    unsent = delivery.warning
    if unsent and unsent != SENT_NOT_KEPT:
        return f"Saved in your calendar, but the answer was {unsent}"
    await access.mark_answered(opened)
    told = f"{ANSWERED[partstat]}: saved in your calendar and the organizer told"
    # The answer went; only its copy in Sent did not: the compose form's warning.
    return f"{told} (the answer was {unsent})." if unsent else f"{told}."


async def _remove(
    services: Services, account: Account, opened: Opened, data: bytes, *, trusted: bool
) -> str:
    """Delete the cancelled event where the CANCEL's organizer is the stored event's (RFC
    5546 §3.2.5); from a message not sent by that organizer only when the reader
    ``trusted`` it (RFC 6047 §3)."""
    invitation = await run_blocking(ical.read_invitation, data)
    if invitation.method != "CANCEL":
        raise UserError("only a cancellation (a CANCEL) removes an event")
    warning = _organizer_warning(opened.info.envelope, invitation)
    if warning and not trusted:
        _log.info("invitation cancel not from its organizer", account=account.address)
        raise UserError(f'{warning} Tick "remove it anyway" to remove the event all the same')
    held = await _holding(services, account, invitation.uid)
    organizer = invitation.organizer.lower()
    removed = 0
    for calendar, found in held:
        if (await run_blocking(ical.organizer_of, found.data)).lower() != organizer:
            continue
        await services.store.delete_calendar_object(
            account.id, calendar, found.name, now=datetime.now(UTC)
        )
        removed += 1
    if removed:
        return "Removed from your calendar."
    if held:
        _log.info("invitation cancel for another organizer's event", account=account.address)
        return "Not removed: the event in your calendar has another organizer."
    return "It was not in your calendar."


async def _apply(
    services: Services, account: Account, opened: Opened, data: bytes, *, trusted: bool
) -> str:
    """Set the replying attendee's PARTSTAT in the organizer's event (RFC 5546 §3.2.3); from
    a message not sent by that attendee only when the organizer ``trusted`` it (RFC 6047 §3)."""
    invitation = await run_blocking(ical.read_invitation, data)
    if invitation.method != "REPLY":
        raise UserError("only an answer (a REPLY) updates an event")
    held = await _holding(services, account, invitation.uid)
    if not held:
        raise UserError("the event this answers is not in your calendars")
    calendar, stored = held[0]
    check = await run_blocking(ical.check_reply, stored.data, data)
    if check.problem:
        raise UserError(check.problem)
    warning = originator_warning(opened.info.envelope, check.attendee, "attendee")
    if warning and not trusted:
        _log.info("invitation reply not from its attendee", account=account.address)
        raise UserError(f'{warning} Tick "apply it anyway" to update the event all the same')
    updated = await run_blocking(ical.applied_reply, stored.data, data)
    # RFC 6638 §3.2.10: an answer the server applies keeps the organizer's Schedule-Tag.
    await store_event(services, account, calendar, stored.name, updated, stored, reply=True)
    _log.info("invitation reply applied", account=account.address, partstat=check.partstat)
    return f"Event updated: {_replied(check)}."


async def answer(request: Request) -> Response:
    """POST ``/mail/{mailbox}/{uid}/invitation``: an answer (accept, tentative, decline) to a
    REQUEST, ``remove`` for a CANCEL, ``apply`` for a REPLY."""
    services = web(request).services
    account = await require_account(request)
    form = await posted_form(request)
    access = MailAccess(services, account)
    opened = await access.open(request.path_params["mailbox"], request.path_params["uid"])
    base = f"/mail/{opened.mailbox.id}/{opened.record.uid}"
    action = field_text(form, "action")
    try:
        data = await _part_data(services, opened)
        if data is None:
            raise UserError("this message carries no invitation")
        trusted = field_text(form, "trust") == "yes"
        if action == "remove":
            notice = await _remove(services, account, opened, data, trusted=trusted)
        elif action == "apply":
            notice = await _apply(services, account, opened, data, trusted=trusted)
        elif action in _ANSWERS:
            notice = await _answer(request, access, opened, data, _ANSWERS[action])
        else:
            raise UserError("choose an answer")
    except ical.InvalidObject:
        raise UserError("this message carries calendar data that cannot be read") from None
    return redirect(f"{base}?" + urlencode(sealed(request, "invitation", notice)))


def routes() -> list[BaseRoute]:
    return [Route("/mail/{mailbox:int}/{uid:int}/invitation", answer, methods=["POST"])]
