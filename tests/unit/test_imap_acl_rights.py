"""RFC 4314 rights and the other users' namespace: the pure tables of :mod:`pillarbox.imap.acl`."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pillarbox.imap import acl
from pillarbox.store.aclrows import (
    STORED_RIGHTS,
    acl_entries,
    allowed_flags,
    changed_rights,
    changed_row,
    effective_rights,
    flags_after,
)
from pillarbox.store.types import AclEntry, FlagOp


@pytest.mark.parametrize(
    ("entries", "rights"),
    [
        ([], ""),
        ([("lr", False), ("rsw", False)], "lrsw"),  # the union of the positive entries
        ([("lrswite", False), ("wte", True)], "lrsi"),  # less the negative ones (§2)
        ([("lrs", False), ("w", True), ("s", True)], "lr"),
        ([("lr", False), ("lr", True)], ""),  # nothing left
        ([("w", True)], ""),  # a negative entry alone gives nothing
        ([("l", True), ("lrs", False)], "rs"),  # whatever the order
    ],
)
def test_effective_rights(entries: list[tuple[str, bool]], rights: str) -> None:
    assert effective_rights(entries) == rights


@given(st.lists(st.tuples(st.text(alphabet=STORED_RIGHTS, max_size=11), st.booleans()), max_size=6))
def test_a_right_is_had_when_an_entry_gives_it_and_none_takes_it(
    entries: list[tuple[str, bool]],
) -> None:
    """RFC 4314 §2, letter by letter, whatever the entries and their order."""
    rights = effective_rights(entries)
    assert effective_rights(reversed(entries)) == rights
    for letter in STORED_RIGHTS:
        given = any(letter in letters for letters, negative in entries if not negative)
        taken = any(letter in letters for letters, negative in entries if negative)
        assert (letter in rights) == (given and not taken)


def test_negative_identifiers_and_rows() -> None:
    assert acl.split_negative("-bob@example.org") == ("bob@example.org", True)
    assert acl.split_negative("anyone") == ("anyone", False)
    assert AclEntry("anyone", "w", negative=True).listed_identifier == "-anyone"
    # A row holds an identifier's positive and negative entries; each changes alone.
    assert changed_row(None, "tw", "=", True) == ("", "wt")  # stored in §2.1 order
    assert changed_row(("lr", "w"), "s", "+", False) == ("lrs", "w")
    assert changed_row(("lr", "w"), "w", "-", True) == ("lr", "")
    assert acl_entries([("anyone", "lr", "w"), ("bob@x", "", "l"), ("carol@x", "r", "")]) == [
        AclEntry("anyone", "lr"),
        AclEntry("anyone", "w", negative=True),
        AclEntry("bob@x", "l", negative=True),
        AclEntry("carol@x", "r"),
    ]


@pytest.mark.parametrize(
    ("text", "mode", "rights"),
    [
        ("lr", "=", "lr"),
        ("", "=", ""),
        ("+w", "+", "w"),
        ("-kx", "-", "kx"),
        # RFC 4314 §2.1.1 (its examples): "c" is "k" and "x", "d" is "e" and "t".
        ("+cda", "+", "akxet"),
        ("lrswida", "=", "lrswiaet"),
        ("lrswikda", "=", "lrswikaet"),
    ],
)
def test_parse_rights(text: str, mode: str, rights: str) -> None:
    change = acl.parse_rights(text)
    assert (change.mode, change.rights) == (mode, frozenset(rights))


@pytest.mark.parametrize("text", ["lrQ", "q", "+ ", "lr-", "++l"])
def test_unknown_rights_are_refused(text: str) -> None:
    """§3.1: an unrecognised right MUST give BAD, never be ignored (uppercase included)."""
    with pytest.raises(acl.BadRights):
        acl.parse_rights(text)


def test_rights_changes_apply() -> None:
    assert changed_rights("lrs", "wi", "+") == "lrswi"
    assert changed_rights("lrs", "sx", "-") == "lr"
    assert changed_rights("lrs", "l", "=") == "l"
    with pytest.raises(ValueError, match="unknown ACL modification"):
        changed_rights("lrs", "l", "*")


@pytest.mark.parametrize(
    ("rights", "shown"),
    [
        ("lrswipkxtea", "lrswipkxteacd"),
        ("rl", "lr"),
        ("lrk", "lrkc"),  # §2.1.1: a member of "create" shows "c"
        ("lrt", "lrtd"),  # … of "delete" shows "d"
        ("", ""),
    ],
)
def test_format_rights(rights: str, shown: str) -> None:
    assert acl.format_rights(frozenset(rights)) == shown


@pytest.mark.parametrize(
    ("name", "parts"),
    [
        ("Other Users/bob@example.org/Support", ("bob@example.org", "Support")),
        ("Other Users/bob@example.org/A/B", ("bob@example.org", "A/B")),
        ("Other Users/bob@example.org", None),
        ("Other Users/bob@example.org/", None),
        ("Other Users", None),
        ("Other Users//x", None),
        ("Support", None),
    ],
)
def test_split_shared(name: str, parts: tuple[str, str] | None) -> None:
    assert acl.split_shared(name) == parts


def test_namespace_membership() -> None:
    assert acl.is_other_users("Other Users")
    assert acl.is_other_users("Other Users/x")
    assert not acl.is_other_users("Other Usersx")
    assert acl.shared_name("bob@example.org", "A/B") == "Other Users/bob@example.org/A/B"


def test_flag_rights() -> None:
    """§4: \\Seen needs "s", \\Deleted "t", every other flag "w"."""
    flags = frozenset({"\\Seen", "\\Deleted", "\\Answered", "$Label"})
    assert allowed_flags(flags, frozenset("lrs")) == {"\\Seen"}
    assert allowed_flags(flags, frozenset("lrw")) == {"\\Answered", "$Label"}
    assert allowed_flags(flags, frozenset("lrswt")) == flags
    assert allowed_flags(flags, frozenset("lri")) == frozenset()


OWNERS = frozenset({"\\Seen", "\\Deleted", "\\Flagged", "$Label"})


@pytest.mark.parametrize(
    ("op", "flags", "rights", "after"),
    [
        # STORE with every right (rights None) is plain RFC 9051 §6.4.6.
        (FlagOp.ADD, {"\\Answered"}, None, OWNERS | {"\\Answered"}),
        (FlagOp.REPLACE, {"\\Answered"}, None, {"\\Answered"}),
        # RFC 4314 §4: the flags the rights do not cover keep their state.
        (FlagOp.REPLACE, {"\\Answered"}, "s", OWNERS - {"\\Seen"}),
        (FlagOp.REPLACE, set(), "w", {"\\Seen", "\\Deleted"}),
        (FlagOp.REPLACE, {"\\Answered", "\\Seen"}, "st", {"\\Seen", "\\Flagged", "$Label"}),
        (FlagOp.REMOVE, OWNERS, "t", OWNERS - {"\\Deleted"}),
        (FlagOp.ADD, {"$New", "\\Draft"}, "s", OWNERS),
        (FlagOp.ADD, {"$New"}, "w", OWNERS | {"$New"}),
    ],
)  # fmt: skip
def test_flags_after_keeps_what_the_rights_do_not_cover(
    op: FlagOp, flags: set[str], rights: str | None, after: set[str]
) -> None:
    assert flags_after(OWNERS, op, frozenset(flags), rights) == after
