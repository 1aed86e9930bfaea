"""The content classifier: tokens of a message, and a Bayesian spam probability from counts.

Implementation notes:

- **Tokens** are a *set* per message (a word counts once however often it repeats: repetition
  is the spammer's cheapest lever). They come from the header (each field name present, the
  words of Subject, the addresses and domains of From/Reply-To/To/Message-ID, the relays of
  Received, the mailer), from the decoded text of the body parts, and from the markup and
  links of HTML parts (link hosts, tag names, colours and fonts: what spam is built of and
  ham rarely is). Every header token carries its field as a prefix, so "free" in a Subject and
  "free" in the body are different evidence. The SpamBayes tokenizer is the model.
- **Probabilities** are Gary Robinson's: each token's spam probability is the ratio of its
  frequencies in spam and ham, pulled towards 0.5 by a prior of strength ``s`` so that rare
  tokens say little; the :attr:`ClassifierSettings.max_clues` tokens furthest from 0.5 are
  combined with Fisher's chi-square method into one probability in [0, 1] ("S-H+1)/2").
  Unlike Graham's product, chi-square combining is not overconfident when clues conflict.
- **Models**: the global model (everyone's training) and the account's own; the account's
  counts are added to the global ones with :attr:`ClassifierSettings.account_weight`, so an
  account's own corrections outweigh the crowd's for the tokens it has seen.
- Pure functions over values: the store keeps the counts, :mod:`.pipeline` fetches only the
  counts of a message's tokens, so a model of any size costs one indexed lookup per message.
"""

from __future__ import annotations

import functools
import itertools
import math
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

from pillarbox.mail.decode import decode_words, escaped_to_text
from pillarbox.mail.headers import ScannedFields, header_fields, parse_addresses, raw_text
from pillarbox.mail.model import BodyPart, MessageInfo
from pillarbox.mail.parse import part_text
from pillarbox.store.types import SpamCounts


@dataclass(frozen=True, slots=True, kw_only=True)
class TokenLimits:
    """Bounds on the work one message causes in the tokenizer."""

    #: Shortest and longest body word kept as itself; longer ones become a ``skip:`` token.
    min_word: int = 3
    max_word: int = 12
    #: Tokens per message; a larger message is judged on the first ones found.
    max_tokens: int = 3000
    #: Characters of HTML markup scanned for links.
    max_markup: int = 200_000
    #: Header fields read.
    max_header_fields: int = 500


DEFAULT_TOKEN_LIMITS = TokenLimits()


@dataclass(frozen=True, slots=True, kw_only=True)
class ClassifierSettings:
    """The Robinson/Fisher parameters (SpamBayes defaults) and the model mix."""

    #: Strength ``s`` of the prior: how many messages' worth of evidence 0.5 is worth.
    prior_strength: float = 0.45
    #: The prior ``x``: the probability of a token never seen.
    prior: float = 0.5
    #: Clues whose probability is closer to 0.5 than this are ignored.
    min_strength: float = 0.1
    #: Most extreme clues combined.
    max_clues: int = 150
    #: How much more an account's own count weighs than a count of the global model.
    account_weight: float = 3.0


DEFAULT_SETTINGS = ClassifierSettings()


@dataclass(frozen=True, slots=True)
class ModelView:
    """The part of a model one message needs: the messages it was trained on, and the counts
    of the message's tokens (as the store returns them)."""

    totals: SpamCounts
    counts: Mapping[str, SpamCounts]


def trained(totals: SpamCounts) -> bool:
    """A model can judge once it has seen both kinds of message."""
    return totals.ham > 0 and totals.spam > 0


@dataclass(frozen=True, slots=True)
class Classification:
    """The classifier's answer; ``clues`` are the strongest tokens with their probabilities."""

    probability: float
    clues: tuple[tuple[str, float], ...]
    #: False when no model had both ham and spam to learn from: the probability is 0.5.
    trained: bool


# -- tokens -------------------------------------------------------------------------------------

_WORD = re.compile(r"[^\s\"'(){}\[\]<>,;:!?*|=`~^]+")
#: ``text.translate(_WORD_SEPARATORS).split()`` is ``_WORD.findall(text)`` in a quarter of the
#: time (20 against 90 µs for 4 KB): ``str.split`` and the pattern's ``\s`` both split at
#: exactly the characters of ``str.isspace`` (a test checks every code point).
#: Every ASCII character is in the table (most as itself): ``str.translate`` asks the table
#: once per distinct character of the text, and each one missing raised and cleared a KeyError
#: (~40 a message).
_WORD_SEPARATORS = {c: ord(" ") if chr(c) in "\"'(){}[]<>,;:!?*|=`~^" else c for c in range(128)}
_TRIM = ".-_/\\#$%&+@"
_URL = re.compile(r"(?:https?|ftp)://[^\s\"'<>()]+|www\.[^\s\"'<>()]+", re.IGNORECASE)
# The lookbehind starts a match only at the beginning of a run of address characters: without
# it, every position inside every word is tried and fails, quadratic in the word length.
_EMAIL = re.compile(r"(?<![\w.+-])[\w.+-]+@([\w-]+(?:\.[\w-]+)+)")
_IPV4 = re.compile(r"\b(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})\b")
# The same lookbehind, for runs of labels: without it ``a.a.a.…`` is tried from every label.
_HOSTNAME = re.compile(r"(?<![a-z0-9.-])\b((?:[a-z0-9-]+\.)+[a-z]{2,})\b")
_RECEIVED_FROM = re.compile(r"\bfrom\s+(\S+)", re.IGNORECASE)
_RECEIVED_BY = re.compile(r"\bby\s+(\S+)", re.IGNORECASE)
_RECEIVED_WITH = re.compile(r"\bwith\s+(\S+)", re.IGNORECASE)
_DIGITS = re.compile(r"\d")

#: Header fields whose value words are evidence (besides the address fields).
_WORD_FIELDS = ("subject", "x-mailer", "user-agent", "organization", "content-type")
_ADDRESS_FIELDS = ("from", "reply-to", "sender", "to", "cc", "return-path", "errors-to")


def _bucket(n: int) -> int:
    """A coarse size class: 0, 1, 2, 3-4, 5-8, …, so counts generalise."""
    return 0 if n <= 0 else 1 << (n.bit_length() - 1)


#: RFC 1035 §2.3.4: a name is at most 255 octets on the wire, 253 characters as text.
_MAX_HOST = 253


def _host_tokens(prefix: str, host: str) -> Iterable[str]:
    """``host`` and each parent domain: mail.example.com, example.com, com."""
    host = host.strip(".").lower()
    if len(host) > _MAX_HOST:
        # Not a host name: one of n labels made n tokens of up to n labels each (quadratic
        # time and memory); its last labels that could be one still count.
        host = host[-_MAX_HOST:].partition(".")[2]
    labels = host.split(".")
    for i in range(len(labels) - 1):
        yield f"{prefix}:{'.'.join(labels[i:])}"


def _distinct_words(text: str) -> tuple[list[str], bool]:
    """The words of ``text`` in order of first appearance, each distinct word once (tokens
    are a set, and a body repeats most of its words), untrimmed; and whether they are
    lowercased already."""
    folded = text.isascii()
    if folded:
        # An ASCII character lowercases to one character, so lowercasing the text before
        # splitting and trimming gives each word exactly as lowercasing it after would (not
        # so in all of Unicode: "İ" becomes two characters, a final sigma depends on what
        # follows it), and words that differ only in case are visited once.
        text = text.lower()
    return list(dict.fromkeys(text.translate(_WORD_SEPARATORS).split())), folded


def _word_batches(
    words: list[str], folded: bool, prefix: str, limits: TokenLimits
) -> Iterator[list[str]]:
    """The word tokens of :func:`_distinct_words`, in their order, in lists of at most
    ``limits.max_tokens``: a list is built by one comprehension rather than a generator step
    per word, and the batches stop being built once :func:`message_tokens` has enough."""
    shortest, longest = limits.min_word, limits.max_word
    for start in range(0, len(words), limits.max_tokens):
        yield [
            (prefix + (word if folded else word.lower()))
            if n <= longest
            # SpamBayes' "skip" tokens: long runs (base64, hashes, packed URLs) by first
            # character and length class.
            else f"{prefix}skip:{word[0].lower()} {n // 10 * 10}"
            for raw_word in words[start : start + limits.max_tokens]
            if (n := len(word := raw_word.strip(_TRIM))) >= shortest
        ]


def _word_tokens(text: str, prefix: str, limits: TokenLimits) -> Iterable[str]:
    words, folded = _distinct_words(text)
    return itertools.chain.from_iterable(_word_batches(words, folded, prefix, limits))


#: Address fields whose tokens :func:`_address_tokens` keeps, and the longest value kept:
#: at most ~4 MB in all however hostile the headers.
ADDRESS_FIELDS_KEPT = 4096
ADDRESS_FIELD_KEPT_CHARS = 256


def _address_tokens(name: str, value: str) -> tuple[str, ...]:
    """The tokens of one address field, kept for the next message with the same field:
    ``To`` names the MX's own users and ``From`` a frequent sender, and parsing them again
    (~2.5 µs a field) was a sixth of the header's tokens. A pure function of its arguments,
    so a kept answer is never stale."""
    if len(value) > ADDRESS_FIELD_KEPT_CHARS:
        return tuple(_address_field_tokens(name, value))
    return _kept_address_tokens(name, value)


@functools.lru_cache(maxsize=ADDRESS_FIELDS_KEPT)
def _kept_address_tokens(name: str, value: str) -> tuple[str, ...]:
    return tuple(_address_field_tokens(name, value))


def _address_field_tokens(name: str, value: str) -> Iterator[str]:
    addresses, _ = parse_addresses(value, limit=50)
    count = 0
    for address in addresses:
        if address.mailbox is None or address.host is None:
            continue
        count += 1
        host = address.host.lower()
        local = address.mailbox.lower()
        yield f"{name}:addr:{local}@{host}"
        if "+" in local.strip("+") and name in ("to", "cc"):
            # A subaddress (RFC 5233) is one a person handed out to one correspondent.
            yield f"{name}:subaddress"
        yield from _host_tokens(f"{name}:dom", host)
        if address.name:
            display = decode_words(escaped_to_text(address.name))
            for raw_word in _WORD.findall(display.lower()):
                if word := raw_word.strip(_TRIM):  # "-" or "&" alone names nothing
                    yield f"{name}:name:{word}"
        elif name == "from":
            yield "from:no-display-name"
    if name in ("to", "cc"):
        yield f"{name}:count:{_bucket(count)}"


def _received_tokens(value: str) -> Iterable[str]:
    for pattern, kind in ((_RECEIVED_FROM, "from"), (_RECEIVED_BY, "by"), (_RECEIVED_WITH, "with")):
        match = pattern.search(value)
        if match:
            word = match.group(1).strip("()[];").lower()
            if kind == "with":
                yield f"received:with:{word}"
            else:
                yield from _host_tokens(f"received:{kind}", word)
    for host in _HOSTNAME.findall(value.lower()):
        yield from _host_tokens("received", host)
    for ip in _IPV4.finditer(value):
        a, b, c, _ = ip.groups()
        yield f"received:ip:{a}.{b}"
        yield f"received:ip:{a}.{b}.{c}"


def _header_tokens(
    raw: bytes, info: MessageInfo, limits: TokenLimits, header: ScannedFields | None = None
) -> Iterable[str]:
    for field in header_fields(raw, info.header_end, limits.max_header_fields, header):
        key = field.key
        value = raw_text(field.value)
        if key == "received":
            yield from _received_tokens(value)
        elif key in _ADDRESS_FIELDS:
            yield from _address_tokens(key, value)
        elif key == "message-id":
            at = value.rfind("@")
            host = value[at + 1 :].strip(" <>\t").lower() if at >= 0 else ""
            yield f"message-id:host:{host}" if host else "message-id:no-host"
        if key in _WORD_FIELDS:
            text = decode_words(value) if key == "subject" else value
            yield from _word_tokens(text, f"{key}:", limits)
            if key == "subject":
                yield from _subject_shape(text)


def _subject_shape(subject: str) -> Iterable[str]:
    letters = list(filter(str.isalpha, subject))
    if letters and sum(map(str.isupper, letters)) / len(letters) > 0.6:
        yield "subject:shape:shouting"
    if "!" in subject:
        yield "subject:shape:bang"
    if "$" in subject:
        yield "subject:shape:dollar"
    if _DIGITS.search(subject) and len(subject) > 20 and subject.count(" ") == 0:
        yield "subject:shape:packed"


def _leaves(part: BodyPart) -> Iterable[BodyPart]:
    if part.type == "multipart":
        for child in part.parts:
            yield from _leaves(child)
    elif part.message is not None:
        yield from _leaves(part.message)
    else:
        yield part


def _url_tokens(text: str) -> Iterable[str]:
    # Cheap substring tests first: most text has neither URLs nor addresses. A match needs a
    # ":" or a "."; looking for one character is a memchr, 50 times faster on 4 KB of text
    # than looking for "://" (or lowercasing the text for "www.").
    has_url = (":" in text and "://" in text) or ("." in text and "www." in text.lower())
    for url in _URL.findall(text) if has_url else ():
        if not url.lower().startswith(("http", "ftp")):
            url = "http://" + url
        try:
            parts = urlsplit(url)
            host = (parts.hostname or "").lower()
            port = parts.port  # ValueError too, for "host:59:00"
        except ValueError:
            yield "url:malformed"
            continue
        yield f"url:scheme:{parts.scheme.lower()}"
        if _IPV4.fullmatch(host):
            yield "url:ip-host"
        elif host:
            yield from _host_tokens("url", host)
        if port is not None:
            yield "url:port"
        if "@" in parts.netloc:
            yield "url:userinfo"
        for piece in re.split(r"[/.?=&_-]+", parts.path.lower()):
            if 2 < len(piece) <= 12:
                yield f"url:path:{piece}"
    for domain in _EMAIL.findall(text) if "@" in text else ():
        yield f"email:{domain.lower()}"


def _body_tokens(raw: bytes, info: MessageInfo, limits: TokenLimits) -> Iterable[str]:
    leaves = list(_leaves(info.body))
    for leaf in leaves:
        yield f"part:{leaf.type}/{leaf.subtype}"
        yield f"part:encoding:{leaf.encoding.lower()}"
        charset = next((v.lower() for k, v in leaf.params if k == "charset"), None)
        if charset:
            yield f"part:charset:{charset}"
        if leaf.type == "text" and leaf.subtype == "html":
            markup = part_text(raw, leaf)[: limits.max_markup]
            yield from _url_tokens(markup)
    yield f"parts:{_bucket(len(leaves))}"
    yield f"attachments:{_bucket(len(info.attachments))}"
    for attachment in info.attachments:
        yield f"attachment:type:{attachment.content_type.lower()}"
        if attachment.filename and "." in attachment.filename:
            yield f"attachment:ext:{attachment.filename.rpartition('.')[2].lower()[:8]}"
    yield from _url_tokens(info.body_text)


#: Characters of a token kept: a longer one is cut.
_MAX_TOKEN = 80


def _full_after(tokens: set[str], source: Iterable[str], limit: int) -> bool:
    """Add ``source`` to ``tokens`` in order until they number ``limit``; True if they do."""
    for token in source:
        if not token.isascii():
            # 8-bit header bytes arrive as surrogate escapes: store them as text.
            token = token.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
        if "\x00" in token:
            # PostgreSQL's text cannot hold NUL: U+FFFD, as in the stored message text.
            token = token.replace("\x00", "\ufffd")
        tokens.add(token[:_MAX_TOKEN])
        if len(tokens) >= limit:
            return True
    return False


def _full_after_batch(tokens: set[str], batch: list[str], limit: int) -> bool:
    """:func:`_full_after` for a list, in one step when no token of it needs rewriting and
    the limit cannot be reached within it (the body's words of nearly every message)."""
    if (
        len(tokens) + len(batch) < limit
        and "".join(batch).isascii()
        and max(map(len, batch), default=0) <= _MAX_TOKEN
    ):
        tokens.update(batch)
        return False
    return _full_after(tokens, batch, limit)


def message_tokens(
    raw: bytes,
    info: MessageInfo,
    *,
    limits: TokenLimits = DEFAULT_TOKEN_LIMITS,
    header: ScannedFields | None = None,
) -> frozenset[str]:
    """The distinct tokens of a message (see the module notes), at most ``limits.max_tokens``:
    the header's, the body's structure and links, the body's words, in that order (the order
    decides which tokens a message past the limit keeps). ``header``: the parse's read of the
    header, if kept (the same tokens, without a second scan)."""
    tokens: set[str] = set()
    limit = limits.max_tokens
    if _full_after(tokens, _header_tokens(raw, info, limits, header), limit) or _full_after(
        tokens, _body_tokens(raw, info, limits), limit
    ):
        return frozenset(tokens)
    text = info.body_text
    words, folded = _distinct_words(text)
    empty = not words and not text.strip()
    if folded and len(tokens) + len(words) < limit and limits.max_word <= _MAX_TOKEN:
        # The limit cannot be reached (a word gives at most one token), so the order of the
        # tokens does not matter; and none needs _full_after's rewriting: each is ASCII and
        # no longer than _MAX_TOKEN (a word of at most max_word, or "skip:", a letter and
        # the digits of a length). One frozenset of them all, without a set between; the
        # words are one batch (or none).
        found = next(_word_batches(words, folded, "", limits), [])
        found.extend(tokens)
        if empty:
            found.append("body:empty")
        return frozenset(found)
    if any(_full_after_batch(tokens, b, limit) for b in _word_batches(words, folded, "", limits)):
        return frozenset(tokens)
    if empty:
        _full_after(tokens, ("body:empty",), limit)
    return frozenset(tokens)


# -- probabilities -------------------------------------------------------------------------------

#: The account's counts when there is no account model.
_NOTHING: Mapping[str, SpamCounts] = {}


def _chi2_survival(chi2: float, freedom: int) -> float:
    """P(X >= chi2) for a chi-square variable with an even number of degrees of freedom."""
    m = chi2 / 2.0
    term = math.exp(-m)
    total = term
    for i in range(1, freedom // 2):
        term *= m / i
        total += term
    return min(total, 1.0)


def classify(
    tokens: Iterable[str],
    totals: SpamCounts,
    counts: Mapping[str, SpamCounts],
    settings: ClassifierSettings = DEFAULT_SETTINGS,
) -> Classification:
    """Fisher's chi-square combination of the strongest clues (see the module notes)."""
    return classify_views(tokens, ModelView(totals, counts), None, 0.0, settings)


def classify_views(
    tokens: Iterable[str],
    global_view: ModelView,
    account_view: ModelView | None,
    weight: float,
    settings: ClassifierSettings = DEFAULT_SETTINGS,
) -> Classification:
    """:func:`classify` against the global counts plus ``weight`` times the account's (each
    rounded: counts stay integral), merged token by token as they are asked for."""
    table = ClueTable(
        global_view.totals,
        None if account_view is None else account_view.totals,
        weight,
        settings,
    )
    tokens = list(tokens)
    table.add(tokens, global_view.counts, _NOTHING if account_view is None else account_view.counts)
    return table.classify(tokens)


#: A token's clue: its distance from 0.5 (what the strongest are chosen by), the token, its
#: probability, and the two logarithms chi-square combining sums for it. None: no clue (in
#: neither model, or closer to 0.5 than ``min_strength``).
Clue = tuple[float, str, float, float, float] | None


class ClueTable:
    """Each token's clue under one state of the models (their totals and counts) and one
    :class:`ClassifierSettings`: computed once per token by :meth:`add`, so that judging a
    message whose tokens are all in the table (:meth:`classify`) is dictionary look-ups and
    the combination of its strongest clues. Whoever keeps a table across messages keeps it
    only while the models are in the state it was filled from (:mod:`.cluecache`)."""

    __slots__ = ("_clues", "_ham_scale", "_settings", "_spam_scale", "_weight", "trained")

    def __init__(
        self,
        global_totals: SpamCounts,
        account_totals: SpamCounts | None,
        weight: float,
        settings: ClassifierSettings = DEFAULT_SETTINGS,
    ) -> None:
        if account_totals is None:
            totals = global_totals
        else:
            totals = SpamCounts(
                global_totals.ham + round(weight * account_totals.ham),
                global_totals.spam + round(weight * account_totals.spam),
            )
        #: False when the models have not seen both kinds of message: every answer is 0.5.
        self.trained = trained(totals)
        self._ham_scale = 1.0 / max(totals.ham, 1)
        self._spam_scale = 1.0 / max(totals.spam, 1)
        self._weight = weight
        self._settings = settings
        self._clues: dict[str, Clue] = {}

    def __len__(self) -> int:
        return len(self._clues)

    def missing(self, tokens: frozenset[str]) -> frozenset[str]:
        """The ``tokens`` not in the table yet (one C-level pass: a set minus a dict)."""
        return tokens.difference(self._clues)

    def add(
        self,
        tokens: Iterable[str],
        global_counts: Mapping[str, SpamCounts],
        account_counts: Mapping[str, SpamCounts],
    ) -> None:
        """File the clue of each of ``tokens`` from the models' counts of them; the account's
        counts weigh ``weight`` times a global count (rounded: counts stay integral)."""
        if not self.trained:
            return
        # Robinson's f(w) of each token: its spam ratio shrunk towards the prior by its
        # rarity, worked out inline with the model's constants taken once (a method call per
        # token cost 8 % of the scoring's instructions); counts are merged as they are
        # scored (merging them into new objects first took a quarter of the SMTP intake's CPU
        # per message). The same operations in the same order as ever: the same bits.
        g_get = global_counts.get
        a_get = account_counts.get
        weight = self._weight
        ham_scale = self._ham_scale
        spam_scale = self._spam_scale
        settings = self._settings
        s = settings.prior_strength
        prior = settings.prior
        weighted_prior = s * prior
        min_strength = settings.min_strength
        log = math.log
        clues = self._clues
        for token in tokens:
            theirs = g_get(token)
            mine = a_get(token)
            if mine is None:
                if theirs is None:
                    clues[token] = None
                    continue
                ham, spam = theirs.ham, theirs.spam
            elif theirs is None:
                ham, spam = round(weight * mine.ham), round(weight * mine.spam)
            else:
                ham = theirs.ham + round(weight * mine.ham)
                spam = theirs.spam + round(weight * mine.spam)
            ham_ratio = ham * ham_scale
            spam_ratio = spam * spam_scale
            if ham_ratio + spam_ratio == 0:
                p = prior
            else:
                n = ham + spam
                p = (weighted_prior + n * (spam_ratio / (ham_ratio + spam_ratio))) / (s + n)
            strength = p - 0.5 if p >= 0.5 else 0.5 - p
            if strength < min_strength:
                clues[token] = None
                continue
            clamped = min(max(p, 1e-9), 1 - 1e-9)
            clues[token] = (strength, token, p, log(1.0 - clamped), log(clamped))

    def classify(self, tokens: Iterable[str]) -> Classification:
        """Fisher's chi-square combination of the strongest clues of ``tokens``, all of which
        must have been added (a token missing is a ``KeyError``)."""
        if not self.trained:
            return Classification(0.5, (), trained=False)
        chosen = self._chosen(tokens)
        if not chosen:
            return Classification(0.5, (), trained=True)
        ln_spam = ln_ham = 0.0
        for _, _, _, ln_not_p, ln_p in chosen:
            ln_spam += ln_not_p
            ln_ham += ln_p
        n = len(chosen)
        spamminess = 1.0 - _chi2_survival(-2.0 * ln_spam, 2 * n)
        hamminess = 1.0 - _chi2_survival(-2.0 * ln_ham, 2 * n)
        probability = (spamminess - hamminess + 1.0) / 2.0
        return Classification(
            probability,
            tuple((token, round(p, 3)) for _, token, p, _, _ in chosen[:8]),
            trained=True,
        )

    def chosen(self, tokens: Iterable[str]) -> list[tuple[str, float]]:
        """Every clue :meth:`classify` combines for ``tokens``, strongest first, with its
        probability (none if the models are not trained)."""
        return [(token, p) for _, token, p, _, _ in self._chosen(tokens)] if self.trained else []

    def _chosen(self, tokens: Iterable[str]) -> list[tuple[float, str, float, float, float]]:
        clues: list[tuple[float, str, float, float, float]] = list(
            filter(None, map(self._clues.__getitem__, tokens))
        )
        # ``sorted(…)[:n]`` is what ``heapq.nlargest`` is documented to equal; the tuples
        # never tie (tokens are distinct), so both choose the same clues in the same order.
        clues.sort(reverse=True)
        return clues[: self._settings.max_clues]
