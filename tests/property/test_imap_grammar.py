"""Properties of the IMAP grammar: parse(format(cmd)) == cmd over generated commands, any bytes
give a command or a ParseError (never another exception), mUTF-7 and sequence-set laws, METADATA
entry names (RFC 5464 §3.2)."""

from __future__ import annotations

import base64
import contextlib
import string
from datetime import date, datetime, timedelta, timezone

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pillarbox.imap import commands as c
from pillarbox.imap import fetch as f
from pillarbox.imap import mutf7
from pillarbox.imap import search as s
from pillarbox.imap.commands import format_command
from pillarbox.imap.errors import Mutf7Error, ParseError
from pillarbox.imap.lexer import CommandReady, Lexer, LexerLimits
from pillarbox.imap.metadata import BadEntry, entry_name
from pillarbox.imap.parser import parse_command
from pillarbox.imap.sequence import LAST_RESULT, MAX_NUMBER, STAR, SequenceSet
from pillarbox.imap.strings import ATOM_CHARS, TAG_CHARS, astring
from pillarbox.store.types import FlagOp

SETTINGS = settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow])
MAX64 = 2**63 - 1

tags = st.text(alphabet=TAG_CHARS.decode(), min_size=1, max_size=8)
atoms = st.text(alphabet=ATOM_CHARS.decode(), min_size=1, max_size=8)
upper_atoms = st.from_regex(r"[A-Z][A-Z0-9=.\-]{0,8}", fullmatch=True)
#: Text IMAP can carry in a string: no NUL (CHAR8), no lone surrogates.
texts = st.text(
    st.characters(blacklist_categories=["Cs"], blacklist_characters="\x00"), max_size=12
)
ascii_texts = st.text(alphabet=string.printable, max_size=10)
octets = st.binary(max_size=20).map(lambda b: b.replace(b"\x00", b""))
_FORBIDDEN = {chr(n) for n in (*range(0x20), *range(0x7F, 0xA0), 0x2028, 0x2029)}
names = st.text(
    st.characters(blacklist_categories=["Cs"], blacklist_characters="".join(_FORBIDDEN)),
    max_size=12,
)
mailboxes = names.filter(lambda n: n == "INBOX" or n.upper() != "INBOX")
numbers = st.integers(1, MAX_NUMBER)
numbers64 = st.integers(1, MAX64)
keywords = atoms
system_flags = st.sampled_from(["\\Seen", "\\Answered", "\\Flagged", "\\Deleted", "\\Draft"])
flags = st.tuples() | st.lists(system_flags | keywords, max_size=4).map(tuple)

seq_numbers = st.integers(1, MAX_NUMBER) | st.just(STAR)
sequence_sets = st.lists(st.tuples(seq_numbers, seq_numbers), min_size=1, max_size=4).map(
    lambda ranges: SequenceSet(tuple(ranges))
)
sequences_or_saved = sequence_sets | st.just(LAST_RESULT)

dates = st.dates(min_value=date(1, 1, 1))
date_times = st.builds(
    lambda d, offset: d.replace(microsecond=0, tzinfo=timezone(timedelta(minutes=offset))),
    st.datetimes(min_value=datetime(1000, 1, 1), max_value=datetime(9999, 12, 30)),
    st.integers(-(24 * 60 - 1), 24 * 60 - 1),
)

leaf_keys = st.one_of(
    st.just(s.AllKey()),
    st.just(s.NewKey()),
    st.just(s.SaveDateSupportedKey()),
    st.builds(s.FlagKey, st.sampled_from(sorted(s.FLAG_KEYS)) | keywords, st.booleans()),
    st.builds(s.StringKey, st.sampled_from(sorted(s.STRING_FIELDS)), texts),
    st.builds(s.HeaderKey, ascii_texts.map(lambda t: t.replace("\x00", "")), texts),
    st.builds(s.DateKey, st.sampled_from(s.DateField), st.sampled_from(s.DateOp), dates),
    st.builds(s.SizeKey, st.booleans(), st.integers(0, MAX64)),
    st.builds(s.SequenceKey, sequences_or_saved, st.booleans()),
    st.builds(s.ModSeqKey, st.integers(0, MAX64)),
    st.builds(
        s.ModSeqKey,
        st.integers(0, MAX64),
        system_flags | keywords,
        st.sampled_from(["priv", "shared", "all"]),
    ),
    st.builds(s.WithinKey, st.booleans(), numbers),
    st.builds(s.ObjectIdKey, st.booleans(), st.from_regex(r"[A-Za-z0-9_\-]{1,20}", fullmatch=True)),
)
search_keys = st.recursive(
    leaf_keys,
    lambda inner: st.one_of(
        st.builds(s.Not, inner),
        st.builds(s.Or, inner, inner),
        st.lists(inner, min_size=1, max_size=3).map(lambda keys: s.And(tuple(keys))),
    ),
    max_leaves=8,
)

parts = st.lists(numbers, max_size=3).map(tuple)
nonempty_parts = st.lists(numbers, min_size=1, max_size=3).map(tuple)
partials = st.none() | st.tuples(st.integers(0, MAX64), numbers64)
field_names = st.lists(st.from_regex(r"[!-9;-~]{1,10}", fullmatch=True), min_size=1, max_size=3)


@st.composite
def sections(draw: st.DrawFn) -> f.Section:
    part = draw(parts)
    choices = [None, "HEADER", "HEADER.FIELDS", "HEADER.FIELDS.NOT", "TEXT"]
    text = draw(st.sampled_from([*choices, "MIME"] if part else choices))
    fields = tuple(draw(field_names)) if text and text.startswith("HEADER.FIELDS") else ()
    return f.Section(part, text, fields)


fetch_atts = st.one_of(
    st.sampled_from(f.FetchItem),
    st.builds(f.BodySection, sections(), st.booleans(), partials),
    st.builds(f.BinarySection, parts, st.booleans(), partials),
    st.builds(f.BinarySize, parts),
    st.builds(f.Preview, st.booleans()),
)


@st.composite
def fetches(draw: st.DrawFn) -> c.Fetch:
    uid = draw(st.booleans())
    changed_since = draw(st.none() | numbers64)
    vanished = uid and changed_since is not None and draw(st.booleans())
    atts = tuple(draw(st.lists(fetch_atts, min_size=1, max_size=4)))
    partial = draw(st.none() | partial_ranges)  # RFC 9394 §4 fetch-modifier
    sequence = draw(sequences_or_saved)
    return c.Fetch(draw(tags), sequence, atts, uid, changed_since, vanished, partial)


@st.composite
def lists(draw: st.DrawFn) -> c.List:
    selection = set(draw(st.sets(st.sampled_from(["SUBSCRIBED", "REMOTE", "SPECIAL-USE"]))))
    if "SUBSCRIBED" in selection and draw(st.booleans()):
        selection.add("RECURSIVEMATCH")
    patterns = tuple(draw(st.lists(names, min_size=1, max_size=3)))
    options = frozenset(draw(st.sets(st.sampled_from(sorted(c.LIST_RETURN)))))
    status = draw(
        st.none() | st.lists(st.sampled_from(sorted(c.STATUS_ITEMS)), min_size=1).map(tuple)
    )
    needs_extended = bool(selection or len(patterns) > 1 or options or status is not None)
    extended = needs_extended or draw(st.booleans())
    return c.List(
        draw(tags), draw(names), patterns, frozenset(selection), options, status, extended
    )


qresyncs = st.builds(
    c.Qresync,
    numbers,
    numbers64,
    st.none() | sequence_sets,
    st.none() | st.tuples(sequence_sets, sequence_sets),
)
append_messages = st.one_of(
    st.builds(
        c.AppendMessage, octets, flags, st.none() | date_times, st.just(False), st.booleans()
    ),
    st.builds(
        c.AppendMessage, st.binary(max_size=20), flags, st.none() | date_times, st.just(True)
    ),
)
id_params = st.none() | st.lists(
    st.tuples(
        st.text(
            st.characters(blacklist_categories=["Cs"], blacklist_characters="\x00"), max_size=7
        ),
        st.none() | texts,
    ),
    max_size=5,
).map(tuple)
sort_criteria = st.lists(
    st.builds(c.SortCriterion, st.sampled_from(sorted(c.SORT_KEYS)), st.booleans()), min_size=1
).map(tuple)


partial_ranges = st.tuples(st.integers(1, MAX_NUMBER), st.integers(1, MAX_NUMBER)).flatmap(
    # RFC 9394 §4: two ends from the start or (negative) from the end, in the client's order
    # ("500:400 is the same as 400:500", §3.1, and kept as sent for the PARTIAL response).
    lambda ends: st.sampled_from([ends, (-ends[0], -ends[1])])
)


@st.composite
def return_options(
    draw: st.DrawFn, allowed: frozenset[str]
) -> tuple[frozenset[str] | None, tuple[int, int] | None]:
    """RETURN options and RFC 9394's PARTIAL (RFC 5267 §4.4: never beside ALL)."""
    options = draw(st.none() | st.sets(st.sampled_from(sorted(allowed))).map(frozenset))
    partial = None
    if options is not None and "ALL" not in options and draw(st.booleans()):
        partial = draw(partial_ranges)
    return options, partial


@st.composite
def sorts(draw: st.DrawFn) -> c.Sort:
    """SORT, ESORT and ESORT with PARTIAL."""
    options, partial = draw(return_options(c.SORT_RETURN))
    criteria = draw(sort_criteria)
    key = draw(search_keys)
    return c.Sort(draw(tags), criteria, "UTF-8", key, draw(st.booleans()), options, partial)


@st.composite
def searches(draw: st.DrawFn) -> c.Search:
    """SEARCH, ESEARCH and ESEARCH with PARTIAL."""
    options, partial = draw(return_options(c.SEARCH_RETURN))
    charset = draw(st.sampled_from([None, "UTF-8"]))
    key = draw(search_keys)
    return c.Search(draw(tags), key, charset, draw(st.booleans()), options, partial)


_KNOWN_EVENTS = {name.upper() for name in c.NOTIFY_EVENTS}
notify_events = st.sampled_from(c.NOTIFY_EVENTS) | upper_atoms.filter(
    lambda atom: atom not in _KNOWN_EVENTS
)


@st.composite
def notify_groups(draw: st.DrawFn) -> c.NotifyGroup:
    name = draw(st.sampled_from(sorted(c.NOTIFY_FILTERS | c.NOTIFY_NAMED_FILTERS)))
    boxes: tuple[str, ...] = ()
    if name in c.NOTIFY_NAMED_FILTERS:
        boxes = tuple(draw(st.lists(mailboxes, min_size=1, max_size=3)))
    events = tuple(draw(st.lists(notify_events, max_size=4)))
    atts: tuple[f.FetchAtt, ...] = ()
    if "MessageNew" in events:
        atts = tuple(draw(st.lists(fetch_atts, max_size=3)))
    return c.NotifyGroup(name, events, boxes, atts)


notifies = st.builds(c.Notify, tags, st.just(None)) | st.builds(
    c.Notify, tags, st.lists(notify_groups(), min_size=1, max_size=3).map(tuple), st.booleans()
)
no_argument = st.sampled_from(
    [c.Capability, c.Noop, c.Logout, c.StartTLS, c.Namespace, c.Idle, c.Check, c.Close, c.Unselect]
)

#: RFC 5464 §3.2 entry-name components: ASCII from 0x1A, no "/", "*" or "%" (canonical case).
_ENTRY_CHARS = "".join(chr(n) for n in range(0x1A, 0x80) if chr(n) not in "/*%").lower()
components = st.text(alphabet=_ENTRY_CHARS, min_size=1, max_size=6).filter(
    lambda part: part != "vendor"
)
entry_names = st.builds(
    lambda scope, parts: "/".join(("", scope, *parts)),
    st.sampled_from(["private", "shared"]),
    st.lists(components, min_size=1, max_size=3),
)
metadata_values = st.none() | st.binary(max_size=20)

commands = st.one_of(
    st.builds(lambda factory, tag: factory(tag), no_argument, tags),
    st.builds(
        c.Authenticate,
        tags,
        upper_atoms,
        st.none() | st.just(b"=") | st.binary(min_size=1, max_size=12).map(base64.b64encode),
    ),
    st.builds(c.Login, tags, octets, octets),
    st.builds(c.Enable, tags, st.lists(upper_atoms, min_size=1, max_size=3).map(tuple)),
    st.builds(c.Select, tags, mailboxes, st.booleans(), st.booleans(), st.none() | qresyncs),
    st.builds(
        c.Create,
        tags,
        mailboxes,
        st.lists(st.sampled_from(["\\All", "\\Archive", "\\Drafts", "\\Junk", "\\Sent"])).map(
            tuple
        ),
    ),
    st.builds(c.Delete, tags, mailboxes),
    st.builds(c.Rename, tags, mailboxes, mailboxes),
    st.builds(c.Subscribe, tags, mailboxes),
    st.builds(c.Unsubscribe, tags, mailboxes),
    lists(),
    st.builds(c.Lsub, tags, names, names),
    st.builds(
        c.Status,
        tags,
        mailboxes,
        st.lists(st.sampled_from(sorted(c.STATUS_ITEMS)), min_size=1, max_size=4).map(tuple),
    ),
    st.builds(
        c.Append, tags, mailboxes, st.lists(append_messages, min_size=1, max_size=3).map(tuple)
    ),
    st.builds(
        c.Replace,  # RFC 8508 §5: one seq-number, one append-message
        tags,
        st.just(SequenceSet.parse(b"*"))
        | st.integers(1, MAX_NUMBER).map(lambda n: SequenceSet.from_numbers([n])),
        mailboxes,
        append_messages,
        st.booleans(),
    ),
    st.builds(c.Expunge, tags, st.none() | sequences_or_saved),
    searches(),
    sorts(),
    notifies,
    st.builds(c.Thread, tags, upper_atoms, st.just("UTF-8"), search_keys, st.booleans()),
    fetches(),
    st.builds(
        c.Store,
        tags,
        sequences_or_saved,
        st.sampled_from(FlagOp),
        flags,
        st.booleans(),
        st.booleans(),
        st.none() | st.integers(0, MAX64),
    ),
    st.builds(c.Copy, tags, sequences_or_saved, mailboxes, st.booleans()),
    st.builds(c.Move, tags, sequences_or_saved, mailboxes, st.booleans()),
    st.builds(c.Id, tags, id_params),
    st.builds(c.Compress, tags, upper_atoms),
    st.builds(c.GetQuota, tags, texts),
    st.builds(c.GetQuotaRoot, tags, mailboxes),
    st.builds(
        c.SetQuota,
        tags,
        texts,
        st.lists(st.tuples(upper_atoms, st.integers(0, MAX64)), max_size=3).map(tuple),
    ),
    st.builds(
        c.GetMetadata,
        tags,
        mailboxes,
        st.lists(entry_names, min_size=1, max_size=3).map(tuple),
        st.none() | st.integers(0, MAX_NUMBER),
        st.sampled_from([0, 1, None]),
    ),
    st.builds(
        c.SetMetadata,
        tags,
        mailboxes,
        st.lists(st.tuples(entry_names, metadata_values), min_size=1, max_size=3).map(tuple),
    ),
    # RFC 4314 §3: identifiers are UTF-8 astrings; rights any string (checked by the session).
    st.builds(c.SetAcl, tags, mailboxes, texts, texts),
    st.builds(c.DeleteAcl, tags, mailboxes, texts),
    st.builds(c.GetAcl, tags, mailboxes),
    st.builds(c.ListRights, tags, mailboxes, texts),
    st.builds(c.MyRights, tags, mailboxes),
)


def _frame(wire: bytes) -> bytes:
    """What the lexer hands the parser for one formatted command."""
    lexer = Lexer(limits=LexerLimits(max_line=1 << 20))
    lexer.receive_data(wire)
    events = []
    while (event := lexer.next_event()) is not None:
        events.append(event)
    ready = [e for e in events if isinstance(e, CommandReady)]
    assert len(ready) == 1, events
    return ready[0].data


@SETTINGS
@given(commands, st.booleans())
def test_parse_format_round_trip(command: c.Command, utf8: bool) -> None:
    wire = format_command(command, utf8=utf8)
    assert parse_command(_frame(wire), utf8=utf8) == command


@SETTINGS
@given(st.binary(max_size=200), st.booleans())
def test_any_bytes_parse_or_raise_parse_error(data: bytes, utf8: bool) -> None:
    try:
        parse_command(data, utf8=utf8)
    except ParseError as exc:
        error = exc
    else:
        return
    assert error.condition in ("BAD", "NO")


@SETTINGS
@given(commands, st.data())
def test_mutated_commands_parse_or_raise_parse_error(
    command: c.Command, data: st.DataObject
) -> None:
    wire = bytearray(format_command(command)[:-2])
    for _ in range(data.draw(st.integers(1, 4))):
        if not wire:
            break
        index = data.draw(st.integers(0, len(wire) - 1))
        action = data.draw(st.sampled_from(["flip", "delete", "insert"]))
        if action == "flip":
            wire[index] = data.draw(
                st.sampled_from(b' ()[]{}<>"\\*$:,.+-~0123456789\r\nAz\x00\xff')
            )
        elif action == "delete":
            del wire[index]
        else:
            wire.insert(index, data.draw(st.integers(0, 255)))
    with contextlib.suppress(ParseError):
        parse_command(bytes(wire))


@SETTINGS
@given(st.lists(st.binary(max_size=40), max_size=8))
def test_lexer_never_fails_and_bounds_memory(chunks: list[bytes]) -> None:
    lexer = Lexer(limits=LexerLimits(max_line=64, max_literal=32, max_discard=64, max_command=256))
    for chunk in chunks:
        lexer.receive_data(chunk)
        while (event := lexer.next_event()) is not None:
            if isinstance(event, CommandReady):
                assert len(event.data) <= 256
                with contextlib.suppress(ParseError):
                    parse_command(event.data)


@SETTINGS
@given(st.text(st.characters(blacklist_categories=["Cs"]), max_size=20))
def test_mutf7_round_trip(name: str) -> None:
    encoded = mutf7.encode(name)
    assert encoded.isascii()
    assert mutf7.decode(encoded) == name


@SETTINGS
@given(st.text(alphabet="&-+,AZaz09/ U", max_size=16))
def test_mutf7_valid_encodings_are_canonical(wire: str) -> None:
    try:
        name = mutf7.decode(wire)
    except Mutf7Error:
        return
    assert mutf7.encode(name) == wire


@SETTINGS
@given(sequences_or_saved)
def test_sequence_set_text_round_trip(sequence: SequenceSet) -> None:
    assert SequenceSet.parse(sequence.format()) == sequence


@SETTINGS
@given(
    st.lists(st.tuples(st.integers(0, 200), st.integers(0, 200)), min_size=1, max_size=4).map(
        lambda ranges: SequenceSet(tuple(ranges))
    ),
    st.integers(0, 150),
)
def test_sequence_set_resolution_matches_definition(sequence: SequenceSet, largest: int) -> None:
    expected: set[int] = set()
    for first, last in sequence.ranges:
        low = largest if first == STAR else first
        high = largest if last == STAR else last
        expected.update(range(min(low, high), max(low, high) + 1))
    expected = {n for n in expected if 1 <= n <= largest}
    resolved = sequence.resolve(largest)
    assert set(resolved) == expected
    assert len(resolved) == len(expected)
    assert all((n in resolved) == (n in expected) for n in range(largest + 2))
    assert resolved.select(list(range(1, largest + 1))) == sorted(expected)


@SETTINGS
@given(st.sets(st.integers(1, 500), min_size=1))
def test_from_numbers_is_exact(members: set[int]) -> None:
    compact = SequenceSet.from_numbers(members)
    assert set(compact.resolve(500)) == members
    starts = [first for first, _ in compact.ranges]
    assert starts == sorted(starts)


@SETTINGS
@given(entry_names, st.booleans())
def test_entry_names_round_trip_case_insensitively(name: str, upper: bool) -> None:
    """RFC 5464 §3.2: an entry name read from the wire in any case is the canonical one."""
    wire = astring(name.upper() if upper else name)
    parsed = parse_command(b"t GETMETADATA INBOX " + wire)
    assert isinstance(parsed, c.GetMetadata)
    assert parsed.entries == (name,)
    assert entry_name(name.encode(), settable=True) == name


@SETTINGS
@given(entry_names, st.sampled_from(["//", "/*", "%", "\x00", "\x19", "é", "/"]), st.booleans())
def test_invalid_entry_names_are_refused(name: str, bad: str, at_end: bool) -> None:
    """§3.2: "*", "%", 0x00-0x19, non-ASCII, "//" and a final "/" never make a name."""
    spoiled = name + bad if at_end else name[:2] + bad + name[2:]
    if bad == "/" and not at_end:
        spoiled = name + "//x"
    try:
        entry_name(spoiled.encode())
    except BadEntry:
        return
    raise AssertionError(f"{spoiled!r} accepted")


#: RFC 9394 §4 partial ranges inside each command that takes one; ``%s`` is the range.
PARTIAL_COMMANDS = (
    b"a UID SEARCH RETURN (PARTIAL %s) ALL",
    b"a SEARCH RETURN (COUNT PARTIAL %s) UNSEEN",
    b"a UID SORT RETURN (PARTIAL %s) (DATE) UTF-8 ALL",
    b"a UID FETCH 1:* (FLAGS) (PARTIAL %s)",
    b"a FETCH 1:* (FLAGS) (CHANGEDSINCE 1 PARTIAL %s)",
)


@SETTINGS
@given(partial_ranges, st.sampled_from(PARTIAL_COMMANDS), st.booleans())
def test_partial_range_round_trips_in_every_command(
    partial: tuple[int, int], template: bytes, utf8: bool
) -> None:
    """parse(format(x)) == x for a range in either order and of either sign, and the range
    parsed is the one on the wire."""
    wire = template % f"{partial[0]}:{partial[1]}".encode()
    command = parse_command(wire, utf8=utf8)
    assert getattr(command, "partial", None) == partial
    assert parse_command(format_command(command, utf8=utf8).removesuffix(b"\r\n")) == command


#: One end of a range as a client may write it: ``(text, sign)``, sign None when the
#: grammar has no such end (0, ``*``, a leading zero, nothing).
_ENDS = st.one_of(
    numbers.map(lambda n: (str(n), 1)),
    numbers.map(lambda n: (f"-{n}", -1)),
    st.sampled_from(["0", "-0", "*", "-*", "00", "01", "-01", "", "--1", "+1"]).map(
        lambda t: (t, None)
    ),
)


@SETTINGS
@given(_ENDS, _ENDS, st.sampled_from(PARTIAL_COMMANDS))
def test_partial_range_with_mixed_signs_zero_or_star_is_refused(
    first: tuple[str, int | None], last: tuple[str, int | None], template: bytes
) -> None:
    """RFC 9394 §4: ``partial-range-first = nz-number ":" nz-number``, ``partial-range-last =
    MINUS nz-number ":" MINUS nz-number``: anything else is BAD, whatever the command."""
    wire = template % f"{first[0]}:{last[0]}".encode()
    if first[1] is not None and first[1] == last[1]:
        assert parse_command(wire).partial == (int(first[0]), int(last[0]))  # type: ignore[attr-defined]
        return
    with pytest.raises(ParseError) as refused:
        parse_command(wire)
    assert refused.value.condition == "BAD" and refused.value.tag == "a"
