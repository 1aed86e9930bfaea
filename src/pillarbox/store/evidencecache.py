"""The spam filter's evidence kept in memory between messages, so that a message's
``spam_evidence`` is usually answered without a read (both backends).

With the inbound policy on, every arriving message's verdict asks ``Store.spam_evidence``
once. Its SQL costs ~0.03 ms; handing it to a reader thread and back cost 0.2–0.3 ms of GIL
time per message under ``bench/smtp.py`` (``docs/performance.md``, "Fifth round"), the largest
item of the policy's cost on the intake path, and running the SQL on the event loop was
declined (DESIGN principle 7). So the store keeps, from its reads, every piece of that
evidence, and answers on the loop when each piece a message needs is kept and fresh:

- both models' versions ``(generation, ham, spam)``, or "never trained";
- the counts of every asked token, from :class:`~pillarbox.store.spamcache.SpamModelCache`
  under exactly those versions;
- the account's reputation tallies of exactly the asked sender keys (or their absence);
- the account's allow and block entries.

Invariants (freshness is :class:`~.directorycache.DirectoryCache`'s, whose entries these are):

- **Own writes are seen at once.** Every write of this store to the spam filter's tables
  forgets what it changes once it is durable, or failed: a training its model's version, a
  reputation record those keys, a list change the account's list, removing an account
  everything (the ``forget_*`` methods). Targeted, because mail sent by any user records
  reputation: emptying the whole cache on each would cost every account a read. A read that
  began before the write keeps nothing (the generation check).
- **Other nodes' writes** (PostgreSQL) are forgotten when their notification arrives (the
  store's ``forget`` list, sent by NOTIFY in the write's transaction; :mod:`.postgres.notify`).
- **Writes nobody announces are seen after the TTL** (``directory_ttl_ms``, counted from the
  end of the read that kept a piece, so at most the TTL plus one read's duration): a training
  by ``pillarbox spam train`` beside an SQLite server, or any write while a PostgreSQL node's
  LISTEN connection is down, reaches the verdicts once the kept versions expire. Before this
  cache it was seen by the very next message; the TTL is the price of not paying the hand-off
  (SQLite) or the round trip (PostgreSQL) per message.
- Token counts come from the model cache under the kept version only, so its invariant holds
  (counts filed under a version are never older than it); a kept version that the model cache
  has moved past answers nothing, and the read that follows keeps the newer one.
- Bounded by ``max_entries`` keys: one per model version, per (account, sender key), and per
  account's list. ``ttl`` 0 turns it off.

What still reads: an account's first message in a TTL, a sender key not asked in a TTL (a new
sender or network), and a message with a token never asked before when a model is too big
to be kept whole (every message has such tokens: see the model cache's notes). On
``bench/smtp.py`` (one sender, one account): one read a TTL, against one per message before.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import cast

from pillarbox.store.directorycache import DirectoryCache
from pillarbox.store.spamcache import GLOBAL_MODEL, ModelVersion, SpamModelCache, generation
from pillarbox.store.types import SenderListEntry, SpamCounts, SpamEvidence


class SpamEvidenceCache(DirectoryCache):
    """See the module notes. Keys: ``("model", model)``, ``("reputation", account, key)``,
    ``("senders", account)``."""

    async def lookup_evidence(
        self,
        models: SpamModelCache,
        account_id: int,
        tokens: Sequence[str],
        sender_keys: Sequence[str],
        read: Callable[[], Awaitable[tuple[SpamEvidence, Mapping[int, ModelVersion]]]],
    ) -> SpamEvidence:
        """The evidence from memory when every piece is kept and fresh, else ``read()``'s (the
        evidence and the versions of the models that have a row), whose pieces are kept unless
        something was forgotten while it ran."""
        known = self.answer(models, account_id, tokens, sender_keys)
        if known is not None:
            return known
        began = self.generation
        evidence, versions = await read()
        self.keep(began, account_id, versions, sender_keys, evidence)
        return evidence

    def answer(
        self,
        models: SpamModelCache,
        account_id: int,
        tokens: Sequence[str],
        sender_keys: Sequence[str],
    ) -> SpamEvidence | None:
        """What a read would give, if every piece is kept and fresh; else None."""
        kept_global = self.get(("model", GLOBAL_MODEL))
        kept_account = self.get(("model", account_id))
        kept_entries = self.get(("senders", account_id))
        if kept_global is None or kept_account is None or kept_entries is None:
            return None
        reputation: dict[str, SpamCounts] = {}
        for key in sender_keys:
            tally = self.get(("reputation", account_id, key))
            if tally is None:
                return None
            if tally[0] is not None:
                reputation[key] = cast(SpamCounts, tally[0])
        global_version = cast("ModelVersion | None", kept_global[0])
        account_version = cast("ModelVersion | None", kept_account[0])
        global_model = models.counted(GLOBAL_MODEL, global_version, tokens)
        account_model = models.counted(account_id, account_version, tokens)
        if global_model is None or account_model is None:
            return None
        return SpamEvidence(
            global_model,
            account_model,
            reputation,
            list(cast("tuple[SenderListEntry, ...]", kept_entries[0])),
            (generation(global_version), generation(account_version)),
        )

    def keep(
        self,
        began: int,
        account_id: int,
        versions: Mapping[int, ModelVersion],
        sender_keys: Sequence[str],
        evidence: SpamEvidence,
    ) -> None:
        """Keep what a read found that began at the cache's generation ``began`` (its token
        counts are in the model cache already)."""
        self.put(("model", GLOBAL_MODEL), versions.get(GLOBAL_MODEL), began)
        self.put(("model", account_id), versions.get(account_id), began)
        self.put(("senders", account_id), tuple(evidence.sender_entries), began)
        for key in sender_keys:
            self.put(("reputation", account_id, key), evidence.reputation.get(key), began)

    def forget_model(self, account_id: int | None) -> None:
        """A training of the account's model (None: the global one) became durable, or failed."""
        self.invalidate([("model", GLOBAL_MODEL if account_id is None else account_id)])

    def forget_reputation(self, account_id: int, keys: Sequence[str]) -> None:
        self.invalidate([("reputation", account_id, key) for key in keys])

    def forget_senders(self, account_id: int) -> None:
        self.invalidate([("senders", account_id)])
