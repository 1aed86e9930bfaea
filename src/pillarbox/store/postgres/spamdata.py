"""PostgreSQL queries of the spam filter (schema version 2): classifier models, training marks,
sender reputation and allow/block lists; async functions over a connection, run by
:class:`~.store.PostgresStore` in its reads and write transactions.

Semantics as in the SQLite backend (its ``spamdata`` notes): the global model is account 0;
tallies are clamped at zero; a token whose tallies both reach zero is dropped. Across nodes,
training one model takes its ``spam_models`` row lock first (the upsert), so concurrent
trainings of a model apply one after the other and never lose an increment; token upserts go
out pipelined (``executemany``), one round trip for a message's tokens. Each training raises the
model's generation, which :class:`~pillarbox.store.spamcache.SpamModelCache` checks on every read:
a node reads from the database only the tokens it has not cached at the current generation.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import psycopg
from psycopg.rows import TupleRow

from pillarbox.errors import NotFound
from pillarbox.store.spamcache import GLOBAL_MODEL, ModelVersion, SpamModelCache, generation
from pillarbox.store.types import (
    ModelCounts,
    SenderListEntry,
    SenderListKind,
    SpamCounts,
    SpamEvidence,
)

Conn = psycopg.AsyncConnection[TupleRow]
Cursor = psycopg.AsyncCursor[TupleRow]


def _model_id(account_id: int | None) -> int:
    return GLOBAL_MODEL if account_id is None else account_id


async def _require_account(conn: Conn, account_id: int) -> None:
    cur = await conn.execute("SELECT 1 FROM accounts WHERE id = %s", (account_id,))
    if await cur.fetchone() is None:
        raise NotFound(f"no account {account_id}")


async def spam_model(
    conn: Conn, cache: SpamModelCache, account_id: int | None, tokens: Sequence[str]
) -> ModelCounts:
    model = _model_id(account_id)
    versions = await _read_versions(await _versions(conn, [model]))
    [counts] = await _models_counts(conn, cache, [(model, versions.get(model))], tokens)
    return counts


async def spam_evidence(
    conn: Conn,
    cache: SpamModelCache,
    account_id: int,
    tokens: Sequence[str],
    sender_keys: Sequence[str],
) -> tuple[SpamEvidence, dict[int, ModelVersion]]:
    """One round trip for the models' versions, the reputation and the lists (libpq pipeline
    mode), and a second only for tokens the cache lacks; with the versions of the models that
    have a row, for the store's :mod:`~pillarbox.store.evidencecache`."""
    async with conn.pipeline():
        versions_cur = await _versions(conn, [GLOBAL_MODEL, account_id])
        reputation_cur = await _reputation(conn, account_id, sender_keys)
        entries_cur = await _entries(conn, account_id)
        versions = await _read_versions(versions_cur)
        reputation = await _read_reputation(reputation_cur)
        entries = await _read_entries(entries_cur)
    global_model, account_model = await _models_counts(
        conn,
        cache,
        [(GLOBAL_MODEL, versions.get(GLOBAL_MODEL)), (account_id, versions.get(account_id))],
        tokens,
    )
    evidence = SpamEvidence(
        global_model,
        account_model,
        reputation,
        entries,
        (generation(versions.get(GLOBAL_MODEL)), generation(versions.get(account_id))),
    )
    return evidence, versions


async def _versions(conn: Conn, models: Sequence[int]) -> Cursor:
    return await conn.execute(
        "SELECT account_id, generation, ham, spam FROM spam_models WHERE account_id = ANY(%s)",
        (list(models),),
    )


async def _read_versions(cur: Cursor) -> dict[int, ModelVersion]:
    return {model: (gen, ham, spam) for model, gen, ham, spam in await cur.fetchall()}


async def _models_counts(
    conn: Conn,
    cache: SpamModelCache,
    models: Sequence[tuple[int, ModelVersion | None]],
    tokens: Sequence[str],
) -> list[ModelCounts]:
    """Each model's totals and token counts: from the cache, and the tokens it lacks read in
    one pipelined round trip for all the models."""
    out: list[ModelCounts] = []
    reads: list[tuple[int, ModelVersion, list[str], dict[str, SpamCounts]]] = []
    for model, version in models:
        if version is None:
            out.append((SpamCounts(), {}))  # never trained
            continue
        counts, missing = cache.known(model, version, tokens) if tokens else ({}, [])
        out.append((SpamCounts(version[1], version[2]), counts))
        if missing and (whole := await _whole_model(conn, cache, model, version)) is not None:
            counts.update((token, whole[token]) for token in missing if token in whole)
        elif missing:
            reads.append((model, version, missing, counts))
    if not reads:
        return out
    async with conn.pipeline():
        cursors = [
            await conn.execute(
                "SELECT token, ham, spam FROM spam_tokens WHERE account_id = %s "
                "AND token = ANY(%s)",
                (model, missing),
            )
            for model, _, missing, _ in reads
        ]
        for cur, (model, version, missing, counts) in zip(cursors, reads, strict=True):
            read = {token: SpamCounts(ham, spam) for token, ham, spam in await cur.fetchall()}
            cache.add(model, version, missing, read)
            counts.update(read)
    return out


async def _whole_model(
    conn: Conn, cache: SpamModelCache, model: int, version: ModelVersion
) -> dict[str, SpamCounts] | None:
    """Every token of the model, filed whole in the cache, if it is small enough and has not
    been tried at this version; else None. As on SQLite (see
    :mod:`~pillarbox.store.spamcache`): without it every message's never-asked tokens (a
    subject's number, a name) would cost a read, and the store's kept evidence could not
    answer a message from memory."""
    limit = cache.claim_whole(model, version)
    if not limit:
        return None
    # Counted first, in the server: a model too big to keep costs no rows sent.
    cur = await conn.execute(
        "SELECT count(*) FROM (SELECT 1 FROM spam_tokens WHERE account_id = %s LIMIT %s) t",
        (model, limit + 1),
    )
    row = await cur.fetchone()
    if row is None or row[0] > limit:
        return None
    cur = await conn.execute(
        "SELECT token, ham, spam FROM spam_tokens WHERE account_id = %s", (model,)
    )
    whole = {token: SpamCounts(ham, spam) for token, ham, spam in await cur.fetchall()}
    cache.add_whole(model, version, whole)
    return whole


async def train_spam_model(
    conn: Conn, account_id: int | None, messages: SpamCounts, tokens: Mapping[str, SpamCounts]
) -> None:
    model = _model_id(account_id)
    if account_id is not None:
        await _require_account(conn, account_id)
    await conn.execute(
        "INSERT INTO spam_models AS m (account_id, ham, spam, generation) "
        "VALUES (%(model)s, greatest(0, %(ham)s), greatest(0, %(spam)s), 1) "
        "ON CONFLICT (account_id) DO UPDATE "
        "SET ham = greatest(0, m.ham + %(ham)s), spam = greatest(0, m.spam + %(spam)s), "
        "generation = m.generation + 1",
        {"model": model, "ham": messages.ham, "spam": messages.spam},
    )
    if not tokens:
        return
    async with conn.cursor() as cur:
        await cur.executemany(
            "INSERT INTO spam_tokens AS t (account_id, token, ham, spam) "
            "VALUES (%s, %s, greatest(0, %s), greatest(0, %s)) "
            "ON CONFLICT (account_id, token) DO UPDATE "
            "SET ham = greatest(0, t.ham + %s), spam = greatest(0, t.spam + %s)",
            [(model, t, c.ham, c.spam, c.ham, c.spam) for t, c in tokens.items()],
        )
    if any(c.ham < 0 or c.spam < 0 for c in tokens.values()):
        await conn.execute(
            "DELETE FROM spam_tokens WHERE account_id = %s AND ham = 0 AND spam = 0 "
            "AND token = ANY(%s)",
            (model, list(tokens)),
        )


async def training_mark(conn: Conn, account_id: int, message_key: str) -> bool | None:
    cur = await conn.execute(
        "SELECT spam FROM spam_trained WHERE account_id = %s AND message_key = %s",
        (account_id, message_key),
    )
    row = await cur.fetchone()
    return None if row is None else bool(row[0])


async def set_training_mark(conn: Conn, account_id: int, message_key: str, spam: bool) -> None:
    await conn.execute(
        "INSERT INTO spam_trained (account_id, message_key, spam) VALUES (%s, %s, %s) "
        "ON CONFLICT (account_id, message_key) DO UPDATE SET spam = excluded.spam",
        (account_id, message_key, spam),
    )


async def sender_reputation(
    conn: Conn, account_id: int, keys: Sequence[str]
) -> dict[str, SpamCounts]:
    return await _read_reputation(await _reputation(conn, account_id, keys))


async def _reputation(conn: Conn, account_id: int, keys: Sequence[str]) -> Cursor | None:
    if not keys:
        return None
    return await conn.execute(
        "SELECT key, ham, spam FROM sender_reputation WHERE account_id = %s AND key = ANY(%s)",
        (account_id, list(keys)),
    )


async def _read_reputation(cur: Cursor | None) -> dict[str, SpamCounts]:
    if cur is None:
        return {}
    return {key: SpamCounts(ham, spam) for key, ham, spam in await cur.fetchall()}


async def record_sender_reputation(
    conn: Conn, account_id: int, keys: Sequence[str], delta: SpamCounts
) -> None:
    if not keys:
        return
    await conn.execute(
        "INSERT INTO sender_reputation AS r (account_id, key, ham, spam) "
        "SELECT %(account)s, k, greatest(0, %(ham)s), greatest(0, %(spam)s) "
        "FROM unnest(%(keys)s::text[]) AS k ORDER BY k "
        "ON CONFLICT (account_id, key) DO UPDATE "
        "SET ham = greatest(0, r.ham + %(ham)s), spam = greatest(0, r.spam + %(spam)s)",
        {
            "account": account_id,
            "ham": delta.ham,
            "spam": delta.spam,
            "keys": list(dict.fromkeys(keys)),
        },
    )


async def list_sender_entries(conn: Conn, account_id: int) -> list[SenderListEntry]:
    return await _read_entries(await _entries(conn, account_id))


async def _entries(conn: Conn, account_id: int) -> Cursor:
    return await conn.execute(
        'SELECT pattern, kind FROM sender_lists WHERE account_id = %s ORDER BY pattern COLLATE "C"',
        (account_id,),
    )


async def _read_entries(cur: Cursor) -> list[SenderListEntry]:
    return [
        SenderListEntry(pattern, SenderListKind(kind)) for pattern, kind in await cur.fetchall()
    ]


async def set_sender_entry(conn: Conn, account_id: int, entry: SenderListEntry) -> None:
    await _require_account(conn, account_id)
    await conn.execute(
        "INSERT INTO sender_lists (account_id, pattern, kind) VALUES (%s, %s, %s) "
        "ON CONFLICT (account_id, pattern) DO UPDATE SET kind = excluded.kind",
        (account_id, entry.pattern.lower(), entry.kind.value),
    )


async def remove_sender_entry(conn: Conn, account_id: int, pattern: str) -> None:
    cur = await conn.execute(
        "DELETE FROM sender_lists WHERE account_id = %s AND pattern = %s",
        (account_id, pattern.lower()),
    )
    if cur.rowcount == 0:
        raise NotFound(f"no sender list entry {pattern}")
