"""The classifier's clue tables kept between messages, one per account, each valid for one
state of the global and the account's model.

Scoring a message looks at each of its several hundred tokens in both models and works out
its probability; measured under ``bench/smtp.py`` that (and the store cache's look-ups of the
same tokens) was a fifth of the MX's CPU with the policy on. Most tokens of most messages
are common words whose probabilities only change when a model is trained, so the policy keeps
each token's clue (:class:`~.classifier.ClueTable`) and asks the store only for the counts of
tokens it has no clue for yet.

Invariants:

- **A table is used only under the state it was filled from**: both models' totals and
  generations as ``Store.spam_evidence`` reported them, and the classifier settings. Training
  raises a model's generation in the transaction that changes its counts, in any process or
  on any node, and ``spam_evidence`` reports it (at once for this process's trainings; for
  another PostgreSQL node's once its notification arrives; otherwise after at most
  ``directory_ttl_ms``: see ``store.evidencecache``); so the first message judged under a
  new generation gets a new, empty table, and no clue of older counts is used with it.
- Clues are computed from counts read with the state: they may be newer than it (a training
  committed between the two reads), never older — as in ``store.spamcache``, whose counts
  they are; that newer training raised the generation, so the next message drops the table.
- Bounded: past ``max_clues`` entries over all tables, every table is dropped and refilled on
  demand (the refill is the read that happens without the cache).
- Event-loop only: tables are read and filled between awaits, never across one.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from pillarbox.policy.classifier import ClassifierSettings, ClueTable
from pillarbox.store.types import SpamCounts, SpamEvidence

#: Clues kept over all accounts: ~150 bytes each (a dict slot, a 5-tuple, two floats).
DEFAULT_MAX_CLUES = 200_000


@dataclass(frozen=True, slots=True)
class ModelsState:
    """What a table's clues were computed from (see the module notes)."""

    global_totals: SpamCounts
    account_totals: SpamCounts
    generations: tuple[int, int]
    settings: ClassifierSettings

    @classmethod
    def of(cls, evidence: SpamEvidence, settings: ClassifierSettings) -> ModelsState:
        return cls(
            evidence.global_model[0], evidence.account_model[0], evidence.generations, settings
        )

    def new_table(self) -> ClueTable:
        """An empty table for this state (an account never trained adds nothing to it)."""
        account = self.account_totals
        return ClueTable(
            self.global_totals,
            account if account.ham or account.spam else None,
            self.settings.account_weight,
            self.settings,
        )


class ClueCache:
    """See the module notes. One per :class:`~.pipeline.InboundPolicy`."""

    def __init__(self, max_clues: int = DEFAULT_MAX_CLUES) -> None:
        self._max_clues = max_clues
        self._tables: dict[int, tuple[ModelsState, ClueTable]] = {}
        self._size = 0

    def current(self, account_id: int) -> ClueTable | None:
        """The account's latest table, whatever its state: which tokens to ask counts for."""
        entry = self._tables.get(account_id)
        return None if entry is None else entry[1]

    def table(self, account_id: int, state: ModelsState) -> ClueTable:
        """The account's table for ``state``: the kept one if it is for that state, else a new
        empty one that replaces it."""
        entry = self._tables.get(account_id)
        if entry is not None:
            if entry[0] == state and self._size < self._max_clues:
                return entry[1]
            self._size -= len(entry[1])
        if self._size >= self._max_clues:
            self._tables.clear()
            self._size = 0
        table = state.new_table()
        self._tables[account_id] = (state, table)
        return table

    def add(
        self,
        table: ClueTable,
        tokens: Iterable[str],
        global_counts: Mapping[str, SpamCounts],
        account_counts: Mapping[str, SpamCounts],
    ) -> None:
        """:meth:`ClueTable.add` to a table of :meth:`table`, counted towards the bound."""
        before = len(table)
        table.add(tokens, global_counts, account_counts)
        self._size += len(table) - before
