"""RFC 6638 §3.2.9 in :mod:`pillarbox.web.scheduling`: the delivery status (SCHEDULE-STATUS)
each recipient of an iMIP message gets from what the submission path answered."""

from __future__ import annotations

import pytest

from pillarbox.queue.intake import Submitted
from pillarbox.smtp import replies
from pillarbox.smtp.replies import Reply
from pillarbox.web.scheduling import delivery_statuses

BOB = "Bob@example.org"
DAN = "dan@elsewhere.test"


def test_taken_is_delivered_when_hosted_else_sent() -> None:
    submitted = Submitted(replies.OK, (), (BOB,))
    assert delivery_statuses([BOB, DAN], submitted) == {"bob@example.org": "1.2", DAN: "1.1"}


@pytest.mark.parametrize(
    ("reply", "status"),
    [
        # RFC 3463 X.1.Y, the address itself: "did not recognize the calendar user address".
        (replies.MAILBOX_UNKNOWN, "3.7"),
        (replies.BAD_RECIPIENT_SYNTAX, "3.7"),
        # A transient refusal: "the originator can try to send the message again".
        (replies.MAILBOX_FULL, "5.1"),
        (Reply(451, "4.7.1", "sending limit reached, try again later"), "5.1"),
        (Reply(450, "4.1.1", "try again"), "5.1"),
        # Permanent, by policy (X.7.Y): "scheduling with that recipient is not allowed".
        (Reply(550, "5.7.1", "not authorized"), "5.3"),
        # Permanent otherwise: "not able to find a suitable way to deliver the message".
        (replies.MAILBOX_FULL_PERMANENT, "5.2"),
        (Reply(554, None, "no"), "5.2"),
    ],
)
def test_a_refusal_tells_how_it_failed(reply: Reply, status: str) -> None:
    refused = Submitted(replies.OK, ((BOB, reply),), (DAN,))
    assert delivery_statuses([BOB, DAN], refused) == {"bob@example.org": status, DAN: "1.2"}
    # Refused for all: each recipient has the submission's own refusal.
    assert delivery_statuses([BOB, DAN], Submitted(reply, ())) == {
        "bob@example.org": status,
        DAN: status,
    }
