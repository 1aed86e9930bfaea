"""An attendee's answer to an organizer: the iTIP REPLY (RFC 5546 §3.2.3) over iMIP
(RFC 6047 §2.4), sent when an invitation is answered in a message (:mod:`.invitations`)
and when an event someone else organizes is deleted from the Calendar page with its
decline (:mod:`.calendarpage`).

It goes out the webmail's one path (:func:`pillarbox.queue.intake.submit`: the sender
checks, sending limits, DKIM signing, the queue), from the identity that attends.
"""

from __future__ import annotations

from datetime import UTC, datetime

from starlette.requests import Request

from pillarbox import ical
from pillarbox.blocking import run_blocking
from pillarbox.observability.log import Log
from pillarbox.queue.intake import Submitted, submit
from pillarbox.services import Services
from pillarbox.store.types import Account, Identity
from pillarbox.web import identities
from pillarbox.web.app import client_ip
from pillarbox.web.reading import Person
from pillarbox.web.scheduling import imip_message

_log = Log("web.answering")

#: The subject's first word per answer (RFC 5545 §3.2.12 PARTSTAT).
VERBS = {"ACCEPTED": "Accepted", "TENTATIVE": "Tentative", "DECLINED": "Declined"}


def reply_message(
    summary: str, organizer: str, sender: Person, reply: bytes, partstat: str,
    *, hostname: str, now: datetime,
) -> bytes:  # fmt: skip
    """The iMIP REPLY (RFC 6047 §2.4) to the organizer, subject "Accepted: …"."""
    title = " ".join(summary.split()) or "(no title)"
    who = sender.name or sender.address
    return imip_message(
        sender, [organizer], f"{VERBS[partstat]}: {title}",
        f"{who} has answered the invitation: {VERBS[partstat].lower()}.\n", reply, "REPLY",
        hostname=hostname, now=now,
    )  # fmt: skip


async def send_answer(
    request: Request, services: Services, account: Account, identity: Identity, data: bytes,
    partstat: str, *, organizer: str, summary: str,
) -> Submitted:  # fmt: skip
    """Send ``identity``'s ``partstat`` for the event ``data`` (a REQUEST, or the event as
    stored) to its ``organizer``."""
    now = datetime.now(UTC)
    reply = await run_blocking(ical.itip_reply, data, identity.address, partstat, now)
    raw = reply_message(
        summary, organizer, identities.sender(identity, account), reply, partstat,
        hostname=services.hostname, now=now,
    )  # fmt: skip
    submitted = await submit(
        services,
        account,
        raw,
        identity.address,
        [organizer],
        client_ip=client_ip(request),
        tls=request.url.scheme == "https",
    )
    _log.info(
        "invitation answered",
        account=account.address,
        partstat=partstat,
        reply=str(submitted.reply.code),
    )
    return submitted
