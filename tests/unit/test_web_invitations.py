"""Who sent a scheduling message, held against whom it names (RFC 6047 §3):
:func:`pillarbox.web.invitations.originator_warning` over a message's ENVELOPE."""

from __future__ import annotations

import pytest

from pillarbox.mail.model import Envelope, EnvelopeAddress
from pillarbox.web.invitations import originator_warning


def _mailbox(address: str, name: str | None = None) -> EnvelopeAddress:
    local, _, host = address.partition("@")
    return EnvelopeAddress(name, None, local, host)


def _envelope(sender: str, *, on_behalf: str = "") -> Envelope:
    author = (_mailbox(sender, "Someone"),)
    # The parser gives Sender the From's value when the header has none (RFC 9051 §7.5.2).
    return Envelope(from_=author, sender=(_mailbox(on_behalf),) if on_behalf else author)


def _warning(envelope: Envelope, named: str, role: str = "attendee") -> str:
    return originator_warning(envelope, named, role)


@pytest.mark.parametrize(
    ("envelope", "named"),
    [
        (_envelope("bob@example.org"), "bob@example.org"),
        (_envelope("Bob@Example.ORG"), "bob@example.org"),  # addresses compared caselessly
    ],
)
def test_a_message_from_whom_it_names_is_not_warned(envelope: Envelope, named: str) -> None:
    assert _warning(envelope, named) == ""


def test_a_reply_from_someone_else_names_both() -> None:
    warning = _warning(_envelope("mallory@example.net"), "bob@example.org")
    assert warning == (
        "This message was sent by Someone <mallory@example.net>, not by the attendee it names "
        "(bob@example.org): it may not come from them."
    )


def test_a_sender_on_behalf_of_the_author_is_warned() -> None:
    """RFC 6047 §3: someone working on behalf of a calendar user needs the user's decision."""
    warning = _warning(
        _envelope("bob@example.org", on_behalf="assistant@example.org"),
        "bob@example.org",
        "organizer",
    )
    assert "assistant@example.org" in warning and "not by the organizer" in warning
    assert "Someone" not in warning  # the author is the one named; only the Sender differs


def test_a_group_marker_is_not_a_sender() -> None:
    group = (EnvelopeAddress(None, None, "team", None), _mailbox("bob@example.org"))
    group += (EnvelopeAddress(None, None, None, None),)
    assert _warning(Envelope(from_=group, sender=group), "bob@example.org") == ""
