"""RFC 6638 in :mod:`pillarbox.ical`: who schedules themselves (SCHEDULE-AGENT, §7.1) and
what of an event its attendees' copies hold (a write changing only the rest sends nothing)."""

from __future__ import annotations

from datetime import UTC, datetime

import icalendar
import pytest

from pillarbox import ical


def meeting(*lines: str, start: str = "20310304T093000Z") -> bytes:
    body = "\r\n".join(lines)
    return (
        "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//Test//EN\r\nBEGIN:VEVENT\r\nUID:m1\r\n"
        f"DTSTAMP:20310101T000000Z\r\nDTSTART:{start}\r\nSUMMARY:Roadmap\r\n"
        f"ORGANIZER:mailto:alice@example.org\r\n{body}\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n"
    ).encode()


def test_client_scheduled_names_those_whose_agent_is_not_the_server() -> None:
    data = meeting(
        "ATTENDEE;PARTSTAT=NEEDS-ACTION:mailto:bob@example.org",
        "ATTENDEE;SCHEDULE-AGENT=CLIENT:mailto:Carol@example.org",
        "ATTENDEE;SCHEDULE-AGENT=NONE:mailto:dan@example.org",
        "ATTENDEE;SCHEDULE-AGENT=SERVER:mailto:eve@example.org",
    )
    assert ical.client_scheduled(data) == {"carol@example.org", "dan@example.org"}
    by_client = meeting("ATTENDEE:mailto:bob@example.org").replace(
        b"ORGANIZER:", b"ORGANIZER;SCHEDULE-AGENT=CLIENT:"
    )
    assert ical.client_scheduled(by_client) == {"alice@example.org"}


def test_scheduled_content_changes_with_what_attendees_hold_only() -> None:
    base = meeting("ATTENDEE:mailto:bob@example.org")
    same = ical.scheduled_content(base)
    # An answer written back, an alarm, a colour: the attendees' copies stay as they are.
    answered = meeting(
        "ATTENDEE;PARTSTAT=ACCEPTED:mailto:bob@example.org",
        "X-APPLE-COLOR:#ff0000",
        "BEGIN:VALARM\r\nACTION:DISPLAY\r\nDESCRIPTION:x\r\nTRIGGER:-PT5M\r\nEND:VALARM",
    )
    assert ical.scheduled_content(answered) == same
    moved = meeting("ATTENDEE:mailto:bob@example.org", start="20310304T110000Z")
    assert ical.scheduled_content(moved) != same
    renamed = base.replace(b"SUMMARY:Roadmap", b"SUMMARY:Roadmap v2")
    assert ical.scheduled_content(renamed) != same
    raised = meeting("ATTENDEE:mailto:bob@example.org", "SEQUENCE:1")
    assert ical.scheduled_content(raised) != same


def test_scheduling_of_tells_answers_from_the_organizers_changes() -> None:
    """§3.2.10: what the Schedule-Tag rules compare. Answers (PARTSTAT, RSVP,
    SCHEDULE-STATUS) and stamps do not count, anything else does. §3.1: the event is a
    scheduling object resource of the organizer's calendar and of an attendee's, not of
    anybody else's; an event without an ORGANIZER is none."""
    base = meeting("ATTENDEE;PARTSTAT=NEEDS-ACTION;RSVP=TRUE:mailto:Bob@example.org")
    scheduling = ical.scheduling_of(base)
    assert scheduling is not None and scheduling.organizer == "alice@example.org"
    assert scheduling.owned_by(frozenset({"alice@example.org"}))
    assert scheduling.owned_by(frozenset({"bob@example.org"}))
    assert not scheduling.owned_by(frozenset({"carol@example.org"}))
    answered = meeting(
        "ATTENDEE;PARTSTAT=ACCEPTED;SCHEDULE-STATUS=2.0:mailto:Bob@example.org",
        "LAST-MODIFIED:20310102T000000Z",
    ).replace(b"DTSTAMP:20310101T000000Z", b"DTSTAMP:20310102T080000Z")
    assert ical.scheduling_of(answered) == scheduling
    for changed in (
        meeting("ATTENDEE;PARTSTAT=NEEDS-ACTION:mailto:Bob@example.org", start="20310305T090000Z"),
        meeting("ATTENDEE:mailto:Bob@example.org", "ATTENDEE:mailto:carol@example.org"),
        meeting("ATTENDEE;ROLE=OPT-PARTICIPANT:mailto:Bob@example.org"),
        meeting(
            "ATTENDEE:mailto:Bob@example.org",
            "BEGIN:VALARM\r\nACTION:DISPLAY\r\nDESCRIPTION:x\r\nTRIGGER:-PT5M\r\nEND:VALARM",
        ),
    ):
        assert ical.scheduling_of(changed) != scheduling
    alone = ical.scheduling_of(meeting("X-NOTE:no attendees"))
    assert alone is not None and alone.attendees == frozenset()
    unorganized = meeting("ATTENDEE:mailto:bob@example.org").replace(b"ORGANIZER:", b"X-ORG:")
    assert ical.scheduling_of(unorganized) is None
    # The migration's guess, without the owner's addresses: a meeting, with attendees.
    assert ical.schedules(base) and not ical.schedules(meeting("X-NOTE:no attendees"))
    assert not ical.schedules(b"not iCalendar")


def freebusy(*lines: str, method: str = "REQUEST") -> bytes:
    body = "".join(f"{line}\r\n" for line in lines)
    return (
        f"BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//Test//EN\r\nMETHOD:{method}\r\n"
        f"BEGIN:VFREEBUSY\r\nUID:fb\r\nDTSTAMP:20310101T000000Z\r\n{body}"
        "END:VFREEBUSY\r\nEND:VCALENDAR\r\n"
    ).encode()


def test_freebusy_request_takes_what_rfc_5546_requires() -> None:
    """§5 (RFC 5546 §3.3.2): METHOD:REQUEST, one VFREEBUSY with an ORGANIZER, an ATTENDEE and
    DTSTART < DTEND (a floating time read as UTC); else ``valid-scheduling-message``."""
    whole = (
        "DTSTART:20310304T000000Z", "DTEND:20310305T000000", "ORGANIZER:mailto:a@example.org",
        "ATTENDEE:mailto:b@example.org", "ATTENDEE:mailto:b@example.org",
    )  # fmt: skip
    asked = ical.freebusy_request(freebusy(*whole))
    assert (asked.uid, asked.organizer, asked.attendees) == (
        "fb", "mailto:a@example.org", ("mailto:b@example.org",),
    )  # fmt: skip
    assert (asked.start.isoformat(), asked.end.isoformat()) == (
        "2031-03-04T00:00:00+00:00", "2031-03-05T00:00:00+00:00",
    )  # fmt: skip
    for refused in (
        freebusy(*whole, method="PUBLISH"),
        freebusy(*whole[:3]),  # no attendee
        freebusy(*whole[1:]),  # no start
        freebusy("DTSTART:20310306T000000Z", *whole[1:]),  # starts after it ends
        freebusy(*whole).replace(b"VFREEBUSY", b"VEVENT"),
    ):
        with pytest.raises(ical.InvalidObject) as caught:
            ical.freebusy_request(refused)
        assert caught.value.condition == "valid-scheduling-message"


def test_freebusy_reply_is_the_free_busy_query_answer_with_its_scheduling_lines() -> None:
    """One writer for both answers of busy time: the outbox's METHOD:REPLY (RFC 5546 §3.3.3)
    is the free-busy-query's VFREEBUSY (RFC 4791 §7.10) with METHOD, UID (TEXT, escaped),
    ORGANIZER and ATTENDEE added — the same FREEBUSY lines, no VALUE=PERIOD (the type's
    default) — and a line longer than 75 octets folded (RFC 5545 §3.1)."""
    attendee = "mailto:" + "b" * 70 + "@example.org"
    asked = ical.FreeBusyRequest(
        "fb;1", "mailto:a@example.org", (attendee,),
        datetime(2031, 3, 4, tzinfo=UTC), datetime(2031, 3, 5, tzinfo=UTC),
    )  # fmt: skip
    busy = meeting("ATTENDEE:mailto:b@example.org").replace(b"SUMMARY", b"DURATION:PT1H\r\nSUMMARY")
    now = datetime(2031, 3, 1, tzinfo=UTC)
    report = ical.free_busy([busy], asked.start, asked.end, now, 10)
    reply = ical.freebusy_reply(asked, attendee, [([busy], "")], now, 10)
    folded = f"ATTENDEE:{attendee}"
    assert reply == report.replace(
        "BEGIN:VFREEBUSY\r\n",
        "METHOD:REPLY\r\nBEGIN:VFREEBUSY\r\nUID:fb\\;1\r\nORGANIZER:mailto:a@example.org\r\n"
        f"{folded[:75]}\r\n {folded[75:]}\r\n",
    )
    assert "FREEBUSY;FBTYPE=BUSY:20310304T093000Z/20310304T103000Z\r\n" in report


def test_freebusy_reply_lines_fold_at_75_octets_between_characters() -> None:
    """RFC 5545 §3.1: no line of the reply longer than 75 octets; a multi-octet UTF-8
    character is never split; unfolded, the UID reads as asked."""
    uid = "réunion-" + "é" * 60
    asked = ical.FreeBusyRequest(
        uid, "mailto:a@example.org", ("mailto:b@example.org",),
        datetime(2031, 3, 4, tzinfo=UTC), datetime(2031, 3, 5, tzinfo=UTC),
    )  # fmt: skip
    reply = ical.freebusy_reply(
        asked, "mailto:b@example.org", [], datetime(2031, 3, 1, tzinfo=UTC), 10
    )
    assert all(len(line.encode()) <= 75 for line in reply.split("\r\n"))
    assert f"\r\nUID:{uid}\r\n" in reply.replace("\r\n ", "")


# -- §3.2.8: the attendees' answers reset on a reschedule ------------------------------------------

ANSWERED = (
    "ATTENDEE;PARTSTAT=ACCEPTED:mailto:alice@example.org",  # the organizer, listed (iOS)
    "ATTENDEE;CN=Bob;PARTSTAT=ACCEPTED:mailto:bob@example.org",
    "ATTENDEE;PARTSTAT=DECLINED;SCHEDULE-AGENT=CLIENT:mailto:carol@example.org",
    "ATTENDEE;PARTSTAT=TENTATIVE:mailto:dan@example.org",
)
WEEKLY_RULE = "RRULE:FREQ=WEEKLY;COUNT=5"


def partstats(data: bytes) -> list[tuple[str, str]]:
    """(RECURRENCE-ID as written or "", PARTSTAT) per attendee of every VEVENT, in order."""
    found = []
    for event in icalendar.Calendar.from_ical(data).walk("VEVENT"):
        recurrence = event.get("RECURRENCE-ID")
        written = "" if recurrence is None else recurrence.to_ical().decode()
        found += [(written, str(a.params["PARTSTAT"])) for a in event.get("ATTENDEE")]
    return found


@pytest.mark.parametrize(
    ("start", "extra", "reset"),
    [
        ("20310304T100000Z", (), True),  # DTSTART
        ("20310304T093000Z", ("DURATION:PT2H",), True),
        ("20310304T093000Z", ("DUE:20310305T000000Z",), True),  # any change of these
        ("20310304T093000Z", ("LOCATION:Room 2",), False),  # not a reschedule: answers stand
        ("20310304T093000Z", (WEEKLY_RULE,), True),  # RRULE added: new instances
        ("20310304T093000Z", ("RDATE:20310320T093000Z",), True),  # an instance added
    ],
)
def test_rescheduled_resets_answers_of_a_moved_event(
    start: str, extra: tuple[str, ...], reset: bool
) -> None:
    """§3.2.8: a change of DTSTART, DTEND, DURATION, DUE, RRULE, or an RDATE added, resets
    every attendee's PARTSTAT to NEEDS-ACTION but the organizer's and one a client schedules
    (§7.1); any other change keeps the object byte for byte."""
    after = meeting(*ANSWERED, *extra, start=start)
    result = ical.rescheduled(meeting(*ANSWERED), after)
    if not reset:
        assert result == after
        return
    assert [p for _, p in partstats(result)] == [
        "ACCEPTED", "NEEDS-ACTION", "DECLINED", "NEEDS-ACTION",
    ]  # fmt: skip
    assert ical.rescheduled(result, result) == result  # nothing more to reset


def test_rescheduled_reads_recurrences_per_component() -> None:
    """§3.2.8's RRULE, RDATE and EXDATE rows: an EXDATE added removes an instance (no reset),
    one removed reinstates it (reset); an overridden instance moved resets the answers in
    that instance only, one overridden at its own time (a new title) resets nothing; the
    organizer's client scheduling itself (SCHEDULE-AGENT=CLIENT on ORGANIZER) resets nothing."""
    series = meeting(*ANSWERED, WEEKLY_RULE)
    excluded = meeting(*ANSWERED, WEEKLY_RULE, "EXDATE:20310311T093000Z")
    assert ical.rescheduled(series, excluded) == excluded
    assert {p for _, p in partstats(ical.rescheduled(excluded, series))} == {
        "ACCEPTED", "NEEDS-ACTION", "DECLINED",
    }  # fmt: skip

    def overridden(start: str) -> bytes:
        instance = (
            "BEGIN:VEVENT\r\nUID:m1\r\nDTSTAMP:20310101T000000Z\r\n"
            f"RECURRENCE-ID:20310311T093000Z\r\nDTSTART:{start}\r\nSUMMARY:Moved\r\n"
            "ORGANIZER:mailto:alice@example.org\r\n" + "".join(f"{a}\r\n" for a in ANSWERED)
            + "END:VEVENT\r\n"
        )  # fmt: skip
        return series.replace(b"END:VCALENDAR", instance.encode() + b"END:VCALENDAR")

    moved = ical.rescheduled(series, overridden("20310311T140000Z"))
    assert [p for r, p in partstats(moved) if r] == [
        "ACCEPTED", "NEEDS-ACTION", "DECLINED", "NEEDS-ACTION",
    ]  # fmt: skip
    assert {p for r, p in partstats(moved) if not r} == {"ACCEPTED", "DECLINED", "TENTATIVE"}
    retitled = overridden("20310311T093000Z")
    assert ical.rescheduled(series, retitled) == retitled
    by_client = meeting(*ANSWERED).replace(b"ORGANIZER:", b"ORGANIZER;SCHEDULE-AGENT=CLIENT:")
    later = by_client.replace(b"DTSTART:20310304T093000Z", b"DTSTART:20310304T100000Z")
    assert ical.rescheduled(by_client, later) == later


def test_answered_instances_and_their_reply() -> None:
    """§3.2.2.3: an EXDATE added declines that instance, an override added with another
    answer answers it, one with the series' answer or an untouched series answers nothing;
    the REPLY then holds one VEVENT per instance, by RECURRENCE-ID (the removed one from the
    series, starting at its RECURRENCE-ID)."""
    bob = "ATTENDEE;PARTSTAT=ACCEPTED:mailto:bob@example.org"
    accepted = meeting(bob, WEEKLY_RULE)
    assert ical.answered_instances(accepted, accepted, "bob@example.org") == {}

    def override(partstat: str) -> bytes:
        instance = (
            "BEGIN:VEVENT\r\nUID:m1\r\nDTSTAMP:20310101T000000Z\r\n"
            "RECURRENCE-ID:20310318T093000Z\r\nDTSTART:20310318T093000Z\r\n"
            f"ORGANIZER:mailto:alice@example.org\r\nATTENDEE;PARTSTAT={partstat}:"
            "mailto:bob@example.org\r\nEND:VEVENT\r\n"
        )
        excluded = meeting(bob, WEEKLY_RULE, "EXDATE:20310311T093000Z")
        return excluded.replace(b"END:VCALENDAR", instance.encode() + b"END:VCALENDAR")

    answered = ical.answered_instances(accepted, override("TENTATIVE"), "bob@example.org")
    eleventh, eighteenth = (
        datetime(2031, 3, 11, 9, 30, tzinfo=UTC),
        datetime(2031, 3, 18, 9, 30, tzinfo=UTC),
    )
    assert answered == {eleventh: "DECLINED", eighteenth: "TENTATIVE"}
    assert ical.answered_instances(accepted, override("ACCEPTED"), "bob@example.org") == {
        eleventh: "DECLINED"
    }
    data = override("TENTATIVE")
    now = datetime(2031, 3, 1, tzinfo=UTC)
    reply = ical.itip_reply(data, "bob@example.org", "DECLINED", now, answered)
    assert sorted(
        (e.decoded("RECURRENCE-ID"), e.decoded("DTSTART"), e["ATTENDEE"].params["PARTSTAT"])
        for e in icalendar.Calendar.from_ical(reply).walk("VEVENT")
    ) == [(eleventh, eleventh, "DECLINED"), (eighteenth, eighteenth, "TENTATIVE")]


ALICE_ONLY = frozenset({"alice@example.org"})


def _statuses(data: bytes, name: str) -> dict[str, str | None]:
    """Each ``name`` (ATTENDEE or ORGANIZER) line's SCHEDULE-STATUS, by address."""
    found: dict[str, str | None] = {}
    for event in icalendar.Calendar.from_ical(data).walk("VEVENT"):
        lines = event.get(name)
        for line in lines if isinstance(lines, list) else [lines]:
            status = line.params.get("SCHEDULE-STATUS")
            found[str(line)[7:].lower()] = None if status is None else str(status)
    return found


def test_with_schedule_status_writes_the_servers_word_in_the_organizers_copy() -> None:
    """§3.2.9, §7.3: each attendee just sent a message gets its delivery status; one not sent
    anything keeps the server's earlier one; a client's own is undone; the organizer listed
    as an attendee and one its client schedules (§7.1) are not the server's lines."""
    sent = meeting(
        "ATTENDEE;PARTSTAT=ACCEPTED;SCHEDULE-STATUS=2.0:mailto:alice@example.org",
        "ATTENDEE;SCHEDULE-STATUS=2.0:mailto:Bob@example.org",
        "ATTENDEE:mailto:nobody@example.org",
        "ATTENDEE;SCHEDULE-AGENT=CLIENT;SCHEDULE-STATUS=2.0:mailto:carol@example.org",
    )
    statuses = {"bob@example.org": "1.2", "nobody@example.org": "3.7"}
    stored = ical.with_schedule_status(sent, None, statuses, ALICE_ONLY)
    assert _statuses(stored, "ATTENDEE") == {
        "alice@example.org": None,
        "bob@example.org": "1.2",
        "nobody@example.org": "3.7",
        "carol@example.org": "2.0",
    }
    # A write sending nothing (an alarm): the earlier statuses stay, a client's is undone;
    # what the client sent back as stored is kept byte for byte (the PUT's ETag holds).
    tampered = stored.replace(b"SCHEDULE-STATUS=1.2", b"SCHEDULE-STATUS=5.3")
    again = ical.with_schedule_status(tampered, stored, {}, ALICE_ONLY)
    assert _statuses(again, "ATTENDEE")["bob@example.org"] == "1.2"
    assert ical.with_schedule_status(stored, stored, {}, ALICE_ONLY) is stored
    # An organizer whose client schedules (§7.1): the client's statuses are its own.
    by_client = sent.replace(b"ORGANIZER:", b"ORGANIZER;SCHEDULE-AGENT=CLIENT:")
    assert ical.with_schedule_status(by_client, None, statuses, ALICE_ONLY) is by_client


def test_with_schedule_status_in_an_attendees_copy_is_on_the_organizer() -> None:
    """§7.3: "Servers MUST add this parameter to any ORGANIZER properties corresponding to
    calendar users who were sent a scheduling message reply"; the ATTENDEE lines are the
    organizer's, left as they are."""
    copy = meeting("ATTENDEE;PARTSTAT=ACCEPTED;SCHEDULE-STATUS=1.2:mailto:bob@example.org")
    bob = frozenset({"bob@example.org"})
    stored = ical.with_schedule_status(copy, None, {"alice@example.org": "1.2"}, bob)
    assert _statuses(stored, "ORGANIZER") == {"alice@example.org": "1.2"}
    assert _statuses(stored, "ATTENDEE") == {"bob@example.org": "1.2"}


def test_scheduling_messages_carry_no_schedule_status() -> None:
    """§7.3: "Servers MUST NOT include this parameter in any scheduling messages"."""
    stored = meeting(
        "ATTENDEE;PARTSTAT=ACCEPTED;SCHEDULE-STATUS=1.2:mailto:bob@example.org"
    ).replace(b"ORGANIZER:", b"ORGANIZER;SCHEDULE-STATUS=1.2:")
    now = datetime(2031, 1, 2, tzinfo=UTC)
    for message in (
        ical.itip_request(stored, "REQUEST", now),
        ical.itip_request(stored, "CANCEL", now),
        ical.itip_reply(stored, "bob@example.org", "ACCEPTED", now),
    ):
        assert b"SCHEDULE-STATUS" not in message
