"""Token counts of the classifier models, kept in memory between messages (both backends).

Judging a message looks up each of its few hundred tokens in the global model and in the
account's; measured under ``bench/smtp.py``, reading those rows and building their tallies was
a fifth of the MX's CPU per message. Most tokens of most messages are common words whose counts
only change when the model is trained, so each store keeps the counts it has read here and
asks the database only for the tokens it has not seen yet.

Invariants:

- **Every read checks the model's version first**, in the same round trip as the rest of the
  message's evidence: ``(generation, ham, spam)`` of its ``spam_models`` row. Training raises
  the generation in the transaction that changes the counts, so a version seen means exactly
  those counts, in this process or any other (another SQLite process such as ``pillarbox spam
  train``, another PostgreSQL node). A version that differs from the cached one drops that
  model's entries before anything is answered from them.
- Counts read *after* the version are filed under it. They can only be newer than it (a
  training committed in between), never older; and a newer training has raised the generation,
  so the next read sees a different version and drops them. No stale count is ever served.
- **When a version is checked** is the store's affair. Both stores answer a message's
  evidence from memory while the version they kept is fresh
  (:mod:`~pillarbox.store.evidencecache`): their own trainings are seen by the next message,
  another PostgreSQL node's once its notification arrived, another process's on SQLite (or a
  node's whose notification was lost) after at most ``directory_ttl_ms`` — because the read
  cost 0.2–0.3 ms of the MX's 0.6 ms policy time per message on SQLite (the hand-off to a
  reader thread; ``docs/performance.md``, "Fifth round") and a round trip or two on
  PostgreSQL. :meth:`SpamModelCache.counted` answers it, under exactly the kept version and
  never dropping a newer one.
- Tokens the model has not seen are cached as absent too (most of a message's rare words).
- **Small models are read whole** (both stores): a model of at most half of ``max_tokens``
  tokens (a global model trained on the SpamAssassin corpus's 4,234 training messages has
  91,668), and no more than the room left, is read entire at each new version, so a token not
  kept is known to be absent. Every message has tokens never asked before (on the bench, its
  subject's number; in real mail names, numbers, links), and without this each would need a
  read. One reader claims that read; the others, and every reader if the model is too big or
  there is no room, ask token by token until the version changes. A whole model never evicts
  others.
- Bounded: past ``max_tokens`` entries over all models, everything is dropped and refilled on
  demand — simpler than an LRU and cheap, since a refill is exactly the read that happens
  without a cache. ``max_tokens`` 0 turns the cache off.
- Thread-safe: the SQLite backend reads on a pool of threads while the event loop answers
  from the cache.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import cast

from pillarbox.store.types import ModelCounts, SpamCounts

#: What ``dict.get`` gives for a token not in the cache (None means "not in the model").
_UNREAD = SpamCounts(-1, -1)

#: A model of at most ``max_tokens // WHOLE_SHARE`` tokens is read whole (see the notes).
WHOLE_SHARE = 2

#: The global model's key in the models' tables and in the caches (no account has id 0).
GLOBAL_MODEL = 0

#: A model's ``spam_models`` row as the cache compares it: (generation, ham, spam).
ModelVersion = tuple[int, int, int]


@dataclass(slots=True)
class _Model:
    version: ModelVersion
    #: token → counts, or None for a token the model has not seen.
    counts: dict[str, SpamCounts | None] = field(default_factory=dict)
    #: ``counts`` holds every token of the model (read whole): any other is not in it.
    whole: bool = False
    #: A read of the model whole was claimed at this version (:meth:`SpamModelCache.claim_whole`):
    #: not tried again until the version changes, whatever became of it.
    tried: bool = False


def _lookup(entry: _Model, tokens: Iterable[str]) -> tuple[dict[str, SpamCounts], list[str]]:
    """The kept counts of the tokens the model has, and the tokens not kept (none when the
    model is kept whole: any other token is not in it)."""
    found: dict[str, SpamCounts] = {}
    missing: list[str] = []
    get, unread = entry.counts.get, None if entry.whole else _UNREAD
    for token in tokens:
        counts = get(token, unread)
        if counts is _UNREAD:
            missing.append(token)
        elif counts is not None:
            found[token] = counts
    return found, missing


def generation(version: ModelVersion | None) -> int:
    """A model's generation as ``SpamEvidence.generations`` reports it (0: never trained)."""
    return 0 if version is None else version[0]


class SpamModelCache:
    """See the module notes. ``model`` is the ``spam_models.account_id`` (0: global)."""

    def __init__(self, max_tokens: int) -> None:
        self._max_tokens = max_tokens
        self._models: dict[int, _Model] = {}
        self._size = 0
        self._lock = threading.Lock()

    def known(
        self, model: int, version: ModelVersion, tokens: Iterable[str]
    ) -> tuple[dict[str, SpamCounts], list[str]]:
        """The cached counts of ``tokens`` the model has seen, and the tokens to read."""
        with self._lock:
            entry = self._models.get(model)
            if entry is not None and entry.version != version:
                self._size -= len(entry.counts)
                del self._models[model]
                entry = None
            if entry is None:
                return {}, list(tokens)
            return _lookup(entry, tokens)

    def counted(
        self, model: int, version: ModelVersion | None, tokens: Sequence[str]
    ) -> ModelCounts | None:
        """The model as a read at ``version`` gives it for ``tokens`` if every token is kept
        under exactly that version, else None: the caller reads (nothing is dropped here,
        since ``version`` may be the older of two)."""
        if version is None:
            return SpamCounts(), {}  # never trained
        totals = SpamCounts(version[1], version[2])
        if not tokens:
            return totals, {}
        with self._lock:
            entry = self._models.get(model)
            if entry is None or entry.version != version:
                return None
            found, missing = _lookup(entry, tokens)
        return None if missing else (totals, found)

    def add(
        self,
        model: int,
        version: ModelVersion,
        asked: Sequence[str],
        found: Mapping[str, SpamCounts],
    ) -> None:
        """File what a read of ``asked`` returned (``found``) under ``version``."""
        if not asked or self._max_tokens <= 0:
            return
        with self._lock:
            entry = self._models.get(model)
            if entry is not None and entry.version != version:
                # Another reader saw a different version; whichever is older, the next read
                # settles it. Keep the entry, file nothing.
                return
            if self._size + len(asked) > self._max_tokens:
                self._models.clear()
                self._size = 0
                entry = None
                if len(asked) > self._max_tokens:
                    return
            if entry is None:
                entry = self._models[model] = _Model(version)
            counts = entry.counts
            before = len(counts)
            for token in asked:
                counts[token] = found.get(token)
            self._size += len(counts) - before

    def claim_whole(self, model: int, version: ModelVersion) -> int:
        """Claim the one read of the model whole at ``version``: the most tokens it may have
        to be kept whole, or 0 — no room, or claimed already (by a reader still at it too:
        the others ask token by token meanwhile, rather than all reading it at once)."""
        with self._lock:
            entry = self._models.get(model)
            if entry is not None and (entry.version != version or entry.tried):
                return 0
            room = self._max_tokens - self._size + (0 if entry is None else len(entry.counts))
            limit = min(self._max_tokens // WHOLE_SHARE, room)
            if limit <= 0:
                return 0
            if entry is None:
                entry = self._models[model] = _Model(version)
            entry.tried = True
        return limit

    def add_whole(self, model: int, version: ModelVersion, counts: dict[str, SpamCounts]) -> None:
        """File the model as the claimed read found it whole at ``version``; ``counts`` is
        kept as it is (not copied: the event loop waits on this lock)."""
        with self._lock:
            entry = self._models.get(model)
            if entry is not None and entry.version != version:
                return  # as in add: the next read settles which version is current
            kept = 0 if entry is None else len(entry.counts)
            if self._size - kept + len(counts) > self._max_tokens:
                return  # filled meanwhile: token by token, evicting nothing
            filed = cast("dict[str, SpamCounts | None]", counts)  # no None in it: all read
            self._models[model] = _Model(version, filed, whole=True, tried=True)
            self._size += len(counts) - kept

    def clear(self) -> None:
        with self._lock:
            self._models.clear()
            self._size = 0
