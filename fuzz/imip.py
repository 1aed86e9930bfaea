"""Fuzz the webmail's reading of invitations from mail (iMIP, RFC 6047: pillarbox.web.reading
``calendar_part``, pillarbox.mail.parse ``decoded_part``, pillarbox.ical's iTIP functions
behind pillarbox.web.invitations) and the free-busy request a CalDAV client POSTs to its
scheduling outbox (RFC 6638 §5, pillarbox.web.scheduleboxes).

Input: byte 0 even — a whole message, as anyone may mail it; odd — a POST body to the
outbox. Asserted, beyond "no exception" other than the documented ``InvalidObject``
(``ReplyNotApplied`` where a REPLY has a problem) and ``UnknownTransferEncoding``:

* a message's invitation (its first text/calendar leaf, within ``max_invitation_bytes``)
  that reads has a method in capitals and a UID; the warnings about who sent it are built;
* a REQUEST answered (each of Accept, Tentative, Decline): the object stored from it is one
  a CalDAV PUT accepts, holding the answer; the REPLY sent reads as a REPLY and, applied by
  the organizer to the event the REQUEST describes, sets the answer there;
* a REPLY set against an organizer's stored event with attendees: checked, and applied when
  the check finds no problem, giving an object a PUT still accepts; a CANCEL's organizer
  compared with a stored event's;
* a free-busy request that reads names an organizer, attendees and DTSTART < DTEND; each
  attendee's answer (the fixed recurring event as its busy time) and the whole
  ``schedule-response`` are an XML document that reads back with the same text.
"""

from __future__ import annotations

import contextlib
from datetime import UTC, datetime
from xml.etree import ElementTree

import atheris
import harness

with atheris.instrument_imports(include=["pillarbox"]):
    from pillarbox import davxml, ical
    from pillarbox.config import CalendarsSection
    from pillarbox.davxml import CALDAV, DAV, element, tag
    from pillarbox.mail.parse import UnknownTransferEncoding, decoded_part, parse_message
    from pillarbox.testing.icalendars import WEEKLY
    from pillarbox.web.invitations import originator_warning
    from pillarbox.web.reading import calendar_part
    from pillarbox.web.scheduleboxes import SUCCESS

NOW = datetime(2026, 1, 1, tzinfo=UTC)
ME = "ann@example.org"
LIMIT = CalendarsSection().max_invitation_bytes
#: The organizer's stored event a fuzzed REPLY answers: WEEKLY with Ann and Bob invited.
ORGANIZED = WEEKLY.replace(
    "UID:weekly-1\r\n",
    "UID:weekly-1\r\nORGANIZER;CN=Org:mailto:org@example.org\r\n"
    f"ATTENDEE;PARTSTAT=NEEDS-ACTION;RSVP=TRUE:mailto:{ME}\r\n"
    "ATTENDEE;CN=Bob:mailto:bob@example.org\r\n",
).encode()


def _request(ics: bytes) -> None:
    """A REQUEST answered by Ann, as the webmail's buttons do, and applied by its organizer."""
    invited = any(a.address.lower() == ME for a in ical.read_invitation(ics).attendees)
    for partstat in ical.ANSWERS:
        with contextlib.suppress(ical.InvalidObject):
            stored = ical.accepted_object(ics, ME, partstat)
            ical.read_object(stored, max_instances=200)
            if invited:
                assert ical.partstat_of(stored, ME) == partstat
        reply = ical.itip_reply(ics, ME, partstat, NOW)
        answer = ical.read_invitation(reply)
        assert answer.method == "REPLY" and answer.uid, answer
        # The organizer's event: the REQUEST without its METHOD, as the organizer keeps it.
        with contextlib.suppress(ical.InvalidObject):
            organized = ical.accepted_object(ics, "nobody@invalid", "ACCEPTED")
            ical.read_object(organized, max_instances=200)
            check = ical.check_reply(organized, reply)
            if invited and not check.problem:
                applied = ical.applied_reply(organized, reply)
                assert ical.partstat_of(applied, ME) == partstat, (partstat, applied)


def _reply(ics: bytes) -> None:
    try:
        check = ical.check_reply(ORGANIZED, ics)
    except ical.InvalidObject:
        return
    if check.problem:
        try:
            ical.applied_reply(ORGANIZED, ics)
        except ical.ReplyNotApplied:
            return
        raise AssertionError(f"applied despite {check.problem!r}")
    applied = ical.applied_reply(ORGANIZED, ics)
    ical.read_object(applied, max_instances=200)


def message(raw: bytes) -> None:
    info = parse_message(raw)
    part = calendar_part(info)
    if part is None:
        return
    try:
        ics = decoded_part(raw, part)
    except UnknownTransferEncoding:
        return
    if len(ics) > LIMIT:
        return
    try:
        invitation = ical.read_invitation(ics)
    except ical.InvalidObject:
        return
    assert invitation.uid and invitation.method == invitation.method.upper(), invitation
    originator_warning(info.envelope, invitation.organizer, "organizer")
    for attendee in invitation.attendees:
        originator_warning(info.envelope, attendee.address, "attendee")
    if invitation.method == "REQUEST":
        _request(ics)
    elif invitation.method == "REPLY":
        _reply(ics)
    elif invitation.method == "CANCEL":
        ical.organizer_of(ORGANIZED)


def _readable(root: ElementTree.Element) -> None:
    """``root`` as the outbox writes it reads back with the same text everywhere."""
    again = ElementTree.fromstring(davxml.document(root))
    for written, read in zip(root.iter(), again.iter(), strict=True):
        assert written.text == read.text, (written.text, read.text)


def freebusy(body: bytes) -> None:
    try:
        asked = ical.freebusy_request(body)
    except ical.InvalidObject:
        return  # the outbox answers valid-scheduling-message, else valid-calendar-data
    assert asked.organizer and asked.attendees and asked.start < asked.end, asked
    answers = []
    for attendee in asked.attendees[:3]:
        parts = [
            element(tag(CALDAV, "recipient"), None, element(tag(DAV, "href"), attendee)),
            element(tag(CALDAV, "request-status"), SUCCESS),
        ]
        with contextlib.suppress(ical.TooManyInstances):
            reply = ical.freebusy_reply(asked, attendee, [([WEEKLY.encode()], "")], NOW, 200)
            parts.append(element(tag(CALDAV, "calendar-data"), reply))
            calendar = ElementTree.fromstring(davxml.document(parts[-1])).text
            assert calendar == reply
        answers.append(element(tag(CALDAV, "response"), None, *parts))
    _readable(element(tag(CALDAV, "schedule-response"), None, *answers))


def check(data: bytes) -> None:
    if not data:
        return
    if data[0] % 2 == 0:
        message(data[1:])
    else:
        freebusy(data[1:])


def _mail(ics: str, encoding: str = "7bit") -> bytes:
    return (
        "From: Org <org@example.org>\r\nTo: ann@example.org\r\nSubject: Invitation\r\n"
        "MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n"
        "--b\r\nContent-Type: text/plain\r\n\r\nYou are invited.\r\n"
        "--b\r\nContent-Type: text/calendar; method=REQUEST; charset=utf-8\r\n"
        f"Content-Transfer-Encoding: {encoding}\r\n\r\n{ics}\r\n--b--\r\n"
    ).encode()


def seeds() -> list[bytes]:
    request = ORGANIZED.decode().replace("VERSION:2.0", "VERSION:2.0\r\nMETHOD:REQUEST")
    reply = (
        "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:x\r\nMETHOD:REPLY\r\nBEGIN:VEVENT\r\n"
        "UID:weekly-1\r\nDTSTAMP:20250101T000000Z\r\nORGANIZER:mailto:org@example.org\r\n"
        "ATTENDEE;PARTSTAT=ACCEPTED;CN=Bob:mailto:bob@example.org\r\nSEQUENCE:0\r\n"
        "END:VEVENT\r\nEND:VCALENDAR\r\n"
    )
    cancel = request.replace("METHOD:REQUEST", "METHOD:CANCEL")
    freebusy = (
        "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:x\r\nMETHOD:REQUEST\r\nBEGIN:VFREEBUSY\r\n"
        "UID:f\r\nDTSTAMP:20250101T000000Z\r\nDTSTART:20250101T000000Z\r\n"
        "DTEND:20250201T000000Z\r\nORGANIZER:mailto:ann@example.org\r\n"
        "ATTENDEE:mailto:bob@example.org\r\nATTENDEE:mailto:ann@example.org\r\n"
        "END:VFREEBUSY\r\nEND:VCALENDAR\r\n"
    )
    return [
        b"\x00" + _mail(request),
        b"\x00" + _mail(reply),
        b"\x00" + _mail(cancel),
        b"\x00" + _mail(request.replace("=", "=3D").replace("é", "=C3=A9"), "quoted-printable"),
        b"\x01" + freebusy.encode(),
    ]


if __name__ == "__main__":
    harness.main("imip", check, seeds(), max_len=16384)
