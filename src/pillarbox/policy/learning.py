"""Learning from what users do: a message moved into Junk is spam, moved out of it is ham;
one marked ``$Junk`` is spam, one marked ``$NotJunk`` ham.

Implementation notes:

- :func:`on_moved` is the entry point for moves: the IMAP server calls it after a MOVE or COPY
  (RFC 6851), the web UI after its move action. :func:`on_flagged` is the one for the
  keywords, which the IMAP server calls after a STORE that set one: ``$Junk`` and
  ``$NotJunk`` (IANA's IMAP keyword registry, RFC 5788) are what Thunderbird and Apple Mail
  set when a user marks a message, whether or not they move it as well (Thunderbird's "Not
  Junk" marks without moving). Mox trains on them the same way, and so accepts what it notes:
  a client's own filter may set them too (Thunderbird can, from its Bayesian filter), and its
  judgement is then taught like the user's. Both train the *account's* model and the
  account's sender reputation; the global model changes only through ``pillarbox spam train``.
- Each message is trained at most once per kind: the store keeps a mark per (account, blob).
  Moving a message trained as spam back out of Junk untrains the spam and trains the ham, so
  a mistake and its correction cancel exactly (counts are updated incrementally, never
  rebuilt).
- The message is tokenized as it arrived: the fields our delivery put on top
  (Return-Path, Delivered-To, X-Pillarbox-Spam, our Authentication-Results and Received) are
  skipped, so training sees what classification saw. Our own Authentication-Results (the only
  one left after delivery, forged ones are removed) tells which sender identities were
  verified, for the reputation keys.
- A move into Trash is no judgement and trains nothing.
- Bounded: one call trains at most ``limit`` messages (``policy.learn_max_messages``), each a
  blob read, its tokens and a model write (~2 ms) while the client's command waits; a larger
  move or marking trains its first ones and says so in the log.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from pillarbox.blocking import run_sized
from pillarbox.mail.headers import raw_text, scan_header
from pillarbox.mail.parse import parse_message
from pillarbox.observability.log import Log
from pillarbox.policy.authresults import authserv_id
from pillarbox.policy.classifier import message_tokens
from pillarbox.policy.reputation import SenderFacts, sender_keys, verified_domains
from pillarbox.policy.verdict import SPAM_HEADER
from pillarbox.store.interface import Store
from pillarbox.store.types import Mailbox, MessageRecord, SpamCounts, SpecialUse

JUNK_NAME = "junk"
#: The keywords a client sets for "spam" and "not spam" (RFC 9051 §2.3.2, module notes),
#: casefolded: matched in whatever case a client writes them.
JUNK_KEYWORD = "$junk"
NOT_JUNK_KEYWORD = "$notjunk"
_OUR_FIELDS = frozenset({"return-path", "delivered-to", SPAM_HEADER.lower()})
_RESULT = re.compile(
    r"\b(spf|dkim|dmarc)=pass\b[^;]*?\b(smtp\.mailfrom|header\.d|header\.from)=([^\s;]+)"
)
_CLIENT_IP = re.compile(r"\[(?:IPv6:)?([0-9A-Fa-f:.]+)\]")

_log = Log("spam-learning")


def is_junk(mailbox: Mailbox) -> bool:
    """The account's Junk mailbox: ``\\Junk`` special use (RFC 6154), or named Junk."""
    return mailbox.special_use is SpecialUse.JUNK or mailbox.name.lower() == JUNK_NAME


def is_trash(mailbox: Mailbox) -> bool:
    return mailbox.special_use is SpecialUse.TRASH


@dataclass(frozen=True, slots=True)
class Observed:
    """A message as the filter sees it: its tokens and its sender."""

    tokens: frozenset[str]
    sender: SenderFacts


def observe(raw: bytes, hostname: str) -> Observed:
    """Tokens and sender facts of a message as stored by us, or as received (a file).
    CPU work: off the loop for large messages."""
    block = scan_header(raw, 0, len(raw), max_fields=10_000)
    start = 0
    dmarc_from = ""
    verified: list[str] = []
    client_ip = ""
    ours = False
    for f in block.fields:
        if f.key in _OUR_FIELDS:
            ours = ours or f.key == SPAM_HEADER.lower()
            start = f.end
            continue
        if f.key == "authentication-results" and authserv_id(f.value) == hostname.lower():
            ours = True
            for method, _, value in _RESULT.findall(raw_text(f.value)):
                if method == "dmarc":
                    dmarc_from = value.lower()
                else:
                    verified.append(value.lower())
            start = f.end
            continue
        if ours and f.key == "received":
            match = _CLIENT_IP.search(raw_text(f.value))
            client_ip = match.group(1) if match else ""
            start = f.end
        break
    original = raw[start:] if ours else raw
    info = parse_message(original)
    address = info.from_addr.lower()
    sender = SenderFacts(
        from_address=address,
        from_verified=bool(dmarc_from) and address.endswith("@" + dmarc_from),
        verified_domains=verified_domains(verified),
        client_ip=client_ip,
    )
    return Observed(message_tokens(original, info), sender)


async def observe_async(raw: bytes, hostname: str) -> Observed:
    return await run_sized(len(raw), observe, raw, hostname)


@dataclass
class TrainingBatch:
    """Counts of many messages gathered in memory and written in one store call
    (``pillarbox spam train``): one transaction instead of one per message."""

    messages: SpamCounts = SpamCounts()
    tokens: dict[str, SpamCounts] = field(default_factory=dict)
    reputation: dict[str, SpamCounts] = field(default_factory=dict)

    def add(self, observed: Observed, *, spam: bool, sign: int = 1) -> None:
        ham_delta, spam_delta = (0, sign) if spam else (sign, 0)
        self.messages = SpamCounts(self.messages.ham + ham_delta, self.messages.spam + spam_delta)
        for token in observed.tokens:
            c = self.tokens.get(token, SpamCounts())
            self.tokens[token] = SpamCounts(c.ham + ham_delta, c.spam + spam_delta)
        for key in sender_keys(observed.sender):
            if key.startswith("sent:"):
                continue  # correspondents are whom the account wrote to, not who wrote
            c = self.reputation.get(key, SpamCounts())
            self.reputation[key] = SpamCounts(c.ham + ham_delta, c.spam + spam_delta)

    async def commit(
        self, store: Store, account_id: int | None, *, reputation_account: int | None = None
    ) -> None:
        """Write the model counts (``account_id`` None: the global model) and the sender
        tallies of ``reputation_account`` (default: ``account_id``)."""
        await store.train_spam_model(account_id, self.messages, self.tokens)
        owner = reputation_account if reputation_account is not None else account_id
        if owner is None:
            return
        by_delta: dict[SpamCounts, list[str]] = {}
        for key, delta in self.reputation.items():
            by_delta.setdefault(delta, []).append(key)
        for delta, keys in by_delta.items():
            await store.record_sender_reputation(owner, keys, delta)


async def train_stored(
    store: Store, account_id: int, record: MessageRecord, *, spam: bool, hostname: str
) -> bool:
    """Train one stored message for the account (untraining an earlier opposite judgement);
    False if it was already trained that way."""
    mark = await store.spam_training_mark(account_id, record.blob_id)
    if mark is spam:
        return False
    observed = await observe_async(await store.read_blob(record.blob_id), hostname)
    batch = TrainingBatch()
    if mark is not None:
        batch.add(observed, spam=mark, sign=-1)
    batch.add(observed, spam=spam)
    await batch.commit(store, account_id)
    await store.set_spam_training_mark(account_id, record.blob_id, spam)
    return True


async def on_moved(
    store: Store,
    account_id: int,
    source: Mailbox,
    destination: Mailbox,
    records: Sequence[MessageRecord],
    *,
    hostname: str,
    limit: int,
) -> int:
    """Call after messages were moved or copied from ``source`` to ``destination``
    (``records`` as they were in either mailbox: only their blob ids are used), at most
    ``limit`` messages as :func:`move_judgement` says; returns how many were trained."""
    spam = move_judgement(source, destination)
    if spam is None:
        return 0
    return await _train_all(store, account_id, records, spam=spam, hostname=hostname, limit=limit)


def move_judgement(source: Mailbox, destination: Mailbox) -> bool | None:
    """What a move says of a message: into Junk spam (True), out of it ham (False), except
    into Trash; otherwise nothing (None), and callers need not read the moved records."""
    into, out_of = is_junk(destination), is_junk(source)
    if into == out_of or (out_of and is_trash(destination)):
        return None
    return into


def keyword_judgement(flags: Iterable[str]) -> bool | None:
    """What setting ``flags`` on a message says of it: spam (True), not spam (False), or
    nothing (neither keyword, or both at once)."""
    folded = _folded(flags)
    junk, not_junk = JUNK_KEYWORD in folded, NOT_JUNK_KEYWORD in folded
    return None if junk == not_junk else junk


async def on_flagged(
    store: Store,
    account_id: int,
    flags: Iterable[str],
    changes: Iterable[tuple[frozenset[str], MessageRecord]],
    *,
    hostname: str,
    limit: int,
) -> int:
    """Call after ``flags`` were set (added, or given as the whole set) on messages whose
    flags changed: ``changes`` holds each one's flags before and its record after. A
    ``$Junk`` trains as spam, a ``$NotJunk`` as ham (:func:`keyword_judgement`), only the
    messages that did not have that keyword before: a client restating the flags it read
    (``FLAGS (\\Seen $Junk)`` to mark read), or our own delivery's ``$Junk`` on mail it filed
    in Junk, teaches nothing. At most ``limit`` messages; returns how many were trained."""
    spam = keyword_judgement(flags)
    if spam is None:
        return 0
    keyword = JUNK_KEYWORD if spam else NOT_JUNK_KEYWORD
    newly = [record for before, record in changes if keyword not in _folded(before)]
    return await _train_all(store, account_id, newly, spam=spam, hostname=hostname, limit=limit)


def _folded(flags: Iterable[str]) -> set[str]:
    return {flag.lower() for flag in flags}


async def _train_all(
    store: Store,
    account_id: int,
    records: Iterable[MessageRecord],
    *,
    spam: bool,
    hostname: str,
    limit: int,
) -> int:
    unique = _unique(records)
    if len(unique) > limit:
        # Callers may read only limit + 1 records of a larger set: no total to report.
        _log.info(
            "learnt from the first messages only",
            account=account_id,
            learnt=limit,
            setting="policy.learn_max_messages",
        )
    trained = 0
    for record in unique[:limit]:
        if await train_stored(store, account_id, record, spam=spam, hostname=hostname):
            trained += 1
    return trained


def _unique(records: Iterable[MessageRecord]) -> list[MessageRecord]:
    seen: dict[str, MessageRecord] = {}
    for record in records:
        seen.setdefault(record.blob_id, record)
    return list(seen.values())
