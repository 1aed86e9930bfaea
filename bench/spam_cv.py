"""Spam-filter experiments: seeded k-fold cross-validation on a training corpus, then one score
of a chosen candidate on a dev corpus (see docs/spam-filter.md).

The product's tokenizer, sender facts, rules and reputation are used as they are; the content
model is what varies (the product's Robinson/Fisher Bayes, an online logistic regression over
the same binary tokens and optionally byte 4-grams, or both). The verdict is the MX's: model
score + reputation + rules, Junk from 5 (or ``--junk``).

    python bench/spam_cv.py --corpus /work/shared/corpora/spam cv --model bayes
    python bench/spam_cv.py --corpus /work/shared/corpora/spam dev --model lr
    python bench/spam_cv.py cv --model lr --rate 20 --passes 10 --ngrams 4 --margin 2
    python bench/spam_cv.py cv --model svm --cost 10 --ngrams 4
    python bench/spam_cv.py cv --evidence --l2 0.1
    python bench/spam_cv.py weights --l2 0.1   # header facts' points, as the product ships them
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import pickle
import random
import re
import time
import zlib
from array import array
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from spam_evidence import bulk_facts

from pillarbox.cli.spam import message_files, read_message
from pillarbox.mail.parse import parse_message
from pillarbox.policy import headerfacts, reputation, rules
from pillarbox.policy.classifier import ModelView, classify_views
from pillarbox.policy.dmarc import organizational_domain
from pillarbox.policy.headerfacts import FACTS, read_header
from pillarbox.policy.learning import observe
from pillarbox.policy.pipeline import Scores, author_domains
from pillarbox.store.types import SpamCounts

JUNK = 5.0
#: Bytes of each message kept for byte n-gram features.
HEAD = 8192


@dataclass(frozen=True, slots=True)
class Sample:
    name: str
    spam: bool
    tokens: frozenset[str]
    sender: reputation.SenderFacts
    #: Rule reasons' score (GTUBE, attachment only, no From): independent of training.
    static: float
    #: The first bytes of the message (for byte n-gram features).
    head: bytes
    #: The header facts as the product computes them (:func:`headerfacts.message_facts`, the
    #: whole header; until session 7 the bench read them from ``head``, so a header longer
    #: than 8 KB lost its later fields).
    facts: frozenset[str]


def _load(directory: Path, spam: bool) -> list[Sample]:
    scores = Scores()
    out = []
    for path in message_files(directory):
        raw = read_message(path)
        observed = observe(raw, "mx.evaluation.invalid")
        info = parse_message(raw)
        found = [
            rules.gtube(raw, info, scores.gtube),
            rules.attachment_only(info, scores.attachment_only),
            rules.no_from(author_domains(info), scores.no_from),
        ]
        static = sum(r.score for r in found if r is not None)
        facts = headerfacts.message_facts(raw, info)
        out.append(
            Sample(path.name, spam, observed.tokens, observed.sender, static, raw[:HEAD], facts)
        )
    return out


def load(corpus: Path, split: str, cache: Path) -> list[Sample]:
    """The split's samples (tokenised once, then read from ``cache``)."""
    path = cache / f"spam-cv-{split}-v2.pickle"  # v2: Sample.facts
    if path.exists():
        with path.open("rb") as f:
            samples: list[Sample] = pickle.load(f)
            return samples
    start = time.process_time()
    samples = _load(corpus / split / "ham", False) + _load(corpus / split / "spam", True)
    cpu = time.process_time() - start
    print(f"tokenised {len(samples)} {split} messages: {1000 * cpu / len(samples):.2f} ms CPU each")
    with path.open("wb") as f:
        pickle.dump(samples, f)
    return samples


# -- extra features -----------------------------------------------------------------------------

_HOST = re.compile(r"\b((?:[a-z0-9-]+\.)+[a-z]{2,})\b")
_LIST_FIELDS = ("list-unsubscribe", "list-id", "precedence", "x-list-unsubscribe")


def _org(domain: str) -> str:
    domain = domain.strip(".").lower()
    return organizational_domain(domain) or domain


def _domain_of(value: str) -> str:
    return value.rpartition("@")[2].strip(' <>\t\r\n"').lower()


def feats(s: Sample) -> set[str]:
    """Sender-alignment tokens: does the From domain match the Message-ID host, the
    Return-Path and Reply-To domains, a Received host? Legitimate bulk senders (the hard_ham
    newsletters) send from their own relays; spam forges From (measured on train: From domain
    among the Received hosts for 87 % of hard_ham, 41 % of spam). Plus list fields present."""
    header = read_header(s.head, len(s.head))
    fields = header.first
    received = [value.lower() for value in header.received]
    address = s.sender.from_address
    own = _org(address.rpartition("@")[2]) if "@" in address else ""
    if not own:
        return {"align:no-from"}
    out = {f"has:{k}" for k in _LIST_FIELDS if k in fields}
    for key, name in (
        ("message-id", "msgid"),
        ("return-path", "return-path"),
        ("reply-to", "reply-to"),
    ):
        value = fields.get(key, "")
        if "@" in value:
            out.add(f"align:{name}" if _org(_domain_of(value)) == own else f"align:{name}-other")
    hosts = {_org(h) for r in received for h in _HOST.findall(r)}
    out.add("align:received" if own in hosts else "align:received-other")
    return out


def with_align(samples: Sequence[Sample]) -> list[Sample]:
    """The samples with sender-alignment tokens added (see :func:`feats`)."""
    return [dataclasses.replace(s, tokens=s.tokens | feats(s)) for s in samples]


_FOR = re.compile(r"\bfor\s+<?([^\s<>;]+@[^\s<>;]+)>?", re.IGNORECASE)
#: Token prefixes of the fields the collecting side writes or reads its own name in.
_RECIPIENT_FIELDS = ("to", "cc", "return-path", "message-id", "received", "delivered-to")


def recipient_org(s: Sample) -> str:
    """The organisational domain of the address the corpus's collector received the file
    for: its first Delivered-To, else the first Received field's ``for <…>``; "" if neither."""
    header = read_header(s.head, len(s.head))
    address = header.first.get("delivered-to", "")
    if "@" not in address:
        found = (m.group(1) for r in header.received if (m := _FOR.search(r)))
        address = next(found, "")
    return _org(_domain_of(address)) if "@" in address else ""


def without_recipient(samples: Sequence[Sample]) -> list[Sample]:
    """The samples without the tokens of the recipient's own domain in the fields its side
    writes (To, Cc, Return-Path, Message-ID, Received, Delivered-To): what a global model
    learns from them is which of the corpus's donors received more spam, not the message."""
    out = []
    for s in samples:
        org = recipient_org(s)
        if org:
            kept = (t for t in s.tokens if org not in t or t.split(":")[0] not in _RECIPIENT_FIELDS)
            s = dataclasses.replace(s, tokens=frozenset(kept))
        out.append(s)
    return out


# -- models -------------------------------------------------------------------------------------


class Model(Protocol):
    """A content model: trained on labelled samples, scoring a sample as a verdict reason."""

    def train(self, samples: Sequence[Sample]) -> None: ...

    def score(self, sample: Sample) -> float: ...


class Bayes:
    """The product's classifier: counts, Robinson/Fisher, BAYES = 10·(2p − 1)."""

    def __init__(self) -> None:
        self.totals = SpamCounts()
        self.counts: dict[str, SpamCounts] = {}

    def train(self, samples: Sequence[Sample]) -> None:
        ham = spam = 0
        counts: dict[str, list[int]] = {}
        for s in samples:
            if s.spam:
                spam += 1
            else:
                ham += 1
            for t in s.tokens:
                c = counts.setdefault(t, [0, 0])
                c[s.spam] += 1
        self.totals = SpamCounts(ham, spam)
        self.counts = {t: SpamCounts(h, sp) for t, (h, sp) in counts.items()}

    def probability(self, sample: Sample) -> float:
        view = ModelView(self.totals, self.counts)
        return classify_views(sample.tokens, view, None, 0.0).probability

    def score(self, sample: Sample) -> float:
        return 10.0 * (2 * self.probability(sample) - 1)


def _sigmoid(z: float) -> float:
    if z < -35:
        return 0.0
    if z > 35:
        return 1.0
    return 1.0 / (1.0 + math.exp(-z))


class Logistic:
    """Online logistic regression over binary features (Goodman & Yih 2006; Sculley &
    Wachman 2007): the message's tokens and/or the distinct byte n-grams of its first
    ``ngram_bytes`` bytes, plus a bias; per message one gradient step on the weights of its
    features, the feature vector scaled to unit length so long and short messages step alike."""

    def __init__(
        self,
        *,
        rate: float = 0.1,
        passes: int = 1,
        margin: float | None = None,
        scale: float = 10.0,
        shuffle_seed: int | None = 1,
        ngrams: int = 0,
        ngram_bytes: int = 3000,
        use_tokens: bool = True,
    ) -> None:
        self.ngrams = ngrams
        self.ngram_bytes = ngram_bytes
        self.use_tokens = use_tokens
        self.rate = rate
        self.passes = passes
        #: Step only on messages whose signed margin (2y − 1)·z is at most this ("train on
        #: near-errors"); None: on every message.
        self.margin = margin
        self.scale = scale
        self.shuffle_seed = shuffle_seed
        self.weights: dict[str | bytes, float] = {}

    def _features(self, sample: Sample) -> Iterable[str | bytes]:
        if self.ngrams:
            head = sample.head[: self.ngram_bytes]
            n = self.ngrams
            yield from {head[i : i + n] for i in range(len(head) - n + 1)}
        if self.use_tokens:
            yield from sample.tokens
        yield "*bias*"

    def z(self, sample: Sample) -> float:
        w = self.weights
        feats = list(self._features(sample))
        norm = 1.0 / math.sqrt(len(feats)) if feats else 0.0
        return norm * sum(w.get(t, 0.0) for t in feats)

    def step(self, sample: Sample) -> None:
        feats = list(self._features(sample))
        if not feats:
            return
        norm = 1.0 / math.sqrt(len(feats))
        w = self.weights
        z = norm * sum(w.get(t, 0.0) for t in feats)
        y = 1.0 if sample.spam else 0.0
        if self.margin is not None and (2 * y - 1) * z > self.margin:
            return
        g = self.rate * (y - _sigmoid(z)) * norm
        for t in feats:
            w[t] = w.get(t, 0.0) + g

    def train(self, samples: Sequence[Sample]) -> None:
        order = list(samples)
        rng = random.Random(self.shuffle_seed)
        for _ in range(self.passes):
            if self.shuffle_seed is not None:
                rng.shuffle(order)
            for s in order:
                self.step(s)

    def score(self, sample: Sample) -> float:
        return self.scale * (2 * _sigmoid(self.z(sample)) - 1)


#: Feature → column, shared by every model of a run, and each sample's columns per feature
#: configuration: the converged models pass over each training sample tens of times.
_COLUMNS: dict[str | bytes, int] = {}
_SAMPLE_COLUMNS: dict[tuple[str, bool, int, int, bool, int], array[int]] = {}


def bucket(feature: str | bytes, bits: int) -> int:
    """A feature's column in a table of ``2**bits`` weights, the same in every process (as a
    stored model needs; ``hash`` of str and bytes is salted per process): a byte 4-gram is a
    32-bit number, spread by Knuth's multiplicative hash; a token by CRC-32."""
    if isinstance(feature, bytes) and len(feature) == 4:
        return (int.from_bytes(feature, "little") * 2654435761 & 0xFFFFFFFF) >> (32 - bits)
    data = feature if isinstance(feature, bytes) else feature.encode("utf-8", "surrogatepass")
    return zlib.crc32(data) & ((1 << bits) - 1)


class LinearSVM(Logistic):
    """An L2-regularised linear SVM (hinge loss) over :class:`Logistic`'s unit-length binary
    features, trained to convergence by dual coordinate descent (Hsieh et al. 2008,
    liblinear's ``-s 3``): one coordinate (message) at a time, exact step, until the projected
    gradients span less than ``tolerance``. ``cost`` is C; a ham's C is ``ham_cost`` (a
    false positive costs more than a miss). Unlike online logistic regression it has no
    learning rate, and its result depends on the visiting order only within ``tolerance``. Score
    ``scale·(2σ(slope·w·x) − 1)``. One pass from zero is the passive-aggressive PA-I
    learner (Crammer et al. 2006): each message's step is exactly what a new message moved
    by a user would get, so ``max_passes=1`` is the model trained only incrementally."""

    def __init__(
        self,
        *,
        cost: float = 10.0,
        ham_cost: float | None = None,
        tolerance: float = 0.1,
        max_passes: int = 200,
        slope: float = 5.0,
        scale: float = 10.0,
        ngrams: int = 0,
        ngram_bytes: int = 3000,
        use_tokens: bool = True,
        hash_bits: int = 0,
    ) -> None:
        super().__init__(scale=scale, ngrams=ngrams, ngram_bytes=ngram_bytes, use_tokens=use_tokens)
        self.cost = cost
        self.ham_cost = cost if ham_cost is None else ham_cost
        self.tolerance = tolerance
        self.max_passes = max_passes
        self.slope = slope
        #: Features hashed into ``2**hash_bits`` columns (0: a column per distinct feature).
        self.hash_bits = hash_bits
        self.columns: list[float] = []

    def _columns(self, sample: Sample) -> array[int]:
        bits = self.hash_bits
        key = (sample.name, sample.spam, self.ngrams, self.ngram_bytes, self.use_tokens, bits)
        found = _SAMPLE_COLUMNS.get(key)
        if found is None:
            features = self._features(sample)
            if bits:
                found = array("i", sorted({bucket(f, bits) for f in features}))
            else:
                found = array("i", (_COLUMNS.setdefault(f, len(_COLUMNS)) for f in features))
            _SAMPLE_COLUMNS[key] = found
        return found

    def train(self, samples: Sequence[Sample]) -> None:
        xs = [self._columns(s) for s in samples]
        w = [0.0] * (1 << self.hash_bits if self.hash_bits else len(_COLUMNS))
        get = w.__getitem__
        ys = [1.0 if s.spam else -1.0 for s in samples]
        norms = [1.0 / math.sqrt(len(x)) for x in xs]
        bounds = [self.cost if s.spam else self.ham_cost for s in samples]
        alpha = [0.0] * len(samples)
        order = list(range(len(samples)))
        rng = random.Random(1)
        for _ in range(self.max_passes):
            rng.shuffle(order)
            low, high = math.inf, -math.inf
            for i in order:
                x, y, norm, a = xs[i], ys[i], norms[i], alpha[i]
                # Q_ii = x·x = 1: the features are scaled to unit length.
                g = y * norm * sum(map(get, x)) - 1.0
                pg = min(g, 0.0) if a == 0.0 else max(g, 0.0) if a == bounds[i] else g
                low, high = min(low, pg), max(high, pg)
                if pg == 0.0:
                    continue
                new = min(max(a - g, 0.0), bounds[i])
                if new != a:
                    alpha[i] = new
                    d = (new - a) * y * norm
                    for j in x:
                        w[j] += d
            if high - low < self.tolerance:
                break
        self.columns = w

    def z(self, sample: Sample) -> float:
        x = self._columns(sample)
        w, n = self.columns, len(self.columns)
        return self.slope * sum(w[j] for j in x if j < n) / math.sqrt(len(x))


class AveragedPerceptron(LinearSVM):
    """The averaged perceptron (Freund & Schapire 1999) over :class:`LinearSVM`'s columns: a
    step ``y·x`` on every mistake (margin ≤ 0), and the weights averaged over every message
    visited, which a store could keep up to date one moved message at a time."""

    def train(self, samples: Sequence[Sample]) -> None:
        xs = [self._columns(s) for s in samples]
        size = 1 << self.hash_bits if self.hash_bits else len(_COLUMNS)
        w, u = [0.0] * size, [0.0] * size
        get = w.__getitem__
        ys = [1.0 if s.spam else -1.0 for s in samples]
        order = list(range(len(samples)))
        rng = random.Random(1)
        seen = 1
        for _ in range(self.max_passes):
            rng.shuffle(order)
            for i in order:
                x, y = xs[i], ys[i]
                if y * sum(map(get, x)) <= 0.0:
                    d = y / math.sqrt(len(x))
                    for j in x:
                        w[j] += d
                        u[j] += seen * d
                seen += 1
        self.columns = [a - b / seen for a, b in zip(w, u, strict=True)]


class Stacked:
    """The Bayes reason plus the logistic reason, each weighted."""

    def __init__(self, bayes_weight: float, lr: Logistic, lr_weight: float) -> None:
        self.bayes = Bayes()
        self.lr = lr
        self.bayes_weight = bayes_weight
        self.lr_weight = lr_weight

    def train(self, samples: Sequence[Sample]) -> None:
        self.bayes.train(samples)
        self.lr.train(samples)

    def score(self, sample: Sample) -> float:
        return self.bayes_weight * self.bayes.score(sample) + self.lr_weight * self.lr.score(sample)


class HtmlBayes:
    """Bayes, and for a message with an HTML part a second Bayes trained only on such
    messages, whose scores are combined by ``mix`` (``replace``, ``mean``, ``min``). Among
    all messages, the markup's tokens count as spam evidence because most HTML mail is spam
    (on train 132 ham, 728 spam); among HTML mail only what tells a newsletter from spam
    should."""

    KEY = "part:text/html"

    def __init__(self, mix: str) -> None:
        self.all = Bayes()
        self.html = Bayes()
        self.mix = mix

    def train(self, samples: Sequence[Sample]) -> None:
        self.all.train(samples)
        self.html.train([s for s in samples if self.KEY in s.tokens])

    def score(self, sample: Sample) -> float:
        if self.KEY not in sample.tokens:
            return self.all.score(sample)
        both = (self.all.score(sample), self.html.score(sample))
        return {"replace": both[1], "mean": sum(both) / 2, "min": min(both)}[self.mix]


class Sum:
    """Several models' reasons added, each weighted: an ensemble of models that err apart."""

    def __init__(self, models: Sequence[tuple[float, Model]]) -> None:
        self.models = models

    def train(self, samples: Sequence[Sample]) -> None:
        for _, model in self.models:
            model.train(samples)

    def score(self, sample: Sample) -> float:
        return sum(weight * model.score(sample) for weight, model in self.models)


# -- header evidence (explicit reasons, weights fitted on train) ----------------------------------


def _solve(a: list[list[float]], b: list[float]) -> list[float]:
    """x with a·x = b (Gaussian elimination with partial pivoting; a is small and SPD)."""
    n = len(b)
    m = [[*row, b[i]] for i, row in enumerate(a)]
    for c in range(n):
        p = max(range(c, n), key=lambda r: abs(m[r][c]))
        m[c], m[p] = m[p], m[c]
        for r in range(c + 1, n):
            f = m[r][c] / m[c][c]
            if f:
                for k in range(c, n + 1):
                    m[r][k] -= f * m[c][k]
    x = [0.0] * n
    for r in range(n - 1, -1, -1):
        x[r] = (m[r][n] - sum(m[r][k] * x[k] for k in range(r + 1, n))) / m[r][r]
    return x


def fit_logistic(
    rows: Sequence[tuple[float, Sequence[int]]],
    labels: Sequence[bool],
    width: int,
    l2: float,
    iterations: int = 25,
) -> list[float]:
    """Weights of a logistic regression (:func:`fit`, L2 penalty ``l2``). Each row is (the
    verdict score / 10, indices of its true facts); weight 0 is the intercept, 1 the score's,
    2 + i fact i's."""
    return fit([([t], facts) for t, facts in rows], labels, width, l2, iterations)


def fit(
    rows: Sequence[tuple[Sequence[float], Sequence[int]]],
    labels: Sequence[bool],
    width: int,
    l2: float,
    iterations: int = 30,
) -> list[float]:
    """Logistic regression by Newton's method, L2 penalty on all but the intercept. A row is
    (its real-valued inputs, the indices of its true facts); weight 0 is the intercept, then
    one per input, then one per fact."""
    d = len(rows[0][0])
    n = 1 + d + width
    w = [0.0] * n
    for _ in range(iterations):
        grad = [0.0] * n
        hess = [[0.0] * n for _ in range(n)]
        for (dense, facts), y in zip(rows, labels, strict=True):
            idx = [*range(d + 1), *(1 + d + f for f in facts)]
            val = [1.0, *dense, *([1.0] * len(facts))]
            p = _sigmoid(sum(w[i] * v for i, v in zip(idx, val, strict=True)))
            g = (1.0 if y else 0.0) - p
            h = max(p * (1 - p), 1e-9)
            for i, vi in zip(idx, val, strict=True):
                grad[i] += g * vi
                row = hess[i]
                for j, vj in zip(idx, val, strict=True):
                    row[j] += h * vi * vj
        for i in range(1, n):
            grad[i] -= l2 * w[i]
            hess[i][i] += l2
        step = _solve(hess, grad)
        w = [a + b for a, b in zip(w, step, strict=True)]
        if max(abs(x) for x in step) < 1e-6:
            break
    return w


class Evidence:
    """The base model's verdict score plus a fitted score per header fact
    (:mod:`pillarbox.policy.headerfacts`). The weights come from a logistic regression of the
    label on (verdict score, facts) over the training set, where each training message's verdict
    score is out-of-fold (inner ``folds``-fold CV, base model and reputation trained without
    it), so the fit sees the scores unseen mail gets. A fact's score is its weight divided by the
    verdict score's weight (×10): the points it adds to the verdict like any other reason."""

    def __init__(
        self,
        base: Callable[[], Model],
        *,
        l2: float,
        folds: int,
        seed: int,
        discount_only: bool = False,
        cap: float = math.inf,
        band: float = -math.inf,
        intercept: bool = False,
        only: tuple[str, ...] = (),
        bulk: bool = False,
        show: bool = False,
    ) -> None:
        #: Add the legitimate-bulk-sender conjunctions (:func:`spam_evidence.bulk_facts`).
        self.bulk = bulk
        #: Use only the facts whose names start with one of these (all if empty).
        self.only = only
        #: Add the fit's intercept (in points) too, so the score is the fit's log-odds.
        self.intercept = intercept
        #: Fit on, and apply to, only the messages whose base score is at least this (a second
        #: stage for the Junk band: telling the ham there from the spam there).
        self.band = band
        #: The most the facts may add together: a ham the content model is sure of (10) plus
        #: the facts must stay below the reject threshold (15).
        self.cap = cap
        #: Keep only the facts that lower the score (a bulk-legit discount): nothing then adds
        #: to the content model's score, so no ham is pushed over the reject threshold.
        self.discount_only = discount_only
        self.make_base = base
        self.show = show
        self.base = base()
        self.l2 = l2
        self.folds = folds
        self.seed = seed
        self.names: list[str] = []
        self.points: dict[str, float] = {}
        self.offset = 0.0
        #: The fit's weight of the verdict score / 10 (the scale of the points).
        self.score_weight = 0.0

    def train(self, samples: Sequence[Sample]) -> None:
        inner, _ = cross_validate(self.make_base, samples, self.folds, self.seed)
        facts = {s.name: self.facts(s) for s in samples}
        self.names = sorted({f for fs in facts.values() for f in fs})
        index = {f: i for i, f in enumerate(self.names)}
        scored = [(s, v) for s, v in inner.scored if v >= self.band]
        rows = [(v / 10, [index[f] for f in facts[s.name]]) for s, v in scored]
        w = fit_logistic(rows, [s.spam for s, _ in scored], len(self.names), self.l2)
        self.score_weight = w[1]
        scale = 10 / w[1] if w[1] > 0 else 0.0
        self.points = {f: round(scale * w[2 + i], 2) for i, f in enumerate(self.names)}
        if self.discount_only:
            self.points = {f: p for f, p in self.points.items() if p < 0}
        self.offset = scale * w[0]
        if self.show:
            print(f"  fitted: score weight {w[1]:.3f}, intercept {self.offset:.2f} points")
            for f, p in sorted(self.points.items(), key=lambda x: x[1]):
                print(f"    {f:28} {p:+.2f}")
        self.base.train(samples)

    def facts(self, sample: Sample) -> set[str]:
        found = set(sample.facts)
        if self.bulk:
            found |= bulk_facts(found)
        return {f for f in found if f.startswith(self.only)} if self.only else found

    def score(self, sample: Sample) -> float:
        facts = self.facts(sample)
        added = sum(self.points.get(f, 0.0) for f in facts)
        base = self.base.score(sample)
        if base + sample.static < self.band:
            return base
        return base + min(added, self.cap) + (self.offset if self.intercept else 0.0)


# -- evaluation ---------------------------------------------------------------------------------


def _tallies(samples: Sequence[Sample]) -> dict[str, SpamCounts]:
    """Sender tallies as ``spam train`` records them (unverified From, no network)."""
    out: dict[str, list[int]] = {}
    for s in samples:
        for key in reputation.sender_keys(s.sender):
            if key.startswith("sent:"):
                continue
            c = out.setdefault(key, [0, 0])
            c[s.spam] += 1
    return {k: SpamCounts(h, sp) for k, (h, sp) in out.items()}


@dataclass
class Result:
    scored: list[tuple[Sample, float]]

    def errors(self, threshold: float = JUNK) -> tuple[int, int]:
        fp = sum(1 for s, v in self.scored if not s.spam and v >= threshold)
        fn = sum(1 for s, v in self.scored if s.spam and v < threshold)
        return fp, fn

    def curve(self, max_fp: int = 12) -> str:
        """Spam missed when the threshold admits at most k false positives, k = 0…max_fp:
        the ranking's quality whatever the calibration."""
        hams = sorted((v for s, v in self.scored if not s.spam), reverse=True)
        spams = [v for s, v in self.scored if s.spam]
        out = []
        for k in range(0, max_fp + 1, 3):
            # threshold just above the (k+1)-th highest ham score
            t = hams[k] if k < len(hams) else -math.inf
            missed = sum(1 for v in spams if v <= t)
            out.append(f"{k}:{missed}")
        return "missed at FP " + " ".join(out)

    def operating_point(self, max_fpr: float) -> float:
        """The lowest junk threshold whose false-positive rate is at most ``max_fpr``: halfway
        between the highest ham score it must pass and the next one above."""
        hams = sorted((v for s, v in self.scored if not s.spam), reverse=True)
        k = int(max_fpr * len(hams))
        if k >= len(hams):
            return -math.inf
        above = hams[k - 1] if k > 0 else hams[k] + 1.0
        return (hams[k] + above) / 2 if above > hams[k] else math.nextafter(hams[k], math.inf)

    def line(self, threshold: float = JUNK) -> str:
        ham = sum(1 for s, _ in self.scored if not s.spam)
        spam = len(self.scored) - ham
        fp, fn = self.errors(threshold)
        acc = 1 - (fp + fn) / len(self.scored)
        return (
            f"acc {acc:.2%}  FPR {fp / ham:.2%} ({fp}/{ham})  missed {fn / spam:.2%} ({fn}/{spam})"
        )


def run(
    make: Callable[[], Model],
    train: Sequence[Sample],
    test: Sequence[Sample],
    use_reputation: bool = True,
) -> tuple[list[tuple[Sample, float]], float]:
    model = make()
    model.train(train)
    tallies = _tallies(train) if use_reputation else {}
    out = []
    start = time.process_time()
    for s in test:
        v = model.score(s) + s.static
        v += sum(r.score for r in reputation.reasons(s.sender, tallies))
        out.append((s, v))
    return out, (time.process_time() - start) / max(len(test), 1)


def cross_validate(
    make: Callable[[], Model], samples: Sequence[Sample], folds: int, seed: int
) -> tuple[Result, float]:
    order = list(samples)
    random.Random(seed).shuffle(order)
    scored: list[tuple[Sample, float]] = []
    cpu = 0.0
    for k in range(folds):
        test = order[k::folds]
        train = [s for i, s in enumerate(order) if i % folds != k]
        out, per = run(make, train, test)
        scored += out
        cpu += per / folds
    return Result(scored), cpu


def _models(args: argparse.Namespace) -> Callable[[], Model]:
    # The feature columns every linear model is built over; the hashed ones also take hash_bits.
    columns = {
        "scale": args.scale,
        "ngrams": args.ngrams,
        "ngram_bytes": args.ngram_bytes,
        "use_tokens": not args.no_tokens,
    }
    hashed = {**columns, "hash_bits": args.hash_bits}

    def lr() -> Logistic:
        return Logistic(rate=args.rate, passes=args.passes, margin=args.margin, **columns)

    def svm() -> LinearSVM:
        return LinearSVM(
            cost=args.cost,
            ham_cost=args.ham_cost,
            tolerance=args.tolerance,
            max_passes=args.svm_passes,
            slope=args.slope,
            **hashed,
        )

    base: Callable[[], Model]
    if args.model == "bayes":
        base = Bayes
    elif args.model == "bayes-html":
        base = lambda: HtmlBayes(args.html_mix)  # noqa: E731
    elif args.model == "svm":
        base = svm
    elif args.model == "perceptron":
        base = lambda: AveragedPerceptron(  # noqa: E731
            max_passes=args.svm_passes,
            slope=args.slope,
            **hashed,
        )
    elif args.model == "svm+lr":
        base = lambda: Sum(  # noqa: E731
            ((args.svm_weight, svm()), (args.lr_weight, lr()))
        )
    elif args.model == "stack-svm":
        base = lambda: Stacked(args.bayes_weight, svm(), args.lr_weight)  # noqa: E731
    elif args.model == "lr":
        base = lr
    else:
        base = lambda: Stacked(args.bayes_weight, lr(), args.lr_weight)  # noqa: E731
    if args.evidence:
        return lambda: Evidence(
            base,
            l2=args.l2,
            folds=args.folds,
            seed=args.seed + 100,
            discount_only=args.discount_only,
            cap=args.cap,
            band=args.band,
            intercept=args.intercept,
            only=tuple(x for x in args.facts.split(",") if x),
            bulk=args.bulk,
            show=args.mode == "dev",
        )
    return base


def points_table(evidence: Evidence) -> str:
    """The fitted points as the product holds them (``pillarbox.policy.headerfacts.POINTS``):
    every fact in name order, 0.0 for a fact that never held in training."""
    lines = [
        f"# verdict-score weight {evidence.score_weight:.3f} per 10 points,"
        f" intercept {evidence.offset:+.2f} points (not added)",
        "POINTS: Mapping[str, float] = MappingProxyType(",
        "    {",
    ]
    # + 0.0 turns a rounded -0.0 into 0.0.
    points = evidence.points
    lines += [f'        "{name}": {points.get(name, 0.0) + 0.0},' for name in sorted(FACTS)]
    lines += ["    }", ")"]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", type=Path, default=Path("/work/shared/corpora/spam"))
    parser.add_argument("--cache", type=Path, default=Path("/tmp"))
    parser.add_argument(
        "--model",
        choices=(
            "bayes",
            "bayes-html",
            "lr",
            "stack",
            "svm",
            "stack-svm",
            "svm+lr",
            "perceptron",
        ),
        default="bayes",
    )
    parser.add_argument("--rate", type=float, default=0.1)
    parser.add_argument("--passes", type=int, default=1)
    parser.add_argument("--margin", type=float, default=None)
    parser.add_argument("--scale", type=float, default=10.0)
    parser.add_argument("--ngrams", type=int, default=0, help="byte n-gram features (0: none)")
    parser.add_argument("--ngram-bytes", type=int, default=3000)
    parser.add_argument("--no-tokens", action="store_true", help="LR without the tokens")
    parser.add_argument("--cost", type=float, default=10.0, help="SVM: C")
    parser.add_argument("--ham-cost", type=float, default=None, help="SVM: C of a ham")
    parser.add_argument("--tolerance", type=float, default=0.1, help="SVM: stop at this gap")
    parser.add_argument(
        "--svm-passes", type=int, default=200, help="SVM: at most this many passes (1: PA-I)"
    )
    parser.add_argument("--hash-bits", type=int, default=0, help="SVM: 2**bits hashed weights")
    parser.add_argument("--slope", type=float, default=5.0, help="SVM: score = σ(slope·w·x)")
    parser.add_argument("--svm-weight", type=float, default=1.0)
    parser.add_argument("--bayes-weight", type=float, default=1.0)
    parser.add_argument("--lr-weight", type=float, default=1.0)
    parser.add_argument("--align", action="store_true", help="sender-alignment tokens")
    parser.add_argument(
        "--html-mix", choices=("replace", "mean", "min"), default="mean", help="bayes-html"
    )
    parser.add_argument(
        "--no-recipient-tokens",
        action="store_true",
        help="drop the recipient's own domain from the fields its side writes",
    )
    parser.add_argument(
        "--evidence", action="store_true", help="header facts as reasons, weights fitted by CV"
    )
    parser.add_argument("--l2", type=float, default=1.0, help="--evidence: L2 penalty")
    parser.add_argument(
        "--facts", default="", help="--evidence: only facts with these name prefixes (comma list)"
    )
    parser.add_argument(
        "--bulk", action="store_true", help="--evidence: add the bulk-sender conjunctions"
    )
    parser.add_argument(
        "--intercept", action="store_true", help="--evidence: add the fit's intercept"
    )
    parser.add_argument(
        "--band", type=float, default=-math.inf, help="--evidence: only from this base score"
    )
    parser.add_argument(
        "--cap", type=float, default=math.inf, help="--evidence: most the facts may add"
    )
    parser.add_argument(
        "--discount-only", action="store_true", help="--evidence: only the facts that lower it"
    )
    parser.add_argument("--junk", type=float, default=JUNK, help="junk threshold")
    parser.add_argument("--max-fpr", type=float, default=0.003, help="CV operating point")
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--thresholds", default="", help="also report these junk thresholds (comma list)"
    )
    parser.add_argument("mode", choices=("cv", "dev", "weights"))
    args = parser.parse_args()
    train = load(args.corpus, "train", args.cache)
    if args.mode == "weights":
        args.evidence = True
        evidence = _models(args)()
        assert isinstance(evidence, Evidence)
        evidence.train(train)
        print(points_table(evidence))
        return
    align = with_align if args.align else list

    def extend(samples: Sequence[Sample]) -> list[Sample]:
        out = align(samples)
        return without_recipient(out) if args.no_recipient_tokens else out

    train = extend(train)
    make = _models(args)
    if args.mode == "cv":
        result, cpu = cross_validate(make, train, args.folds, args.seed)
        label = f"{args.folds}-fold CV"
    else:
        dev = extend(load(args.corpus, "dev", args.cache))
        scored, cpu = run(make, train, dev)
        result = Result(scored)
        label = "dev"
    print(f"{label}: {result.line(args.junk)}  score CPU {1000 * cpu:.3f} ms/message")
    print(f"  {result.curve()}")
    if args.mode == "cv":
        t = result.operating_point(args.max_fpr)
        print(
            f"  operating point for FPR <= {args.max_fpr:.2%}: junk from {t:.2f}: {result.line(t)}"
        )
    for t in (float(x) for x in args.thresholds.split(",") if x):
        print(f"  junk from {t:g}: {result.line(t)}")
    if args.mode == "dev":
        for s, v in result.scored:
            if (v >= args.junk) != s.spam:
                print(f"  wrong: {s.name} score {v:.2f}")


if __name__ == "__main__":
    main()
