"""The message as a script sees it: header fields (RFC 2047-decoded for ``header``, parsed
for ``address``), envelope, size and body, built from the raw bytes and their one parse
(:class:`~pillarbox.mail.model.MessageInfo`) — nothing is parsed again but the header fields
the tests name."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field

from pillarbox.errors import InvalidName
from pillarbox.imap.metadata import BadEntry, entry_name
from pillarbox.mail.decode import decode_words, header_bytes_to_text
from pillarbox.mail.headers import HeaderField, parse_addresses, raw_text, scan_header, unfold
from pillarbox.mail.model import BodyPart, MessageInfo
from pillarbox.mail.parse import parse_message, part_text
from pillarbox.sieve.program import MetadataKey
from pillarbox.sieve.spamtest import SpamStatus
from pillarbox.store.types import normalize_mailbox_name

#: Header fields a script can see (a hostile header stays bounded).
MAX_FIELDS = 1000
#: Addresses read from one field.
MAX_ADDRESSES = 1000


@dataclass(frozen=True, slots=True)
class SieveMessage:
    """What tests read. ``envelope_from`` is "" for the null reverse-path; ``envelope_to`` the
    recipient address the message was delivered through (RCPT TO); ``mailboxes`` the
    account's mailbox names (normalised, :func:`~pillarbox.store.types.normalize_mailbox_name`)
    for ``mailboxexists`` — delivery reads them only for a script that requires "mailbox";
    ``environment`` the RFC 5183 items (:func:`pillarbox.sieve.environment.items`);
    ``metadata`` the METADATA entries (RFC 5464) the script's tests may read (RFC 5490
    §3.3–§3.6), by (normalised mailbox name, or None for the server's; lowercase entry name),
    as delivery read them (:func:`pillarbox.sieve.program.metadata_targets`);
    ``delivery_fields`` how many leading fields delivery put on top (Return-Path,
    Delivered-To, the policy's, our Received): editheader never removes them and adds below
    them, so the block the web UI and spam learning trust stays ours (RFC 5293 §4's "the
    beginning of the header" is where the message's own header begins); ``spam`` the
    policy's verdict (RFC 5235 spamtest; None: not judged); ``duplicates`` the RFC 7352 keys
    the account's earlier runs recorded, not expired; ``special_uses`` the special-use
    attributes (RFC 6154) of the account's mailboxes that have one, lowercase, by normalised
    name (RFC 8579 specialuse_exists)."""

    fields: tuple[HeaderField, ...]
    size: int
    envelope_from: str = ""
    envelope_to: str = ""
    raw: bytes = b""
    info: MessageInfo | None = None
    mailboxes: frozenset[str] = frozenset()
    environment: Mapping[str, str] = field(default_factory=dict)
    delivery_fields: int = 0
    metadata: Mapping[MetadataKey, str] = field(default_factory=dict)
    spam: SpamStatus | None = None
    duplicates: frozenset[str] = frozenset()
    special_uses: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def of(
        cls,
        raw: bytes,
        info: MessageInfo,
        *,
        envelope_from: str = "",
        envelope_to: str = "",
        mailboxes: Iterable[str] = (),
        environment: Mapping[str, str] | None = None,
        delivery_fields: int = 0,
        metadata: Mapping[MetadataKey, str] | None = None,
        spam: SpamStatus | None = None,
        duplicates: frozenset[str] = frozenset(),
        special_uses: Mapping[str, str] | None = None,
    ) -> SieveMessage:
        block = scan_header(raw, 0, info.body.body_start, max_fields=MAX_FIELDS)
        names = frozenset(mailboxes)
        return cls(
            block.fields,
            len(raw),
            envelope_from,
            envelope_to,
            raw,
            info,
            names,
            dict(environment or {}),
            min(delivery_fields, len(block.fields)),
            dict(metadata or {}),
            spam,
            duplicates,
            dict(special_uses or {}),
        )

    @classmethod
    def from_bytes(
        cls,
        raw: bytes,
        *,
        mailboxes: Iterable[str] = (),
        environment: Mapping[str, str] | None = None,
        envelope_from: str = "",
        envelope_to: str = "",
        delivery_fields: int = 0,
        metadata: Mapping[MetadataKey, str] | None = None,
        spam: SpamStatus | None = None,
        duplicates: frozenset[str] = frozenset(),
        special_uses: Mapping[str, str] | None = None,
    ) -> SieveMessage:
        """For tests and tools: the message parsed here."""
        return cls.of(
            raw,
            parse_message(raw),
            envelope_from=envelope_from,
            envelope_to=envelope_to,
            mailboxes=mailboxes,
            environment=environment,
            delivery_fields=delivery_fields,
            metadata=metadata,
            spam=spam,
            duplicates=duplicates,
            special_uses=special_uses,
        )

    def special_use_exists(self, mailbox: str | None, flags: Iterable[str]) -> bool:
        """RFC 8579 §3: whether every one of ``flags`` is an attribute of ``mailbox`` (one
        that does not exist has none), or without a mailbox, of some mailbox."""
        wanted = {f.lower() for f in flags}
        if mailbox is None:
            return wanted <= set(self.special_uses.values())
        try:
            name = normalize_mailbox_name(mailbox)
        except InvalidName:
            return False
        have = self.special_uses.get(name)
        return have is not None and wanted <= {have}

    def metadata_value(self, mailbox: str | None, name: str) -> str | None:
        """RFC 5490 §3.3–§3.6: the value of entry ``name`` of ``mailbox`` (None: the
        server's), or None when there is none — also for a mailbox or entry name that cannot
        be one (names compare as the store and IMAP compare them)."""
        key = metadata_key(mailbox, name)
        return None if key is None else self.metadata.get(key)

    def mailbox_exists(self, name: str) -> bool:
        """RFC 5490 §3.1: whether the account has ``name`` (compared as the store compares:
        NFC, INBOX in any case); a name the store would refuse exists nowhere."""
        try:
            return normalize_mailbox_name(name) in self.mailboxes
        except InvalidName:
            return False

    def exists(self, name: str) -> bool:
        key = name.lower()
        return any(f.key == key for f in self.fields)

    def header_values(self, name: str) -> Iterator[str]:
        """RFC 5228 §5.7: unfolded, RFC 2047-decoded (§2.7.2), surrounding whitespace removed."""
        key = name.lower()
        for f in self.fields:
            if f.key == key:
                yield field_value(f)

    def addresses(self, name: str) -> Iterator[tuple[str, str]]:
        """(local part, domain) of each address in the named fields; group names are not
        addresses (RFC 5228 §5.1), group members are."""
        for addresses in self.address_fields(name):
            yield from addresses

    def address_fields(self, name: str) -> Iterator[list[tuple[str, str]]]:
        """The addresses of each named field, one list per field (RFC 5260 §6 :index counts
        fields, not addresses)."""
        key = name.lower()
        for f in self.fields:
            if f.key != key:
                continue
            found, _ = parse_addresses(raw_text(f.value), limit=MAX_ADDRESSES)
            yield [
                (a.mailbox, a.host) for a in found if a.mailbox is not None and a.host is not None
            ]

    def body_texts(self, transform: str, types: tuple[str, ...]) -> Iterator[str]:
        """RFC 5173 §5: the raw body (:raw), decoded text parts (:text) or the decoded parts
        of the given content types (:content)."""
        info = self.info
        if info is None:
            return
        if transform == "raw":
            yield self.raw[info.body.body_start :].decode("utf-8", "surrogateescape")
            return
        wanted = ("text",) if transform == "text" else types
        for part in _leaves(info.body):
            if _type_matches(part, wanted):
                yield part_text(self.raw, part)


def metadata_key(mailbox: str | None, name: str) -> MetadataKey | None:
    """The canonical key of an entry (:attr:`SieveMessage.metadata`): the mailbox name as
    the store keeps it (NFC, ``INBOX`` in any case), the entry name in lowercase (RFC 5464
    §3.2); None for names that cannot be one."""
    try:
        canonical = entry_name(name.encode("ascii"))
        return (None if mailbox is None else normalize_mailbox_name(mailbox), canonical)
    except (BadEntry, InvalidName, UnicodeEncodeError):
        return None


def field_value(field: HeaderField) -> str:
    """A field's value as ``header`` compares it (RFC 5228 §5.7)."""
    return decode_words(header_bytes_to_text(unfold(field.value))).strip(" \t")


def _leaves(part: BodyPart) -> Iterator[BodyPart]:
    if part.parts:
        for child in part.parts:
            yield from _leaves(child)
    elif part.message is not None:
        yield from _leaves(part.message)
    else:
        yield part


def _type_matches(part: BodyPart, wanted: tuple[str, ...]) -> bool:
    """RFC 5173 §5.2: "" matches every type, "text" its subtypes, "text/html" itself."""
    full = f"{part.type}/{part.subtype}".lower()
    for w in wanted:
        w = w.lower()
        if not w or w == full or ("/" not in w and w == part.type.lower()):
            return True
    return False
