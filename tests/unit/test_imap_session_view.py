"""The selected-mailbox view (RFC 9051 §7.4.1, §7.5.1): a client that only reads the untagged
responses always ends with the server's seq↔UID map; EXPUNGE is never sent when not allowed;
EXISTS never decreases; taking in the same changes twice is harmless; no FETCH shows a keyword
the last FLAGS response did not list (RFC 9051 §7.3.5)."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from pillarbox.imap.selected import SelectedView
from pillarbox.imap.sequence import SequenceSet
from pillarbox.store.types import FlagOp, Mailbox, MessageRecord, RecordTable

NOW = datetime(2024, 1, 1, tzinfo=UTC)
_LINE = re.compile(rb"\* (\d+) (EXISTS|EXPUNGE|RECENT|FETCH \(UID (\d+) FLAGS \(([^)]*)\)\))")
_FLAGS = re.compile(rb"\* FLAGS \(([^)]*)\)")
_PERMANENT = re.compile(rb"\* OK \[PERMANENTFLAGS \(([^)]*)\)\] Flags permitted")


def record(uid: int, flags: frozenset[str] = frozenset(), modseq: int = 1) -> MessageRecord:
    return MessageRecord(1, uid, modseq, flags, NOW, NOW, 100, f"blob{uid}")


def view_of(uids: list[int], *, read_only: bool = False) -> SelectedView:
    mailbox = Mailbox(1, 1, "INBOX", None, 77, max(uids, default=0) + 1, 1)
    return SelectedView(mailbox, [record(u) for u in uids], read_only=read_only, modseq=1)


class Client:
    """What a client knows: the seq → UID list, learned only from responses."""

    def __init__(self, view: SelectedView) -> None:
        self.uids = list(view.uids)
        self.flags: dict[int, frozenset[str]] = {}
        self.listed = view.listed
        self.permanent = frozenset(view.listed | {"\\*"})

    def read(self, lines: list[bytes], view: SelectedView) -> None:
        for line in lines:
            listing = _FLAGS.fullmatch(line.rstrip(b"\r\n"))
            if listing is not None:
                self.listed = frozenset(listing.group(1).decode().split())
                continue
            permanent = _PERMANENT.fullmatch(line.rstrip(b"\r\n"))
            if permanent is not None:
                self.permanent = frozenset(permanent.group(1).decode().split())
                continue
            match = _LINE.fullmatch(line.rstrip(b"\r\n"))
            assert match is not None, line
            number, kind = int(match.group(1)), match.group(2)
            if kind == b"EXPUNGE":
                assert 1 <= number <= len(self.uids)
                del self.uids[number - 1]
            elif kind == b"EXISTS":
                assert number >= len(self.uids), "EXISTS may never decrease"
                # the client would FETCH the new UIDs; take them from the view
                for uid in view.uids[len(self.uids) : number]:
                    self.uids.append(uid)
                    self.flags[uid] = view.flags(uid, with_recent=False)
            elif kind.startswith(b"FETCH"):
                uid = int(match.group(3))
                assert self.uids[number - 1] == uid, "FETCH names the wrong message"
                self.flags[uid] = frozenset(match.group(4).decode().split())
                assert self.flags[uid] <= self.listed, "a keyword FLAGS did not list"
                assert self.listed | {"\\*"} == self.permanent, "FLAGS without PERMANENTFLAGS"


operations = st.lists(
    st.one_of(
        st.tuples(st.just("arrive"), st.integers(1, 3)),
        st.tuples(st.just("expunge"), st.integers(0, 50)),
        st.tuples(st.just("flag"), st.integers(0, 50)),
        st.tuples(st.just("announce"), st.booleans()),
        st.tuples(st.just("fetch"), st.integers(0, 50)),
    ),
    max_size=40,
)


@settings(max_examples=150)
@given(initial=st.integers(0, 8), ops=operations)
@example(initial=2, ops=[("flag", 1), ("fetch", 0), ("flag", 0), ("announce", False)])
def test_client_model_follows_the_server(initial: int, ops: list[tuple[str, object]]) -> None:
    truth = {uid: record(uid) for uid in range(1, initial + 1)}
    next_uid = initial + 1
    modseq = 1
    view = view_of(list(truth))
    client = Client(view)
    client.flags = {uid: known.flags for uid, known in truth.items()}
    told: set[int] = set()  # shown by a FETCH (FLAGS) response and not changed since
    for op, arg in ops:
        changed: list[MessageRecord] = []
        expunged: list[int] = []
        if op == "fetch":  # the client's own FETCH n:* (FLAGS) shows the view's flags
            shown = view.uids[int(arg) % (len(view.uids) + 1) :]  # type: ignore[call-overload]
            client.flags.update({uid: view.flags(uid, with_recent=False) for uid in shown})
            view.shown(shown)
            told.update(shown)
            continue
        if op == "arrive":
            for _ in range(int(arg)):  # type: ignore[call-overload]
                modseq += 1
                keywords = frozenset({"$New"}) if arg == 2 else frozenset()
                truth[next_uid] = record(next_uid, keywords, modseq=modseq)
                changed.append(truth[next_uid])
                next_uid += 1
        elif op in ("expunge", "flag") and truth:
            uid = sorted(truth)[int(arg) % len(truth)]  # type: ignore[call-overload]
            modseq += 1
            if op == "expunge":
                del truth[uid]
                expunged.append(uid)
            else:
                flag = ("\\Flagged", "$A", "$B")[int(arg) % 3]  # type: ignore[call-overload]
                truth[uid] = record(uid, truth[uid].flags ^ {flag}, modseq)
                changed.append(truth[uid])
        elif op == "announce":
            before = list(view.uids)
            announcement = view.announce(allow_expunge=bool(arg), rev1=False)
            repeated = [uid for uid in told if b"(UID %d " % uid in b"".join(announcement.lines)]
            assert not repeated, "an unsolicited FETCH repeats what a FETCH showed"
            if not arg:
                assert not any(b"EXPUNGE" in line for line in announcement.lines)
                assert view.uids[: len(before)] == before, "numbers moved without EXPUNGE"
            client.read(announcement.lines, view)
            assert client.uids == view.uids
            if arg:
                assert view.uids == sorted(truth)
                for uid, known in truth.items():
                    assert view.record(uid).flags == known.flags
            continue
        # the same changes read twice (a MODSEQ race) must not change the outcome
        view.apply(changed, expunged, modseq)
        view.apply(changed, expunged, modseq)
        told.difference_update(known.uid for known in changed)
    final = view.announce(allow_expunge=True, rev1=False)
    client.read(final.lines, view)
    assert client.uids == view.uids == sorted(truth)
    assert {uid: client.flags[uid] for uid in truth} == {u: k.flags for u, k in truth.items()}
    in_use = frozenset().union(*(known.flags for known in truth.values()))
    assert in_use <= client.listed == view.listed  # arrivals' keywords too, before EXISTS


def test_resolve_message_numbers_uids_and_saved() -> None:
    view = view_of([3, 5, 9, 12])
    assert view.resolve(SequenceSet.parse("2:3"), uid=False) == [5, 9]
    assert view.resolve(SequenceSet.parse("*"), uid=False) == [12]
    assert view.resolve(SequenceSet.parse("4:10"), uid=True) == [5, 9]
    # RFC 9051 §9: n:* with n above the highest UID still means the highest UID
    assert view.resolve(SequenceSet.parse("100:*"), uid=True) == [12]
    assert view.resolve(SequenceSet.parse("$"), uid=False, saved=[9, 10, 3]) == [3, 9]
    assert view.seq_in_range(SequenceSet.parse("1:4"))
    assert not view.seq_in_range(SequenceSet.parse("5"))
    assert not view_of([]).seq_in_range(SequenceSet.parse("1:*"))
    assert view_of([]).resolve(SequenceSet.parse("1:*"), uid=True) == []


def test_withheld_expunge_keeps_the_message_visible() -> None:
    view = view_of([1, 2, 3])
    view.apply([], [2], modseq=2)
    assert view.is_expunged(2) and view.seq_of(3) == 3
    held = view.announce(allow_expunge=False, rev1=True)
    assert held.lines == [] and view.exists == 3
    view.apply([record(4, modseq=3)], [], modseq=3)
    view.recent.add(4)
    lines = view.announce(allow_expunge=False, rev1=True).lines
    assert lines == [b"* 4 EXISTS\r\n", b"* 1 RECENT\r\n"]  # counts the withheld message
    done = view.announce(allow_expunge=True, rev1=True)
    assert done.lines == [b"* 2 EXPUNGE\r\n"] and done.expunged == [2]
    assert view.uids == [1, 3, 4] and view.uidnext == 5


def test_own_flags_are_not_announced_again() -> None:
    view = view_of([1, 2])
    changed = record(1, frozenset({"\\Seen"}), modseq=2)
    view.own_flags([changed], FlagOp.ADD, frozenset({"\\Seen"}), None)
    view.apply([changed], [], modseq=2)  # the store reports our own change back
    assert view.announce(allow_expunge=True, rev1=False).lines == []
    other = record(2, frozenset({"\\Flagged"}), modseq=3)
    view.apply([other], [], modseq=3)
    assert view.announce(allow_expunge=True, rev1=False).lines == [
        b"* 2 FETCH (UID 2 FLAGS (\\Flagged))\r\n"
    ]
    assert view.modseq == 3


def test_a_change_a_response_showed_is_not_announced_unless_it_changed_again() -> None:
    """RFC 9051 §7.5.2, RFC 7162 §3.1.2.1: another device changed messages 1 and 2; the
    client's FETCH showed 1 (the view's flags and MODSEQ): only 2 is announced, and
    HIGHESTMODSEQ may advance; a change of 1 learned after the FETCH is announced."""
    view = view_of([1, 2])
    view.apply([record(1, frozenset({"\\Seen"}), 2), record(2, frozenset({"$A"}), 3)], [], 3)
    view.shown([1])
    assert view.announce(allow_expunge=True, rev1=False, modseq=True).lines == [
        b"* FLAGS ($A \\Answered \\Deleted \\Draft \\Flagged \\Seen)\r\n",
        b"* OK [PERMANENTFLAGS ($A \\Answered \\Deleted \\Draft \\Flagged \\Seen \\*)] Flags "
        b"permitted\r\n",
        b"* 2 FETCH (UID 2 FLAGS ($A) MODSEQ (3))\r\n",
    ]
    view.apply([record(1, frozenset({"\\Seen"}), 4)], [], 4)
    view.apply([record(2, frozenset({"\\Flagged"}), 5)], [], 5)
    view.shown([1, 2])
    assert view.announce(allow_expunge=True, rev1=False).lines == []
    assert view.announced_modseq == 5
    view.apply([record(1, frozenset({"\\Seen"}), 6)], [], 6)  # an older read again: no change
    view.shown([2])
    view.apply([record(2, frozenset(), 7)], [], 7)
    assert view.announce(allow_expunge=True, rev1=False).lines == [
        b"* 2 FETCH (UID 2 FLAGS ())\r\n"
    ]


def test_own_flags_keep_another_devices_change_they_carry_along() -> None:
    """RFC 9051 §6.4.6: the session's STORE +FLAGS.SILENT (\\Seen) came back with \\Flagged
    too, which another device set before the view learned of it (or after, but before the
    STORE): that change is announced; with one learned before the STORE it stays so."""
    view = view_of([1, 2])
    seen = frozenset({"\\Seen"})
    view.own_flags([record(1, frozenset({"\\Flagged", "\\Seen"}), 3)], FlagOp.ADD, seen, None)
    view.apply([record(2, frozenset({"$A"}), 4)], [], 4)
    view.own_flags([record(2, frozenset({"$A", "\\Seen"}), 5)], FlagOp.ADD, seen, None)
    assert view.announce(allow_expunge=True, rev1=False).lines[2:] == [
        b"* 1 FETCH (UID 1 FLAGS (\\Flagged \\Seen))\r\n",
        b"* 2 FETCH (UID 2 FLAGS ($A \\Seen))\r\n",
    ]
    # a user who may change \\Seen only (RFC 4314 §4): the others stay as they were
    view.own_flags([record(1, frozenset({"\\Flagged"}), 6)], FlagOp.REPLACE, frozenset(), "s")
    assert view.announce(allow_expunge=True, rev1=False).lines == []


def test_keywords_and_first_unseen() -> None:
    mailbox = Mailbox(1, 1, "INBOX", None, 77, 4, 1)
    records = [record(1, frozenset({"\\Seen", "$A"})), record(2), record(3, frozenset({"$B"}))]
    view = SelectedView(mailbox, records, read_only=True, modseq=1)
    assert view.keywords() == {"\\Seen", "$A", "$B"}
    assert view.first_unseen() == 2


def test_a_table_makes_records_only_when_one_is_used() -> None:
    """SELECT, FLAGS, seq↔UID and flag changes work from the table's UIDs and flag sets; a
    record is made only for what needs one (RecordTable's point: a cold SELECT makes none)."""
    made: list[int] = []
    uids = [2, 4, 6]
    flags = [frozenset({"\\Seen"}), frozenset(), frozenset({"$A"})]

    def make(index: int) -> MessageRecord:
        made.append(uids[index])
        return record(uids[index], flags[index])

    mailbox = Mailbox(1, 1, "INBOX", None, 77, 7, 1)
    view = SelectedView(mailbox, RecordTable(uids, flags, make), read_only=False, modseq=1)
    assert (view.keywords(), view.first_unseen()) == ({"\\Seen", "$A"}, 2)
    assert view.resolve(SequenceSet.parse("2:*"), uid=False) == [4, 6]
    assert view.flags(6, with_recent=False) == {"$A"}
    assert list(view.flags_in_order([2, 4, 6])) == flags
    view.apply([record(4, frozenset({"$B"}), modseq=2), record(8, modseq=3)], [2], 3)
    lines = view.announce(allow_expunge=True, rev1=False).lines
    assert lines == [
        b"* FLAGS ($A $B \\Answered \\Deleted \\Draft \\Flagged \\Seen)\r\n",
        b"* OK [PERMANENTFLAGS ($A $B \\Answered \\Deleted \\Draft \\Flagged \\Seen \\*)] Flags "
        b"permitted\r\n",
        b"* 2 FETCH (UID 4 FLAGS ($B))\r\n",
        b"* 1 EXPUNGE\r\n",
        b"* 3 EXISTS\r\n",
    ]
    assert made == []
    one_by_one = [view.flags(uid, with_recent=False) for uid in (4, 6, 8)]
    assert list(view.flags_in_order([4, 6, 8])) == one_by_one == [{"$B"}, {"$A"}, set()]
    assert list(view.flags_in_order([6])) == [{"$A"}]
    assert (view.record(6).uid, view.record(4).modseq, made) == (6, 2, [6])
    with pytest.raises(KeyError):
        view.record(2)  # expunged and announced


def test_a_new_keyword_is_listed_once_with_what_the_rights_let_change() -> None:
    """RFC 9051 §7.3.5, §7.1; RFC 4314 §5.1.1: FLAGS and PERMANENTFLAGS again when a keyword
    appears (here the session's own STORE's), once; a user without "w" may change none of
    the keywords and create none."""
    view = view_of([1, 2])
    assert view.flag_list_update() == []
    work = frozenset({"$Work"})
    view.own_flags([record(1, work, modseq=2)], FlagOp.ADD, work, None)
    assert view.flag_list_update() == [
        b"* FLAGS ($Work \\Answered \\Deleted \\Draft \\Flagged \\Seen)\r\n",
        b"* OK [PERMANENTFLAGS ($Work \\Answered \\Deleted \\Draft \\Flagged \\Seen \\*)] Flags "
        b"permitted\r\n",
    ]
    view.apply([record(2, frozenset({"$Work"}), modseq=3)], [], modseq=3)
    assert view.announce(allow_expunge=True, rev1=False).lines == [
        b"* 2 FETCH (UID 2 FLAGS ($Work))\r\n"
    ]
    view.rights = frozenset("lrs")
    view.apply([record(2, frozenset({"$Home"}), modseq=4)], [], modseq=4)
    assert view.announce(allow_expunge=True, rev1=False).lines[:2] == [
        b"* FLAGS ($Home $Work \\Answered \\Deleted \\Draft \\Flagged \\Seen)\r\n",
        b"* OK [PERMANENTFLAGS (\\Seen)] Flags permitted\r\n",
    ]
    view.apply([record(1, frozenset({"$Held"}), modseq=5)], [], modseq=5)
    assert view.announce(allow_expunge=True, rev1=False, allow_flags=False).lines == []
    assert view.announce(allow_expunge=True, rev1=False).lines[0].startswith(b"* FLAGS ($Held ")
    examined = view_of([1], read_only=True)
    examined.apply([record(1, frozenset({"$X"}), modseq=2)], [], modseq=2)
    assert examined.announce(allow_expunge=True, rev1=False).lines[1] == (
        b"* OK [PERMANENTFLAGS ()] Flags permitted\r\n"
    )
