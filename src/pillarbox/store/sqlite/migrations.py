"""The SQLite schema as numbered, forward-only migrations, applied at :meth:`SqliteStore.open`.

Rules: a migration, once released, is never edited; a change to the schema is a new entry at the
end of :data:`MIGRATIONS`. Each migration runs in its own transaction together with the bump of
``schema_version``, so a crash leaves the database at a whole version. A database newer than this
code is refused rather than guessed at.

Schema invariants the backend relies on (kept by triggers, so no code path can forget them):

- ``mailboxes.messages/bytes/unseen/deleted`` and ``accounts.used_bytes/used_messages`` equal
  the aggregates over ``messages``: STATUS and quota checks are O(1), which keeps the cost of a
  delivery independent of the mailbox size.
- ``blobs.refcount`` counts the ``messages`` and ``queue_messages`` rows that refer to a blob;
  the backend deletes rows at refcount 0 before each commit (``blobs_unreferenced`` finds them).
- Mailbox, account and queue ids use AUTOINCREMENT: an IMAP session still holding the id of a
  deleted mailbox must never find a different mailbox under it. Blob ids too: the full-text
  index may still hold entries of a deleted blob until the indexer purges them, and those must
  never be mistaken for a new blob's. DMARC evaluations and TLS-RPT results too (from version
  42): a report deletes the rows it read by id, and a CLI report run beside the server may
  delete the largest row in between; a plain rowid would hand that id to the next new row,
  which the first report would then delete unreported.
- The full-text index is maintained behind the writes (see ``SqliteStore`` notes):
  ``blob_text.state`` is 0 (waiting to be indexed), 1 (indexed) or 2 (blob gone, index entries
  waiting to be purged).
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from pillarbox.errors import SchemaTooNew, StorageError
from pillarbox.observability.log import Log
from pillarbox.store.threadrows import ThreadAssigner, thread_keys
from pillarbox.store.types import Contact, data_etag, new_schedule_tag


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    description: str
    sql: str
    #: Work SQL cannot express, run after ``sql`` in the same transaction.
    backfill: Callable[[sqlite3.Connection], None] | None = None


_V1_SQL = r"""
CREATE TABLE meta (
    key TEXT PRIMARY KEY,
    value INTEGER NOT NULL
) WITHOUT ROWID;

CREATE TABLE domains (
    name TEXT PRIMARY KEY,
    created INTEGER NOT NULL
) WITHOUT ROWID;

CREATE TABLE accounts (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    address TEXT NOT NULL UNIQUE,
    domain TEXT NOT NULL REFERENCES domains(name),
    display_name TEXT NOT NULL,
    password_hash TEXT NOT NULL,
    scram_sha256 TEXT,
    is_admin INTEGER NOT NULL,
    quota_bytes INTEGER,
    quota_messages INTEGER,
    used_bytes INTEGER NOT NULL DEFAULT 0,
    used_messages INTEGER NOT NULL DEFAULT 0,
    created INTEGER NOT NULL
);
CREATE INDEX accounts_domain ON accounts(domain);

CREATE TABLE aliases (
    address TEXT PRIMARY KEY,
    domain TEXT NOT NULL REFERENCES domains(name),
    targets TEXT NOT NULL
) WITHOUT ROWID;
CREATE INDEX aliases_domain ON aliases(domain);

CREATE TABLE mailboxes (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    account_id INTEGER NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    special_use TEXT,
    uidvalidity INTEGER NOT NULL,
    uidnext INTEGER NOT NULL DEFAULT 1,
    highestmodseq INTEGER NOT NULL DEFAULT 1,
    recent_uid INTEGER NOT NULL DEFAULT 1,
    messages INTEGER NOT NULL DEFAULT 0,
    bytes INTEGER NOT NULL DEFAULT 0,
    unseen INTEGER NOT NULL DEFAULT 0,
    deleted INTEGER NOT NULL DEFAULT 0,
    UNIQUE (account_id, name)
);

CREATE TABLE subscriptions (
    account_id INTEGER NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    PRIMARY KEY (account_id, name)
) WITHOUT ROWID;

-- One row per distinct content (sha256). ``info`` is MessageInfo JSON without its text fields,
-- which live in ``blob_text`` (stored once); NULL for content only the queue holds.
CREATE TABLE blobs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    sha256 TEXT NOT NULL UNIQUE,
    size INTEGER NOT NULL,
    refcount INTEGER NOT NULL DEFAULT 0,
    info BLOB
);
CREATE INDEX blobs_unreferenced ON blobs(id) WHERE refcount <= 0;

-- Raw bytes when blobs live in the database (BlobMode.DATABASE); empty in file mode.
CREATE TABLE blob_data (
    id INTEGER PRIMARY KEY,
    data BLOB NOT NULL
);

-- Decoded text of a message (MessageInfo.header_text/body_text), once per blob; id = blobs.id.
CREATE TABLE blob_text (
    id INTEGER PRIMARY KEY,
    state INTEGER NOT NULL DEFAULT 0,
    header_text TEXT NOT NULL,
    body_text TEXT NOT NULL
);
CREATE INDEX blob_text_pending ON blob_text(id) WHERE state != 1;

-- RFC 9051 §6.4.4: TEXT/BODY are case-insensitive substring searches; the trigram tokenizer
-- answers substrings of 3+ characters from the index. External content: the text is stored
-- once, in blob_text; rowid = blobs.id.
CREATE VIRTUAL TABLE message_text USING fts5(
    header_text, body_text, tokenize = 'trigram', content = 'blob_text', content_rowid = 'id'
);

CREATE TRIGGER blob_removed AFTER DELETE ON blobs BEGIN
    DELETE FROM blob_data WHERE id = OLD.id;
    DELETE FROM blob_text WHERE id = OLD.id AND state = 0;
    UPDATE blob_text SET state = 2 WHERE id = OLD.id AND state = 1;
END;

-- ``blob`` carries no foreign key on purpose: ``refcount`` guards it, and an FK would need an
-- extra index on every insert only to check deletes that the refcount already rules out.
CREATE TABLE messages (
    mailbox_id INTEGER NOT NULL REFERENCES mailboxes(id) ON DELETE CASCADE,
    uid INTEGER NOT NULL,
    modseq INTEGER NOT NULL,
    flags TEXT NOT NULL,
    seen INTEGER GENERATED ALWAYS AS (instr(' ' || flags || ' ', ' \Seen ') > 0) VIRTUAL,
    deleted INTEGER GENERATED ALWAYS AS (instr(' ' || flags || ' ', ' \Deleted ') > 0) VIRTUAL,
    internal_date INTEGER NOT NULL,
    saved_date INTEGER NOT NULL,
    size INTEGER NOT NULL,
    blob INTEGER NOT NULL,
    -- sort keys (RFC 5256 SORT/THREAD, the web list), copied from MessageInfo
    sent_date INTEGER,
    subject TEXT NOT NULL,
    from_addr TEXT NOT NULL,
    to_addr TEXT NOT NULL,
    cc_addr TEXT NOT NULL,
    message_id TEXT NOT NULL,
    in_reply_to TEXT NOT NULL,
    PRIMARY KEY (mailbox_id, uid)
) WITHOUT ROWID;
CREATE INDEX messages_modseq ON messages(mailbox_id, modseq);

CREATE TRIGGER message_added AFTER INSERT ON messages BEGIN
    UPDATE mailboxes SET messages = messages + 1, bytes = bytes + NEW.size,
        unseen = unseen + 1 - NEW.seen, deleted = deleted + NEW.deleted
        WHERE id = NEW.mailbox_id;
    UPDATE accounts SET used_bytes = used_bytes + NEW.size, used_messages = used_messages + 1
        WHERE id = (SELECT account_id FROM mailboxes WHERE id = NEW.mailbox_id);
    UPDATE blobs SET refcount = refcount + 1 WHERE id = NEW.blob;
END;

CREATE TRIGGER message_removed AFTER DELETE ON messages BEGIN
    UPDATE mailboxes SET messages = messages - 1, bytes = bytes - OLD.size,
        unseen = unseen - 1 + OLD.seen, deleted = deleted - OLD.deleted
        WHERE id = OLD.mailbox_id;
    UPDATE accounts SET used_bytes = used_bytes - OLD.size, used_messages = used_messages - 1
        WHERE id = (SELECT account_id FROM mailboxes WHERE id = OLD.mailbox_id);
    UPDATE blobs SET refcount = refcount - 1 WHERE id = OLD.blob;
END;

CREATE TRIGGER message_flagged AFTER UPDATE OF flags ON messages BEGIN
    UPDATE mailboxes SET unseen = unseen + OLD.seen - NEW.seen,
        deleted = deleted + NEW.deleted - OLD.deleted
        WHERE id = NEW.mailbox_id;
END;

-- Deleting a mailbox cascades to its messages after the mailbox row is gone, so the trigger
-- above cannot find the account; the account's usage is settled here, before the delete.
CREATE TRIGGER mailbox_removed BEFORE DELETE ON mailboxes BEGIN
    UPDATE accounts SET used_bytes = used_bytes - OLD.bytes,
        used_messages = used_messages - OLD.messages
        WHERE id = OLD.account_id;
END;

-- RFC 7162 §3.2.5.2 / QRESYNC: expunged UIDs with the MODSEQ of their expunge.
CREATE TABLE expunged (
    mailbox_id INTEGER NOT NULL REFERENCES mailboxes(id) ON DELETE CASCADE,
    uid INTEGER NOT NULL,
    modseq INTEGER NOT NULL,
    PRIMARY KEY (mailbox_id, uid)
) WITHOUT ROWID;
CREATE INDEX expunged_modseq ON expunged(mailbox_id, modseq);

CREATE TABLE queue_messages (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    sender TEXT NOT NULL,
    blob INTEGER NOT NULL,
    size INTEGER NOT NULL,
    queued_at INTEGER NOT NULL,
    ret TEXT,
    envid TEXT,
    lease_owner TEXT,
    lease_until INTEGER
);

CREATE TABLE queue_recipients (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    message_id INTEGER NOT NULL REFERENCES queue_messages(id) ON DELETE CASCADE,
    address TEXT NOT NULL,
    state TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt INTEGER NOT NULL,
    last_reply TEXT,
    notify TEXT NOT NULL,
    orcpt TEXT,
    delay_notified INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX queue_recipients_message ON queue_recipients(message_id);
CREATE INDEX queue_recipients_due ON queue_recipients(next_attempt)
    WHERE state IN ('pending', 'deferred');

CREATE TRIGGER queue_message_added AFTER INSERT ON queue_messages BEGIN
    UPDATE blobs SET refcount = refcount + 1 WHERE id = NEW.blob;
END;

CREATE TRIGGER queue_message_removed AFTER DELETE ON queue_messages BEGIN
    UPDATE blobs SET refcount = refcount - 1 WHERE id = OLD.blob;
END;
"""

# Account settings (vacation, forwarding) and issued secrets (app passwords, API tokens), for
# the web's account pages; a secret is stored only as its SHA-256 digest.
_V2_SQL = r"""
CREATE TABLE account_settings (
    account_id INTEGER PRIMARY KEY REFERENCES accounts(id) ON DELETE CASCADE,
    vacation_enabled INTEGER NOT NULL,
    vacation_subject TEXT NOT NULL,
    vacation_body TEXT NOT NULL,
    vacation_until INTEGER,
    forward_to TEXT NOT NULL,
    forward_keep_copy INTEGER NOT NULL
);

CREATE TABLE account_tokens (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    account_id INTEGER NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    kind TEXT NOT NULL,
    label TEXT NOT NULL,
    digest TEXT NOT NULL UNIQUE,
    created INTEGER NOT NULL
);
CREATE INDEX account_tokens_account ON account_tokens(account_id);
"""

# DKIM signing keys of hosted domains (queries in .dkimkeys); retired keys are kept, so a
# selector is never reused.
_V3_SQL = r"""
CREATE TABLE dkim_keys (
    domain TEXT NOT NULL REFERENCES domains(name) ON DELETE CASCADE,
    selector TEXT NOT NULL,
    algorithm TEXT NOT NULL,
    private_pem BLOB NOT NULL,
    created INTEGER NOT NULL,
    retired INTEGER,
    PRIMARY KEY (domain, selector)
) WITHOUT ROWID;
"""

# The spam filter (queries in .spamdata): classifier token counts per model (account 0 is the
# global model), which messages were trained how, sender reputation tallies, allow/block lists.
# Rows of a removed account go with it (the models by trigger: account 0 has no accounts row).
_V4_SQL = r"""
CREATE TABLE spam_models (
    account_id INTEGER PRIMARY KEY,
    ham INTEGER NOT NULL DEFAULT 0,
    spam INTEGER NOT NULL DEFAULT 0
);

CREATE TABLE spam_tokens (
    account_id INTEGER NOT NULL,
    token TEXT NOT NULL,
    ham INTEGER NOT NULL,
    spam INTEGER NOT NULL,
    PRIMARY KEY (account_id, token)
) WITHOUT ROWID;

CREATE TRIGGER spam_models_account_removed AFTER DELETE ON accounts BEGIN
    DELETE FROM spam_tokens WHERE account_id = OLD.id;
    DELETE FROM spam_models WHERE account_id = OLD.id;
END;

CREATE TABLE spam_trained (
    account_id INTEGER NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    message_key TEXT NOT NULL,
    spam INTEGER NOT NULL,
    PRIMARY KEY (account_id, message_key)
) WITHOUT ROWID;

CREATE TABLE sender_reputation (
    account_id INTEGER NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    key TEXT NOT NULL,
    ham INTEGER NOT NULL,
    spam INTEGER NOT NULL,
    PRIMARY KEY (account_id, key)
) WITHOUT ROWID;

CREATE TABLE sender_lists (
    account_id INTEGER NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    pattern TEXT NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('allow', 'block')),
    PRIMARY KEY (account_id, pattern)
) WITHOUT ROWID;
"""

# The web's default order (SortKey.DATE): the first pages of a large mailbox walk this index
# instead of sorting every message (.webdata decides when); the expression must match the
# ORDER BY there exactly.
_V5_SQL = r"""
CREATE INDEX messages_date ON messages(mailbox_id, coalesce(sent_date, internal_date));
"""

# SELECT's message list needs each message's blob digest: looked up in ``blobs`` itself, whose
# rows carry the MessageInfo JSON (a page each), that read one page per message (35,000 at
# 35,000 messages, more than the page cache holds). This index keeps (id, sha256) in ~60 bytes
# an entry; the list query names it (INDEXED BY), as the planner prefers the rowid lookup.
_V6_SQL = r"""
CREATE INDEX blobs_digest ON blobs(id, sha256);
"""

# Vacation auto-replies (RFC 3834 §2): when each account last replied to each sender, so a
# sender gets one reply per ``vacation.interval_days`` (queries in .webdata).
_V7_SQL = r"""
CREATE TABLE vacation_replies (
    account_id INTEGER NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    sender TEXT NOT NULL,
    replied INTEGER NOT NULL,
    PRIMARY KEY (account_id, sender)
) WITHOUT ROWID;
"""

# Threading (the web's threaded list) reads every message's References: kept in ``blobs.info``
# they cost a read of each message's whole structure (~7 KB, seconds for a large mailbox), so
# they get a column of their own (a JSON array of msg-ids), filled here for existing mail.
_V8_SQL = r"""
ALTER TABLE messages ADD COLUMN refs TEXT NOT NULL DEFAULT '[]';
UPDATE messages SET refs = coalesce(
    (SELECT json_extract(CAST(info AS TEXT), '$.references') FROM blobs WHERE id = messages.blob),
    '[]'
);
"""

# DMARC aggregate reports (queries in .dmarcdata): one row per evaluated message, until the
# periodic report that counts it is queued.
_V9_SQL = r"""
CREATE TABLE dmarc_observations (
    id INTEGER PRIMARY KEY,
    received INTEGER NOT NULL,
    policy_domain TEXT NOT NULL,
    header_from TEXT NOT NULL,
    envelope_from TEXT NOT NULL,
    source_ip TEXT NOT NULL,
    disposition TEXT NOT NULL,
    dkim_aligned INTEGER NOT NULL,
    spf_aligned INTEGER NOT NULL,
    spf_domain TEXT NOT NULL,
    spf_result TEXT NOT NULL,
    dkim TEXT NOT NULL,
    policy_record TEXT NOT NULL
);
CREATE INDEX dmarc_observations_received ON dmarc_observations(received);
"""

# A cold SELECT reads every message's record columns. From the table itself that walks rows
# made wide by the sort keys (subject, addresses), and joins ``blobs`` for each digest: 55 ms
# of CPU at 35,000 messages. A message's digest never changes (its blob is immutable), so it
# is copied beside it, and this covering index holds just the record columns in UID order
# (about 30 ms). ``_rows_between`` names it. Version 6's index served the join: nothing
# reads it now.
_V10_SQL = r"""
ALTER TABLE messages ADD COLUMN digest TEXT NOT NULL DEFAULT '';
UPDATE messages SET digest = (SELECT sha256 FROM blobs WHERE blobs.id = messages.blob);
CREATE INDEX messages_records
    ON messages(mailbox_id, uid, modseq, flags, internal_date, saved_date, size, digest);
DROP INDEX blobs_digest;
"""

# A generation per classifier model, raised by every training in the same transaction as the
# token counts: a process caching token counts (store.spamcache) checks it on each read and
# drops what it cached from an older generation — another process's training included.
_V11_SQL = r"""
ALTER TABLE spam_models ADD COLUMN generation INTEGER NOT NULL DEFAULT 0;
"""

# DMARC aggregate reports: one row per report run (period end, scope), claimed by the first
# process or node to insert it, so a period is reported once however many nodes run the job.
_V12_SQL = r"""
CREATE TABLE dmarc_report_runs (
    period_end INTEGER NOT NULL,
    scope TEXT NOT NULL,
    node TEXT NOT NULL,
    PRIMARY KEY (period_end, scope)
) WITHOUT ROWID;
"""

# DMARC aggregate reports (RFC 9990 §3.1.1.5, §3.1.6): why a failing message got less than the
# published policy (t=y, a legacy pct, a local exception) and how its record was discovered.
# Rows kept before this were all RFC 7489 (PSL) discoveries.
_V13_SQL = r"""
ALTER TABLE dmarc_observations ADD COLUMN override TEXT NOT NULL DEFAULT '';
ALTER TABLE dmarc_observations ADD COLUMN override_comment TEXT NOT NULL DEFAULT '';
ALTER TABLE dmarc_observations ADD COLUMN discovery TEXT NOT NULL DEFAULT 'psl';
"""

# Sieve filter scripts (RFC 5228), managed over ManageSieve (RFC 5804) and the web: at most
# one active per account (the partial unique index), the one delivery runs (.sievedata).
_V14_SQL = r"""
CREATE TABLE sieve_scripts (
    account_id INTEGER NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    content TEXT NOT NULL,
    active INTEGER NOT NULL DEFAULT 0 CHECK (active IN (0, 1)),
    PRIMARY KEY (account_id, name)
) WITHOUT ROWID;
CREATE UNIQUE INDEX sieve_scripts_one_active ON sieve_scripts(account_id) WHERE active = 1;
"""

# TLS-RPT (RFC 8460, queries in .tlsdata): one row per outbound session's TLS outcome, until
# the daily report that counts it is queued. Report runs are claimed in dmarc_report_runs
# under a scope of their own ("tlsrpt:*").
_V15_SQL = r"""
CREATE TABLE tls_results (
    id INTEGER PRIMARY KEY,
    recorded INTEGER NOT NULL,
    policy_domain TEXT NOT NULL,
    policy_type TEXT NOT NULL,
    policy_strings TEXT NOT NULL,
    mx_patterns TEXT NOT NULL,
    result_type TEXT NOT NULL,
    receiving_mx TEXT NOT NULL,
    receiving_ip TEXT NOT NULL,
    sending_ip TEXT NOT NULL,
    failure_reason TEXT NOT NULL
);
CREATE INDEX tls_results_recorded ON tls_results(recorded);
"""

# A hosted account's copy queued because its mailbox was full keeps the inbound policy's
# decision (store.types.Filing): the mailbox (NULL: not judged), spam or not, and the fields.
_V16_SQL = r"""
ALTER TABLE queue_recipients ADD COLUMN filed_mailbox TEXT;
ALTER TABLE queue_recipients ADD COLUMN filed_spam INTEGER NOT NULL DEFAULT 0;
ALTER TABLE queue_recipients ADD COLUMN filed_fields BLOB;
"""

# TLS-RPT reports whose POST failed (RFC 8460 §5.5, queries in .tlsdata): retried from here, so
# a restart does not drop them; a claim moves next_try on by a lease (one node tries at a time).
_V17_SQL = r"""
CREATE TABLE tls_report_posts (
    id INTEGER PRIMARY KEY,
    url TEXT NOT NULL,
    policy_domain TEXT NOT NULL,
    body BLOB NOT NULL,
    first_try INTEGER NOT NULL,
    next_try INTEGER NOT NULL,
    attempts INTEGER NOT NULL
);
CREATE INDEX tls_report_posts_next_try ON tls_report_posts(next_try);
"""

# Outbound sending limits (pillarbox.queue.sendlimits, queries in .sendingdata): an account's
# own limits (NULL: the configured default), one row per message it sent in the window (pruned
# past it at each write), and every recipient it sent to with the first and last time (kept
# for [submission_limits] recipient_memory_days after the last: "first-time" means not here).
_V18_SQL = r"""
CREATE TABLE sending_limits (
    account_id INTEGER PRIMARY KEY REFERENCES accounts(id) ON DELETE CASCADE,
    messages INTEGER,
    recipients INTEGER,
    first_time INTEGER
);
CREATE TABLE sent_messages (
    id INTEGER PRIMARY KEY,
    account_id INTEGER NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    sent INTEGER NOT NULL,
    recipients INTEGER NOT NULL
);
CREATE INDEX sent_messages_account ON sent_messages(account_id, sent);
CREATE TABLE sent_recipients (
    account_id INTEGER NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    address TEXT NOT NULL,
    first_sent INTEGER NOT NULL,
    last_sent INTEGER NOT NULL,
    PRIMARY KEY (account_id, address)
) WITHOUT ROWID;
CREATE INDEX sent_recipients_first ON sent_recipients(account_id, first_sent);
CREATE INDEX sent_recipients_last ON sent_recipients(account_id, last_sent);
"""

# ACME DNS-01 challenge records (RFC 8555 §8.4, queries in .acmedata): TXT values the
# authoritative DNS server publishes in a hosted domain's zone while an attempt lasts.
_V19_SQL = r"""
CREATE TABLE acme_challenges (
    domain TEXT NOT NULL REFERENCES domains(name) ON DELETE CASCADE,
    name TEXT NOT NULL,
    value TEXT NOT NULL,
    expires INTEGER NOT NULL,
    PRIMARY KEY (name, value)
) WITHOUT ROWID;
CREATE INDEX acme_challenges_domain ON acme_challenges(domain);
"""

#: RFC 5464 METADATA: a mailbox's entries go with it (deleted with it; a rename keeps its id),
#: server entries with the account.
_V20_SQL = r"""
CREATE TABLE mailbox_metadata (
    mailbox_id INTEGER NOT NULL REFERENCES mailboxes(id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    value BLOB NOT NULL,
    PRIMARY KEY (mailbox_id, name)
) WITHOUT ROWID;
CREATE TABLE server_metadata (
    account_id INTEGER NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    value BLOB NOT NULL,
    PRIMARY KEY (account_id, name)
) WITHOUT ROWID;
"""

# RFC 8689 §4.1: a queued message received with the REQUIRETLS MAIL parameter is tagged so
# the queue relays it only over authenticated TLS to servers offering REQUIRETLS.
_V21_SQL = r"""
ALTER TABLE queue_messages ADD COLUMN requiretls INTEGER NOT NULL DEFAULT 0;
"""

# Webmail sending identities ("send as"): the account's From choices with their signatures.
_V22_SQL = r"""
CREATE TABLE identities (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    account_id INTEGER NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    address TEXT NOT NULL,
    display_name TEXT NOT NULL,
    reply_to TEXT NOT NULL,
    signature TEXT NOT NULL,
    is_default INTEGER NOT NULL
);
CREATE INDEX identities_account ON identities(account_id);
"""

# RFC 4314 ACL: entries go with their mailbox (a rename keeps its id) and with the grantee
# account; a grantee is an account or one of the special identifiers, never both.
_V23_SQL = r"""
CREATE TABLE mailbox_acl (
    mailbox_id INTEGER NOT NULL REFERENCES mailboxes(id) ON DELETE CASCADE,
    grantee_id INTEGER REFERENCES accounts(id) ON DELETE CASCADE,
    special TEXT CHECK (special IN ('anyone', 'authenticated')),
    rights TEXT NOT NULL,
    CHECK ((grantee_id IS NULL) <> (special IS NULL))
);
CREATE UNIQUE INDEX mailbox_acl_account ON mailbox_acl(mailbox_id, grantee_id)
    WHERE grantee_id IS NOT NULL;
CREATE UNIQUE INDEX mailbox_acl_special ON mailbox_acl(mailbox_id, special)
    WHERE special IS NOT NULL;
CREATE INDEX mailbox_acl_grantee ON mailbox_acl(grantee_id);
"""

# Second factor of the web login (RFC 6238): the sealed secret, the last accepted time step
# (replay protection), recovery codes by digest.
_V24_SQL = r"""
CREATE TABLE account_totp (
    account_id INTEGER PRIMARY KEY REFERENCES accounts(id) ON DELETE CASCADE,
    sealed_secret TEXT NOT NULL,
    last_step INTEGER NOT NULL,
    created INTEGER NOT NULL
);
CREATE TABLE account_totp_recovery (
    account_id INTEGER NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    digest TEXT NOT NULL,
    PRIMARY KEY (account_id, digest)
) WITHOUT ROWID;
"""

# Summaries of the DMARC aggregate and TLS-RPT reports other providers send about our domains
# (pillarbox.policy.receivedreports); a report is named by its kind, organization and id, so one
# received twice is kept once.
_V25_SQL = r"""
CREATE TABLE received_reports (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL,
    org_name TEXT NOT NULL,
    report_id TEXT NOT NULL,
    domain TEXT NOT NULL,
    date_begin INTEGER NOT NULL,
    date_end INTEGER NOT NULL,
    received INTEGER NOT NULL,
    contact TEXT NOT NULL,
    policy TEXT NOT NULL,
    rows_json TEXT NOT NULL,
    UNIQUE (kind, org_name, report_id)
);
CREATE INDEX received_reports_domain ON received_reports(domain, date_end);
CREATE INDEX received_reports_end ON received_reports(date_end);
"""

# Greylisting (pillarbox.policy.greylisting, RFC 6647): one row per triplet; ``expires`` is the
# end of the retry window for a triplet not yet passed, else of its lifetime (renewed by a
# use, at most daily). The client prefix of the key serves the count of a client network's
# passed triplets.
_V26_SQL = r"""
CREATE TABLE greylist (
    client TEXT NOT NULL,
    sender TEXT NOT NULL,
    recipient TEXT NOT NULL,
    first_seen INTEGER NOT NULL,
    passed INTEGER NOT NULL,
    expires INTEGER NOT NULL,
    PRIMARY KEY (client, sender, recipient)
) WITHOUT ROWID;
CREATE INDEX greylist_expires ON greylist(expires);
"""

# The quota warning level last sent (pillarbox.queue.quotawarning) and each account's own
# Junk/Trash retention days (NULL: the server's [retention]).
_V27_SQL = r"""
ALTER TABLE accounts ADD COLUMN quota_warned INTEGER NOT NULL DEFAULT 0;
ALTER TABLE account_settings ADD COLUMN junk_days INTEGER;
ALTER TABLE account_settings ADD COLUMN trash_days INTEGER;
"""

# The webmail's address book (pillarbox.web.contacts): addresses and phones as JSON arrays;
# ``search`` is the case-folded text searches match and the list sorts by (.contactrows).
_V28_SQL = r"""
CREATE TABLE contacts (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    account_id INTEGER NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    uid TEXT NOT NULL,
    display_name TEXT NOT NULL,
    emails TEXT NOT NULL,
    phones TEXT NOT NULL,
    organization TEXT NOT NULL,
    note TEXT NOT NULL,
    search TEXT NOT NULL,
    created INTEGER NOT NULL,
    updated INTEGER NOT NULL,
    UNIQUE (account_id, uid)
);
CREATE INDEX contacts_account ON contacts(account_id, search);
"""

# RFC 8474 §5.2 THREADID: each message's thread, and each account's thread keys (the Message-IDs
# its messages carry or mention, .threadrows); ``meta.next_thread`` numbers new threads.
# Existing mail is threaded by :func:`_thread_backfill`.
_V29_SQL = r"""
ALTER TABLE messages ADD COLUMN thread INTEGER NOT NULL DEFAULT 0;
CREATE TABLE thread_keys (
    account_id INTEGER NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    key TEXT NOT NULL,
    thread INTEGER NOT NULL,
    PRIMARY KEY (account_id, key)
) WITHOUT ROWID;
"""


def _thread_backfill(conn: sqlite3.Connection) -> None:
    """Thread the stored mail account by account, in arrival order, in memory (.threadrows):
    0.5 to 1.6 s for 35,000 messages on the development VM (bench/threadid.py)."""
    rows = conn.execute(
        "SELECT b.account_id, m.mailbox_id, m.uid, m.message_id, m.in_reply_to, m.refs, m.digest "
        "FROM messages m JOIN mailboxes b ON b.id = m.mailbox_id "
        "ORDER BY b.account_id, m.internal_date, m.mailbox_id, m.uid"
    )
    assigner = ThreadAssigner(1)
    account: int | None = None
    updates: list[tuple[int, int, int]] = []
    for account_id, mailbox_id, uid, message_id, in_reply_to, refs, digest in rows:
        if account_id != account:
            _save_thread_keys(conn, account, assigner)
            account, assigner = account_id, ThreadAssigner(assigner.next_thread)
        keys = thread_keys(message_id, in_reply_to, json.loads(refs), digest)
        updates.append((assigner.assign(keys), mailbox_id, uid))
    _save_thread_keys(conn, account, assigner)
    conn.executemany("UPDATE messages SET thread = ? WHERE mailbox_id = ? AND uid = ?", updates)
    conn.execute("INSERT INTO meta (key, value) VALUES ('next_thread', ?)", (assigner.next_thread,))


def _save_thread_keys(
    conn: sqlite3.Connection, account_id: int | None, assigner: ThreadAssigner
) -> None:
    conn.executemany(
        "INSERT INTO thread_keys (account_id, key, thread) VALUES (?, ?, ?)",
        [(account_id, key, thread) for key, thread in assigner.keys.items()],
    )


# The vCard as last received (a CardDAV PUT or an import), NULL for one made in the webmail
# (pillarbox.vcard keeps it in step with the columns).
_V30_SQL = r"""
ALTER TABLE contacts ADD COLUMN card TEXT;
"""

# CalDAV (RFC 4791, pillarbox.web.caldav): each account's calendars and the iCalendar objects in
# them, kept as received (``data``). ``starts``/``ends`` bound every instance of an object in
# microseconds since the epoch (NULL: unbounded that way) so a time-range query reads only
# the objects that may match. ``sync_token`` counts a calendar's changes; an object's
# ``modseq`` and a deleted object's tombstone carry the token of their change (RFC 6578).
_V31_SQL = r"""
CREATE TABLE calendars (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    account_id INTEGER NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    display_name TEXT NOT NULL,
    color TEXT NOT NULL,
    sync_token INTEGER NOT NULL,
    created INTEGER NOT NULL,
    UNIQUE (account_id, name)
);
CREATE TABLE calendar_objects (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    calendar_id INTEGER NOT NULL REFERENCES calendars(id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    uid TEXT NOT NULL,
    component TEXT NOT NULL,
    data BLOB NOT NULL,
    starts INTEGER,
    ends INTEGER,
    modseq INTEGER NOT NULL,
    updated INTEGER NOT NULL,
    UNIQUE (calendar_id, name),
    UNIQUE (calendar_id, uid)
);
CREATE INDEX calendar_objects_modseq ON calendar_objects(calendar_id, modseq);
CREATE TABLE calendar_tombstones (
    calendar_id INTEGER NOT NULL REFERENCES calendars(id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    modseq INTEGER NOT NULL,
    PRIMARY KEY (calendar_id, name)
) WITHOUT ROWID;
"""


# RFC 8474 §6 SEARCH THREADID and the threaded web list read a mailbox's messages by thread
# (the index holds the UID too: the table is WITHOUT ROWID, keyed by (mailbox_id, uid)); the
# keys of a thread are pruned by thread when its last message goes (docs/threading.md).
_V32_SQL = r"""
CREATE INDEX messages_thread ON messages(mailbox_id, thread);
CREATE INDEX thread_keys_thread ON thread_keys(thread);
"""


#: ACME http-01 and tls-alpn-01 answers (queries in .acmedata): what every node answers the
#: CA's validation with while an attempt lasts, whichever node runs it.
_V33_SQL = r"""
CREATE TABLE acme_answers (
    kind TEXT NOT NULL,
    key TEXT NOT NULL,
    value TEXT NOT NULL,
    expires INTEGER NOT NULL,
    PRIMARY KEY (kind, key)
) WITHOUT ROWID;
"""

# WebDAV sync of the address book and sync history of both kinds (RFC 6578, .contactdata and
# .calendardata): ``contact_books.sync_token`` counts an account's contact changes, a contact's
# ``modseq`` and a deleted contact's tombstone carry the token of their change, as for
# calendars. Tombstones carry when the deletion was (``deleted``, microseconds) so that old ones
# can be pruned; ``oldest_token`` is then the last change pruned, and older tokens are refused
# (§3.7). Each object and contact keeps its ETag beside it (``etag``, filled by
# :func:`_etag_backfill`) so a listing reads no bodies. A calendar keeps RFC 4791 §5.2.1's
# description and §5.2.2's time zone.
_V34_SQL = r"""
CREATE TABLE contact_books (
    account_id INTEGER PRIMARY KEY REFERENCES accounts(id) ON DELETE CASCADE,
    sync_token INTEGER NOT NULL,
    oldest_token INTEGER NOT NULL DEFAULT 0
);
INSERT INTO contact_books (account_id, sync_token) SELECT DISTINCT account_id, 1 FROM contacts;
ALTER TABLE contacts ADD COLUMN modseq INTEGER NOT NULL DEFAULT 1;
ALTER TABLE contacts ADD COLUMN etag TEXT NOT NULL DEFAULT '';
CREATE INDEX contacts_modseq ON contacts(account_id, modseq);
CREATE TABLE contact_tombstones (
    account_id INTEGER NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    uid TEXT NOT NULL,
    modseq INTEGER NOT NULL,
    deleted INTEGER NOT NULL,
    PRIMARY KEY (account_id, uid)
) WITHOUT ROWID;
CREATE INDEX contact_tombstones_deleted ON contact_tombstones(deleted);
ALTER TABLE calendars ADD COLUMN description TEXT NOT NULL DEFAULT '';
ALTER TABLE calendars ADD COLUMN timezone TEXT NOT NULL DEFAULT '';
ALTER TABLE calendars ADD COLUMN oldest_token INTEGER NOT NULL DEFAULT 0;
ALTER TABLE calendar_objects ADD COLUMN etag TEXT NOT NULL DEFAULT '';
ALTER TABLE calendar_tombstones ADD COLUMN deleted INTEGER NOT NULL DEFAULT 0;
UPDATE calendar_tombstones SET deleted = unixepoch() * 1000000;
CREATE INDEX calendar_tombstones_deleted ON calendar_tombstones(deleted);
"""


def _etag_backfill(conn: sqlite3.Connection) -> None:
    """Each stored object's and contact's ETag, as a write now computes it."""
    # Imported here: only an upgrade from before this migration needs the card module.
    from pillarbox import vcard

    conn.executemany(
        "UPDATE calendar_objects SET etag = ? WHERE id = ?",
        [
            (data_etag(bytes(data)), id_)
            for id_, data in conn.execute("SELECT id, data FROM calendar_objects")
        ],
    )
    # The columns as of this migration, not the store's current list: a later migration
    # adding one must not break this one on an older database.
    rows = conn.execute(
        "SELECT id, uid, display_name, emails, phones, organization, note, card, updated "
        "FROM contacts"
    )
    conn.executemany(
        "UPDATE contacts SET etag = ? WHERE id = ?",
        [
            (
                vcard.etag(
                    Contact(
                        id=id_,
                        uid=uid,
                        display_name=name,
                        emails=tuple(json.loads(emails)),
                        phones=tuple(json.loads(phones)),
                        organization=organization,
                        note=note,
                        card=card,
                        updated=datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=updated),
                    )
                ),
                id_,
            )
            for id_, uid, name, emails, phones, organization, note, card, updated in rows
        ],
    )


#: The certificate the nodes of a store share and the lease of the node renewing it (queries
#: in .acmedata; pillarbox.net.acme uses them with PostgreSQL, but both backends hold them).
_V35_SQL = r"""
CREATE TABLE acme_certificates (
    scope TEXT PRIMARY KEY,
    chain BLOB NOT NULL,
    key BLOB NOT NULL,
    not_after INTEGER NOT NULL
);
CREATE TABLE acme_leases (
    scope TEXT PRIMARY KEY,
    holder TEXT NOT NULL,
    expires INTEGER NOT NULL,
    failures INTEGER NOT NULL
) WITHOUT ROWID;
"""

# The web's threaded list groups a mailbox's messages by thread and orders the threads by their
# latest message (Store.thread_sizes): with the dates in the index that is one pass over the
# index alone, no message row read (docs/threading.md). It replaces 32's index, a prefix of it,
# so a delivery still writes one thread index entry.
_V36_SQL = r"""
DROP INDEX messages_thread;
CREATE INDEX messages_thread ON messages(mailbox_id, thread, uid, sent_date, internal_date);
"""

# The Sieve "duplicate" test (RFC 7352): the unique ids each account's scripts have seen, as
# digests of (handle, id), until they expire (queries in .sievedata).
_V37_SQL = r"""
CREATE TABLE sieve_duplicates (
    account_id INTEGER NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    key TEXT NOT NULL,
    expires INTEGER NOT NULL,
    PRIMARY KEY (account_id, key)
) WITHOUT ROWID;
CREATE INDEX sieve_duplicates_expiry ON sieve_duplicates(account_id, expires);
"""

# The zone the webmail shows an account's times in ("": the browser's; pillarbox.web.zone).
_V38_SQL = r"""
ALTER TABLE account_settings ADD COLUMN time_zone TEXT NOT NULL DEFAULT '';
"""

# RFC 4314 §2 negative rights: a row's "denied" letters are its identifier's "-identifier"
# entry (its "rights" the positive one, possibly empty now).
_V39_SQL = r"""
ALTER TABLE mailbox_acl ADD COLUMN denied TEXT NOT NULL DEFAULT '';
"""

# RFC 6638 §3.2.10: each calendar object keeps its Schedule-Tag beside it ("" for one that is not
# a scheduling object resource); those stored before get a first one (:func:`_schedule_tags`).
_V40_SQL = r"""
ALTER TABLE calendar_objects ADD COLUMN schedule_tag TEXT NOT NULL DEFAULT '';
"""

# The webmail's single-key shortcuts switch, per account (it was each browser's).
_V41_SQL = r"""
ALTER TABLE account_settings ADD COLUMN shortcuts INTEGER NOT NULL DEFAULT 1;
"""

# The report rows' ids are never reused (see the invariants above): both tables rebuilt with
# AUTOINCREMENT, their rows, columns (version 13's included) and indexes kept. Copying the rows
# with their ids starts sqlite_sequence at the largest id kept.
_V42_SQL = r"""
CREATE TABLE dmarc_observations_v42 (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    received INTEGER NOT NULL,
    policy_domain TEXT NOT NULL,
    header_from TEXT NOT NULL,
    envelope_from TEXT NOT NULL,
    source_ip TEXT NOT NULL,
    disposition TEXT NOT NULL,
    dkim_aligned INTEGER NOT NULL,
    spf_aligned INTEGER NOT NULL,
    spf_domain TEXT NOT NULL,
    spf_result TEXT NOT NULL,
    dkim TEXT NOT NULL,
    policy_record TEXT NOT NULL,
    override TEXT NOT NULL DEFAULT '',
    override_comment TEXT NOT NULL DEFAULT '',
    discovery TEXT NOT NULL DEFAULT 'psl'
);
INSERT INTO dmarc_observations_v42 (
    id, received, policy_domain, header_from, envelope_from, source_ip, disposition,
    dkim_aligned, spf_aligned, spf_domain, spf_result, dkim, policy_record,
    override, override_comment, discovery
)
SELECT
    id, received, policy_domain, header_from, envelope_from, source_ip, disposition,
    dkim_aligned, spf_aligned, spf_domain, spf_result, dkim, policy_record,
    override, override_comment, discovery
FROM dmarc_observations;
DROP TABLE dmarc_observations;
ALTER TABLE dmarc_observations_v42 RENAME TO dmarc_observations;
CREATE INDEX dmarc_observations_received ON dmarc_observations(received);

CREATE TABLE tls_results_v42 (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    recorded INTEGER NOT NULL,
    policy_domain TEXT NOT NULL,
    policy_type TEXT NOT NULL,
    policy_strings TEXT NOT NULL,
    mx_patterns TEXT NOT NULL,
    result_type TEXT NOT NULL,
    receiving_mx TEXT NOT NULL,
    receiving_ip TEXT NOT NULL,
    sending_ip TEXT NOT NULL,
    failure_reason TEXT NOT NULL
);
INSERT INTO tls_results_v42 (
    id, recorded, policy_domain, policy_type, policy_strings, mx_patterns, result_type,
    receiving_mx, receiving_ip, sending_ip, failure_reason
)
SELECT
    id, recorded, policy_domain, policy_type, policy_strings, mx_patterns, result_type,
    receiving_mx, receiving_ip, sending_ip, failure_reason
FROM tls_results;
DROP TABLE tls_results;
ALTER TABLE tls_results_v42 RENAME TO tls_results;
CREATE INDEX tls_results_recorded ON tls_results(recorded);
"""

# The calendar a client made the default (RFC 6638 §9.2; "": the server's choice).
_V43_SQL = r"""
ALTER TABLE account_settings ADD COLUMN default_calendar TEXT NOT NULL DEFAULT '';
"""

# RFC 8461 §5.1, §10.2: the MTA-STS policies delivery fetched, kept until their max_age ends so a
# restart does not forget them (pillarbox.net.mtasts). Times in microseconds; mx a JSON array.
_V44_SQL = r"""
CREATE TABLE mta_sts_policies (
    domain TEXT PRIMARY KEY,
    policy_id TEXT NOT NULL,
    mode TEXT NOT NULL,
    mx TEXT NOT NULL,
    max_age INTEGER NOT NULL,
    fetched INTEGER NOT NULL,
    expires INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX mta_sts_policies_expiry ON mta_sts_policies(expires);
"""

# RFC 8461 §3.3: each domain's last failed policy fetch, so that a restart (or another node)
# waits out the retry as this one would (pillarbox.net.mtasts). Time in microseconds.
_V45_SQL = r"""
CREATE TABLE mta_sts_failures (
    domain TEXT PRIMARY KEY,
    policy_id TEXT NOT NULL,
    failed INTEGER NOT NULL,
    result_type TEXT NOT NULL,
    reason TEXT NOT NULL
) WITHOUT ROWID;
CREATE INDEX mta_sts_failures_time ON mta_sts_failures(failed);
"""


# The message being written that a two-step web login holds between its password and code steps
# (pillarbox.web.loginhold): one per account, sealed by the web app, for the pending session
# ``sid`` until ``expires`` (microseconds).
_V46_SQL = r"""
CREATE TABLE login_holds (
    account_id INTEGER PRIMARY KEY REFERENCES accounts(id) ON DELETE CASCADE,
    sid TEXT NOT NULL,
    sealed TEXT NOT NULL,
    size INTEGER NOT NULL,
    expires INTEGER NOT NULL
);
CREATE INDEX login_holds_expiry ON login_holds(expires);
"""


# The ACME account the nodes share, one per CA directory (pillarbox.net.acme; queries in
# .acmedata): its key is never replaced once stored, its URL is "" until the CA named it.
_V47_SQL = r"""
CREATE TABLE acme_accounts (
    directory TEXT PRIMARY KEY,
    key BLOB NOT NULL,
    url TEXT NOT NULL
) WITHOUT ROWID;
"""


# The key each hosted domain's zone is signed with (pillarbox.dns.signing; queries in
# .dnssecdata): one per domain, never replaced once stored (its DS is at the registrar).
_V48_SQL = r"""
CREATE TABLE dnssec_keys (
    domain TEXT PRIMARY KEY REFERENCES domains(name) ON DELETE CASCADE,
    key BLOB NOT NULL,
    created INTEGER NOT NULL
) WITHOUT ROWID;
"""


# The SOA serial of each hosted zone and the digest of the content it was given to
# (pillarbox.dns.serial; queries in .zonedata). No foreign key: a serial outlives its domain,
# so a domain removed and added again never goes back to a serial a secondary has seen.
_V49_SQL = r"""
CREATE TABLE zone_serials (
    domain TEXT PRIMARY KEY,
    serial INTEGER NOT NULL,
    digest BLOB NOT NULL
) WITHOUT ROWID;
"""


# A zone holds a key per rollover state (pillarbox.dns.rollover): the one signing, the next
# one published beside it, the previous one kept until the caches forget its DS. The key
# that was the domain's only one is its active key.
_V50_SQL = r"""
CREATE TABLE dnssec_keys_by_state (
    domain TEXT NOT NULL REFERENCES domains(name) ON DELETE CASCADE,
    state TEXT NOT NULL CHECK (state IN ('published', 'active', 'retired')),
    key BLOB NOT NULL,
    created INTEGER NOT NULL,
    changed INTEGER NOT NULL,
    PRIMARY KEY (domain, state)
) WITHOUT ROWID;
INSERT INTO dnssec_keys_by_state (domain, state, key, created, changed)
    SELECT domain, 'active', key, created, created FROM dnssec_keys;
DROP TABLE dnssec_keys;
ALTER TABLE dnssec_keys_by_state RENAME TO dnssec_keys;
"""


def _schedule_tags(conn: sqlite3.Connection) -> None:
    """A first Schedule-Tag for each stored scheduling object resource."""
    # Here, not at the top: every command that opens a store imports this module, and
    # icalendar is most of its import time (only a store older than this migration needs it).
    from pillarbox import ical

    conn.executemany(
        "UPDATE calendar_objects SET schedule_tag = ? WHERE id = ?",
        [
            (new_schedule_tag(), id_)
            for id_, data in conn.execute("SELECT id, data FROM calendar_objects")
            if ical.schedules(bytes(data))
        ],
    )


MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "accounts, mailboxes, messages, blobs, full-text index, outbound queue", _V1_SQL),
    Migration(2, "account settings and issued tokens", _V2_SQL),
    Migration(3, "DKIM signing keys", _V3_SQL),
    Migration(4, "spam filter models, reputation and sender lists", _V4_SQL),
    Migration(5, "message list index by date (web)", _V5_SQL),
    Migration(6, "blob digests by id (message lists)", _V6_SQL),
    Migration(7, "vacation auto-reply memory", _V7_SQL),
    Migration(8, "message references as a column (threaded lists)", _V8_SQL),
    Migration(9, "DMARC evaluations kept for aggregate reports", _V9_SQL),
    Migration(10, "message digests and records by UID, covering (SELECT)", _V10_SQL),
    Migration(11, "spam model generations (token count caches)", _V11_SQL),
    Migration(12, "DMARC report runs claimed once", _V12_SQL),
    Migration(13, "DMARC evaluations: policy override and discovery method", _V13_SQL),
    Migration(14, "Sieve filter scripts", _V14_SQL),
    Migration(15, "TLS-RPT session results kept for reports", _V15_SQL),
    Migration(16, "queued local recipients keep the policy's decision", _V16_SQL),
    Migration(17, "TLS-RPT reports whose POST failed, kept for retries", _V17_SQL),
    Migration(18, "outbound sending limits and the recipients each account sent to", _V18_SQL),
    Migration(19, "ACME DNS-01 challenge records", _V19_SQL),
    Migration(20, "IMAP METADATA entries of mailboxes and of the server", _V20_SQL),
    Migration(21, "queued messages keep the REQUIRETLS tag (RFC 8689)", _V21_SQL),
    Migration(22, "webmail sending identities and signatures", _V22_SQL),
    Migration(23, "IMAP ACL entries of mailboxes (RFC 4314)", _V23_SQL),
    Migration(24, "second factor of the web login (RFC 6238 TOTP)", _V24_SQL),
    Migration(25, "DMARC and TLS-RPT reports received about our domains", _V25_SQL),
    Migration(26, "greylisting triplets (RFC 6647)", _V26_SQL),
    Migration(27, "quota warning levels and Junk/Trash retention per account", _V27_SQL),
    Migration(28, "webmail contacts (address book)", _V28_SQL),
    Migration(29, "thread ids of messages (RFC 8474 THREADID)", _V29_SQL, _thread_backfill),
    Migration(30, "contacts keep the vCard as received", _V30_SQL),
    Migration(31, "CalDAV calendars, their objects and tombstones", _V31_SQL),
    Migration(32, "messages and thread keys by thread (SEARCH THREADID, pruning)", _V32_SQL),
    Migration(33, "ACME http-01 and tls-alpn-01 answers shared by the nodes", _V33_SQL),
    Migration(
        34,
        "address book sync (RFC 6578), sync history pruning, stored ETags, calendar properties",
        _V34_SQL,
        _etag_backfill,
    ),
    Migration(35, "the nodes' shared ACME certificate and its renewal lease", _V35_SQL),
    Migration(36, "messages by thread with their dates (the web's threaded list)", _V36_SQL),
    Migration(37, "Sieve duplicate tracking (RFC 7352)", _V37_SQL),
    Migration(38, "the webmail's time zone per account", _V38_SQL),
    Migration(39, "IMAP ACL negative rights (RFC 4314 §2)", _V39_SQL),
    Migration(40, "Schedule-Tags of scheduling objects (RFC 6638)", _V40_SQL, _schedule_tags),
    Migration(41, "the webmail's keyboard shortcuts switch per account", _V41_SQL),
    Migration(42, "DMARC evaluation and TLS-RPT result ids never reused", _V42_SQL),
    Migration(43, "the default calendar a client chose (RFC 6638)", _V43_SQL),
    Migration(44, "MTA-STS policies kept across restarts (RFC 8461)", _V44_SQL),
    Migration(45, "failed MTA-STS policy fetches kept across restarts (RFC 8461)", _V45_SQL),
    Migration(46, "messages two-step web logins hold between their steps", _V46_SQL),
    Migration(47, "the nodes' shared ACME account per CA directory", _V47_SQL),
    Migration(48, "the zone signing key of each hosted domain (DNSSEC)", _V48_SQL),
    Migration(49, "the SOA serial of each hosted zone (zone transfers)", _V49_SQL),
    Migration(50, "zone signing keys by rollover state (DNSSEC)", _V50_SQL),
)

LATEST_VERSION = MIGRATIONS[-1].version

_log = Log("store")


def schema_version(conn: sqlite3.Connection) -> int:
    """The version a database is at; 0 for an empty one."""
    has_table = conn.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_version'"
    ).fetchone()
    if has_table is None:
        return 0
    row = conn.execute("SELECT max(version) FROM schema_version").fetchone()
    return int(row[0] or 0)


def migrate(conn: sqlite3.Connection, target: int = LATEST_VERSION) -> int:
    """Apply every migration above the current version up to ``target``; returns the version.

    ``conn`` must be in autocommit mode (``isolation_level=None``).
    """
    current = schema_version(conn)
    if current > LATEST_VERSION:
        raise SchemaTooNew(current, LATEST_VERSION)
    for migration in MIGRATIONS:
        if current < migration.version <= target:
            started = time.monotonic()
            conn.execute("BEGIN IMMEDIATE")
            try:
                conn.execute(
                    "CREATE TABLE IF NOT EXISTS schema_version ("
                    "version INTEGER PRIMARY KEY, description TEXT NOT NULL, "
                    "applied INTEGER NOT NULL DEFAULT (unixepoch()))"
                )
                # executescript would COMMIT first; run the statements one by one instead.
                for statement in _statements(migration.sql):
                    conn.execute(statement)
                if migration.backfill is not None:
                    migration.backfill(conn)
                conn.execute(
                    "INSERT INTO schema_version (version, description) VALUES (?, ?)",
                    (migration.version, migration.description),
                )
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            # An operator upgrading reads here which migrations ran, once each, and how long a
            # backfill over their mail took.
            _log.info(
                "schema upgraded",
                version=migration.version,
                was=current,
                description=migration.description,
                seconds=round(time.monotonic() - started, 3),
            )
            current = migration.version
    return current


def _statements(script: str) -> list[str]:
    """Split a migration into complete statements (triggers contain ``;`` inside BEGIN…END)."""
    statements: list[str] = []
    pending = ""
    for line in script.splitlines(keepends=True):
        if not pending and (not line.strip() or line.lstrip().startswith("--")):
            continue
        pending += line
        if sqlite3.complete_statement(pending):
            statements.append(pending.strip())
            pending = ""
    if pending.strip():
        raise StorageError(f"incomplete statement in migration: {pending.strip()[:60]}")
    return statements
