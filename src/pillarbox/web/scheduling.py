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
- **One decision** of what a stored change sends (:func:`schedule`), for a CalDAV PUT or
  DELETE and for the Calendar page's save and delete alike; and one record of what became
  of it (:func:`schedule_write`: SCHEDULE-STATUS, RFC 6638 §3.2.9, §7.3), so an event saved
  on the page carries the same statuses a phone's PUT of it would.
- **Copies in Sent**: what the webmail sends for the user (``sent_copy``) is kept in Sent as
  the compose form's messages are (:meth:`.mailaccess.MailAccess.keep_sent`), so the user
  sees they invited or answered; what the server sends for a phone's write is not (the user
  wrote no message; docs/calendars.md says why).
- **Who organizes**: an event without an ORGANIZER, or whose ORGANIZER is one of the
  account's identities, is the account's to schedule (:func:`meeting_of`); one organized by
  someone else (an accepted invitation) is not: its attendees are shown, not edited, and
  saving it sends nothing.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime
from email.headerregistry import Address
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime

from starlette.requests import Request

from pillarbox import ical
from pillarbox.blocking import run_blocking
from pillarbox.errors import NotFound, UserError
from pillarbox.identities import identities_of
from pillarbox.mail.people import Person, parse_people
from pillarbox.mail.trace import make_message_id
from pillarbox.observability.log import Log
from pillarbox.queue.intake import Submitted, submit
from pillarbox.services import Services
from pillarbox.smtp.replies import Reply
from pillarbox.store.types import Account, CalendarObject, Identity
from pillarbox.web import identities
from pillarbox.web.app import client_ip
from pillarbox.web.mailaccess import MailAccess

_log = Log("web.scheduling")

#: The subject's first word per method sent.
_SUBJECTS = {"REQUEST": "Invitation", "CANCEL": "Cancelled"}
#: A REPLY's subject's first word per PARTSTAT answered (RFC 5546 §3.2.3).
ANSWERED = {"ACCEPTED": "Accepted", "TENTATIVE": "Tentative", "DECLINED": "Declined"}


#: RFC 6638 §3.2.9's delivery status codes (SCHEDULE-STATUS, §7.3) for what iMIP can tell
#: (1.0, "pending", never: a status is written once the submission answered; 3.8, "access
#: privileges do not allow it", neither: CalDAV's privileges are not what refuses a message).
#: Taken for another server: "1.1 … successfully sent. However, the server does not have
#: explicit information about whether the scheduling message was successfully delivered"
#: (iMIP's store and forward).
SENT = "1.1"
#: In a hosted account's mailbox: "1.2 … successfully delivered".
DELIVERED = "1.2"
#: Refused for the address itself: "3.7 … did not recognize the calendar user address of
#: the recipient".
INVALID_USER = "3.7"
#: Refused for now: "5.1 … could not complete delivery … likely due to a temporary failure,
#: and the originator can try to send the message again at a later time".
NOT_DELIVERED = "5.1"
#: Refused for good: "5.2 … not able to find a suitable way to deliver the message … a
#: permanent failure".
UNDELIVERABLE = "5.2"
#: Refused by policy: "5.3 … rejected because scheduling with that recipient is not
#: allowed … a permanent failure".
REJECTED = "5.3"


@dataclass(frozen=True, slots=True)
class Delivery:
    """What sending one scheduling message did: ``warning`` "" when the submission took it
    (else why not: the Calendar page shows it), and each recipient's (lowercased) delivery
    status (:data:`SENT`, …), which CalDAV records in SCHEDULE-STATUS."""

    warning: str
    statuses: Mapping[str, str]


def delivery_statuses(recipients: Sequence[str], submitted: Submitted) -> dict[str, str]:
    """RFC 6638 §3.2.9: each recipient's delivery status after the submission path answered:
    its own refusal's, else (the message refused for all) the submission's."""
    refused = {address.lower(): reply for address, reply in submitted.refused}
    local = {address.lower() for address in submitted.local}
    statuses = {}
    for address in recipients:
        key = address.lower()
        reply = refused.get(key)
        if reply is not None:
            statuses[key] = _refusal_status(reply)
        elif not submitted.ok:
            statuses[key] = _refusal_status(submitted.reply)
        else:
            statuses[key] = DELIVERED if key in local else SENT
    return statuses


def _refusal_status(reply: Reply) -> str:
    """RFC 6638 §3.2.9: the delivery status an SMTP refusal tells. A transient one (4yz, RFC
    5321 §4.2.1) may succeed later: :data:`NOT_DELIVERED`; of the permanent ones, one for the
    address itself (RFC 3463 §3.2, "Addressing Status" X.1.Y: no such mailbox, bad syntax, no
    such domain) :data:`INVALID_USER`, one by policy (§3.8, "Security or Policy Status"
    X.7.Y: not authorized, a sending limit) :data:`REJECTED`, any other
    :data:`UNDELIVERABLE`."""
    if reply.code < 500:
        return NOT_DELIVERED
    subject = reply.enhanced.split(".")[1] if reply.enhanced is not None else "0"
    return {"1": INVALID_USER, "7": REJECTED}.get(subject, UNDELIVERABLE)


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
    known = await identities_of(services, account)
    if data is None:
        return Meeting(identities.default_identity(known), "", ())
    organizer, attendees = await run_blocking(ical.event_attendees, data)
    if not organizer:
        return Meeting(identities.default_identity(known), "", attendees)
    mine = next((i for i in known if i.address.lower() == organizer.lower()), None)
    return Meeting(mine, organizer, attendees)


async def _send_itip(
    request: Request, services: Services, account: Account, identity: Identity, data: bytes,
    method: str, recipients: Sequence[str], *, sent_copy: bool,
) -> Delivery:  # fmt: skip
    """Send the stored event ``data`` as ``method`` (REQUEST or CANCEL) to ``recipients``
    from ``identity``, a copy kept in Sent when ``sent_copy`` (the event is already saved:
    the page shows a message not sent as a warning)."""
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
        f"{_SUBJECTS[method]}: {title}", text, itip, method, now, sent_copy=sent_copy,
    )  # fmt: skip


async def send_reply(
    request: Request, services: Services, account: Account, identity: Identity, data: bytes,
    partstat: str, organizer: str, *, sent_copy: bool,
    instances: Mapping[date | datetime, str] | None = None,
) -> Delivery:  # fmt: skip
    """Send ``identity``'s answer ``partstat`` (one of :data:`pillarbox.ical.ANSWERS`) to the
    stored event ``data`` as a METHOD:REPLY (RFC 5546 §3.2.3) to its ``organizer`` — or, with
    ``instances``, its answers to those instances alone (:func:`pillarbox.ical.itip_reply`)
    —, a copy kept in Sent when ``sent_copy``."""
    now = datetime.now(UTC)
    reply = await run_blocking(ical.itip_reply, data, identity.address, partstat, now, instances)
    title = await _title(data)
    sender = identities.sender(identity, account)
    verb = ANSWERED[partstat]
    return await _submit_imip(
        request, services, account, identity, [organizer], f"{verb}: {title}",
        f"{sender.name or sender.address} has answered the invitation: {verb.lower()}.\n",
        reply, "REPLY", now, sent_copy=sent_copy,
    )  # fmt: skip


async def _title(data: bytes) -> str:
    fields = await run_blocking(ical.stored_fields, data)
    return " ".join(fields.summary.split()) or "(no title)"


async def _submit_imip(
    request: Request, services: Services, account: Account, identity: Identity,
    recipients: Sequence[str], subject: str, text: str, itip: bytes, method: str, now: datetime,
    *, sent_copy: bool,
) -> Delivery:  # fmt: skip
    """The iMIP message through the submission path, and (``sent_copy``) kept in Sent as the
    webmail keeps what it sends; the warning "" when it was taken and kept, else why not — a
    copy that could not be kept (the mailbox full) gives the compose form's warning
    (:data:`.mailaccess.SENT_NOT_KEPT`, the message went), as a message of its does."""
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
    statuses = delivery_statuses(recipients, submitted)
    refused = "; ".join(f"{address}: {reply.text}" for address, reply in submitted.refused)
    if not submitted.ok:
        return Delivery(f"not sent: {refused or submitted.reply.text}", statuses)
    unsent = f"not sent to {refused}" if refused else ""
    if not sent_copy:
        return Delivery(unsent, statuses)
    kept = await MailAccess(services, account).keep_sent(raw, now)
    if kept:
        _log.warning("invitation copy not kept", account=account.address, why=kept)
    return Delivery(kept or unsent, statuses)  # as the compose form's send (MailAccess.send)


async def _send_updates(
    request: Request, services: Services, account: Account, meeting: Meeting, data: bytes,
    previous: bytes | None, invited: Sequence[Person], *, changed: bool, sent_copy: bool,
) -> list[Delivery]:  # fmt: skip
    """After the organizer saved ``data`` (``previous`` before, None when new): the REQUEST
    to every attendee (RFC 5546 §3.2.2; an update to those invited before) — only to those
    newly invited when not ``changed`` (nothing the attendees' copies hold changed) — and to
    those taken off the list a CANCEL naming them (§3.2.5). One entry per message sent."""
    if meeting.organizer is None:
        return []
    results = []
    before = {a.address.lower() for a in meeting.attendees}
    asked = invited if changed else [p for p in invited if p.address.lower() not in before]
    if asked:
        sent = await _send_itip(
            request, services, account, meeting.organizer, data, "REQUEST",
            [p.address for p in asked], sent_copy=sent_copy,
        )  # fmt: skip
        results.append(sent)
    kept = {p.address.lower() for p in invited}
    removed = [a for a in meeting.attendees if a.address.lower() not in kept]
    if removed and previous is not None:
        person = identities.sender(meeting.organizer, account)
        cancelled = await run_blocking(
            ical.with_attendees, previous, person.address, person.name,
            [(a.address, a.name) for a in removed], datetime.now(UTC),
        )  # fmt: skip
        sent = await _send_itip(
            request, services, account, meeting.organizer, cancelled, "CANCEL",
            [a.address for a in removed], sent_copy=sent_copy,
        )  # fmt: skip
        results.append(sent)
    return results


# -- what a change of a stored event sends (RFC 6638 §3.2; the Calendar page's saves too) ----------


async def schedule(
    request: Request, services: Services, account: Account, previous: bytes | None,
    data: bytes | None, *, replies: bool, sent_copy: bool,
) -> list[Delivery]:  # fmt: skip
    """What the server sends for the account after an event was stored as ``data`` (None:
    deleted) over ``previous`` (None: new), whether a CalDAV client or the Calendar page
    wrote it: the organizer's REQUESTs and CANCELs (RFC 6638 §3.2.1: an update to all only
    when what the attendees' copies hold changed, :func:`pillarbox.ical.scheduled_content`),
    an attendee's REPLY (§3.2.2, when ``replies``). One entry per message sent; none when
    nothing had to be sent. The event is stored whatever happens here: a message not sent
    is a :attr:`Delivery.warning` (logged), as is an event iCalendar makes no iTIP message
    of (it passed RFC 4791 §4.1, not RFC 5546)."""
    try:
        results = await _decided(
            request, services, account, previous, data, replies=replies, sent_copy=sent_copy
        )
    except ical.InvalidObject as exc:
        results = [Delivery(f"not sent: {exc}", {})]
    for warning in (d.warning for d in results if d.warning):
        _log.warning("scheduling message not sent", account=account.address, why=warning)
    return results


async def schedule_write(
    request: Request, services: Services, account: Account, calendar: str,
    stored: CalendarObject, previous: bytes | None, *, replies: bool, sent_copy: bool,
) -> tuple[CalendarObject, list[Delivery]]:  # fmt: skip
    """After an event was written as ``stored`` in ``calendar`` over ``previous`` (None:
    new), by a CalDAV PUT or the Calendar page: what :func:`schedule` sends for it, then what
    became of it recorded (:func:`record_statuses`). The object as stored then, and the
    messages sent."""
    sent = await schedule(
        request, services, account, previous, stored.data, replies=replies, sent_copy=sent_copy
    )
    recorded = await record_statuses(services, account, calendar, stored, previous, sent)
    return recorded, sent


async def record_statuses(
    services: Services, account: Account, calendar: str, stored: CalendarObject,
    previous: bytes | None, sent: Sequence[Delivery],
) -> CalendarObject:  # fmt: skip
    """RFC 6638 §3.2.9, §7.3: ``stored`` (in ``calendar``, written over ``previous``) with
    what became of each message ``sent`` for it in SCHEDULE-STATUS — on the attendees of the
    organizer's copy, on the ORGANIZER of an attendee's —, a client's own value on those
    lines undone (:func:`pillarbox.ical.with_schedule_status`): written again, with the same
    Schedule-Tag, when that changes its bytes (the status is the attendee's line's
    participation, not the organizer's change, :func:`pillarbox.calendars.schedule_tag`)."""
    statuses = {address: code for d in sent for address, code in d.statuses.items()}
    own = frozenset(i.address.lower() for i in await identities_of(services, account))
    data = await run_blocking(ical.with_schedule_status, stored.data, previous, statuses, own)
    if data == stored.data:
        return stored
    # The messages took a while to submit: a write beside this one since then wins, and
    # keeps its own statuses (this is the same check-then-save as a PUT's If-Match).
    try:
        now_stored = await services.store.calendar_object(account.id, calendar, stored.name)
    except NotFound:
        return stored
    if now_stored.etag != stored.etag:
        return stored
    return await services.store.save_calendar_object(
        account.id,
        calendar,
        replace(stored, data=data),
        now=datetime.now(UTC),
        limit=services.config.calendars.max_objects,
    )


async def _decided(
    request: Request, services: Services, account: Account, previous: bytes | None,
    data: bytes | None, *, replies: bool, sent_copy: bool,
) -> list[Delivery]:  # fmt: skip
    """:func:`schedule`'s decision and sending, ``ical.InvalidObject`` not caught."""
    before = await _scheduling_of(services, account, previous)
    after = await _scheduling_of(services, account, data)
    organized = after if after is not None and after[0].organizer_address else before
    if organized is None or not organized[0].organizer_address:
        return []  # RFC 6638 §3.1: not a scheduling object resource (no ORGANIZER)
    meeting, by_client = organized
    if meeting.organizer_address.lower() in by_client:
        return []  # RFC 6638 §7.1: SCHEDULE-AGENT=CLIENT (or NONE): the client schedules
    if meeting.organizer is None:
        if not replies:
            return []
        return await _reply(
            request, services, account, before, after, previous, data, sent_copy=sent_copy
        )
    if data is None:
        # RFC 6638 §3.2.1: the organizer deleted the event: a CANCEL to every attendee.
        gone = _attendees(before) if before is not None else ()
        if not gone or previous is None:
            return []
        return [
            await _send_itip(
                request, services, account, meeting.organizer, previous, "CANCEL",
                [a.address for a in gone], sent_copy=sent_copy,
            )
        ]  # fmt: skip
    changed = previous is None or (
        await run_blocking(ical.scheduled_content, previous)
        != await run_blocking(ical.scheduled_content, data)
    )
    known = Meeting(
        meeting.organizer, meeting.organizer_address,
        _attendees(before) if before is not None else (),
    )  # fmt: skip
    asked = _attendees(after) if after is not None else ()
    return await _send_updates(
        request, services, account, known, data, previous,
        [Person(a.name, a.address) for a in asked], changed=changed, sent_copy=sent_copy,
    )  # fmt: skip


async def _scheduling_of(
    services: Services, account: Account, data: bytes | None
) -> tuple[Meeting, frozenset[str]] | None:
    """An event's scheduling as the account sees it, and who schedules themselves (§7.1)."""
    if data is None:
        return None
    return await meeting_of(services, account, data), await run_blocking(
        ical.client_scheduled, data
    )


def _attendees(scheduling: tuple[Meeting, frozenset[str]]) -> tuple[ical.Attendee, ...]:
    """The attendees the server sends to: not the organizer (iOS lists the organizer as an
    attendee too), not one a client schedules (RFC 6638 §7.1)."""
    meeting, by_client = scheduling
    skipped = by_client | {meeting.organizer_address.lower()}
    return tuple(a for a in meeting.attendees if a.address.lower() not in skipped)


async def _reply(
    request: Request,
    services: Services,
    account: Account,
    before: tuple[Meeting, frozenset[str]] | None,
    after: tuple[Meeting, frozenset[str]] | None,
    previous: bytes | None,
    data: bytes | None,
    *,
    sent_copy: bool,
) -> list[Delivery]:
    """RFC 6638 §3.2.2: the attendee's REPLY to the organizer when the account changed its
    own PARTSTAT (an answer: ACCEPTED, TENTATIVE, DECLINED), or DECLINED when it deleted the
    event; else, when it answered instances only (§3.2.2.3: an overridden instance's
    PARTSTAT changed, one added with its own, an EXDATE added: that instance declined), a
    REPLY answering those instances."""
    event = data or previous
    if event is None:
        return []
    known = {i.address.lower(): i for i in await identities_of(services, account)}
    held = after or before
    assert held is not None
    me = next((a for a in held[0].attendees if a.address.lower() in known), None)
    if me is None or me.address.lower() in held[1]:
        return []  # not an attendee, or one whose client answers itself (§7.1)
    was = _partstat(before, me.address)
    now = "DECLINED" if after is None else _partstat(after, me.address)
    instances: dict[date | datetime, str] | None = None
    if now == was or now not in ical.ANSWERS:
        if previous is None or data is None:
            return []
        instances = await run_blocking(ical.answered_instances, previous, data, me.address)
        if not instances:
            return []
        now = next(iter(instances.values()))  # the subject's word: the first one's answer
    return [
        await send_reply(
            request, services, account, known[me.address.lower()], event, now,
            held[0].organizer_address, sent_copy=sent_copy, instances=instances,
        )
    ]  # fmt: skip


def _partstat(scheduling: tuple[Meeting, frozenset[str]] | None, address: str) -> str:
    """``address``'s PARTSTAT in the event's series (NEEDS-ACTION for a new event)."""
    if scheduling is None:
        return "NEEDS-ACTION"
    return next(
        (a.partstat for a in scheduling[0].attendees if a.address.lower() == address.lower()),
        "",
    )
