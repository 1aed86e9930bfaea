"""SQLite queries of the spam filter (schema version 4): classifier models, training marks,
sender reputation and allow/block lists. Plain functions over a connection, run by
:class:`~.store.SqliteStore` on its reader threads or its writer.

The global classifier model is account 0 (no account has that id: ids start at 1). Token
lookups pass the message's tokens as one JSON array (``json_each``), so a message costs one
indexed query however many tokens it has, and only for the tokens the store's
:class:`~pillarbox.store.spamcache.SpamModelCache` lacks at the model's current generation
(which every training raises); a small model is read whole instead, once per generation.
Training is an upsert per token whose counts are clamped at zero, so untraining a message
that was never trained cannot make counts negative. The store follows every write here to
the models, reputation or lists by forgetting what it changed from the evidence it keeps
(:mod:`~pillarbox.store.evidencecache`).
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Mapping, Sequence

from pillarbox.errors import NotFound
from pillarbox.store.spamcache import GLOBAL_MODEL, ModelVersion, SpamModelCache, generation
from pillarbox.store.types import (
    ModelCounts,
    SenderListEntry,
    SenderListKind,
    SpamCounts,
    SpamEvidence,
)


def _model_id(account_id: int | None) -> int:
    return GLOBAL_MODEL if account_id is None else account_id


def spam_model(
    conn: sqlite3.Connection, cache: SpamModelCache, account_id: int | None, tokens: Sequence[str]
) -> ModelCounts:
    model = _model_id(account_id)
    versions = _versions(conn, [model])
    return _model_counts(conn, cache, model, versions.get(model), tokens)


def spam_evidence(
    conn: sqlite3.Connection,
    cache: SpamModelCache,
    account_id: int,
    tokens: Sequence[str],
    sender_keys: Sequence[str],
) -> tuple[SpamEvidence, dict[int, ModelVersion]]:
    """Both models, the reputation and the lists, from one snapshot of the database (the
    caller's read connection rolls the transaction back afterwards); and the versions of the
    models that have a row, for the store's :mod:`~pillarbox.store.evidencecache`."""
    conn.execute("BEGIN")
    versions = _versions(conn, [GLOBAL_MODEL, account_id])
    evidence = SpamEvidence(
        _model_counts(conn, cache, GLOBAL_MODEL, versions.get(GLOBAL_MODEL), tokens),
        _model_counts(conn, cache, account_id, versions.get(account_id), tokens),
        sender_reputation(conn, account_id, sender_keys),
        list_sender_entries(conn, account_id),
        (generation(versions.get(GLOBAL_MODEL)), generation(versions.get(account_id))),
    )
    return evidence, versions


def _versions(conn: sqlite3.Connection, models: Sequence[int]) -> dict[int, ModelVersion]:
    rows = conn.execute(
        "SELECT account_id, generation, ham, spam FROM spam_models "
        "WHERE account_id IN (SELECT value FROM json_each(?))",
        (json.dumps(list(models)),),
    )
    return {model: (generation, ham, spam) for model, generation, ham, spam in rows}


def _model_counts(
    conn: sqlite3.Connection,
    cache: SpamModelCache,
    model: int,
    version: ModelVersion | None,
    tokens: Sequence[str],
) -> ModelCounts:
    if version is None:
        return SpamCounts(), {}  # never trained
    totals = SpamCounts(version[1], version[2])
    if not tokens:
        return totals, {}
    counts, missing = cache.known(model, version, tokens)
    if missing and (whole := _whole_model(conn, cache, model, version)) is not None:
        counts.update((token, whole[token]) for token in missing if token in whole)
    elif missing:
        rows = conn.execute(
            "SELECT token, ham, spam FROM spam_tokens WHERE account_id = ? "
            "AND token IN (SELECT value FROM json_each(?))",
            (model, json.dumps(missing)),
        )
        read = {token: SpamCounts(ham, spam) for token, ham, spam in rows}
        cache.add(model, version, missing, read)
        counts.update(read)
    return totals, counts


def _whole_model(
    conn: sqlite3.Connection, cache: SpamModelCache, model: int, version: ModelVersion
) -> dict[str, SpamCounts] | None:
    """Every token of the model, filed whole in the cache, if it is small enough and has not
    been tried at this version; else None (see :mod:`~pillarbox.store.spamcache`)."""
    limit = cache.claim_whole(model, version)
    if not limit:
        return None
    # Counted first, in SQLite alone: a model too big to keep costs no Python rows.
    (size,) = conn.execute(
        "SELECT count(*) FROM (SELECT 1 FROM spam_tokens WHERE account_id = ? LIMIT ?)",
        (model, limit + 1),
    ).fetchone()
    if size > limit:
        return None
    rows = conn.execute("SELECT token, ham, spam FROM spam_tokens WHERE account_id = ?", (model,))
    whole = {token: SpamCounts(ham, spam) for token, ham, spam in rows}
    cache.add_whole(model, version, whole)
    return whole


def train_spam_model(
    conn: sqlite3.Connection,
    account_id: int | None,
    messages: SpamCounts,
    tokens: Mapping[str, SpamCounts],
) -> None:
    model = _model_id(account_id)
    if account_id is not None and (
        conn.execute("SELECT 1 FROM accounts WHERE id = ?", (account_id,)).fetchone() is None
    ):
        raise NotFound(f"no account {account_id}")
    conn.execute(
        "INSERT INTO spam_models (account_id, ham, spam, generation) "
        "VALUES (?, max(0, ?), max(0, ?), 1) ON CONFLICT (account_id) DO UPDATE "
        "SET ham = max(0, ham + ?), spam = max(0, spam + ?), generation = generation + 1",
        (model, messages.ham, messages.spam, messages.ham, messages.spam),
    )
    conn.executemany(
        "INSERT INTO spam_tokens (account_id, token, ham, spam) "
        "VALUES (?, ?, max(0, ?), max(0, ?)) "
        "ON CONFLICT (account_id, token) DO UPDATE "
        "SET ham = max(0, ham + ?), spam = max(0, spam + ?)",
        ((model, t, c.ham, c.spam, c.ham, c.spam) for t, c in tokens.items()),
    )
    if any(c.ham < 0 or c.spam < 0 for c in tokens.values()):
        conn.execute(
            "DELETE FROM spam_tokens WHERE account_id = ? AND ham = 0 AND spam = 0 "
            "AND token IN (SELECT value FROM json_each(?))",
            (model, json.dumps(list(tokens))),
        )


def training_mark(conn: sqlite3.Connection, account_id: int, message_key: str) -> bool | None:
    row = conn.execute(
        "SELECT spam FROM spam_trained WHERE account_id = ? AND message_key = ?",
        (account_id, message_key),
    ).fetchone()
    return None if row is None else bool(row[0])


def set_training_mark(
    conn: sqlite3.Connection, account_id: int, message_key: str, spam: bool
) -> None:
    conn.execute(
        "INSERT INTO spam_trained (account_id, message_key, spam) VALUES (?, ?, ?) "
        "ON CONFLICT (account_id, message_key) DO UPDATE SET spam = excluded.spam",
        (account_id, message_key, int(spam)),
    )


def sender_reputation(
    conn: sqlite3.Connection, account_id: int, keys: Sequence[str]
) -> dict[str, SpamCounts]:
    if not keys:
        return {}
    rows = conn.execute(
        "SELECT key, ham, spam FROM sender_reputation WHERE account_id = ? "
        "AND key IN (SELECT value FROM json_each(?))",
        (account_id, json.dumps(list(keys))),
    )
    return {key: SpamCounts(ham, spam) for key, ham, spam in rows}


def record_sender_reputation(
    conn: sqlite3.Connection, account_id: int, keys: Sequence[str], delta: SpamCounts
) -> None:
    conn.executemany(
        "INSERT INTO sender_reputation (account_id, key, ham, spam) "
        "VALUES (?, ?, max(0, ?), max(0, ?)) ON CONFLICT (account_id, key) DO UPDATE "
        "SET ham = max(0, ham + ?), spam = max(0, spam + ?)",
        (
            (account_id, key, delta.ham, delta.spam, delta.ham, delta.spam)
            for key in dict.fromkeys(keys)
        ),
    )


def list_sender_entries(conn: sqlite3.Connection, account_id: int) -> list[SenderListEntry]:
    rows = conn.execute(
        "SELECT pattern, kind FROM sender_lists WHERE account_id = ? ORDER BY pattern",
        (account_id,),
    )
    return [SenderListEntry(pattern, SenderListKind(kind)) for pattern, kind in rows]


def set_sender_entry(conn: sqlite3.Connection, account_id: int, entry: SenderListEntry) -> None:
    if conn.execute("SELECT 1 FROM accounts WHERE id = ?", (account_id,)).fetchone() is None:
        raise NotFound(f"no account {account_id}")
    conn.execute(
        "INSERT INTO sender_lists (account_id, pattern, kind) VALUES (?, ?, ?) "
        "ON CONFLICT (account_id, pattern) DO UPDATE SET kind = excluded.kind",
        (account_id, entry.pattern.lower(), entry.kind.value),
    )


def remove_sender_entry(conn: sqlite3.Connection, account_id: int, pattern: str) -> None:
    cursor = conn.execute(
        "DELETE FROM sender_lists WHERE account_id = ? AND pattern = ?",
        (account_id, pattern.lower()),
    )
    if cursor.rowcount == 0:
        raise NotFound(f"no sender list entry {pattern}")
