"""Sending identities and signatures (:mod:`pillarbox.web.identities`): what a signature looks
like in a body, where it goes, that replies leave the original's out, and which identity a
reply goes out as. Whether an address may be used is the intake's rule, tested over HTTP."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from pillarbox.errors import UserError
from pillarbox.identities import with_account
from pillarbox.mail.parse import parse_message
from pillarbox.mail.people import Person
from pillarbox.store.types import Account, Identity
from pillarbox.web.composing import Draft, Recipients, build_message, reply_draft, strip_signature
from pillarbox.web.identities import (
    chosen,
    chosen_or_default,
    clean_signature,
    identity_for,
    insert_signature,
    reply_to,
    sender,
    signature_block,
)

NOW = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
ACCOUNT = Account(
    id=7,
    address="ann@example.org",
    display_name="Ann Example",
    password_hash="x",
    scram_sha256=None,
    is_admin=False,
    quota_bytes=None,
    quota_messages=None,
    created=NOW,
)


@pytest.mark.parametrize(
    ("typed", "stored"),
    [
        ("Ann\r\nExample Corp  \r\n", "Ann\nExample Corp"),
        ("-- \nAnn", "Ann"),  # the separator is ours to add
        ("--\nAnn", "Ann"),
        ("\n\n  Ann  \n   indented\n\n", "  Ann\n   indented"),  # leading blanks are layout
        ("Ann\n-- \nnot a separator here", "Ann\n--\nnot a separator here"),
        ("", ""),
    ],
)
def test_signature_is_cleaned_when_stored(typed: str, stored: str) -> None:
    assert clean_signature(typed) == stored


def test_signature_block_has_the_rfc_3676_separator() -> None:
    assert signature_block("Ann") == "-- \nAnn"
    assert signature_block("") == ""


def test_signature_goes_below_the_empty_first_paragraph() -> None:
    assert insert_signature("", "Ann\nExample") == "\n\n-- \nAnn\nExample\n"
    reply = "\n\nOn Fri, Bob wrote:\n> hi\n"
    assert insert_signature(reply, "Ann") == "\n\n-- \nAnn\n\nOn Fri, Bob wrote:\n> hi\n"
    assert insert_signature(reply, "") == reply  # no signature: the body as it was


def test_strip_signature_cuts_at_the_last_separator_only() -> None:
    assert strip_signature("Hi\n\n-- \nBob\n") == "Hi\n"
    assert strip_signature("a\r\n-- \r\nfirst\r\n-- \r\nsecond") == "a\n-- \nfirst\n"
    assert strip_signature("Hi\n--\nnot a signature") == "Hi\n--\nnot a signature"
    assert strip_signature("-- not alone on the line") == "-- not alone on the line"


def test_reply_quotes_the_original_without_its_signature() -> None:
    raw = (
        b"From: Bob <bob@example.net>\r\nTo: ann@example.org\r\nSubject: Lunch\r\n"
        b"Message-ID: <l@example.net>\r\n\r\nNoon?\r\n-- \r\nBob, Example Net\r\n"
    )
    info = parse_message(raw)
    draft = reply_draft(
        info,
        "Noon?\n-- \nBob, Example Net\n",
        own_addresses={"ann@example.org"},
        reply_all=False,
        origin="1:1",
        received=NOW,
    )
    assert "> Noon?" in draft.body
    assert "Example Net" not in draft.body and "> -- " not in draft.body
    # With ours on top, the signature appears once and the quote none.
    body = insert_signature(draft.body, "Ann")
    assert body.count("-- \n") == 1 and body.index("-- \nAnn") < body.index("> Noon?")


def test_the_accounts_address_is_always_an_identity() -> None:
    assert with_account(ACCOUNT, []) == [
        Identity(address="ann@example.org", display_name="Ann Example", is_default=True)
    ]
    work = Identity(id=3, address="ann+work@example.org", signature="W", is_default=True)
    listed = with_account(ACCOUNT, [work])
    assert listed[0] == work and [i.id for i in listed] == [3, 0]
    assert not listed[1].is_default  # a stored default wins over the account's address
    own = Identity(id=4, address="Ann@example.org", signature="A")
    listed = with_account(ACCOUNT, [own, Identity(id=5, address="info@example.org")])
    assert [(i.id, i.is_default) for i in listed] == [(4, True), (5, False)]  # stored, not twice


def test_reply_goes_out_as_the_address_written_to() -> None:
    choices = with_account(
        ACCOUNT,
        [
            Identity(id=3, address="ann+work@example.org"),
            Identity(id=4, address="info@example.org"),
        ],
    )
    assert identity_for(choices, ["x@example.net", "INFO@example.org"]).id == 4
    assert identity_for(choices, ["ann+work@example.org", "info@example.org"]).id == 3  # To first
    assert identity_for(choices, ["ann+other@example.org"]).id == 0  # none: the default
    assert identity_for(choices, []).id == 0


def test_a_form_may_only_name_the_accounts_identities() -> None:
    choices = with_account(ACCOUNT, [Identity(id=3, address="ann+work@example.org")])
    assert chosen(choices, 3).id == 3
    assert chosen(choices, None).id == 0
    with pytest.raises(UserError):
        chosen(choices, 99)  # another account's id, or a removed one
    assert chosen_or_default(choices, 99).id == 0


def test_identity_sets_from_and_reply_to() -> None:
    identity = Identity(
        id=3, address="ann+work@example.org", display_name="", reply_to="desk@example.org"
    )
    assert sender(identity, ACCOUNT) == Person("Ann Example", "ann+work@example.org")
    recipients = Recipients(to=(Person("", "bob@example.net"),))
    raw, _ = build_message(
        Draft(subject="s", body="b"),
        sender=sender(identity, ACCOUNT),
        reply_to=reply_to(identity),
        recipients=recipients,
        hostname="mail.example.org",
        now=NOW,
        include_bcc=False,
    )
    assert b"From: Ann Example <ann+work@example.org>\r\n" in raw
    assert b"Reply-To: desk@example.org\r\n" in raw
    assert reply_to(Identity(address="a@b.example")) is None
