"""SQLite queries of the spam filter (schema version 4): classifier models, training marks,
sender reputation and allow/block lists. Plain functions over a connection, run by
:class:`~.store.SqliteStore` on its reader threads or its writer.

The global classifier model is account 0 (no account has that id: ids start at 1). Token
lookups pass the message's tokens as one JSON array (``json_each``), so a message costs one
indexed query however many tokens it has; training is an upsert per token whose counts are
clamped at zero, so untraining a message that was never trained cannot make counts negative.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Mapping, Sequence

from pillarbox.errors import NotFound
from pillarbox.store.types import SenderListEntry, SenderListKind, SpamCounts

GLOBAL_MODEL = 0


def _model_id(account_id: int | None) -> int:
    return GLOBAL_MODEL if account_id is None else account_id


def spam_model(
    conn: sqlite3.Connection, account_id: int | None, tokens: Sequence[str]
) -> tuple[SpamCounts, dict[str, SpamCounts]]:
    model = _model_id(account_id)
    row = conn.execute(
        "SELECT ham, spam FROM spam_models WHERE account_id = ?", (model,)
    ).fetchone()
    totals = SpamCounts(*row) if row is not None else SpamCounts()
    if not tokens or row is None:
        return totals, {}
    rows = conn.execute(
        "SELECT token, ham, spam FROM spam_tokens WHERE account_id = ? "
        "AND token IN (SELECT value FROM json_each(?))",
        (model, json.dumps(list(tokens))),
    )
    return totals, {token: SpamCounts(ham, spam) for token, ham, spam in rows}


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
        "INSERT INTO spam_models (account_id, ham, spam) VALUES (?, max(0, ?), max(0, ?)) "
        "ON CONFLICT (account_id) DO UPDATE SET ham = max(0, ham + ?), spam = max(0, spam + ?)",
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
