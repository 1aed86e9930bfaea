"""The session's fixed maildrop view (RFC 1939 §5, §7)."""

from __future__ import annotations

import re

import pytest

from pillarbox.pop3 import responses
from pillarbox.pop3.errors import CommandError, Pop3UsageError
from pillarbox.pop3.maildrop import Maildrop, MaildropMessage, unique_id


def _drop() -> Maildrop:
    return Maildrop(
        3_000_000_000, [MaildropMessage(5, 120), MaildropMessage(9, 200), MaildropMessage(12, 7)]
    )


def test_numbers_counts_and_sizes() -> None:
    drop = _drop()
    assert (drop.count, drop.size) == (3, 327)
    assert [(number, message.uid) for number, message in drop.listing()] == [
        (1, 5),
        (2, 9),
        (3, 12),
    ]
    assert drop.get(2) == MaildropMessage(9, 200)


def test_deletion_marks_and_reset() -> None:
    drop = _drop()
    drop.delete(3)
    drop.delete(1)
    assert (drop.count, drop.size) == (1, 200)
    assert [number for number, _ in drop.listing()] == [2]
    assert drop.deleted_uids() == (5, 12)
    with pytest.raises(CommandError) as caught:
        drop.get(1)
    assert caught.value.reply == responses.MESSAGE_DELETED.format(number=1)
    with pytest.raises(CommandError):
        drop.delete(3)
    # Numbers do not shift after a deletion (RFC 1939 §5).
    assert drop.get(2).uid == 9
    drop.reset()
    assert (drop.count, drop.size, drop.deleted_uids()) == (3, 327, ())


@pytest.mark.parametrize("number", [0, 4, 10**30])
def test_out_of_range(number: int) -> None:
    with pytest.raises(CommandError) as caught:
        _drop().get(number)
    assert caught.value.reply == responses.NO_SUCH_MESSAGE.format(count=3)


def test_unique_ids_are_stable_and_valid() -> None:
    drop = _drop()
    assert drop.unique_id(1) == unique_id(3_000_000_000, 5) == "b2d05e0000000005"
    # RFC 1939 §7: 1 to 70 characters in 0x21-0x7E.
    for uidvalidity, uid in [(1, 1), (2**32 - 1, 2**32 - 1)]:
        assert re.fullmatch(r"[\x21-\x7e]{1,70}", unique_id(uidvalidity, uid))
    assert unique_id(1, 2) != unique_id(2, 1)


@pytest.mark.parametrize(
    ("uidvalidity", "messages"),
    [
        (0, []),
        (2**32, []),
        (1, [MaildropMessage(0, 1)]),
        (1, [MaildropMessage(2**32, 1)]),
        (1, [MaildropMessage(1, 1), MaildropMessage(1, 2)]),
        (1, [MaildropMessage(1, -1)]),
    ],
)
def test_invalid_listing_is_the_application_s_bug(
    uidvalidity: int, messages: list[MaildropMessage]
) -> None:
    with pytest.raises(Pop3UsageError):
        Maildrop(uidvalidity, messages)
