"""Sending identities ("send as") and signatures of the webmail, as Roundcube and SOGo have them.

Implementation notes:

- **Which addresses**: exactly those the submission From check accepts
  (:meth:`pillarbox.queue.intake.Intake.owns`: the account's address, plus-addresses of it,
  aliases that resolve only to it). An identity is checked when it is saved and again — by the
  intake itself, on the header From — whenever a message is sent with it: an alias taken away
  since makes the send fail with the submission's own 5.7.1, never a second rule here.
- **The account's own address is always an identity**, unless one is stored for it, and the
  default when no stored one is (:func:`pillarbox.identities.with_account`, the listing every
  part reads, calendars too): the address every client may send as cannot be removed by
  mistake.
- **Signatures** (RFC 3676 §4.3): plain text below a ``-- `` (dash dash space) line, inserted
  once, when the compose page is first built — below the cursor's (empty) first paragraph, so
  above a reply's quote or a forward's summary, as Thunderbird and Roundcube's "above the
  quote" do. A saved draft re-opened, or a form shown again after an error, already holds it.
  Replies quote the original without its signature (cut at its ``-- `` line, as Thunderbird
  and Roundcube do), so signatures never pile up down a thread.
- **Replying picks the identity the original was addressed to** (its To, then Cc), the default
  otherwise; a re-opened draft keeps the identity of its From.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from pillarbox.errors import InvalidName, UserError
from pillarbox.mail.address import parse_address
from pillarbox.mail.people import Person, parse_people
from pillarbox.queue.intake import Intake
from pillarbox.services import Services
from pillarbox.store.types import Account, Identity
from pillarbox.web.composing import SIGNATURE_SEPARATOR as SEPARATOR

MAX_DISPLAY_NAME = 200
MAX_SIGNATURE = 10_000
_TRAILING_SPACE = re.compile(r"[ \t]+$", re.M)


def clean_signature(text: str) -> str:
    """A signature as stored: LF line ends, no trailing blanks or blank lines, and without a
    separator line of its own (one is added when it is inserted)."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    lines = text.strip("\n").split("\n")
    if lines and lines[0].rstrip() == "--":
        lines = lines[1:]
    cleaned = "\n".join(lines).strip("\n")
    # Trailing blanks only: a signature's leading indentation (ASCII art, columns) is kept.
    return _TRAILING_SPACE.sub("", cleaned)


def signature_block(signature: str) -> str:
    """The separator line and the signature, as they appear in a body ("" for none)."""
    return f"{SEPARATOR}\n{signature}" if signature else ""


def insert_signature(body: str, signature: str) -> str:
    """``body`` of a new compose page with ``signature`` below its first (empty) paragraph,
    where the cursor starts: after nothing in a new message, above a reply's quote."""
    block = signature_block(signature)
    if not block:
        return body
    rest = body.lstrip("\n")
    return f"\n\n{block}\n" + (f"\n{rest}" if rest else "")


def default_identity(identities: list[Identity]) -> Identity:
    return next((i for i in identities if i.is_default), identities[0])


def identity_for(identities: list[Identity], addressed: Iterable[str]) -> Identity:
    """The identity among ``identities`` that one of ``addressed`` (in order) names, else the
    default: a reply goes out from the address the original was sent to."""
    by_address = {i.address.lower(): i for i in identities}
    for address in addressed:
        if (found := by_address.get(address.lower())) is not None:
            return found
    return default_identity(identities)


def chosen(identities: list[Identity], identity_id: int | None) -> Identity:
    """The identity a compose form or API call names (None: the default); ``UserError`` for
    one that is not the account's."""
    if identity_id is None:
        return default_identity(identities)
    for identity in identities:
        if identity.id == identity_id:
            return identity
    raise UserError("choose one of your identities to send as")


def chosen_or_default(identities: list[Identity], identity_id: int | None) -> Identity:
    """The identity a form named, or the default if it names none of the account's (a form
    shown again must still preselect one)."""
    try:
        return chosen(identities, identity_id)
    except UserError:
        return default_identity(identities)


def sender(identity: Identity, account: Account) -> Person:
    """The From of a message sent as ``identity`` (the account's name if it has none)."""
    return Person(identity.display_name or account.display_name, identity.address)


def reply_to(identity: Identity) -> Person | None:
    if not identity.reply_to:
        return None
    found, _ = parse_people(identity.reply_to)
    return found[0] if found else None


async def checked_identity(
    services: Services,
    account: Account,
    *,
    identity_id: int,
    address: str,
    display_name: str,
    reply_to: str,
    signature: str,
    is_default: bool,
) -> Identity:
    """An identity from a settings form or API call, checked; ``UserError`` says what is wrong."""
    try:
        parsed = parse_address(address.strip())
    except InvalidName:
        raise UserError(f"not a valid address: {address.strip() or '(empty)'}") from None
    if not await Intake(services).owns(account, parsed):
        raise UserError(
            f"you cannot send as {parsed.normalised}: only your address, plus-addresses of it "
            "and aliases that reach only you"
        )
    name = " ".join(display_name.split())
    if len(name) > MAX_DISPLAY_NAME:
        raise UserError(f"the name is longer than {MAX_DISPLAY_NAME} characters")
    reply_address = ""
    if reply_to.strip():
        found, invalid = parse_people(reply_to)
        if invalid or len(found) != 1:
            raise UserError("the reply-to must be one valid address")
        reply_address = found[0].address
    text = clean_signature(signature)
    if len(text) > MAX_SIGNATURE:
        raise UserError(f"the signature is longer than {MAX_SIGNATURE} characters")
    return Identity(
        id=identity_id,
        address=parsed.normalised,
        display_name=name,
        reply_to=reply_address,
        signature=text,
        is_default=is_default,
    )


async def save(services: Services, account: Account, identity: Identity) -> Identity:
    return await services.store.save_identity(
        account.id, identity, limit=services.config.web.max_identities
    )
