"""Copy an existing SQLite store into an empty PostgreSQL one (``pillarbox store migrate``).

The copy is row by row, not through the :class:`~pillarbox.store.interface.Store` interface:
the interface allocates new UIDs, MODSEQs and ids, while a migration must keep everything an
IMAP client has cached (UIDVALIDITY, UIDs, UIDNEXT, HIGHESTMODSEQ, the expunge history for
QRESYNC) and everything only the store knows (token digests, queue attempts, leases). So this
module reads the SQLite schema (at its latest version, which opening the source store ensures)
and writes the PostgreSQL one with COPY.

Invariants:

- **All or nothing**: one PostgreSQL transaction; a failure leaves the target as it was (empty).
- **Counters are recomputed, not copied**: rows go in with zero counters and the target's
  triggers count them, so a copied store is consistent by construction; :func:`verify` then
  checks them against the source's.
- **Ids keep their values**, and each identity sequence restarts above the highest id the
  source ever gave (``sqlite_sequence``), so no id of a deleted row comes back.
- **Bytes are verified**: every blob read back from PostgreSQL must hash to its id.
- **ACME challenge records are not copied**: they live for one certificate attempt (minutes)
  and the server is stopped during a migration; the next attempt publishes its own.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql
from psycopg.rows import TupleRow
from psycopg.types.json import Jsonb

from pillarbox.errors import StorageError, UserError
from pillarbox.store.blobs import FileBlobStore
from pillarbox.store.sqlite.migrations import LATEST_VERSION as SQLITE_VERSION
from pillarbox.store.sqlite.migrations import schema_version as sqlite_schema_version

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

#: The SQLite ``meta`` row numbering new threads; PostgreSQL has the ``thread_ids`` sequence.
_THREAD_COUNTER = "next_thread"
#: Tables whose emptiness makes a target acceptable.
_CONTENT_TABLES = ("domains", "accounts", "blobs", "queue_messages")
#: Identity columns whose sequences continue after the copy (SQLite AUTOINCREMENT tables).
_SEQUENCES = (
    "accounts",
    "mailboxes",
    "blobs",
    "queue_messages",
    "queue_recipients",
    "account_tokens",
    "identities",
    "contacts",
    "calendars",
    "calendar_objects",
    "received_reports",
    "dmarc_observations",
    "tls_results",
    "tls_report_posts",
)

#: SQLite tables the copy leaves behind: the schema's own bookkeeping, the full-text index
#: (PostgreSQL builds its own from the copied messages), ACME challenge records and answers,
#: which live for one certificate attempt, and the shared ACME certificate and its lease, which
#: a single SQLite node does not use (its certificate is in its data_dir, and the first node
#: on PostgreSQL shares it from there), and the messages two-step logins hold between their
#: steps, which live five minutes (the move is made with the server stopped).
NOT_COPIED = frozenset(
    {
        "schema_version",
        "message_text",
        "message_text_config",
        "message_text_data",
        "message_text_docsize",
        "message_text_idx",
        "acme_challenges",
        "acme_answers",
        "acme_certificates",
        "acme_leases",
        "login_holds",
    }
)


@dataclass(frozen=True, slots=True)
class Copied:
    """Rows copied per table, in copy order."""

    counts: tuple[tuple[str, int], ...]


def _time(us: int | None) -> datetime | None:
    return None if us is None else _EPOCH + timedelta(microseconds=us)


def _words(text: str) -> list[str]:
    return text.split()


@dataclass(frozen=True, slots=True)
class _Table:
    """One table's copy: the SQLite query and the PostgreSQL columns it fills, in order."""

    name: str
    select: str
    columns: tuple[str, ...]
    convert: Callable[[tuple[Any, ...]], tuple[Any, ...]]


def copied_tables() -> frozenset[str]:
    """The SQLite tables :func:`copy_sqlite_store` copies (the others: :data:`NOT_COPIED`)."""
    return frozenset(table.name for table in _tables(lambda _id, _sha: b""))


def _tables(blob_bytes: Callable[[int, str], bytes]) -> tuple[_Table, ...]:
    return (
        _Table(
            "domains",
            "SELECT name, created FROM domains",
            ("name", "created"),
            lambda r: (r[0], _time(r[1])),
        ),
        _Table(
            "accounts",
            "SELECT id, address, domain, display_name, password_hash, scram_sha256, is_admin, "
            "quota_bytes, quota_messages, created, quota_warned FROM accounts",
            (
                "id",
                "address",
                "domain",
                "display_name",
                "password_hash",
                "scram_sha256",
                "is_admin",
                "quota_bytes",
                "quota_messages",
                "created",
                "quota_warned",
            ),
            lambda r: (*r[:6], bool(r[6]), r[7], r[8], _time(r[9]), r[10]),
        ),
        _Table(
            "aliases",
            "SELECT address, domain, targets FROM aliases",
            ("address", "domain", "targets"),
            lambda r: (r[0], r[1], json.loads(r[2])),
        ),
        _Table(
            "mailboxes",
            "SELECT id, account_id, name, special_use, uidvalidity, uidnext, highestmodseq, "
            "recent_uid FROM mailboxes",
            (
                "id",
                "account_id",
                "name",
                "special_use",
                "uidvalidity",
                "uidnext",
                "highestmodseq",
                "recent_uid",
            ),
            lambda r: r,
        ),
        _Table(
            "subscriptions",
            "SELECT account_id, name FROM subscriptions",
            ("account_id", "name"),
            lambda r: r,
        ),
        _Table(
            "blobs",
            "SELECT id, sha256, size, info FROM blobs",
            ("id", "sha256", "size", "info"),
            lambda r: (r[0], r[1], r[2], None if r[3] is None else bytes(r[3])),
        ),
        _Table(
            "blob_data",
            "SELECT id, sha256 FROM blobs",
            ("id", "data"),
            lambda r: (r[0], blob_bytes(r[0], r[1])),
        ),
        _Table(
            "blob_text",
            "SELECT t.id, t.header_text, t.body_text FROM blob_text t JOIN blobs b ON b.id = t.id",
            ("id", "header_text", "body_text", "search_header", "search_body"),
            lambda r: (r[0], r[1], r[2], r[1].lower(), r[2].lower()),
        ),
        _Table(
            "messages",
            "SELECT mailbox_id, uid, modseq, flags, internal_date, saved_date, size, blob, "
            "sent_date, subject, from_addr, to_addr, cc_addr, message_id, in_reply_to, refs, "
            "thread FROM messages ORDER BY mailbox_id, uid",
            (
                "mailbox_id",
                "uid",
                "modseq",
                "flags",
                "internal_date",
                "saved_date",
                "size",
                "blob",
                "sent_date",
                "subject",
                "from_addr",
                "to_addr",
                "cc_addr",
                "message_id",
                "in_reply_to",
                "refs",
                "thread",
            ),
            lambda r: (
                *r[:3],
                sorted(_words(r[3])),
                _time(r[4]),
                _time(r[5]),
                r[6],
                r[7],
                _time(r[8]),
                *r[9:15],
                json.loads(r[15]),
                r[16],
            ),
        ),
        _Table(
            "expunged",
            "SELECT mailbox_id, uid, modseq FROM expunged",
            ("mailbox_id", "uid", "modseq"),
            lambda r: r,
        ),
        _Table(
            "queue_messages",
            "SELECT id, sender, blob, size, queued_at, ret, envid, lease_owner, lease_until, "
            "requiretls FROM queue_messages",
            (
                "id",
                "sender",
                "blob",
                "size",
                "queued_at",
                "ret",
                "envid",
                "lease_owner",
                "lease_until",
                "requiretls",
            ),
            lambda r: (*r[:4], _time(r[4]), r[5], r[6], r[7], _time(r[8]), bool(r[9])),
        ),
        _Table(
            "queue_recipients",
            "SELECT id, message_id, address, state, attempts, next_attempt, last_reply, notify, "
            "orcpt, delay_notified, filed_mailbox, filed_spam, filed_fields "
            "FROM queue_recipients",
            (
                "id",
                "message_id",
                "address",
                "state",
                "attempts",
                "next_attempt",
                "last_reply",
                "notify",
                "orcpt",
                "delay_notified",
                "filed_mailbox",
                "filed_spam",
                "filed_fields",
            ),
            lambda r: (
                *r[:5],
                _time(r[5]),
                r[6],
                _words(r[7]),
                r[8],
                bool(r[9]),
                r[10],
                bool(r[11]),
                r[12],
            ),
        ),
        _Table(
            "account_settings",
            "SELECT account_id, vacation_enabled, vacation_subject, vacation_body, "
            "vacation_until, forward_to, forward_keep_copy, junk_days, trash_days, time_zone, "
            "shortcuts, default_calendar FROM account_settings",
            (
                "account_id",
                "vacation_enabled",
                "vacation_subject",
                "vacation_body",
                "vacation_until",
                "forward_to",
                "forward_keep_copy",
                "junk_days",
                "trash_days",
                "time_zone",
                "shortcuts",
                "default_calendar",
            ),
            lambda r: (
                *(r[0], bool(r[1]), r[2], r[3], _time(r[4]), json.loads(r[5]), bool(r[6])),
                *r[7:10],
                bool(r[10]),
                r[11],
            ),
        ),
        _Table(
            "account_tokens",
            "SELECT id, account_id, kind, label, digest, created FROM account_tokens",
            ("id", "account_id", "kind", "label", "digest", "created"),
            lambda r: (*r[:5], _time(r[5])),
        ),
        _Table(
            "dkim_keys",
            "SELECT domain, selector, algorithm, private_pem, created, retired FROM dkim_keys",
            ("domain", "selector", "algorithm", "private_pem", "created", "retired"),
            lambda r: (r[0], r[1], r[2], bytes(r[3]), _time(r[4]), _time(r[5])),
        ),
        # The thread counter becomes the sequence (``_continue_sequences``).
        _Table(
            "meta",
            f"SELECT key, value FROM meta WHERE key <> '{_THREAD_COUNTER}'",
            ("key", "value"),
            lambda r: r,
        ),
        _Table(
            "thread_keys",
            "SELECT account_id, key, thread FROM thread_keys",
            ("account_id", "key", "thread"),
            lambda r: r,
        ),
        _Table(
            "spam_models",
            "SELECT account_id, ham, spam FROM spam_models",
            ("account_id", "ham", "spam"),
            lambda r: r,
        ),
        _Table(
            "spam_tokens",
            "SELECT account_id, token, ham, spam FROM spam_tokens",
            ("account_id", "token", "ham", "spam"),
            lambda r: r,
        ),
        _Table(
            "spam_trained",
            "SELECT account_id, message_key, spam FROM spam_trained",
            ("account_id", "message_key", "spam"),
            lambda r: (r[0], r[1], bool(r[2])),
        ),
        _Table(
            "sender_reputation",
            "SELECT account_id, key, ham, spam FROM sender_reputation",
            ("account_id", "key", "ham", "spam"),
            lambda r: r,
        ),
        _Table(
            "sender_lists",
            "SELECT account_id, pattern, kind FROM sender_lists",
            ("account_id", "pattern", "kind"),
            lambda r: r,
        ),
        _Table(
            "sending_limits",
            "SELECT account_id, messages, recipients, first_time FROM sending_limits",
            ("account_id", "messages", "recipients", "first_time"),
            lambda r: r,
        ),
        _Table(
            "sent_messages",
            "SELECT account_id, sent, recipients FROM sent_messages",
            ("account_id", "sent", "recipients"),
            lambda r: (r[0], _time(r[1]), r[2]),
        ),
        _Table(
            "sent_recipients",
            "SELECT account_id, address, first_sent, last_sent FROM sent_recipients",
            ("account_id", "address", "first_sent", "last_sent"),
            lambda r: (r[0], r[1], _time(r[2]), _time(r[3])),
        ),
        _Table(
            "identities",
            "SELECT id, account_id, address, display_name, reply_to, signature, is_default "
            "FROM identities",
            ("id", "account_id", "address", "display_name", "reply_to", "signature", "is_default"),
            lambda r: (*r[:6], bool(r[6])),
        ),
        # The address book keeps its ids (web links) and UIDs (vCard clients' own copies).
        _Table(
            "contacts",
            "SELECT id, account_id, uid, display_name, emails, phones, organization, note, "
            "card, search, created, updated, modseq, etag FROM contacts",
            (
                "id",
                "account_id",
                "uid",
                "display_name",
                "emails",
                "phones",
                "organization",
                "note",
                "card",
                "search",
                "created",
                "updated",
                "modseq",
                "etag",
            ),
            lambda r: (
                *r[:4],
                json.loads(r[4]),
                json.loads(r[5]),
                *r[6:10],
                _time(r[10]),
                _time(r[11]),
                *r[12:],
            ),
        ),
        # The address book's change counter and tombstones: a client's sync token stays good.
        _Table(
            "contact_books",
            "SELECT account_id, sync_token, oldest_token FROM contact_books",
            ("account_id", "sync_token", "oldest_token"),
            lambda r: r,
        ),
        _Table(
            "contact_tombstones",
            "SELECT account_id, uid, modseq, deleted FROM contact_tombstones",
            ("account_id", "uid", "modseq", "deleted"),
            lambda r: (*r[:3], _time(r[3])),
        ),
        # Calendars keep their ids and change counters: a client's sync token names both.
        _Table(
            "calendars",
            "SELECT id, account_id, name, display_name, color, description, timezone, "
            "sync_token, oldest_token, created FROM calendars",
            (
                "id",
                "account_id",
                "name",
                "display_name",
                "color",
                "description",
                "timezone",
                "sync_token",
                "oldest_token",
                "created",
            ),
            lambda r: (*r[:9], _time(r[9])),
        ),
        _Table(
            "calendar_objects",
            "SELECT id, calendar_id, name, uid, component, data, starts, ends, modseq, updated, "
            "etag, schedule_tag FROM calendar_objects",
            (
                "id",
                "calendar_id",
                "name",
                "uid",
                "component",
                "data",
                "starts",
                "ends",
                "modseq",
                "updated",
                "etag",
                "schedule_tag",
            ),
            lambda r: (*r[:5], bytes(r[5]), _time(r[6]), _time(r[7]), r[8], _time(r[9]), *r[10:]),
        ),
        _Table(
            "calendar_tombstones",
            "SELECT calendar_id, name, modseq, deleted FROM calendar_tombstones",
            ("calendar_id", "name", "modseq", "deleted"),
            lambda r: (*r[:3], _time(r[3])),
        ),
        _Table(
            "server_metadata",
            "SELECT account_id, name, value FROM server_metadata",
            ("account_id", "name", "value"),
            lambda r: (r[0], r[1], bytes(r[2])),
        ),
        _Table(
            "mailbox_metadata",
            "SELECT mailbox_id, name, value FROM mailbox_metadata",
            ("mailbox_id", "name", "value"),
            lambda r: (r[0], r[1], bytes(r[2])),
        ),
        _Table(
            "mailbox_acl",
            "SELECT mailbox_id, grantee_id, special, rights, denied FROM mailbox_acl",
            ("mailbox_id", "grantee_id", "special", "rights", "denied"),
            lambda r: r,
        ),
        _Table(
            "sieve_scripts",
            "SELECT account_id, name, content, active FROM sieve_scripts",
            ("account_id", "name", "content", "active"),
            lambda r: (r[0], r[1], r[2], bool(r[3])),
        ),
        _Table(
            "vacation_replies",
            "SELECT account_id, sender, replied FROM vacation_replies",
            ("account_id", "sender", "replied"),
            lambda r: (r[0], r[1], _time(r[2])),
        ),
        # The ids Sieve duplicate tests saw (RFC 7352): a move does not deliver them again.
        _Table(
            "sieve_duplicates",
            "SELECT account_id, key, expires FROM sieve_duplicates",
            ("account_id", "key", "expires"),
            lambda r: (r[0], r[1], _time(r[2])),
        ),
        # What the next DMARC and TLS reports will count, the periods already reported, and
        # TLS reports waiting for another POST: a move does not lose a day of reporting.
        _Table(
            "dmarc_observations",
            "SELECT id, received, policy_domain, header_from, envelope_from, source_ip, "
            "disposition, dkim_aligned, spf_aligned, spf_domain, spf_result, dkim, "
            "policy_record, override, override_comment, discovery FROM dmarc_observations",
            (
                "id",
                "received",
                "policy_domain",
                "header_from",
                "envelope_from",
                "source_ip",
                "disposition",
                "dkim_aligned",
                "spf_aligned",
                "spf_domain",
                "spf_result",
                "dkim",
                "policy_record",
                "override",
                "override_comment",
                "discovery",
            ),
            lambda r: (
                r[0],
                _time(r[1]),
                *r[2:7],
                bool(r[7]),
                bool(r[8]),
                r[9],
                r[10],
                Jsonb(json.loads(r[11])),
                *r[12:],
            ),
        ),
        _Table(
            "dmarc_report_runs",
            "SELECT period_end, scope, node FROM dmarc_report_runs",
            ("period_end", "scope", "node"),
            lambda r: (_time(r[0]), r[1], r[2]),
        ),
        _Table(
            "tls_results",
            "SELECT id, recorded, policy_domain, policy_type, policy_strings, mx_patterns, "
            "result_type, receiving_mx, receiving_ip, sending_ip, failure_reason FROM tls_results",
            (
                "id",
                "recorded",
                "policy_domain",
                "policy_type",
                "policy_strings",
                "mx_patterns",
                "result_type",
                "receiving_mx",
                "receiving_ip",
                "sending_ip",
                "failure_reason",
            ),
            lambda r: (
                r[0],
                _time(r[1]),
                r[2],
                r[3],
                Jsonb(json.loads(r[4])),
                Jsonb(json.loads(r[5])),
                *r[6:],
            ),
        ),
        _Table(
            "tls_report_posts",
            "SELECT id, url, policy_domain, body, first_try, next_try, attempts "
            "FROM tls_report_posts",
            ("id", "url", "policy_domain", "body", "first_try", "next_try", "attempts"),
            lambda r: (r[0], r[1], r[2], bytes(r[3]), _time(r[4]), _time(r[5]), r[6]),
        ),
        # The sealed secret is bound to the account id, which the copy keeps: 2FA stays on.
        _Table(
            "account_totp",
            "SELECT account_id, sealed_secret, last_step, created FROM account_totp",
            ("account_id", "sealed_secret", "last_step", "created"),
            lambda r: (r[0], r[1], r[2], _time(r[3])),
        ),
        _Table(
            "account_totp_recovery",
            "SELECT account_id, digest FROM account_totp_recovery",
            ("account_id", "digest"),
            lambda r: r,
        ),
        _Table(
            "received_reports",
            "SELECT id, kind, org_name, report_id, domain, date_begin, date_end, received, "
            "contact, policy, rows_json FROM received_reports",
            (
                "id",
                "kind",
                "org_name",
                "report_id",
                "domain",
                "date_begin",
                "date_end",
                "received",
                "contact",
                "policy",
                "rows_json",
            ),
            lambda r: (
                *r[:5],
                _time(r[5]),
                _time(r[6]),
                _time(r[7]),
                r[8],
                r[9],
                Jsonb(json.loads(r[10])),
            ),
        ),
        # Cached MTA-STS policies move too: the move must not forget an "enforce" policy before
        # its max_age ends (RFC 8461 §5.1, §10.2), any more than a restart may.
        _Table(
            "mta_sts_policies",
            "SELECT domain, policy_id, mode, mx, max_age, fetched, expires FROM mta_sts_policies",
            ("domain", "policy_id", "mode", "mx", "max_age", "fetched", "expires"),
            lambda r: (*r[:3], Jsonb(json.loads(r[3])), r[4], _time(r[5]), _time(r[6])),
        ),
        # And their failed fetches: the move, like a restart, waits out their retries.
        _Table(
            "mta_sts_failures",
            "SELECT domain, policy_id, failed, result_type, reason FROM mta_sts_failures",
            ("domain", "policy_id", "failed", "result_type", "reason"),
            lambda r: (r[0], r[1], _time(r[2]), r[3], r[4]),
        ),
        # The ACME account moves too: the nodes on PostgreSQL go on with the account the
        # SQLite node registered, rather than each asking the CA for a new one.
        _Table(
            "acme_accounts",
            "SELECT directory, key, url FROM acme_accounts",
            ("directory", "key", "url"),
            lambda r: (r[0], bytes(r[1]), r[2]),
        ),
        # The zone signing keys move too, a rollover where it stands: the DS at each
        # registrar names them.
        _Table(
            "dnssec_keys",
            "SELECT domain, state, key, created, changed FROM dnssec_keys",
            ("domain", "state", "key", "created", "changed"),
            lambda r: (r[0], r[1], bytes(r[2]), _time(r[3]), _time(r[4])),
        ),
        # The zones' serials move too: a secondary holding one must see the next one greater.
        _Table(
            "zone_serials",
            "SELECT domain, serial, digest FROM zone_serials",
            ("domain", "serial", "digest"),
            lambda r: (r[0], r[1], bytes(r[2])),
        ),
        # Passed triplets stay passed: a legitimate sender is not greylisted again for the move.
        _Table(
            "greylist",
            "SELECT client, sender, recipient, first_seen, passed, expires FROM greylist",
            ("client", "sender", "recipient", "first_seen", "passed", "expires"),
            lambda r: (r[0], r[1], r[2], _time(r[3]), bool(r[4]), _time(r[5])),
        ),
    )


def _connect_source(path: Path) -> sqlite3.Connection:
    if not path.is_file():
        raise UserError(f"no SQLite store at {path}")
    conn = sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True)
    version = sqlite_schema_version(conn)
    if version != SQLITE_VERSION:
        conn.close()
        raise StorageError(
            f"source schema is version {version}, expected {SQLITE_VERSION}: open it with this "
            "Pillarbox first"
        )
    return conn


def _blob_reader(conn: sqlite3.Connection, blob_dir: Path | None) -> Callable[[int, str], bytes]:
    if blob_dir is not None:
        files = FileBlobStore(blob_dir)
        return lambda _row, sha256: files.read(sha256)

    def from_table(row: int, sha256: str) -> bytes:
        found = conn.execute("SELECT data FROM blob_data WHERE id = ?", (row,)).fetchone()
        if found is None:
            raise StorageError(f"blob {sha256} has no bytes in the source")
        return bytes(found[0])

    return from_table


def copy_sqlite_store(
    source: Path,
    target: str,
    *,
    blob_dir: Path | None = None,
    progress: Callable[[str, int], None] = lambda table, rows: None,
) -> Copied:
    """Copy the SQLite store at ``source`` (blobs in ``blob_dir`` when it keeps them in files)
    into the migrated, empty PostgreSQL store at ``target``; blocking (a CLI command)."""
    src = _connect_source(source)
    counts: list[tuple[str, int]] = []
    try:
        with psycopg.connect(target, autocommit=True) as dest, dest.transaction():
            dest.execute("SET TimeZone TO 'UTC'")
            _require_empty(dest)
            for table in _tables(_blob_reader(src, blob_dir)):
                rows = _copy_table(src, dest, table)
                counts.append((table.name, rows))
                progress(table.name, rows)
            _continue_sequences(src, dest)
    except psycopg.Error as exc:
        raise StorageError(f"copy into PostgreSQL failed, nothing was kept: {exc}") from exc
    finally:
        src.close()
    return Copied(tuple(counts))


def _require_empty(dest: psycopg.Connection[TupleRow]) -> None:
    for table in _CONTENT_TABLES:
        query = sql.SQL("SELECT EXISTS (SELECT 1 FROM {})").format(sql.Identifier(table))
        row = dest.execute(query).fetchone()
        if row is not None and row[0]:
            raise UserError(f"the target store is not empty ({table} has rows); refusing to mix")


def _copy_table(src: sqlite3.Connection, dest: psycopg.Connection[TupleRow], table: _Table) -> int:
    statement = sql.SQL("COPY {} ({}) FROM STDIN").format(
        sql.Identifier(table.name), sql.SQL(", ").join(map(sql.Identifier, table.columns))
    )
    rows = 0
    with dest.cursor() as cur, cur.copy(statement) as copy:
        for row in _rows(src, table.select):
            copy.write_row(table.convert(row))
            rows += 1
    return rows


def _rows(conn: sqlite3.Connection, query: str) -> Iterator[tuple[Any, ...]]:
    cursor = conn.execute(query)
    while batch := cursor.fetchmany(500):
        yield from batch


def _continue_sequences(src: sqlite3.Connection, dest: psycopg.Connection[TupleRow]) -> None:
    (next_thread,) = src.execute(
        "SELECT value FROM meta WHERE key = ?", (_THREAD_COUNTER,)
    ).fetchone()
    dest.execute("SELECT setval('thread_ids', %s, false)", (int(next_thread),))
    issued = dict(src.execute("SELECT name, seq FROM sqlite_sequence").fetchall())
    for table in _SEQUENCES:
        dest.execute(
            sql.SQL(
                "SELECT setval(pg_get_serial_sequence({name}, 'id'), "
                "greatest(%s, (SELECT coalesce(max(id), 0) FROM {table})) + 1, false)"
            ).format(name=sql.Literal(table), table=sql.Identifier(table)),
            (int(issued.get(table, 0)),),
        )


# -- verification ----------------------------------------------------------------------------------


def verify(source: Path, target: str, *, blob_dir: Path | None = None) -> list[str]:
    """Differences between the source and the copied target (empty: a faithful copy): row
    counts, mailbox UID/MODSEQ state and counters, account usage, and every blob's bytes."""
    src = _connect_source(source)
    problems: list[str] = []
    try:
        with psycopg.connect(target, autocommit=True) as dest:
            for table in _tables(_blob_reader(src, blob_dir)):
                if table.name == "blob_data":
                    continue
                (expected,) = src.execute(f"SELECT count(*) FROM ({table.select})").fetchone()
                query = sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(table.name))
                got = dest.execute(query).fetchone()
                if got is None or got[0] != expected:
                    problems.append(f"{table.name}: {expected} rows in the source, {got} copied")
            state = (
                "SELECT id, uidvalidity, uidnext, highestmodseq, messages, bytes, unseen, "
                "deleted FROM mailboxes ORDER BY id"
            )
            if src.execute(state).fetchall() != [tuple(r) for r in dest.execute(state)]:
                problems.append("mailbox UIDVALIDITY/UIDNEXT/MODSEQ or counters differ")
            usage = "SELECT id, used_bytes, used_messages FROM accounts ORDER BY id"
            if src.execute(usage).fetchall() != [tuple(r) for r in dest.execute(usage)]:
                problems.append("account usage differs")
            problems += _verify_blobs(dest)
    finally:
        src.close()
    return problems


def _verify_blobs(dest: psycopg.Connection[TupleRow]) -> list[str]:
    problems: list[str] = []
    with dest.transaction(), dest.cursor(name="blobs", binary=True) as cur:
        cur.execute(
            "SELECT b.sha256, d.data FROM blobs b LEFT JOIN blob_data d ON d.id = b.id "
            "ORDER BY b.id"
        )
        for sha256, data in cur:
            if data is None or hashlib.sha256(data).hexdigest() != sha256:
                problems.append(f"blob {sha256} does not hash to its id")
    return problems
