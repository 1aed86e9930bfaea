"""An .ics file (RFC 5545: what Google Calendar, Outlook, Apple Calendar, Thunderbird and
Nextcloud export) as a calendar's objects (RFC 4791 §4.1), and a calendar's objects as one
.ics file.

Implementation notes:

- **Cut as text, checked as a PUT is**: the file is read as content lines (unfolded to find
  names and values; each kept as written, folding included), so every object holds its
  components' lines byte for byte as the exporting program wrote them. Each object is then
  checked by :func:`pillarbox.ical.read_object`, the CalDAV PUT's own check: no second
  validator.
- **One object per UID** (RFC 4791 §4.1): the VEVENTs (or VTODOs) of one UID — a recurring
  event's master and its overridden instances (RFC 5545 §3.8.4.4 RECURRENCE-ID) — go into one
  object, with a copy of every VTIMEZONE its components name by TZID (RFC 5545 §3.6.5) and
  the file's VERSION, PRODID and CALSCALE; not METHOD (§4.1 forbids it in a resource).
- **Skipped alone, never the whole file**: a component that is not an event or to-do
  (VJOURNAL, VFREEBUSY, an X- component), one without a UID, an instance defined twice in
  the file (the first is kept), an object larger than ``max_object_bytes`` or one the PUT
  check refuses — each is counted with a reason. A file whose METHOD is other than PUBLISH
  is an iTIP message (RFC 5546 §1.4: a REQUEST is an invitation, not an export): all of it
  is skipped, with that reason. Only a file that is no iCalendar text at all (not UTF-8, no
  VCALENDAR) is :class:`NotCalendar`.
- **What is stored already is not read again**: the file is cut (:func:`cut`), then each
  object checked (:func:`checked`); one the caller says is stored as it is (``unchanged``:
  byte for byte, or with the same content, :func:`same_content`) is counted, not checked —
  it was when it was stored, and the check (recurrences expanded) is most of the work: four
  fifths of cutting 2,000 events.
- **Joined page by page**: a calendar's objects are written as one file (:func:`joined_head`,
  :func:`joined_components` for each page, :data:`JOINED_END`) as they are read, each
  VTIMEZONE once (the first of its TZID, before the first component naming it: RFC 5545
  sets no order, and readers that resolve a TZID as they go find it defined).
- **Pure**: no I/O and no clock; the caller runs it off the event loop for a large file.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

from pillarbox import ical

#: The file's calendar properties each object gets (RFC 5545 §3.7); METHOD is left out (RFC
#: 4791 §4.1), as are the X-WR- names of the exporting program's whole calendar.
_KEPT = ("VERSION", "PRODID", "CALSCALE")
_LINE_END = re.compile(r"\r\n|\r|\n")
#: RFC 5545 §3.2.19: a TZID parameter, quoted or not.
_TZID_PARAMETER = re.compile(r';TZID=(?:"([^"]*)"|([^;:,]*))', re.IGNORECASE)
_CRLF = "\r\n"
#: RFC 5545 §3.3.11: an escaped character of a TEXT value.
_ESCAPED = re.compile(r"\\([\\;,nN])")


class NotCalendar(ValueError):
    """The file is no iCalendar text at all (nothing in it could be imported)."""


@dataclass(frozen=True, slots=True)
class Piece:
    """One calendar object resource cut from the file, as it is to be stored."""

    data: bytes
    info: ical.ObjectInfo


@dataclass(frozen=True, slots=True)
class Uncut:
    """One calendar object resource cut from the file, not yet checked: its UID, its
    component (of the first block), its bytes as they would be stored."""

    uid: str
    kind: str
    data: bytes


@dataclass(frozen=True, slots=True)
class Cut:
    """The file's objects (in the order their UIDs first appear), and what was skipped
    cutting it."""

    pieces: tuple[Uncut, ...]
    skipped: int
    reasons: tuple[str, ...]
    #: The calendar's name the exporting program wrote (X-WR-CALNAME); "" when none.
    name: str = ""


@dataclass(frozen=True, slots=True)
class Split:
    """The file's objects to store (in the order their UIDs first appear), how many are
    stored as they are already, and what was skipped."""

    objects: tuple[Piece, ...]
    skipped: int
    reasons: tuple[str, ...]
    unchanged: int = 0


@dataclass(slots=True)
class _Block:
    """One top-level component of a VCALENDAR: its kind, UID, RECURRENCE-ID, the TZIDs its
    lines name, and its lines as written."""

    kind: str
    lines: list[str]
    uid: str = ""
    recurrence: str = ""
    tzid: str = ""
    zones: list[str] = field(default_factory=list)
    broken: str = ""


def _content_lines(text: str) -> Iterator[tuple[str, str]]:
    """(unfolded, as written) for each content line (RFC 5545 §3.1: a line beginning with a
    space or tab continues the one before); blank lines dropped."""
    current: list[str] = []
    for physical in _LINE_END.split(text):
        if physical[:1] in (" ", "\t") and current:
            current.append(physical)
            continue
        if current:
            yield current[0] + "".join(p[1:] for p in current[1:]), _CRLF.join(current) + _CRLF
        current = [physical] if physical else []
    if current:
        yield current[0] + "".join(p[1:] for p in current[1:]), _CRLF.join(current) + _CRLF


@dataclass(slots=True)
class _Parsed:
    properties: list[tuple[str, str]]
    method: str
    blocks: list[_Block]
    name: str = ""


def _parse(text: str) -> _Parsed:
    """The VCALENDARs of ``text`` (an export may concatenate several): the first one's
    properties, any METHOD, and every top-level component."""
    parsed = _Parsed([], "", [])
    calendars = 0
    inside = False
    block: _Block | None = None
    opened: list[str] = []
    for unfolded, written in _content_lines(text):
        name = ical.property_name(unfolded)
        value = ical.property_value(unfolded).strip().upper() if name in ("BEGIN", "END") else ""
        if block is not None:
            block.lines.append(written)
            if name == "BEGIN":
                opened.append(value)
            elif name == "END":
                if opened and opened[-1] == value:
                    opened.pop()
                elif value == "VCALENDAR":
                    block.lines.pop()
                    block.broken = block.broken or f"BEGIN:{block.kind} without its END"
                    opened.clear()
                    inside = False
                else:
                    block.broken = block.broken or (
                        f"END:{value[:40]} where {(opened or ['nothing'])[-1][:40]} is open"
                    )
                    if opened:
                        opened.pop()
                if not opened:
                    parsed.blocks.append(block)
                    block = None
            elif len(opened) == 1:
                _component_line(block, name, unfolded)
            if block is not None and name not in ("BEGIN", "END"):
                block.zones += _zones_named(unfolded)
            continue
        if not inside:
            if name == "BEGIN" and value == "VCALENDAR":
                inside, calendars = True, calendars + 1
            continue  # RFC 5545 §3.4: nothing belongs outside a VCALENDAR
        if name == "END" and value == "VCALENDAR":
            inside = False
        elif name == "BEGIN":
            block, opened = _Block(value, [written]), [value]
        elif name == "METHOD":
            parsed.method = parsed.method or ical.property_value(unfolded).strip().upper()
        elif calendars == 1 and name in _KEPT:
            parsed.properties.append((name, written))
        elif calendars == 1 and name == "X-WR-CALNAME" and not parsed.name:
            parsed.name = _untext(ical.property_value(unfolded)).strip()
    if block is not None:
        block.broken = block.broken or f"BEGIN:{block.kind} without its END"
        parsed.blocks.append(block)
    if not calendars:
        raise NotCalendar("no VCALENDAR in the file: not an iCalendar (.ics) file")
    return parsed


def _component_line(block: _Block, name: str, unfolded: str) -> None:
    """Note what a line of the component's own (not of a VALARM in it) says."""
    if name == "UID" and not block.uid:
        block.uid = ical.property_value(unfolded)
    elif name == "RECURRENCE-ID":
        block.recurrence = unfolded.partition(":")[0].upper() + ":" + ical.property_value(unfolded)
    elif name == "TZID" and block.kind == "VTIMEZONE":
        block.tzid = ical.property_value(unfolded)


def _zones_named(unfolded: str) -> list[str]:
    head = unfolded[: len(unfolded) - len(ical.property_value(unfolded))]
    return [quoted or bare for quoted, bare in _TZID_PARAMETER.findall(head)]


def cut(data: bytes, *, max_object_bytes: int) -> Cut:
    """The objects an .ics file holds, one per UID, not yet checked (see the notes); those
    larger than ``max_object_bytes`` skipped. :class:`NotCalendar` when the file is no
    iCalendar text."""
    try:
        text = data.decode("utf-8").removeprefix("\ufeff")
    except UnicodeDecodeError:
        raise NotCalendar("not UTF-8 text (RFC 5545 §6): not an iCalendar (.ics) file") from None
    parsed = _parse(text)
    zones: dict[str, str] = {}
    groups: dict[str, list[_Block]] = {}
    reasons: list[str] = []
    skipped = 0
    for number, block in enumerate(parsed.blocks, 1):
        label = f"{block.kind} {block.uid[:80] or number}"
        if block.kind == "VTIMEZONE":
            if block.tzid and not block.broken:
                zones.setdefault(block.tzid, "".join(block.lines))
            continue
        if parsed.method and parsed.method != "PUBLISH":
            skipped += 1
            continue
        if block.broken:
            reasons.append(f"{label}: {block.broken}")
        elif block.kind not in ical.COMPONENTS:
            # RFC 4791 §5.2.3: a calendar takes the component types it supports; every
            # calendar here takes events and to-dos, none journals or free-busy.
            reasons.append(f"{label}: a {block.kind} is not kept in a calendar")
        elif not block.uid.strip():
            reasons.append(f"{label}: no UID (RFC 5545 §3.8.4.7)")
        elif any(
            b.recurrence == block.recurrence and b.kind == block.kind
            for b in groups.get(block.uid, [])
        ):
            what = "its instance " + block.recurrence if block.recurrence else "it"
            reasons.append(f"{label}: the file defines {what} twice; the first is kept")
        else:
            groups.setdefault(block.uid, []).append(block)
            continue
        skipped += 1
    if parsed.method and parsed.method != "PUBLISH" and skipped:
        reasons.append(
            f"METHOD:{parsed.method[:40]}: an invitation or answer (RFC 5546), not a calendar "
            f"export: its {skipped} component(s) skipped"
        )
    head = "".join(written for _, written in parsed.properties)
    pieces: list[Uncut] = []
    for uid, blocks in groups.items():
        data = _object(head, blocks, zones)
        if len(data) > max_object_bytes:
            skipped += 1
            reasons.append(f"{blocks[0].kind} {uid[:80]}: larger than {max_object_bytes} bytes")
            continue
        pieces.append(Uncut(uid, blocks[0].kind, data))
    return Cut(tuple(pieces), skipped, tuple(reasons), parsed.name)


def checked(
    found: Cut,
    *,
    max_objects: int,
    max_instances: int,
    unchanged: Callable[[Uncut], bool] | None = None,
) -> Split:
    """The objects of ``found`` to store, each checked as a CalDAV PUT is (see the notes):
    at most ``max_objects`` (the rest skipped), those ``unchanged`` says are stored as they
    are counted with them, unchecked."""
    objects: list[Piece] = []
    skipped, reasons = found.skipped, list(found.reasons)
    kept = 0
    for number, piece in enumerate(found.pieces):
        if len(objects) + kept == max_objects:
            late = len(found.pieces) - number
            skipped += late
            reasons.append(f"{late} more event(s) past the {max_objects} one import takes")
            break
        if unchanged is not None and unchanged(piece):
            kept += 1
            continue
        try:
            info = ical.read_object(piece.data, max_instances)
        except ical.InvalidObject as exc:
            skipped += 1
            reasons.append(f"{piece.kind} {piece.uid[:80]}: {exc}")
            continue
        objects.append(Piece(piece.data, info))
    return Split(tuple(objects), skipped, tuple(reasons), kept)


def split(data: bytes, *, max_objects: int, max_object_bytes: int, max_instances: int) -> Split:
    """:func:`cut`, then :func:`checked` with nothing stored yet."""
    found = cut(data, max_object_bytes=max_object_bytes)
    return checked(found, max_objects=max_objects, max_instances=max_instances)


def same_content(stored: bytes, piece: bytes) -> bool:
    """Whether ``piece`` (cut from a file) holds what the ``stored`` object holds: the same
    components but VTIMEZONEs, line for line as written, in the same order. The calendar's
    properties (VERSION, PRODID, CALSCALE) are not compared — an export writes its own
    (:func:`joined_head`) — nor the VTIMEZONEs: an export writes one of each TZID, the
    first (:func:`joined_components`), where each object may have had its own (Apple's
    calendars write each event the observances of its own dates), and the same components
    name the same TZIDs."""
    return _components(stored) == _components(piece)


def _components(data: bytes) -> list[str]:
    blocks = _parse(data.decode("utf-8", "replace")).blocks
    return ["".join(b.lines) for b in blocks if b.kind != "VTIMEZONE"]


def _object(head: str, blocks: Sequence[_Block], zones: dict[str, str]) -> bytes:
    """One VCALENDAR: ``head``, the VTIMEZONEs the blocks name (each once, those the file
    has), the blocks."""
    named = dict.fromkeys(z for b in blocks for z in b.zones)
    parts = ["BEGIN:VCALENDAR\r\n", head]
    parts += [zones[z] for z in named if z in zones]
    parts += ["".join(b.lines) for b in blocks]
    parts.append("END:VCALENDAR\r\n")
    return "".join(parts).encode()


def joined_head(name: str = "") -> bytes:
    """The start of a calendar's .ics file (:func:`joined_components` follow, then
    :data:`JOINED_END`): ``name`` as X-WR-CALNAME (the calendar name the exporting programs
    write, and importing ones read)."""
    head = ["BEGIN:VCALENDAR", "VERSION:2.0", f"PRODID:{ical.PRODID}", "CALSCALE:GREGORIAN"]
    if name:
        head.append(f"X-WR-CALNAME:{_text(name)}")
    return "".join(f"{ical.folded(line)}\r\n" for line in head).encode()


def joined_components(objects: Sequence[bytes], zones: set[str]) -> bytes:
    """Every component of the calendar's ``objects`` (one page of them) for its .ics file;
    a VTIMEZONE only when its TZID is not in ``zones``, the TZIDs written by the pages
    before (added to): each once, the first, before the first component naming it, so the
    file is written as its objects are read."""
    parts: list[str] = []
    for data in objects:
        for block in _parse(data.decode("utf-8")).blocks:
            if block.kind == "VTIMEZONE":
                if block.tzid in zones:
                    continue
                zones.add(block.tzid)
            parts.append("".join(block.lines))
    return "".join(parts).encode()


#: The end of a calendar's .ics file (:func:`joined_head`).
JOINED_END = b"END:VCALENDAR\r\n"


def _untext(value: str) -> str:
    """RFC 5545 §3.3.11 TEXT unescaped, a line break as a space (for a name)."""
    return _ESCAPED.sub(lambda m: " " if m.group(1) in "nN" else m.group(1), value)


def _text(value: str) -> str:
    """RFC 5545 §3.3.11 TEXT escaping."""
    escaped = value.replace("\\", "\\\\").replace(";", "\\;").replace(",", "\\,")
    return escaped.replace("\r\n", "\\n").replace("\n", "\\n").replace("\r", "\\n")
