"""RFC 4314 rights and the other users' namespace: the pure tables of :mod:`pillarbox.imap.acl`."""

from __future__ import annotations

import pytest

from pillarbox.imap import acl
from pillarbox.store.aclrows import allowed_flags, changed_rights, flags_after
from pillarbox.store.types import FlagOp


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
