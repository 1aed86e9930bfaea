"""The one typed configuration: ``pillarbox.toml`` → frozen dataclasses, validated once.

Every field carries a one-line ``doc`` in its metadata; those lines generate both the commented
default config that ``pillarbox init`` writes and ``docs/config.md``, so the three cannot drift.
Environment overrides are read here and nowhere else (STYLE §10): ``PILLARBOX__SECTION__KEY=value``
(double underscores separate the levels; the value is parsed as the field's type).

Errors name the dotted key (``listeners.imap.port: expected an integer, got 'abc'``) and surface
as :class:`pillarbox.errors.ConfigError`, which the CLI turns into exit code 2.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import re
import tomllib
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, Literal, TypeVar, get_args, get_origin

from pillarbox.certificates import acme_names
from pillarbox.errors import ConfigError, InvalidName
from pillarbox.mail.address import domain_to_ascii
from pillarbox.milter.address import parse_filter_address
from pillarbox.queue.tlspolicy import PolicyTable

ENV_PREFIX = "PILLARBOX__"
CONFIG_ENV = "PILLARBOX_CONFIG"
DEFAULT_CONFIG_PATH = Path("pillarbox.toml")

T = TypeVar("T")

#: Let's Encrypt's production ACME directory (the default CA of ``[tls] acme``).
LETS_ENCRYPT_DIRECTORY = "https://acme-v02.api.letsencrypt.org/directory"


def _f(default: Any, doc: str) -> Any:
    """A config field: its default and the one line that documents it."""
    if isinstance(default, (list, dict, set)):
        raise TypeError("use tuples for sequence defaults")  # frozen config stays immutable
    return field(default=default, metadata={"doc": doc})


def _section(factory: Any, doc: str) -> Any:
    return field(default_factory=factory, metadata={"doc": doc})


@dataclass(frozen=True, slots=True, kw_only=True)
class Listener:
    enabled: bool = _f(True, "Start this listener with `pillarbox serve`.")
    address: str = _f("127.0.0.1", "Address to bind: an IPv4/IPv6 literal, or '::' / '0.0.0.0'.")
    port: int = _f(0, "TCP port (left out of a listener's table: its standard port, shown here).")
    proxy_protocol: bool = _f(
        False,
        "Behind a TCP load balancer: read a PROXY protocol header (HAProxy v1 or v2) before "
        "anything else and take its client address as the peer's; connections from outside "
        "proxy_networks are refused (docs/load-balancer.md). Not on http/https: see "
        "forwarded_headers.",
    )
    forwarded_headers: bool = _f(
        False,
        "http/https only: take the client's address and scheme from Forwarded (RFC 7239), or "
        "X-Forwarded-For and X-Forwarded-Proto, on connections from proxy_networks (ignored "
        "from anyone else).",
    )
    proxy_networks: tuple[str, ...] = _f(
        (),
        "Networks of the load balancers (CIDR, e.g. '10.0.0.0/24') trusted to send the PROXY "
        "header or the forwarded headers; needed by either.",
    )
    proxy_timeout: float = _f(
        5.0, "Seconds a load balancer has to send the whole PROXY header (Postfix: 5 s)."
    )


def _listener(port: int, enabled: bool = True) -> Any:
    return field(
        default_factory=lambda: Listener(port=port, enabled=enabled),
        metadata={"doc": ""},
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class Listeners:
    smtp: Listener = _listener(25)
    submission: Listener = _listener(587)
    submissions: Listener = _listener(465)
    imap: Listener = _listener(143)
    imaps: Listener = _listener(993)
    pop3: Listener = _listener(110)
    pop3s: Listener = _listener(995)
    # Off unless a config turns it on (`pillarbox init`, the dev config and the demo do): a
    # config written before it existed would otherwise bind 4190 on upgrade, where the host's
    # Dovecot may already serve ManageSieve, and the server would not start.
    managesieve: Listener = _listener(4190, enabled=False)
    http: Listener = _listener(8080)
    # Off unless a config turns it on: a config written before it existed would otherwise
    # bind 443 on upgrade (root only). `pillarbox init` and the dev config turn it on.
    https: Listener = _listener(443, enabled=False)
    # Off unless a config names it: LMTP takes mail for every hosted account (without AUTH
    # from [lmtp] trusted_networks), so only an admin who runs a front MTA opens it (on
    # loopback by default, like Dovecot's inet_listener lmtp). `pillarbox init` writes it off; naming [listeners.lmtp] turns it on.
    lmtp: Listener = _listener(24, enabled=False)
    # Off unless a config names it (a `[listeners.metrics]` table turns it on): operational
    # metrics are for the admin's monitoring, on loopback by default. 8010 is Mox's port.
    metrics: Listener = _listener(8010, enabled=False)


LISTENER_DOCS = {
    "smtp": "MX: receives mail for hosted domains (STARTTLS offered).",
    "submission": "Message submission with STARTTLS and AUTH (RFC 6409).",
    "submissions": "Message submission over implicit TLS (RFC 8314).",
    "imap": "IMAP with STARTTLS.",
    "imaps": "IMAP over implicit TLS.",
    "pop3": "POP3 with STLS.",
    "pop3s": "POP3 over implicit TLS.",
    "managesieve": "ManageSieve with STARTTLS (RFC 5804): mail apps manage Sieve filters.",
    "http": "Webmail, admin and JSON API.",
    "https": "Webmail, admin, JSON API, autoconfig and the MTA-STS policy over implicit TLS.",
    "lmtp": "LMTP (RFC 2033) for a front MTA (Postfix `lmtp:inet:`): final delivery to hosted "
    "accounts, one reply per recipient; off unless `enabled = true` (or a table of its own in a "
    "file without one). Keep it on loopback: no AUTH.",
    "metrics": "Prometheus metrics over plain HTTP (GET /metrics, docs/metrics.md): off unless "
    "`enabled = true` (or a table of its own in a file without one); see [metrics].",
}

_DEFAULT_LISTENERS = Listeners()

#: Listeners that `pillarbox init` and the dev config leave off (see Listeners.lmtp and
#: Listeners.metrics).
OPT_IN_LISTENERS = frozenset({"lmtp", "metrics"})


@dataclass(frozen=True, slots=True, kw_only=True)
class ServerSection:
    hostname: str = _f("localhost", "This host's name: SMTP greeting, EHLO, Received headers.")
    data_dir: str = _f(
        "data", "Directory for the store, blobs and TLS files (relative: to the config file)."
    )
    workers: int = _f(4, "Threads for blocking work (password hashing, parsing large messages).")
    shutdown_grace: float = _f(10.0, "Seconds to let in-flight transactions finish on SIGTERM.")
    schema_check_interval: float = _f(
        60.0,
        "Seconds between checks that no newer Pillarbox has upgraded the store under this "
        "running one (which then stops: docs/upgrading.md).",
    )
    ipv6_client_prefix: int = _f(
        64,
        "Leading bits of an IPv6 address that name one client for every per-address limit "
        "(connections, failed logins): a host has a whole /64 to pick addresses from; 128 "
        "counts each address alone.",
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class SqliteSection:
    """The SQLite backend's resource knobs (``pillarbox.store.sqlite``, which takes this
    section as its ``SqliteLimits``)."""

    readers: int = _f(4, "Reader threads, each with its own connection (WAL: beside the writer).")
    max_batch: int = _f(256, "Most write operations committed in one transaction (one fsync).")
    busy_timeout_ms: int = _f(5_000, "How long to wait for a lock held by another process.")
    cache_mib: int = _f(32, "SQLite page cache per connection, in MiB.")
    wal_limit_mib: int = _f(64, "WAL size past which the writer restarts it from its start.")
    wal_restart_wait_ms: int = _f(100, "Longest wait for readers to leave the WAL at a restart.")
    snapshot_records: int = _f(
        250_000, "Message records kept in memory across mailbox snapshots (~300 bytes each)."
    )
    info_cache_entries: int = _f(
        4096, "Decoded message structures kept for FETCH (~3–7 KB each); 0: off."
    )
    directory_ttl_ms: int = _f(
        1000,
        "How long kept lookups (accounts, aliases, settings, ended web sessions, spam evidence) "
        "are reused: another process's changes (the command line) are seen after this; 0: off.",
    )
    directory_entries: int = _f(10_000, "Most names (and pieces of spam evidence) kept.")
    spam_cache_tokens: int = _f(
        200_000,
        "Classifier token counts kept in memory (~150 bytes each); a model of at most half "
        "this many is kept whole; 0: off.",
    )
    checkpoint_interval_ms: int = _f(500, "Least time between two WAL checkpoints.")
    index_idle_ms: int = _f(100, "Quiet time (no writes) before background full-text indexing.")
    index_slice_ms: int = _f(50, "Longest slice of background indexing in one transaction.")


@dataclass(frozen=True, slots=True, kw_only=True)
class PostgresSection:
    """The PostgreSQL backend's resource knobs (``pillarbox.store.postgres``, which takes this
    section as its ``PostgresLimits``)."""

    min_connections: int = _f(2, "Connections kept open per node (the LISTEN one is extra).")
    max_connections: int = _f(10, "Most connections a node opens.")
    timeout: float = _f(30.0, "Seconds to wait for the server at open, or for a free connection.")
    retries: int = _f(5, "Attempts of an operation that hit a deadlock or serialization failure.")
    listen_retry: float = _f(1.0, "Seconds between attempts to re-establish LISTEN.")
    index_idle: float = _f(0.1, "Quiet time (no delivery on this node) before trigram indexing.")
    index_batch: int = _f(64, "Rows indexed per transaction of the background indexer.")
    index_poll: float = _f(30.0, "Seconds between checks for text left unindexed.")
    spam_cache_tokens: int = _f(
        200_000, "Classifier token counts kept in memory (~150 bytes each); 0: off."
    )
    directory_ttl_ms: int = _f(
        1000,
        "How long kept lookups (accounts, aliases, settings, ended web sessions, spam evidence) "
        "are reused when no notification says otherwise (a lost LISTEN connection, a foreign "
        "writer); 0: off.",
    )
    directory_entries: int = _f(10_000, "Most names (and pieces of spam evidence) kept.")


@dataclass(frozen=True, slots=True, kw_only=True)
class StoreSection:
    url: str = _f(
        "sqlite:",
        "Store location: 'sqlite:' (in data_dir), 'sqlite:///abs/path.db', or 'postgresql://…'.",
    )
    sqlite: SqliteSection = _section(SqliteSection, "Tuning of the SQLite store.")
    postgres: PostgresSection = _section(PostgresSection, "Tuning of the PostgreSQL store.")


@dataclass(frozen=True, slots=True, kw_only=True)
class TlsSection:
    cert: str = _f("", "PEM certificate chain; empty: a self-signed one in data_dir/tls.")
    key: str = _f("", "PEM private key for `cert`.")
    files_check_interval: float = _f(
        60.0,
        "Seconds between checks whether `cert`/`key` changed on disk (renewed by certbot or "
        "another tool); a changed pair is loaded without a restart (docs/tls.md).",
    )
    min_version: Literal["TLSv1.2", "TLSv1.3"] = _f("TLSv1.2", "Lowest TLS version accepted.")
    handshake_timeout: float = _f(
        30.0,
        "Seconds a client has to complete a TLS handshake, on the implicit-TLS ports (993, 995, "
        "465, https) and after STARTTLS/STLS; then the connection is closed.",
    )
    acme: bool = _f(
        False,
        "Obtain and renew the certificate from an ACME CA (RFC 8555); excludes `cert`/`key`.",
    )
    acme_directory: str = _f(
        LETS_ENCRYPT_DIRECTORY,
        "The ACME CA's directory URL (Let's Encrypt's staging: "
        "https://acme-staging-v02.api.letsencrypt.org/directory).",
    )
    acme_email: str = _f("", "Contact address given to the CA for expiry and policy notices.")
    acme_names: tuple[str, ...] = _f(
        (),
        "Host names the certificate covers (DNS must point them here; wildcards like '*.example.org' need dns-01); empty: server.hostname.",
    )
    acme_challenges: tuple[Literal["http-01", "tls-alpn-01", "dns-01"], ...] = _f(
        ("http-01",),
        "Challenge types to answer, in order of preference: 'http-01' (port 80 reachable), 'tls-alpn-01' (RFC 8737: port 443 reaches the https listener, port 80 not needed), 'dns-01' (a TXT record published by our own authoritative DNS server for a hosted domain's zone, else by acme_dns_hook).",
    )
    acme_dns_hook: tuple[str, ...] = _f(
        (),
        "For dns-01 in zones our DNS server does not serve: an executable (absolute path) and fixed arguments, run without a shell with the record name and TXT value appended (also in PILLARBOX_ACME_RECORD/_VALUE, CERTBOT_DOMAIN/_VALIDATION); it must exit 0 once the record is published.",
    )
    acme_dns_cleanup_hook: tuple[str, ...] = _f(
        (),
        "Run like acme_dns_hook after the attempt, to remove the record (empty: not removed).",
    )
    acme_dns_hook_timeout: float = _f(
        120.0, "Seconds a dns hook may run before it is killed and the attempt fails."
    )
    acme_renew_days: int = _f(
        30,
        "Renew when fewer than this many days of validity remain, or a third of the certificate's lifetime if less (half of a lifetime of 10 days or less); a renewal window the CA suggests (RFC 9773) replaces this rule for its certificate (docs/tls.md).",
    )
    acme_ca_bundle: str = _f(
        "",
        "PEM CAs trusted for the directory's HTTPS (a test CA such as Pebble's; relative: to the config file); empty: the system's.",
    )
    acme_challenge_listener: bool = _f(
        True,
        "Answer HTTP-01 challenges on a listener of their own (started only when acme_challenges has http-01); false: only the web listener answers them (it must then be reachable on port 80).",
    )
    acme_http_address: str = _f("::", "Address of the HTTP-01 challenge listener.")
    acme_http_port: int = _f(
        80, "Port of the HTTP-01 challenge listener (CAs connect to port 80; others for tests)."
    )
    acme_check_interval: float = _f(43200.0, "Seconds between two checks of the expiry date.")
    acme_retry: float = _f(
        300.0, "Seconds before retrying a failed attempt; doubles up to acme_check_interval."
    )
    acme_timeout: float = _f(
        90.0, "Seconds an order may take to be validated and issued before the attempt fails."
    )
    acme_shared_answers_max: int = _f(
        1000,
        "Pending http-01 and tls-alpn-01 answers the store holds for the whole cluster, each kind (any node answers the CA from there); an attempt that would add more fails.",
    )
    acme_shared_certificate: bool = _f(
        True,
        "With a PostgreSQL store: one certificate for every node, obtained by one node at a time and kept in the database, private key included (docs/tls.md); false: each node obtains its own into its data_dir, as with SQLite.",
    )
    acme_lease: float = _f(
        900.0,
        "Seconds a node's claim to renew the shared certificate lasts; should it die mid-attempt, another node takes over after this (more than twice acme_timeout).",
    )
    acme_store_poll: float = _f(
        60.0,
        "Seconds between two looks at the store for a shared certificate another node obtained (each node then swaps it in).",
    )
    acme_reuse_key: bool = _f(
        False,
        "Renew with the private key of the certificate held now (certbot's --reuse-key), so its public key and a `3 1 1` TLSA record for DANE stay valid across renewals (docs/dane.md); false: a new key at each renewal.",
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class SmtpSection:
    max_message_size: int = _f(
        50 * 1024 * 1024, "Largest message accepted, in bytes (advertised as SIZE)."
    )
    max_recipients: int = _f(
        100,
        "Recipients per message; more get 452 4.5.3. Announced in the EHLO/LHLO reply as LIMITS"
        " RCPTMAX (RFC 9422; up to 999999).",
    )
    max_line_length: int = _f(
        4096, "Longest command or text line in octets (RFC 5321 minimum: 1000)."
    )
    max_errors: int = _f(10, "Protocol errors in one session before 421 and close.")
    command_timeout: float = _f(300.0, "Seconds to wait for a command (RFC 5321 §4.5.3.2.7).")
    data_timeout: float = _f(180.0, "Seconds to wait for each DATA block (RFC 5321 §4.5.3.2.6).")
    login_timeout: float = _f(
        180.0,
        "On submission (587, 465), and on LMTP for TCP clients that must log in (lmtp.require_auth "
        "outside lmtp.trusted_networks): seconds from the greeting (after an implicit-TLS "
        "handshake) within which a client must authenticate, busy or not; then 421 4.4.2. At "
        "most command_timeout. Not on the MX.",
    )
    max_connections: int = _f(1000, "Concurrent SMTP connections, all listeners together.")
    max_connections_per_ip: int = _f(20, "Concurrent SMTP connections from one client address.")
    enforce_sync: bool = _f(
        True,
        "MX only: a client outside policy.trusted_networks that sends before the reply it had "
        "to wait for (after HELO, EHLO or DATA, or any command without PIPELINING: RFC 2920 "
        "§3.1) gets 554 5.5.0 and is disconnected (Exim's smtp_enforce_sync, Postfix's "
        "reject_unauth_pipelining).",
    )
    greet_pause: float = _f(
        0.0,
        "MX only: seconds to wait before the greeting; a client that talks first is greeted "
        "with 554 and served nothing but QUIT (RFC 5321 §3.1: the client waits for the 220; "
        "postscreen's pregreet test). Under 300 (a client waits 5 minutes for the greeting, "
        "§4.5.3.2.1). 0: off. Not for policy.trusted_networks.",
    )
    greet_pass_ttl: float = _f(
        86400.0,
        "Seconds a client address that waited for the greeting is not made to wait again "
        "(postscreen_greet_ttl).",
    )
    greet_pass_clients: int = _f(
        100_000,
        "Client addresses remembered as having waited; past it the memory starts empty again.",
    )
    bare_newline: Literal["reject", "normalize"] = _f(
        "reject", "Messages with a bare CR or LF: refuse them, or rewrite to CRLF."
    )
    auth_without_tls: bool = _f(
        False, "Offer AUTH on submission before STARTTLS (only for loopback tests)."
    )
    starttls: bool = _f(True, "Offer STARTTLS on the MX and on submission port 587.")
    requiretls: bool = _f(
        True,
        "Offer REQUIRETLS (RFC 8689) on TLS sessions of the MX, submission and LMTP: mail given"
        " with it is relayed only over authenticated TLS (DANE or MTA-STS enforce) to servers"
        " offering it too, else returned (docs/tls-policy.md).",
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class SubmissionLimitsSection:
    messages_per_day: int = _f(
        1000,
        "Messages an account may send (SMTP submission and webmail) in any 24 hours; more get "
        "451 4.7.1 at RCPT. 0: unlimited. `pillarbox user limits` sets an account's own.",
    )
    recipients_per_day: int = _f(
        2000,
        "Recipients an account may send to in any 24 hours (each once per message; 0: unlimited).",
    )
    first_time_recipients_per_day: int = _f(
        200,
        "Addresses an account never sent to before that it may send to in any 24 hours "
        "(what stolen credentials are used for; 0: unlimited).",
    )
    recipient_memory_days: int = _f(
        365,
        "Days an address an account sent to stays known (not first-time) after the last "
        "message to it.",
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class ImapSection:
    max_literal_size: int = _f(
        50 * 1024 * 1024,
        "Largest message an APPEND or REPLACE (RFC 8508) accepts, advertised as APPENDLIMIT.",
    )
    max_line_length: int = _f(65536, "Longest command line outside literals.")
    idle_timeout: float = _f(
        1800.0, "Seconds of inactivity before BYE (RFC 9051 §5.4: at least 30 minutes)."
    )
    login_timeout: float = _f(
        180.0,
        "Seconds from connecting within which a client must log in, busy or not; then BYE "
        "(RFC 9051 §5.4's 30 minutes are for authenticated sessions). At most idle_timeout.",
    )
    max_errors: int = _f(20, "Consecutive bad commands before BYE.")
    max_connections: int = _f(20000, "Concurrent IMAP connections, both listeners together.")
    max_connections_per_ip: int = _f(100, "Concurrent IMAP connections from one client address.")
    login_without_tls: bool = _f(
        False, "Allow LOGIN/AUTHENTICATE before TLS (only for loopback tests)."
    )
    notify_max_mailboxes: int = _f(
        1000,
        "Mailboxes one IMAP NOTIFY may watch for message events; more is refused or stops"
        " notifications with [NOTIFICATIONOVERFLOW] (RFC 5465 §5.8).",
    )
    metadata_max_value_size: int = _f(
        16 * 1024,
        "Largest METADATA entry value SETMETADATA accepts, in octets; larger is refused with"
        " [METADATA MAXSIZE n] (RFC 5464 §4.3: at least 1024). Values above 64 KiB also need"
        " the command literal limit, which follows this setting.",
    )
    metadata_max_entries: int = _f(
        100,
        "METADATA entries per mailbox, and server entries per account; a new one beyond is"
        " refused with [METADATA TOOMANY] (RFC 5464 §4.1: at least 10).",
    )
    metadata_max_total: int = _f(
        1024 * 1024,
        "Octets of METADATA entry names and values per account, all mailboxes and the server"
        " entries together; a write growing past it is refused with [OVERQUOTA].",
    )
    metadata_admin: str = _f(
        "",
        "The server's /shared/admin METADATA entry: a URI to reach the administrator (RFC 5464"
        " §3.2.1.1: e.g. mailto:postmaster@example.org); empty for none. Read-only to clients.",
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class Pop3Section:
    idle_timeout: float = _f(
        600.0, "Seconds of inactivity before closing (RFC 1939 §3: at least 10 minutes)."
    )
    login_timeout: float = _f(
        180.0,
        "Seconds from connecting within which a client must log in, busy or not; then -ERR "
        "and close. At most idle_timeout.",
    )
    max_errors: int = _f(10, "Bad commands before the connection is closed.")
    max_connections: int = _f(1000, "Concurrent POP3 connections, both listeners together.")
    max_connections_per_ip: int = _f(20, "Concurrent POP3 connections from one client address.")
    login_without_tls: bool = _f(False, "Allow USER/PASS before TLS (only for loopback tests).")


@dataclass(frozen=True, slots=True, kw_only=True)
class AuthSection:
    min_password_length: int = _f(10, "Shortest password `user add`/`passwd` accept.")
    window: float = _f(900.0, "Seconds over which failed logins are counted.")
    free_failures: int = _f(3, "Failures per client address answered without delay.")
    base_delay: float = _f(
        2.0, "Seconds of delay after the first failure beyond the free ones; doubles after each."
    )
    max_delay: float = _f(60.0, "Longest per-failure delay, in seconds.")
    lockout_failures: int = _f(10, "Failures per client address that lock it out.")
    lockout: float = _f(900.0, "Seconds an address is locked out.")
    account_lockout_failures: int = _f(
        30,
        "Failures per account name that lock it out (lenient: strangers must not lock owners out for long).",
    )
    account_lockout: float = _f(300.0, "Seconds an account name is locked out.")
    login_cache_entries: int = _f(
        10000, "Verified logins remembered (no passwords are kept; 0: off)."
    )
    login_cache_ttl: float = _f(300.0, "Seconds a verified login is trusted without re-hashing.")
    argon2_time_cost: int = _f(3, "argon2id iterations (RFC 9106).")
    argon2_memory_cost: int = _f(65536, "argon2id memory in KiB.")
    argon2_parallelism: int = _f(4, "argon2id lanes.")
    scram_iterations: int = _f(
        4096, "PBKDF2 iterations of SCRAM-SHA-256 verifiers (RFC 7677 minimum)."
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class QueueSection:
    concurrency: int = _f(20, "Deliveries in flight at once.")
    per_domain: int = _f(4, "Deliveries in flight to one destination domain.")
    retry_schedule: tuple[float, ...] = _f(
        (300.0, 600.0, 1200.0, 2400.0, 3600.0, 7200.0, 14400.0),
        "Seconds between attempts; the last repeats until `lifetime`.",
    )
    lifetime: float = _f(5 * 86400.0, "Seconds before an undeliverable message bounces.")
    bounce_lifetime: float = _f(
        5 * 86400.0,
        "Seconds before an undeliverable message with the null sender (a bounce or other report,"
        " which nobody is told about) is given up, if shorter than `lifetime` (Postfix's"
        " bounce_queue_lifetime); 0: one attempt.",
    )
    delay_warning: float = _f(4 * 3600.0, "Seconds before a delay DSN is sent (0: never).")
    remote_port: int = _f(25, "Port of remote MX hosts (change only for tests).")
    smarthost: str = _f(
        "", "Relay all remote mail through host[:port] (empty: deliver directly by MX)."
    )
    smarthost_username: str = _f(
        "", "AUTH PLAIN user name at the smart host (empty: no AUTH); sent only over TLS."
    )
    smarthost_password: str = _f(
        "", "Password for `smarthost_username` (set it as PILLARBOX__QUEUE__SMARTHOST_PASSWORD)."
    )
    smarthost_verify_tls: bool = _f(
        True,
        "Verify the smart host's certificate and name (its MTA-STS policy in enforce mode"
        " demands it anyway; MX hosts: see `mta_sts`).",
    )
    connect_timeout: float = _f(30.0, "Seconds to wait for a TCP connection to a remote host.")
    greeting_timeout: float = _f(
        300.0, "Seconds to wait for a remote server's 220 greeting (RFC 5321 §4.5.3.2.1)."
    )
    skip_5xx_greeting: bool = _f(
        True,
        "A remote server greeting with 5xx (RFC 5321 §3.1: 554) is skipped: the next MX host is"
        " tried, and when no host takes the message it is deferred, bouncing only at `lifetime`"
        " (Postfix's smtp_skip_5xx_greeting). false: the 5xx is final when no later host answers.",
    )
    mail_timeout: float = _f(300.0, "Seconds to wait for the reply to MAIL (RFC 5321 §4.5.3.2.2).")
    rcpt_timeout: float = _f(300.0, "Seconds to wait for the reply to RCPT (RFC 5321 §4.5.3.2.3).")
    data_init_timeout: float = _f(
        120.0, "Seconds to wait for the 354 reply to DATA (RFC 5321 §4.5.3.2.4)."
    )
    data_block_timeout: float = _f(
        180.0,
        "Seconds a remote server may take to read each block of the message we send, and to"
        " answer each BDAT chunk (RFC 5321 §4.5.3.2.5).",
    )
    data_end_timeout: float = _f(
        600.0,
        'Seconds to wait for the reply after the message ("." or BDAT LAST), during which'
        " the server processes it (RFC 5321 §4.5.3.2.6).",
    )
    command_timeout: float = _f(
        300.0,
        "Seconds to wait for the reply to EHLO, STARTTLS, AUTH, RSET (no RFC figure; QUIT waits"
        " at most 10 s). Each timeout runs to the complete reply: bytes that trickle in do not"
        " extend it.",
    )
    source_addresses: tuple[str, ...] = _f(
        (),
        "Local addresses SMTP connections to other hosts leave from, at most one IPv4 and one "
        "IPv6 (Postfix's smtp_bind_address): on a host with several, the ones SPF and reverse DNS "
        "name (list them in dns.addresses); empty: the system's choice.",
    )
    session_linger: float = _f(
        1.0,
        "Seconds a session out of messages waits for ones already claimed to its destination.",
    )
    poll_interval: float = _f(
        30.0,
        "Seconds between queue scans when nothing wakes the runner (retries another node scheduled; a `queue flush` that could not reach the server).",
    )
    lease: float = _f(
        900.0, "Seconds a node holds the messages it claimed; after a crash others take them over."
    )
    bounce_original_limit: int = _f(
        262144, "Largest original returned whole in a bounce (RET=FULL); larger: headers only."
    )
    mta_sts: bool = _f(
        True,
        "Honour MTA-STS policies (RFC 8461): the recipient domain's when delivering by MX, the"
        " smart host's own (its name as the policy domain, §3.4) through `smarthost`.",
    )
    mta_sts_ca_bundle: str = _f(
        "",
        "PEM CA certificates trusted for MTA-STS policy hosts and for MX hosts whose certificate"
        " is verified (MTA-STS, `tls_policy` verify/secure) (empty: the system's).",
    )
    mta_sts_fetch_timeout: float = _f(
        60.0, "Seconds to fetch an MTA-STS policy over HTTPS (RFC 8461 §3.3 suggests 60)."
    )
    mta_sts_max_policy_size: int = _f(
        65536, "Largest MTA-STS policy file accepted, in bytes (RFC 8461 §3.3 suggests 64 KiB)."
    )
    mta_sts_port: int = _f(
        443,
        "Port of MTA-STS policy hosts (RFC 8461 §3.3 fixes HTTPS on 443; change only for tests).",
    )
    mta_sts_refresh: float = _f(
        86400.0,
        "Seconds after its fetch when a cached MTA-STS policy is fetched again, mail or not (or"
        " halfway through a shorter max_age; RFC 8461 §3.3 suggests daily); 0: only when mail"
        " goes to the domain; else at least 300.",
    )
    dane: bool = _f(
        True,
        "Authenticate MX hosts by DNSSEC-signed TLSA records (RFC 7672); needs `dns.trust_ad`.",
    )
    tls_policy: Mapping[str, str] = field(
        default_factory=lambda: MappingProxyType({}),
        metadata={
            "doc": "TLS per destination, as Postfix's smtp_tls_policy_maps: a domain, .domain"
            " (its subdomains) or [smarthost] mapped to none, may, encrypt, dane, dane-only,"
            " verify or secure (the last two with optional match=name:name); an entry overrides"
            " MTA-STS and DANE discovery (docs/tls-policy.md)."
        },
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class ForwardingSection:
    srs_secret: str = _f(
        "",
        "HMAC key of the Sender Rewriting Scheme (empty: a random key kept in data_dir/srs.key; "
        "set the same value on every node of a cluster).",
    )
    srs_max_age_days: int = _f(21, "Days an SRS address of ours is accepted back (bounces).")
    arc_seal: bool = _f(
        True, "Add an ARC set (RFC 8617) with the domain's RSA DKIM key to forwarded MX mail."
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class VacationSection:
    interval_days: float = _f(
        7.0, "Days before the same sender gets another auto-reply (RFC 3834 §2; Sieve's default)."
    )
    require_explicit_address: bool = _f(
        True, "Reply only when the account's address is in To or Cc (RFC 3834 §3.1.1)."
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class RetentionSection:
    junk_days: int = _f(
        0,
        "Days a message stays in an account's Junk mailbox after it was saved there (RFC 8514 "
        "SAVEDATE) before it is expunged; 0: until deleted. Per account: pillarbox user "
        "retention.",
    )
    trash_days: int = _f(
        0, "Days a message stays in an account's Trash mailbox after it was saved there; 0: ditto."
    )
    max_days: int = _f(
        3650,
        "The most days an account may choose for its own Junk or Trash (webmail, JSON API, "
        "pillarbox user retention); junk_days and trash_days may not exceed it either.",
    )
    interval: float = _f(3600.0, "Seconds between runs of the retention job (docs/retention.md).")
    batch_size: int = _f(
        500,
        "Messages expunged per store write: a mailbox with more old mail takes several writes, "
        "so no one write holds the store, or the sessions on that mailbox, long.",
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class QuotaSection:
    warning_thresholds: tuple[int, ...] = _f(
        (80, 95),
        "Percentages of an account's quota (bytes or messages, the fuller) at which one warning "
        "goes to its INBOX, once each time usage rises past one; empty: no warnings.",
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class SieveSection:
    max_script_size: int = _f(
        65536, "Largest Sieve script an account may store, in bytes of UTF-8 (RFC 5804 QUOTA)."
    )
    max_scripts: int = _f(16, "Sieve scripts an account may store (RFC 5804 QUOTA/MAXSCRIPTS).")
    max_actions: int = _f(
        32, "Actions one script run may take; more is a runtime error: kept (RFC 5228 §2.10.4)."
    )
    max_redirects: int = _f(4, "Redirects one script run may make; more is a runtime error.")
    max_nesting: int = _f(
        32, "Deepest nesting of blocks and tests a script may have (refused at compile time)."
    )
    vacation_max_days: int = _f(
        90, "Largest :days a Sieve vacation may give; larger values are lowered (RFC 5230 §4.1)."
    )
    vacation_min_seconds: int = _f(
        300, "Smallest vacation :seconds (RFC 6131); smaller values are raised (0 to 86400)."
    )
    cache_entries: int = _f(256, "Compiled scripts kept in memory per process, by content.")
    max_variables: int = _f(
        255, "Variables one Sieve script may set (RFC 5229); more is refused at compile time."
    )
    max_variable_size: int = _f(
        4096, "Octets of UTF-8 a Sieve variable holds; longer values are cut (RFC 5229 §6)."
    )
    create_max_mailboxes: int = _f(
        500, "fileinto :create makes a mailbox only while the account has fewer (RFC 5490)."
    )
    max_include_depth: int = _f(
        10, "Sieve includes nested deeper than this are a runtime error: kept (RFC 6609)."
    )
    max_includes: int = _f(
        255, "Distinct scripts one Sieve run may include; more is a runtime error (RFC 6609)."
    )
    global_dir: str = _f(
        "",
        "Directory of the site's Sieve scripts for include :global, each NAME.sieve (found by "
        "listing it, never by a path made of the name); empty: there are none.",
    )
    max_header_size: int = _f(
        2048,
        "Largest header field a Sieve addheader may add, or a notify URI may name, in octets "
        "(RFC 5293 §4).",
    )
    max_notify_recipients: int = _f(
        8, "Recipients one Sieve notify may name; more is a runtime error: kept (RFC 5435 §8)."
    )
    max_notifications: int = _f(
        16,
        "Notification recipients one Sieve run may reach in all; more is a runtime error: kept "
        "(RFC 5435 §8).",
    )
    regex_max_length: int = _f(
        4096,
        "Characters a Sieve :regex pattern may have (draft-ietf-sieve-regex); longer is refused "
        "at upload, or a runtime error (kept) when made of variables.",
    )
    regex_max_memory: int = _f(
        1048576,
        "Octets RE2 may use for one compiled Sieve :regex pattern (at least 65536); a pattern "
        "needing more is refused, a match outgrowing it runs slower (still linear).",
    )
    duplicate_default_seconds: int = _f(
        604800, "Seconds a Sieve duplicate test remembers an id without :seconds (RFC 7352 §3.3)."
    )
    duplicate_max_seconds: int = _f(
        2592000, "Largest Sieve duplicate :seconds; larger values are lowered (RFC 7352 §3.3)."
    )
    duplicate_max_entries: int = _f(
        10000,
        "Ids the Sieve duplicate tests of one account remember; past it, those expiring first "
        "are forgotten (RFC 7352 §3).",
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class ManageSieveSection:
    idle_timeout: float = _f(
        1800.0, "Seconds of inactivity before BYE (RFC 5804 §1.2: at least 30 minutes)."
    )
    login_timeout: float = _f(
        180.0,
        "Seconds from connecting (or UNAUTHENTICATE) within which a client must log in, busy or"
        " not; then BYE. At most idle_timeout.",
    )
    max_line_length: int = _f(8192, "Longest command line outside literals, in octets.")
    max_skip: int = _f(
        1024 * 1024, "Octets of a refused over-size literal read and dropped before BYE."
    )
    max_errors: int = _f(10, "Bad commands in a row before BYE.")
    max_auth_failures: int = _f(3, "Failed AUTHENTICATE commands on one connection before BYE.")
    max_connections: int = _f(1000, "Concurrent ManageSieve connections.")
    max_connections_per_ip: int = _f(20, "Concurrent ManageSieve connections from one address.")
    login_without_tls: bool = _f(
        False, "Allow PLAIN before STARTTLS (only for loopback tests and development)."
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class LmtpSection:
    """The lmtp listener (RFC 2033); message size, recipients, line length, error limit,
    bare line breaks and timeouts are the ``[smtp]`` knobs of the same names."""

    policy: Literal["content", "full", "none"] = _f(
        "content",
        "Spam policy for LMTP deliveries: 'content' (classifier, rules, reputation, allow/block "
        "lists; Junk filing and X-Pillarbox-Spam; no SPF/DKIM/DMARC/DNSBL, which need the "
        "sender's connection the front MTA had), 'full' (also those, on the client the front MTA "
        "passes with XFORWARD: Postfix lmtp_send_xforward_command = yes; without it, as 'content') "
        "or 'none' (every copy goes to INBOX, then Sieve).",
    )
    refuse_spam: bool = _f(
        False,
        "Refuse (550 5.7.1, for that recipient only) a message whose score reaches "
        "policy.reject_threshold; false: it is filed in Junk, as the front MTA already accepted it.",
    )
    quota_full: Literal["tempfail", "reject"] = _f(
        "tempfail",
        "A recipient over quota: 'tempfail' answers 452 4.2.2 (the front MTA keeps the message "
        "and retries), 'reject' 552 5.2.2 (it bounces at once; Dovecot's default).",
    )
    max_connections: int = _f(100, "Concurrent LMTP connections (Postfix opens up to 20).")
    starttls: bool = _f(
        True,
        "Offer STARTTLS (RFC 3207) on the TCP listener, with the [tls] certificate (Postfix "
        "lmtp_tls_security_level = encrypt). Never on the UNIX socket.",
    )
    auth_accounts: tuple[str, ...] = _f(
        (),
        "Accounts a front MTA may authenticate as, after STARTTLS (AUTH, RFC 4954, with the "
        "submission server's SASL mechanisms; Postfix lmtp_sasl_auth_enable); empty: no AUTH. "
        "Any other account's AUTH fails as a wrong password does.",
    )
    trusted_networks: tuple[str, ...] = _f(
        ("127.0.0.0/8", "::1/128"),
        "TCP clients that may deliver without require_tls and require_auth (the UNIX socket "
        "always may). A front MTA on another host must be listed here or use TLS and AUTH.",
    )
    require_tls: bool = _f(
        True,
        "Outside trusted_networks: MAIL is refused (530 5.7.0) until STARTTLS.",
    )
    require_auth: bool = _f(
        True,
        "Outside trusted_networks: MAIL is refused (530 5.7.0) until AUTH as one of auth_accounts.",
    )
    socket: str = _f(
        "",
        "Also serve LMTP on this UNIX socket (absolute path; Postfix `lmtp:unix:/path`); empty: none. A stale socket file there is replaced.",
    )
    socket_mode: str = _f(
        "0660",
        "Permissions of the socket, octal: the front MTA's user must be able to connect (Postfix's lmtp runs as postfix).",
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class DnsSection:
    nameserver: str = _f("", "Resolver address ('host' or 'host:port'); empty: the system's.")
    timeout: float = _f(5.0, "Seconds for one DNS lookup.")
    trust_ad: Literal["loopback", "always", "never"] = _f(
        "loopback",
        "Believe the resolver's DNSSEC AD bit: 'loopback' only from a resolver on this host.",
    )
    addresses: tuple[str, ...] = _f(
        (), "This host's public IPs, published as A/AAAA and in SPF (empty: SPF names the MX)."
    )
    authoritative_enabled: bool = _f(
        False, "Serve the hosted domains' records as an authoritative DNS server (UDP and TCP)."
    )
    authoritative_address: str = _f(
        "127.0.0.1",
        "Address the authoritative DNS server binds, and sends NOTIFY from (a wildcard such as "
        "0.0.0.0: from the address the host picks).",
    )
    authoritative_port: int = _f(53, "Port of the authoritative DNS server (UDP and TCP).")
    authoritative_max_tcp_connections: int = _f(
        256,
        "TCP connections the authoritative DNS server takes at once; more are closed at once "
        "(resolvers retry). Signed zones move answers over the signing budget to TCP.",
    )
    dnssec: bool = _f(
        False,
        "Sign the hosted zones the authoritative server serves (DNSSEC, one ECDSA P-256 key per "
        "zone, kept in the store); `pillarbox dns records` prints the DS for the registrar. "
        "Turning it off while a DS is published makes the zone fail validation: remove the DS "
        "first and wait out its TTL (docs/dane.md).",
    )
    dnssec_validity: int = _f(
        1_209_600, "Seconds a signature is valid from its inception (14 days)."
    )
    dnssec_refresh: int = _f(
        604_800, "Seconds after which a signature is made again (below dnssec_validity)."
    )
    dnssec_inception_offset: int = _f(
        3_600, "Seconds a signature's inception lies in the past, for validators whose clock lags."
    )
    dnssec_signature_cache: int = _f(
        10_000, "Signatures kept per zone between queries (a full cache starts over)."
    )
    dnssec_signatures_per_second: int = _f(
        200,
        "New signatures a second (all zones); over it, a UDP answer needing one gets TC=1 and "
        "is signed when asked over TCP (about 0.6 ms of CPU each: docs/dane.md). 0: no limit.",
    )
    dnssec_cds: Literal["publish", "delete", "off"] = _f(
        "publish",
        "CDS/CDNSKEY at each signed zone's apex (RFC 7344, RFC 8078), for parents that scan "
        "for them: 'publish' the DS set the parent should hold now (a rollover's next key "
        "once caches know it); 'delete' asks the parent to remove the DS, the step before "
        "turning dns.dnssec off (docs/dane.md); 'off' publishes none.",
    )
    dnssec_retire_seconds: int = _f(
        172_800,
        "Seconds a zone key retired by `pillarbox dns rollover --finish` stays in the DNSKEY "
        "RRset, signing it: at least the parent's DS TTL (often a day) and the zones' TTL "
        "(3600); 2 days by default (docs/dane.md).",
    )
    nameservers: tuple[str, ...] = _f(
        (),
        "Names the hosted zones publish as their NS records, the primary (this server) first: "
        "the names the registrar lists, secondaries included (RFC 2182). Empty: the mail host.",
    )
    zone_check_interval: float = _f(
        30.0,
        "Seconds between reads of each hosted zone from the store: how soon a change is served "
        "and, when it moves the SOA serial, sent as NOTIFY to the secondaries.",
    )
    transfer_allowed: tuple[str, ...] = _f(
        (),
        "Addresses or networks of the secondaries that may transfer the hosted zones (AXFR, "
        "IXFR answered in full; over TCP). Empty: every transfer is refused (docs/dns.md).",
    )
    transfer_tsig_key: str = _f(
        "",
        "Name of the TSIG key (HMAC-SHA256, RFC 8945) every transfer must be signed with, and "
        "NOTIFY is signed with; the secondaries hold the same name and secret. Empty: the "
        "address alone decides.",
    )
    transfer_tsig_secret_file: str = _f(
        "",
        "File holding that key's secret in base64 (`openssl rand -base64 32`; relative: to "
        "the config file). Keep it readable by Pillarbox alone.",
    )
    notify: tuple[str, ...] = _f(
        (),
        "Secondaries told of each new SOA serial, and of every zone when the server starts "
        "(NOTIFY, RFC 1996; sent from authoritative_address): 'address', 'address:port' or "
        "'[v6]:port'.",
    )
    notify_retry_interval: float = _f(
        60.0,
        "Seconds to wait for a secondary's answer to a NOTIFY before sending it again, five "
        "times at most (RFC 1996 §3.6).",
    )
    catalog_zone: str = _f(
        "",
        "Name of a catalog zone (RFC 9432) listing every hosted domain, served and transferred "
        "like the hosted zones: a secondary set up once with it serves each domain added "
        "later, with no change of its own (docs/dns.md). Empty: none. E.g. catalog.invalid.",
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class PolicySection:
    enabled: bool = _f(True, "Judge mail arriving at the MX (authentication, DNSBL, spam filter).")
    junk_threshold: float = _f(5.0, "Spam score from which a message is delivered to Junk.")
    reject_threshold: float = _f(15.0, "Spam score from which a message is refused at DATA (5xx).")
    spf: bool = _f(True, "Check SPF (RFC 7208) for the MAIL FROM or HELO identity.")
    dkim: bool = _f(True, "Verify DKIM signatures (RFC 6376, RFC 8463).")
    dmarc: bool = _f(True, "Apply DMARC (RFC 9989): p=reject refuses, p=quarantine goes to Junk.")
    dmarc_discovery: Literal["psl", "treewalk"] = _f(
        "psl",
        "How DMARC finds policy records and organizational domains: 'psl' (RFC 7489, the Public "
        "Suffix List) or 'treewalk' (RFC 9989 §4.10 DNS tree walk, up to 8 queries per name).",
    )
    arc: bool = _f(
        True, "Validate ARC chains (RFC 8617) and report them in Authentication-Results."
    )
    arc_trusted_sealers: tuple[str, ...] = _f(
        (),
        "Domains (d= of the newest ARC-Seal) whose passing ARC chain exempts mail failing DMARC "
        "from its policy when their ARC-Authentication-Results record dmarc=pass for its From "
        "domain, as a local exception reported in aggregate reports (RFC 8617 §7.2.1).",
    )
    classifier: bool = _f(
        True, "Score content with the Bayesian classifier (global + per-account model)."
    )
    reputation: bool = _f(
        True, "Score senders by the account's own history (Junk moves, mail it sent)."
    )
    header_facts: bool = _f(
        True,
        "Score header facts (sender alignment, Received chain, Date, shape) as fitted reasons, except for trusted_networks; they may send mail to Junk, never refuse it.",
    )
    bayes_weight: float = _f(
        10.0, "Score of a certain classifier verdict: spam adds it, ham subtracts it."
    )
    account_weight: float = _f(
        3.0, "How much an account's own training outweighs the global model's."
    )
    dnsbl_ip_zones: tuple[str, ...] = _f(
        (), "DNSBL zones for the client IP (RFC 5782), each 'zone=score'."
    )
    dnsbl_domain_zones: tuple[str, ...] = _f(
        (), "Domain blocklist zones for From/MAIL FROM/link domains, each 'zone=score'."
    )
    trusted_networks: tuple[str, ...] = _f(
        ("127.0.0.0/8", "::1/128"),
        "Clients whose mail skips the DNS checks and greylisting (local injection).",
    )
    timeout: float = _f(
        10.0,
        "Seconds for the DNS checks of one message (SPF, DKIM, ARC, DNSBL), and again for DMARC.",
    )
    reject_without_from: bool = _f(
        False, "Refuse mail without a From address (RFC 5322 requires one)."
    )
    learn_max_messages: int = _f(
        1000,
        "Messages one move, copy or $Junk/$NotJunk change teaches the spam filter at most (each "
        "~2 ms while the command waits); the rest of a larger one are moved or marked without "
        "teaching it (logged). 0: moves and keywords teach nothing.",
    )
    max_sender_entries: int = _f(
        1000,
        "Entries an account's allow and block lists hold together (every verdict for the "
        "account reads them all).",
    )


MIB = 1024 * 1024


@dataclass(frozen=True, slots=True, kw_only=True)
class MilterSection:
    """External mail filters (the milter protocol, as Postfix's smtpd_milters; docs/milter.md)."""

    mx: tuple[str, ...] = _f(
        (),
        "Filters consulted, in order, by the MX at each stage of a session: 'inet:HOST:PORT' "
        "or 'unix:/PATH' (OpenDKIM, OpenDMARC, rspamd, clamav-milter, spamass-milter).",
    )
    submission: tuple[str, ...] = _f(
        (), "Filters consulted, in order, on submission (587 and 465), as for mx."
    )
    default_action: Literal["tempfail", "accept", "reject"] = _f(
        "tempfail",
        "When a filter cannot be reached, times out or breaks the protocol: answer 451 4.3.0 "
        "(tempfail), go on without that filter for the session (accept), or refuse with "
        "550 5.7.1 (reject) (Postfix's milter_default_action).",
    )
    connect_timeout: float = _f(30.0, "Seconds to connect to a filter and negotiate.")
    command_timeout: float = _f(
        30.0, "Seconds a filter has to answer a connect, HELO, MAIL or RCPT step."
    )
    content_timeout: float = _f(
        300.0,
        "Seconds a filter has to answer each piece of the message (header fields, body "
        "chunks, end of message); a progress reply restarts it.",
    )
    max_reply_size: int = _f(
        1_048_576, "Bytes of one reply packet from a filter (a replaced body comes in several)."
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class GreylistingSection:
    """Greylisting at the MX (RFC 6647, docs/greylisting.md); the triplet is the client's
    network, the normalised envelope sender and the recipient."""

    enabled: bool = _f(
        False,
        "Greylist at the MX: an unknown (client network, sender, recipient) gets 451 4.7.1 at "
        "RCPT until it retries after `delay`. Never on submission, LMTP, authenticated clients or "
        "policy.trusted_networks.",
    )
    delay: float = _f(
        300.0, "Seconds a new triplet is deferred: a retry sooner is deferred again (postgrey's)."
    )
    retry_window: float = _f(
        2 * 86400.0,
        "Seconds after the first attempt within which the retry must come; later, the triplet "
        "starts over (postgrey: 2 days).",
    )
    lifetime: float = _f(
        35 * 86400.0,
        "Seconds a passed triplet is remembered after it was last seen (postgrey --max-age: 35 "
        "days); a use renews it (at most once a day, or once per half of a shorter lifetime).",
    )
    ipv4_prefix: int = _f(24, "Prefix length of an IPv4 client's network in the triplet (0–32).")
    ipv6_prefix: int = _f(64, "Prefix length of an IPv6 client's network in the triplet (0–128).")
    auto_allow_clients: int = _f(
        5,
        "A client network with this many passed triplets (not yet expired) is no longer "
        "greylisted (postgrey --auto-whitelist-clients); 0: off.",
    )
    allow_networks: tuple[str, ...] = _f(
        (), "Client networks never greylisted (CIDR, e.g. a partner's or a big provider's)."
    )
    allow_sender_domains: tuple[str, ...] = _f(
        (),
        "Envelope sender domains never greylisted, each with its subdomains (the sender is "
        "unauthenticated at RCPT: anyone may claim one).",
    )
    allow_spf_pass: bool = _f(
        False,
        "Do not greylist a sender whose envelope domain's SPF passes for the client (RFC 7208; "
        "the HELO name's for the null sender), checked only for a triplet that would be "
        "deferred. A domain's own servers then wait for nothing, but so does spam from domains "
        "that publish SPF for their senders (milter-greylist's `spf pass`).",
    )
    only_listed_clients: bool = _f(
        False,
        "Greylist only a client listed on one of `policy.dnsbl_ip_zones` (RFC 5782; a lookup "
        "that fails counts as listed): others pass and are not remembered (selective "
        "greylisting). Private and loopback clients are never looked up, so never listed.",
    )
    skip_recipient_domains: tuple[str, ...] = _f(
        (),
        "Hosted domains whose recipients are never greylisted, each with its subdomains "
        "(postgrey's recipient whitelist): a domain whose users want no delay.",
    )
    prune_interval: float = _f(
        3600.0, "Seconds between removals of expired triplets from the store."
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class ContactsSection:
    """The webmail's address book (docs/contacts.md): how much one account may keep."""

    max_per_account: int = _f(
        5000, "Contacts one account may keep (a vCard import past it is refused)."
    )
    max_emails: int = _f(10, "Email addresses of one contact.")
    max_phones: int = _f(10, "Phone numbers of one contact.")
    max_name: int = _f(
        200, "Characters of a contact's display name, organisation, each phone number and UID."
    )
    max_note: int = _f(4000, "Characters of a contact's note.")
    max_import_bytes: int = _f(
        2 * MIB,
        "Largest .vcf file imported at once (web form or JSON API): 413 past it. The request "
        "as it streams in is bounded by `[web] max_upload_bytes`. Also the largest card a "
        "CardDAV client may PUT (then within `[web] max_form_bytes` as well).",
    )
    sync_history_days: int = _f(
        90,
        "Days a deleted contact's tombstone is kept for CardDAV sync (RFC 6578); the retention "
        "job removes older ones, and a client whose last sync is older syncs in full; 0: kept.",
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class CalendarsSection:
    """CalDAV calendars (docs/calendars.md): how much one account may keep."""

    max_per_account: int = _f(20, "Calendar collections one account may have (MKCALENDAR: 507).")
    max_objects: int = _f(
        10000, "Events and to-dos one calendar may hold (a new one past it: 507)."
    )
    max_object_bytes: int = _f(
        256 * 1024,
        "Largest iCalendar object a client may PUT (advertised as `max-resource-size`; 403 "
        "past it), then within `[web] max_form_bytes` as well.",
    )
    max_instances: int = _f(
        1000,
        "Instances of a recurring event expanded for one object: a finite series with more "
        "is stored open-ended, and a time-range query that would expand more (an endless "
        "series asked about far past its start) takes the object as matching unexpanded; "
        "an `expand` or free-busy-query that would expand more is refused (507).",
    )
    max_description: int = _f(
        4000,
        "Characters of a calendar's description (RFC 4791 calendar-description; MKCALENDAR "
        "and PROPPATCH refuse a longer one, 403).",
    )
    max_timezone_bytes: int = _f(
        64 * 1024,
        "Bytes of a calendar's time zone (RFC 4791 calendar-timezone, one VTIMEZONE; a longer "
        "one is refused, 403).",
    )
    sync_history_days: int = _f(
        90,
        "Days a deleted event's tombstone is kept for CalDAV sync (RFC 6578); the retention "
        "job removes older ones, and a client whose last sync is older syncs in full; 0: kept.",
    )
    agenda_days: int = _f(
        30, "Days ahead the webmail's Calendar page lists in its agenda of upcoming events."
    )
    max_invitation_bytes: int = _f(
        256 * 1024,
        "Largest text/calendar part of a message the webmail reads as an invitation (RFC "
        "6047); a larger one gets a note instead of the summary and the answer buttons.",
    )
    max_import_bytes: int = _f(
        10 * MIB,
        "Largest .ics file imported at once (the Calendar page, the JSON API, `pillarbox "
        "import ics`): 413 past it; the request as it streams in is bounded by `[web] "
        "max_upload_bytes`. Each object in it is checked as a CalDAV PUT (`max_object_bytes`, "
        "`max_objects`).",
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class WebSection:
    page_size: int = _f(50, "Messages (or threads) per page of the webmail message list.")
    max_page_size: int = _f(200, "Largest page a reader or API client may ask for.")
    max_upload_bytes: int = _f(
        25 * MIB, "Largest compose request (attachments included); refused as it streams in."
    )
    max_form_bytes: int = _f(1 * MIB, "Largest body of any other request (forms, JSON).")
    login_hold_bytes: int = _f(
        16 * MIB,
        "Store room for messages being written that two-factor logins hold between their "
        "password and code steps, all accounts' together, counted as their text (each within "
        "max_form_bytes; over it the oldest go). At least max_form_bytes.",
    )
    max_attachments: int = _f(20, "Attachments one message composed on the web may carry.")
    max_recipients: int = _f(100, "To + Cc + Bcc addresses of one message composed on the web.")
    max_identities: int = _f(
        20, "Sending identities (From address, name, signature) one account may keep."
    )
    session_ttl: float = _f(
        12 * 3600.0, "Seconds a web session lives without activity (refreshed while used)."
    )
    session_warning: float = _f(
        300.0,
        "Seconds before an idle web session ends that its pages warn and offer to stay signed "
        "in (0: no warning); at most half of session_ttl is used.",
    )
    sse_keepalive: float = _f(
        20.0, "Seconds between keep-alive comments on the live-update stream (proxies time out)."
    )
    sse_per_account: int = _f(8, "Live-update streams one account may hold open at once.")
    max_action_uids: int = _f(5000, "Messages one 'select many' action may name at once.")
    max_html_tags: int = _f(
        10000,
        "Tags of an HTML mail body the webmail shows; the rest is cut, and the reader told (the "
        "sanitiser's parser is quadratic in nesting: 10000 nested tags cost it ~0.4 s, 20000 "
        "~1.4 s; ordinary markup of 10000 tags ~0.03 s).",
    )
    redirect_http: bool = _f(
        False,
        "Redirect plain-HTTP requests to the https listener (not /.well-known/: ACME "
        "challenges, MTA-STS, autoconfig); off behind a TLS-terminating proxy.",
    )
    hsts_max_age: int = _f(
        365 * 86400,
        "Strict-Transport-Security max-age (seconds) sent on HTTPS responses; 0: no header.",
    )
    max_connections: int = _f(
        1000, "Concurrent web connections, both listeners together; more are answered 503."
    )
    max_connections_per_ip: int = _f(
        100,
        "Concurrent web connections from one client address (answered 503 past it); not "
        "counted for listeners.*.proxy_networks, whose connections carry many clients.",
    )
    request_head_timeout: float = _f(
        30.0,
        "Seconds a web client has to send a request's line and header fields, from its first "
        "byte (a new connection's first request: from the connect); then the connection is "
        "closed (a client sending nothing, or a byte at a time, would hold it for ever).",
    )
    request_body_timeout: float = _f(
        60.0,
        "Seconds a request body may go without a byte before the connection is closed; the "
        "time also bounds the body's start under request_body_min_rate.",
    )
    request_body_min_rate: int = _f(
        500,
        "Slowest average a request body may come at, in bytes a second: each byte earns "
        "1/this more seconds beyond request_body_timeout from the body's start (a byte every "
        "few seconds keeps any idle timer happy); 0: only the idle bound.",
    )

    @property
    def session_warned(self) -> float:
        """The warning's seconds in force: ``session_warning``, but at most half the session's
        life, so that a short session (a test's, a kiosk's) warns a while after each page
        loads rather than as it loads."""
        return min(self.session_warning, self.session_ttl / 2)


@dataclass(frozen=True, slots=True, kw_only=True)
class DmarcReportSection:
    enabled: bool = _f(
        False,
        "Keep the DMARC results of arriving mail and send aggregate reports (RFC 9990) to "
        "domains whose record asks for them (rua=mailto:).",
    )
    interval: float = _f(
        86400.0, "Seconds between aggregate reports: the reporting period (typically a day)."
    )
    from_address: str = _f(
        "", "Local account whose address sends the reports (required when enabled)."
    )
    org_name: str = _f("", "Reporting organization named in reports (default: server.hostname).")
    contact_email: str = _f("", "Contact address in report metadata (default: from_address).")


@dataclass(frozen=True, slots=True, kw_only=True)
class TlsReportSection:
    enabled: bool = _f(
        False,
        "Keep the TLS outcome of outbound sessions and send daily TLS-RPT reports (RFC 8460) to "
        "domains whose _smtp._tls record asks for them (rua=mailto:).",
    )
    interval: float = _f(
        86400.0, "Seconds between reports: the reporting period (RFC 8460 §4.1: a UTC day)."
    )
    from_address: str = _f(
        "", "Local account whose address sends the reports (default: dmarc_reports.from_address)."
    )
    org_name: str = _f("", "Organization named in reports (default: server.hostname).")
    contact_email: str = _f("", "Contact address in reports (default: from_address).")
    post_timeout: float = _f(60.0, "Seconds to POST one report to an https rua (RFC 8460 §5.4).")
    max_delay: float = _f(
        14400.0,
        "Most seconds after a period ends before its reports leave: a random delay up to it, "
        "drawn each period, spreads the load on report receivers (RFC 8460 §4.1); 0 sends at "
        "the boundary. Below interval.",
    )
    post_retry: float = _f(
        300.0,
        "Seconds before retrying a failed POST, doubling after each try (RFC 8460 §5.5); the "
        "store is checked for due retries this often, at most every minute.",
    )
    post_retry_for: float = _f(
        86400.0,
        "Seconds after the first try within which a failed POST is retried (RFC 8460 §5.5: up "
        "to 24 hours); 0: no retry. Pending retries are kept in the store (restarts keep them).",
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class ReceivedReportSection:
    enabled: bool = _f(
        True,
        "Read the DMARC aggregate (RFC 7489 §7.2, RFC 9990) and TLS-RPT (RFC 8460) reports other "
        "providers send to our report addresses, and keep a summary of each for the admin page, "
        "the API and `pillarbox reports`. The message is delivered as usual either way.",
    )
    dmarc_local_part: str = _f(
        "dmarc-reports",
        "Local part, at each hosted domain, of the rua=mailto: address the generated DMARC "
        "record names; mail delivered to it is read as aggregate reports. Empty: ask for none.",
    )
    tls_local_part: str = _f(
        "tls-reports",
        "Local part, at each hosted domain, of the rua=mailto: address the generated _smtp._tls "
        "record names; mail delivered to it is read as TLS reports. Empty: publish no record.",
    )
    max_size: int = _f(
        16 * 1024 * 1024,
        "Most bytes one report may decompress to (gzip, zip); a larger one (a decompression "
        "bomb) is refused, logged, and the message delivered unread.",
    )
    max_parts: int = _f(4, "Most report attachments read from one message.")
    keep_days: int = _f(
        400, "Days a received report's summary is kept (by its end date); 0 keeps them forever."
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class DmarcFailureReportSection:
    enabled: bool = _f(
        False,
        "Send DMARC failure reports (RFC 9991) to domains whose record asks for them (ruf=mailto:"
        " and fo=); off by default: they expose the reported mail (RFC 9991 §7).",
    )
    from_address: str = _f(
        "", "Local account whose address sends the reports (default: dmarc_reports.from_address)."
    )
    content: Literal["headers", "full"] = _f(
        "headers",
        "What of a failed message a report carries: its header (RFC 9991 §7 minimisation) or "
        "the whole message.",
    )
    redact_addresses: bool = _f(
        True,
        "Replace the local parts of addresses in the reported header by a keyed hash "
        "(RFC 6590; the same address gives the same token until the server restarts).",
    )
    max_original_bytes: int = _f(
        1 * MIB, "Largest message sent whole with content = 'full'; larger ones as their header."
    )
    max_per_domain: int = _f(
        10, "Failure reports per DMARC policy domain within rate_window, per node (RFC 9991 §2)."
    )
    rate_window: float = _f(3600.0, "Seconds over which max_per_domain counts.")
    max_domains: int = _f(65536, "Policy domains the rate limit remembers at once.")
    max_pending: int = _f(
        100, "Reports being prepared or queued at once; more are dropped with a log line."
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class MetricsSection:
    bearer_token: str = _f(
        "",
        "If set, a scrape must send `Authorization: Bearer <this>` (or the basic-auth password).",
    )
    basic_auth_username: str = _f("prometheus", "User name of basic_auth_password.")
    basic_auth_password: str = _f(
        "", "If set, a scrape may authenticate with HTTP basic auth as this user and password."
    )
    max_connections: int = _f(16, "Scrapers connected at once; more are answered 503.")
    request_timeout: float = _f(
        10.0, "Seconds a client has to send one whole request, and we to send the answer."
    )
    idle_timeout: float = _f(30.0, "Seconds a kept-alive connection may wait for its next request.")
    queue_query_timeout: float = _f(
        5.0, "Seconds the queue gauges' store query may take before the scrape goes without them."
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class LoggingSection:
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = _f("INFO", "Lowest level written.")
    format: Literal["text", "json"] = _f("text", "Log line format.")
    trace_protocol: bool = _f(
        False,
        "Log protocol lines, both ways (AUTH payloads are still redacted, literals shown as "
        "their size). Honoured by ManageSieve only so far.",
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class Config:
    server: ServerSection = _section(ServerSection, "This server.")
    store: StoreSection = _section(StoreSection, "Where mail and accounts are kept.")
    tls: TlsSection = _section(TlsSection, "TLS certificate for every listener.")
    listeners: Listeners = _section(Listeners, "Where each service listens.")
    smtp: SmtpSection = _section(SmtpSection, "SMTP limits (MX and submission).")
    submission_limits: SubmissionLimitsSection = _section(
        SubmissionLimitsSection,
        "Per-account outbound sending limits over a sliding 24 hours (docs/submission-limits.md).",
    )
    imap: ImapSection = _section(ImapSection, "IMAP limits.")
    pop3: Pop3Section = _section(Pop3Section, "POP3 limits.")
    managesieve: ManageSieveSection = _section(
        ManageSieveSection, "ManageSieve limits (the managesieve listener, RFC 5804)."
    )
    lmtp: LmtpSection = _section(
        LmtpSection, "LMTP delivery from a front MTA (the lmtp listener, RFC 2033)."
    )
    auth: AuthSection = _section(AuthSection, "Passwords and login rate limits.")
    queue: QueueSection = _section(QueueSection, "Outbound delivery.")
    forwarding: ForwardingSection = _section(
        ForwardingSection, "Forwarding at delivery: SRS and ARC sealing."
    )
    vacation: VacationSection = _section(VacationSection, "Vacation auto-replies (RFC 3834).")
    retention: RetentionSection = _section(
        RetentionSection, "Automatic expunge of old mail in Junk and Trash."
    )
    quota: QuotaSection = _section(QuotaSection, "Warnings to accounts filling their quota.")
    sieve: SieveSection = _section(
        SieveSection, "Sieve mail filters (RFC 5228): limits on the scripts accounts store."
    )
    dns: DnsSection = _section(DnsSection, "DNS resolution.")
    policy: PolicySection = _section(PolicySection, "Inbound mail policy and spam filter.")
    greylisting: GreylistingSection = _section(
        GreylistingSection, "Greylisting at the MX (RFC 6647, docs/greylisting.md); off by default."
    )
    milter: MilterSection = _section(
        MilterSection,
        "External mail filters (the milter protocol; docs/milter.md); none by default.",
    )
    web: WebSection = _section(WebSection, "Webmail, admin and JSON API (the http listener).")
    contacts: ContactsSection = _section(
        ContactsSection, "The webmail's address book: limits per account and per contact."
    )
    calendars: CalendarsSection = _section(
        CalendarsSection, "CalDAV calendars: limits per account and per calendar."
    )
    dmarc_reports: DmarcReportSection = _section(
        DmarcReportSection, "DMARC aggregate reports sent to the domains whose mail we receive."
    )
    dmarc_failure_reports: DmarcFailureReportSection = _section(
        DmarcFailureReportSection, "DMARC failure reports (RFC 9991), per failing message."
    )
    tls_reports: TlsReportSection = _section(
        TlsReportSection, "TLS-RPT reports (RFC 8460) to the domains we deliver to."
    )
    received_reports: ReceivedReportSection = _section(
        ReceivedReportSection,
        "DMARC and TLS-RPT reports other providers send about our domains (docs/dmarc.md).",
    )
    metrics: MetricsSection = _section(
        MetricsSection, "The metrics listener: who may scrape it and its limits (docs/metrics.md)."
    )
    logging: LoggingSection = _section(LoggingSection, "Logs.")

    #: Where the file was read from; relative paths in it resolve against its directory.
    source: Path | None = field(default=None, compare=False, metadata={"doc": ""})

    def resolve_path(self, value: str) -> Path:
        """A path from the config, relative to the config file's directory."""
        path = Path(value).expanduser()
        if path.is_absolute() or self.source is None:
            return path
        return self.source.parent / path

    @property
    def data_dir(self) -> Path:
        return self.resolve_path(self.server.data_dir)


# -- loading ---------------------------------------------------------------------------------


def config_path(explicit: str | Path | None, environ: Mapping[str, str] | None = None) -> Path:
    """``--config``, else ``$PILLARBOX_CONFIG``, else ``./pillarbox.toml``."""
    env = os.environ if environ is None else environ
    if explicit:
        return Path(explicit)
    if env.get(CONFIG_ENV):
        return Path(env[CONFIG_ENV])
    return DEFAULT_CONFIG_PATH


def load(path: Path, environ: Mapping[str, str] | None = None) -> Config:
    """Read and validate the config file, then apply environment overrides."""
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError("", f"config file {path} not found (run `pillarbox init`)") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError("", f"{path}: not valid TOML: {exc}") from None
    _apply_env(raw, os.environ if environ is None else environ)
    config = from_mapping(raw)
    return dataclasses.replace(config, source=path.resolve())


def from_mapping(raw: Mapping[str, Any]) -> Config:
    config = _build(Config, raw, "")
    _validate(config)
    return config


def _apply_env(raw: dict[str, Any], environ: Mapping[str, str]) -> None:
    for name, value in environ.items():
        if not name.startswith(ENV_PREFIX):
            continue
        keys = [k.lower() for k in name[len(ENV_PREFIX) :].split("__")]
        target_type = _field_type(keys)
        node = raw
        for key in keys[:-1]:
            node = node.setdefault(key, {})
            if not isinstance(node, dict):
                raise ConfigError(".".join(keys), "environment override conflicts with the file")
        node[keys[-1]] = _from_env_text(value, target_type, ".".join(keys))


def _field_type(keys: list[str]) -> Any:
    cls: Any = Config
    for i, key in enumerate(keys):
        fields = {f.name: f for f in dataclasses.fields(cls) if f.name != "source"}
        if key not in fields:
            raise ConfigError(".".join(keys[: i + 1]), "unknown key (from the environment)")
        cls = _hints(cls)[key]
        if not dataclasses.is_dataclass(cls) and i < len(keys) - 1:
            raise ConfigError(".".join(keys), "override the whole value, not a part of it")
    if dataclasses.is_dataclass(cls):
        raise ConfigError(".".join(keys), "is a section; override its keys one by one")
    return cls


def _from_env_text(text: str, typ: Any, key: str) -> Any:
    if typ is str or get_origin(typ) is Literal:
        return text
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        raise ConfigError(key, f"cannot parse environment value {text!r}") from None


def _hints(cls: Any) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _build(cls: type[T], raw: Any, prefix: str) -> T:
    if not isinstance(raw, Mapping):
        raise ConfigError(prefix, "expected a table")
    hints = _hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.name != "source"}  # type: ignore[arg-type]
    unknown = sorted(set(raw) - set(fields))
    if unknown:
        key = f"{prefix}.{unknown[0]}" if prefix else unknown[0]
        raise ConfigError(key, f"unknown key (known: {', '.join(sorted(fields))})")
    values: dict[str, Any] = {}
    for name, value in raw.items():
        key = f"{prefix}.{name}" if prefix else name
        if cls is Listeners and isinstance(value, Mapping):
            # A named listener without a port takes its service's (lmtp: 24), not 0 (any).
            value = {"port": getattr(_DEFAULT_LISTENERS, name).port, **value}
        values[name] = _convert(hints[name], value, key)
    return cls(**values)


def _convert(typ: Any, value: Any, key: str) -> Any:
    if dataclasses.is_dataclass(typ):
        return _build(typ, value, key)  # type: ignore[arg-type]
    origin = get_origin(typ)
    if origin is Literal:
        if value not in get_args(typ):
            choices = ", ".join(repr(a) for a in get_args(typ))
            raise ConfigError(key, f"expected one of {choices}, got {value!r}")
        return value
    if origin is Mapping:
        if not isinstance(value, Mapping):
            raise ConfigError(key, f"expected a table, got {value!r}")
        item_type = get_args(typ)[1]
        return MappingProxyType(
            {str(k): _convert(item_type, v, f'{key}."{k}"') for k, v in value.items()}
        )
    if origin in (types.UnionType, typing.Union):
        raise TypeError(f"{key}: unions are not supported in config")  # pragma: no cover
    if origin is tuple:
        item_type = get_args(typ)[0]
        if not isinstance(value, list):
            raise ConfigError(key, f"expected a list, got {value!r}")
        return tuple(_convert(item_type, v, f"{key}[{i}]") for i, v in enumerate(value))
    if typ is bool:
        if not isinstance(value, bool):
            raise ConfigError(key, f"expected true or false, got {value!r}")
        return value
    if typ is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(key, f"expected an integer, got {value!r}")
        return value
    if typ is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(key, f"expected a number, got {value!r}")
        return float(value)
    if typ is str:
        if not isinstance(value, str):
            raise ConfigError(key, f"expected a string, got {value!r}")
        return value
    raise TypeError(f"{key}: unsupported config type {typ!r}")  # pragma: no cover


#: Store knobs that must be above zero; the others may be 0 (off, or no wait) but not below.
_STORE_POSITIVE = frozenset(
    {
        "sqlite.readers",
        "sqlite.max_batch",
        "sqlite.cache_mib",
        "sqlite.wal_limit_mib",
        "sqlite.checkpoint_interval_ms",
        "sqlite.index_slice_ms",
        "postgres.min_connections",
        "postgres.max_connections",
        "postgres.timeout",
        "postgres.retries",
        "postgres.listen_retry",
        "postgres.index_batch",
        "postgres.index_poll",
    }
)


def _validate_store(store: StoreSection) -> None:
    for section in ("sqlite", "postgres"):
        tuning = getattr(store, section)
        for f in dataclasses.fields(tuning):
            key, number = f"{section}.{f.name}", getattr(tuning, f.name)
            if number < 0 or (number == 0 and key in _STORE_POSITIVE):
                bound = "positive" if key in _STORE_POSITIVE else "0 or more"
                raise ConfigError(f"store.{key}", f"must be {bound}, got {number}")
    if store.postgres.min_connections > store.postgres.max_connections:
        raise ConfigError("store.postgres.min_connections", "must not exceed max_connections")


def _validate(config: Config) -> None:
    """Cross-field and range checks that types alone cannot express."""
    for name in LISTENER_DOCS:
        listener: Listener = getattr(config.listeners, name)
        if not 0 <= listener.port <= 65535:
            raise ConfigError(f"listeners.{name}.port", f"must be 0–65535, got {listener.port}")
        _validate_upstream_proxy(name, listener)
    if not 16 <= config.server.ipv6_client_prefix <= 128:
        raise ConfigError("server.ipv6_client_prefix", "must be 16–128")
    positive: list[tuple[str, float]] = [
        ("smtp.max_message_size", config.smtp.max_message_size),
        ("smtp.max_recipients", config.smtp.max_recipients),
        ("smtp.max_errors", config.smtp.max_errors),
        ("smtp.command_timeout", config.smtp.command_timeout),
        ("smtp.data_timeout", config.smtp.data_timeout),
        ("smtp.max_connections", config.smtp.max_connections),
        ("smtp.max_connections_per_ip", config.smtp.max_connections_per_ip),
        ("imap.max_literal_size", config.imap.max_literal_size),
        ("imap.notify_max_mailboxes", config.imap.notify_max_mailboxes),
        ("imap.metadata_max_total", config.imap.metadata_max_total),
        ("server.workers", config.server.workers),
        ("server.schema_check_interval", config.server.schema_check_interval),
        ("tls.files_check_interval", config.tls.files_check_interval),
        ("queue.concurrency", config.queue.concurrency),
        ("queue.per_domain", config.queue.per_domain),
        ("queue.lifetime", config.queue.lifetime),
        ("queue.connect_timeout", config.queue.connect_timeout),
        ("queue.greeting_timeout", config.queue.greeting_timeout),
        ("queue.mail_timeout", config.queue.mail_timeout),
        ("queue.rcpt_timeout", config.queue.rcpt_timeout),
        ("queue.data_init_timeout", config.queue.data_init_timeout),
        ("queue.data_block_timeout", config.queue.data_block_timeout),
        ("queue.data_end_timeout", config.queue.data_end_timeout),
        ("queue.command_timeout", config.queue.command_timeout),
        ("tls.handshake_timeout", config.tls.handshake_timeout),
        ("queue.session_linger", config.queue.session_linger),
        ("queue.poll_interval", config.queue.poll_interval),
        ("queue.lease", config.queue.lease),
        ("queue.mta_sts_fetch_timeout", config.queue.mta_sts_fetch_timeout),
        ("queue.mta_sts_max_policy_size", config.queue.mta_sts_max_policy_size),
        ("auth.min_password_length", config.auth.min_password_length),
        ("forwarding.srs_max_age_days", config.forwarding.srs_max_age_days),
        ("vacation.interval_days", config.vacation.interval_days),
        ("auth.lockout_failures", config.auth.lockout_failures),
        ("sieve.max_script_size", config.sieve.max_script_size),
        ("sieve.max_scripts", config.sieve.max_scripts),
        ("sieve.max_actions", config.sieve.max_actions),
        ("sieve.max_redirects", config.sieve.max_redirects),
        ("sieve.max_nesting", config.sieve.max_nesting),
        ("sieve.vacation_max_days", config.sieve.vacation_max_days),
        ("sieve.cache_entries", config.sieve.cache_entries),
        ("sieve.max_variables", config.sieve.max_variables),
        ("sieve.max_variable_size", config.sieve.max_variable_size),
        ("sieve.create_max_mailboxes", config.sieve.create_max_mailboxes),
        ("sieve.max_include_depth", config.sieve.max_include_depth),
        ("sieve.max_includes", config.sieve.max_includes),
        ("sieve.max_header_size", config.sieve.max_header_size),
        ("sieve.max_notify_recipients", config.sieve.max_notify_recipients),
        ("sieve.max_notifications", config.sieve.max_notifications),
        ("sieve.regex_max_length", config.sieve.regex_max_length),
        ("sieve.duplicate_default_seconds", config.sieve.duplicate_default_seconds),
        ("sieve.duplicate_max_seconds", config.sieve.duplicate_max_seconds),
        ("sieve.duplicate_max_entries", config.sieve.duplicate_max_entries),
        ("managesieve.max_errors", config.managesieve.max_errors),
        ("managesieve.max_auth_failures", config.managesieve.max_auth_failures),
        ("managesieve.max_connections", config.managesieve.max_connections),
        ("managesieve.max_connections_per_ip", config.managesieve.max_connections_per_ip),
        ("lmtp.max_connections", config.lmtp.max_connections),
        ("metrics.max_connections", config.metrics.max_connections),
        ("metrics.request_timeout", config.metrics.request_timeout),
        ("metrics.idle_timeout", config.metrics.idle_timeout),
        ("metrics.queue_query_timeout", config.metrics.queue_query_timeout),
    ]
    for key, number in positive:
        if number <= 0:
            raise ConfigError(key, f"must be positive, got {number}")
    limits = config.submission_limits
    for key in ("messages_per_day", "recipients_per_day", "first_time_recipients_per_day"):
        if getattr(limits, key) < 0:
            raise ConfigError(f"submission_limits.{key}", "must be 0 (unlimited) or more")
    if limits.recipient_memory_days < 1:
        raise ConfigError("submission_limits.recipient_memory_days", "must be at least 1")
    _validate_store(config.store)
    if config.smtp.max_line_length < 1000:
        raise ConfigError("smtp.max_line_length", "must be at least 1000 (RFC 5321 §4.5.3.1.6)")
    if not 0 <= config.smtp.greet_pause < 300:
        raise ConfigError(
            "smtp.greet_pause", "must be 0 (off) to under 300 s (RFC 5321 §4.5.3.2.1)"
        )
    if config.smtp.greet_pass_ttl < 0:
        raise ConfigError("smtp.greet_pass_ttl", "must not be negative")
    if config.smtp.greet_pass_clients < 1:
        raise ConfigError("smtp.greet_pass_clients", "must be at least 1")
    if config.imap.idle_timeout < 1800:
        raise ConfigError("imap.idle_timeout", "must be at least 1800 s (RFC 9051 §5.4)")
    if config.pop3.idle_timeout < 600:
        raise ConfigError("pop3.idle_timeout", "must be at least 600 s (RFC 1939 §3)")
    if config.sieve.regex_max_memory < 65536:
        # Below it RE2 cannot hold the program of even a short pattern with a class.
        raise ConfigError("sieve.regex_max_memory", "must be at least 65536")
    if not 0 <= config.sieve.vacation_min_seconds <= 86400:
        # RFC 6131 §2: a site minimum of at most one day.
        raise ConfigError("sieve.vacation_min_seconds", "must be 0 to 86400")
    if config.managesieve.idle_timeout < 1800:
        raise ConfigError("managesieve.idle_timeout", "must be at least 1800 s (RFC 5804 §1.2)")
    for key, login, idle, idle_key in (
        ("smtp", config.smtp.login_timeout, config.smtp.command_timeout, "command_timeout"),
        ("imap", config.imap.login_timeout, config.imap.idle_timeout, "idle_timeout"),
        ("pop3", config.pop3.login_timeout, config.pop3.idle_timeout, "idle_timeout"),
        (
            "managesieve",
            config.managesieve.login_timeout,
            config.managesieve.idle_timeout,
            "idle_timeout",
        ),
    ):
        if not 0 < login <= idle:
            raise ConfigError(f"{key}.login_timeout", f"must be positive and at most {idle_key}")
    if config.managesieve.max_line_length < 1024:
        raise ConfigError("managesieve.max_line_length", "must be at least 1024")
    if config.queue.mta_sts_refresh != 0 and not config.queue.mta_sts_refresh >= 300:
        raise ConfigError("queue.mta_sts_refresh", "must be 0 or at least 300")
    if config.managesieve.max_skip < 0:
        raise ConfigError("managesieve.max_skip", "must be 0 or more")
    if config.metrics.basic_auth_password and not config.metrics.basic_auth_username:
        raise ConfigError("metrics.basic_auth_username", "needed with basic_auth_password")
    if bool(config.tls.cert) != bool(config.tls.key):
        raise ConfigError("tls.key" if config.tls.cert else "tls.cert", "cert and key go together")
    _validate_acme(
        config.tls, config.server.hostname, config.dns, https_enabled=config.listeners.https.enabled
    )
    if config.auth.free_failures >= config.auth.lockout_failures:
        raise ConfigError("auth.free_failures", "must be smaller than auth.lockout_failures")
    if not config.queue.retry_schedule:
        raise ConfigError("queue.retry_schedule", "needs at least one interval")
    if any(interval <= 0 for interval in config.queue.retry_schedule):
        raise ConfigError("queue.retry_schedule", "intervals must be positive")
    if not 0 < config.queue.remote_port <= 65535:
        raise ConfigError("queue.remote_port", f"must be 1–65535, got {config.queue.remote_port}")
    if not config.queue.bounce_lifetime >= 0:
        raise ConfigError("queue.bounce_lifetime", "must be 0 or more")
    if not 0 < config.queue.mta_sts_port <= 65535:
        raise ConfigError("queue.mta_sts_port", f"must be 1–65535, got {config.queue.mta_sts_port}")
    PolicyTable.parse(config.queue.tls_policy)
    _validate_source_addresses(config.queue.source_addresses)
    if config.forwarding.srs_max_age_days >= 1024:
        # Two base32 characters of days: an older address could not be told from a new one.
        raise ConfigError("forwarding.srs_max_age_days", "must be below 1024 (SRS timestamps wrap)")
    if not 0 <= config.dns.authoritative_port <= 65535:
        raise ConfigError("dns.authoritative_port", "must be 0–65535")
    _validate_dnssec(config.dns)
    _validate_transfers(config.dns)
    _validate_lmtp(config.lmtp)
    _validate_imap_metadata(config.imap)
    _validate_policy(config.policy)
    _validate_greylisting(config.greylisting)
    _validate_milter(config.milter)
    if config.greylisting.only_listed_clients and not config.policy.dnsbl_ip_zones:
        raise ConfigError(
            "greylisting.only_listed_clients", "needs a list in policy.dnsbl_ip_zones"
        )
    _validate_web(config.web)
    _validate_contacts(config.contacts)
    _validate_calendars(config.calendars)
    _validate_received_reports(config.received_reports)
    _validate_retention(config.retention)
    _validate_quota(config.quota)
    reports = config.dmarc_reports
    if reports.interval <= 0:
        raise ConfigError("dmarc_reports.interval", f"must be positive, got {reports.interval}")
    if reports.enabled and "@" not in reports.from_address:
        raise ConfigError("dmarc_reports.from_address", "needs an address when reports are enabled")
    _validate_failure_reports(config.dmarc_failure_reports, reports.from_address)
    tls_reports = config.tls_reports
    for key in ("interval", "post_timeout"):
        if getattr(tls_reports, key) <= 0:
            raise ConfigError(
                f"tls_reports.{key}", f"must be positive, got {getattr(tls_reports, key)}"
            )
    for key in ("max_delay", "post_retry_for"):
        if getattr(tls_reports, key) < 0:
            raise ConfigError(
                f"tls_reports.{key}", f"must not be negative, got {getattr(tls_reports, key)}"
            )
    if tls_reports.max_delay >= tls_reports.interval:
        raise ConfigError("tls_reports.max_delay", "must be below tls_reports.interval")
    if tls_reports.post_retry <= 0:
        raise ConfigError(
            "tls_reports.post_retry", f"must be positive, got {tls_reports.post_retry}"
        )
    if tls_reports.enabled and "@" not in (tls_reports.from_address or reports.from_address):
        raise ConfigError("tls_reports.from_address", "needs an address when reports are enabled")


#: The listeners uvicorn serves: it reads no PROXY header, only the forwarded headers.
WEB_LISTENER_NAMES = frozenset({"http", "https"})


def _validate_upstream_proxy(name: str, listener: Listener) -> None:
    """``proxy_protocol`` and ``forwarded_headers`` need the balancers' networks, each on the
    listeners that can honour it."""
    key = f"listeners.{name}"
    web = name in WEB_LISTENER_NAMES
    if listener.proxy_protocol and web:
        raise ConfigError(
            f"{key}.proxy_protocol", "the web server reads no PROXY header; use forwarded_headers"
        )
    if listener.forwarded_headers and not web:
        raise ConfigError(f"{key}.forwarded_headers", "only for the http and https listeners")
    _validate_networks(f"{key}.proxy_networks", listener.proxy_networks)
    if (listener.proxy_protocol or listener.forwarded_headers) and not listener.proxy_networks:
        # Trusting every peer would let any client name any address.
        raise ConfigError(f"{key}.proxy_networks", "needed to trust a load balancer")
    if listener.proxy_timeout <= 0:
        raise ConfigError(f"{key}.proxy_timeout", f"must be positive, got {listener.proxy_timeout}")


#: The most ``[retention] max_days`` may be: a century, far inside what date arithmetic
#: on the save dates handles.
MAX_RETENTION_DAYS = 36_500


def _validate_retention(retention: RetentionSection) -> None:
    if not 1 <= retention.max_days <= MAX_RETENTION_DAYS:
        raise ConfigError(
            "retention.max_days", f"must be 1–{MAX_RETENTION_DAYS}, got {retention.max_days}"
        )
    for key in ("junk_days", "trash_days"):
        if not 0 <= getattr(retention, key) <= retention.max_days:
            raise ConfigError(
                f"retention.{key}",
                f"must be 0–{retention.max_days} (max_days), got {getattr(retention, key)}",
            )
    for key in ("interval", "batch_size"):
        if getattr(retention, key) <= 0:
            raise ConfigError(
                f"retention.{key}", f"must be positive, got {getattr(retention, key)}"
            )


def _validate_quota(quota: QuotaSection) -> None:
    thresholds = quota.warning_thresholds
    for i, percent in enumerate(thresholds):
        if not 1 <= percent <= 100:
            raise ConfigError(f"quota.warning_thresholds[{i}]", f"must be 1–100, got {percent}")
    if len(set(thresholds)) != len(thresholds):
        raise ConfigError("quota.warning_thresholds", "names a percentage twice")


def _validate_acme(tls: TlsSection, hostname: str, dns: DnsSection, *, https_enabled: bool) -> None:
    if not tls.acme:
        return
    if tls.cert:
        raise ConfigError("tls.acme", "cannot be used with tls.cert/tls.key (one source only)")
    if not tls.acme_directory.startswith(("https://", "http://")):
        raise ConfigError(
            "tls.acme_directory", f"expected an http(s) URL, got {tls.acme_directory!r}"
        )
    for key in (
        "acme_renew_days",
        "acme_check_interval",
        "acme_retry",
        "acme_timeout",
        "acme_store_poll",
    ):
        if getattr(tls, key) <= 0:
            raise ConfigError(f"tls.{key}", f"must be positive, got {getattr(tls, key)}")
    if tls.acme_lease <= 2 * tls.acme_timeout:
        # An attempt waits up to acme_timeout for dns-01 records, then as long for the CA.
        raise ConfigError(
            "tls.acme_lease",
            f"must exceed twice tls.acme_timeout ({2 * tls.acme_timeout:g}), "
            f"got {tls.acme_lease:g}",
        )
    if not 0 <= tls.acme_http_port <= 65535:
        raise ConfigError("tls.acme_http_port", f"must be 0–65535, got {tls.acme_http_port}")
    if not tls.acme_challenges:
        raise ConfigError("tls.acme_challenges", "needs at least one challenge type")
    if len(set(tls.acme_challenges)) != len(tls.acme_challenges):
        raise ConfigError("tls.acme_challenges", "names a challenge type twice")
    for key in ("acme_dns_hook", "acme_dns_cleanup_hook"):
        command = getattr(tls, key)
        if command and not command[0].startswith("/"):
            # Run without a shell or a PATH search: the administrator names the very file.
            raise ConfigError(f"tls.{key}", f"the command must be an absolute path: {command[0]!r}")
    if tls.acme_dns_cleanup_hook and not tls.acme_dns_hook:
        raise ConfigError("tls.acme_dns_cleanup_hook", "needs tls.acme_dns_hook")
    if tls.acme_dns_hook_timeout <= 0:
        raise ConfigError("tls.acme_dns_hook_timeout", "must be positive")
    dns01 = "dns-01" in tls.acme_challenges
    if dns01 and not (dns.authoritative_enabled or tls.acme_dns_hook):
        raise ConfigError(
            "tls.acme_challenges",
            "dns-01 needs [dns] authoritative_enabled (our own DNS server publishes the TXT "
            "record) or tls.acme_dns_hook (a command publishes it elsewhere)",
        )
    if "tls-alpn-01" in tls.acme_challenges and not https_enabled:
        raise ConfigError(
            "tls.acme_challenges",
            "tls-alpn-01 is answered by the https listener: enable [listeners.https] "
            "(the CA connects to port 443)",
        )
    key = "tls.acme_names" if tls.acme_names else "server.hostname"
    try:
        # RFC 8555 §7.1.3, §8.4: only dns-01 proves a wildcard.
        acme_names(tls.acme_names, hostname, wildcards=dns01)
    except InvalidName as exc:
        raise ConfigError(key, str(exc)) from None


#: The least ``dns.dnssec_retire_seconds``: the TTL the hosted zones serve their records and
#: DNSKEY RRset with (:data:`pillarbox.dns.authoritative.DEFAULT_SOA`).
MIN_RETIRE_SECONDS = 3_600


def _validate_dnssec(dns: DnsSection) -> None:
    if dns.dnssec and not dns.authoritative_enabled:
        # A DS published for a zone that another server serves unsigned is an outage.
        raise ConfigError(
            "dns.dnssec",
            "signs what the authoritative server serves: enable dns.authoritative_enabled",
        )
    keys = ("dnssec_validity", "dnssec_refresh", "dnssec_signature_cache")
    for key in (*keys, "authoritative_max_tcp_connections"):
        if getattr(dns, key) <= 0:
            raise ConfigError(f"dns.{key}", f"must be positive, got {getattr(dns, key)}")
    for key in ("dnssec_inception_offset", "dnssec_signatures_per_second"):
        if getattr(dns, key) < 0:
            raise ConfigError(f"dns.{key}", f"must be 0 or more, got {getattr(dns, key)}")
    if dns.dnssec_retire_seconds < MIN_RETIRE_SECONDS:
        # The zones' records and the DNSKEY RRset are served with 3600 s TTLs: a key removed
        # sooner leaves caches holding what it signed with no key to check it by.
        raise ConfigError(
            "dns.dnssec_retire_seconds",
            f"must be at least {MIN_RETIRE_SECONDS} (the zones' TTL), got "
            f"{dns.dnssec_retire_seconds}",
        )
    if dns.dnssec_refresh >= dns.dnssec_validity:
        raise ConfigError(
            "dns.dnssec_refresh",
            f"must be below dns.dnssec_validity ({dns.dnssec_validity}): a signature is made "
            "again before it expires",
        )


def _validate_transfers(dns: DnsSection) -> None:
    for key in ("zone_check_interval", "notify_retry_interval"):
        if getattr(dns, key) <= 0:
            raise ConfigError(f"dns.{key}", f"must be positive, got {getattr(dns, key)}")
    _validate_networks("dns.transfer_allowed", dns.transfer_allowed)
    named = [("dns.nameservers", name) for name in dns.nameservers]
    named += [("dns.catalog_zone", dns.catalog_zone)] if dns.catalog_zone else []
    if named:
        # Imported only then: dns.records brings the X.509 code of TLSA records, which the
        # CLI's light commands do without (tests/unit/test_cli_startup.py).
        from pillarbox.dns.records import normalise_name
    for key, name in named:
        try:
            normalise_name(name)
        except InvalidName as exc:
            raise ConfigError(key, str(exc)) from None
    if dns.catalog_zone and dns.dnssec:
        raise ConfigError(
            "dns.catalog_zone",
            "a catalog zone is for secondaries, and zones signed online (dns.dnssec) are not "
            "transferred",
        )
    if bool(dns.transfer_tsig_key) != bool(dns.transfer_tsig_secret_file):
        raise ConfigError(
            "dns.transfer_tsig_key", "goes with dns.transfer_tsig_secret_file: set both or neither"
        )
    if dns.dnssec and (dns.transfer_allowed or dns.notify):
        # Online signing answers denials with NSECs made per query (RFC 9824): there is no
        # NSEC chain to hand a secondary, which could then not prove any name absent.
        raise ConfigError(
            "dns.transfer_allowed" if dns.transfer_allowed else "dns.notify",
            "zone transfers are not offered for zones signed online (dns.dnssec): a secondary "
            "could not deny names; see docs/dns.md for a signing secondary instead",
        )


def _validate_failure_reports(section: DmarcFailureReportSection, fallback: str) -> None:
    for key in ("max_original_bytes", "max_per_domain", "rate_window", "max_domains"):
        if getattr(section, key) <= 0:
            raise ConfigError(f"dmarc_failure_reports.{key}", "must be positive")
    if section.max_pending < 0:
        raise ConfigError("dmarc_failure_reports.max_pending", "must not be negative")
    if section.enabled and "@" not in (section.from_address or fallback):
        raise ConfigError(
            "dmarc_failure_reports.from_address", "needs an address when reports are enabled"
        )


def _validate_imap_metadata(imap: ImapSection) -> None:
    """RFC 5464 §4.1: a server MUST accept values of 1024 octets and 10 entries."""
    if imap.metadata_max_value_size < 1024:
        raise ConfigError("imap.metadata_max_value_size", "must be at least 1024 (RFC 5464 §4.1)")
    if imap.metadata_max_entries < 10:
        raise ConfigError("imap.metadata_max_entries", "must be at least 10 (RFC 5464 §4.1)")
    admin = imap.metadata_admin
    if admin and not re.fullmatch(r"[A-Za-z][A-Za-z0-9+.-]*:\S+", admin):
        raise ConfigError(
            "imap.metadata_admin", f"must be a URI (mailto:, tel:, https:), got {admin!r}"
        )


def _validate_source_addresses(addresses: tuple[str, ...]) -> None:
    versions = []
    for address in addresses:
        try:
            versions.append(ipaddress.ip_address(address).version)
        except ValueError:
            raise ConfigError(
                "queue.source_addresses", f"{address!r} is not an IP address"
            ) from None
    if len(set(versions)) != len(versions):
        raise ConfigError("queue.source_addresses", "at most one IPv4 and one IPv6 address")


def _validate_lmtp(lmtp: LmtpSection) -> None:
    if lmtp.socket and not Path(lmtp.socket).is_absolute():
        raise ConfigError("lmtp.socket", f"must be an absolute path, got {lmtp.socket!r}")
    _validate_networks("lmtp.trusted_networks", lmtp.trusted_networks)
    for account in lmtp.auth_accounts:
        local, at, domain = account.strip().rpartition("@")
        if not (local and at and domain):
            raise ConfigError("lmtp.auth_accounts", f"not an account address: {account!r}")
    if socket_mode(lmtp.socket_mode) is None:
        raise ConfigError(
            "lmtp.socket_mode", f"expected octal permissions, got {lmtp.socket_mode!r}"
        )


def socket_mode(text: str) -> int | None:
    """``"0660"`` → 0o660; None unless octal permission bits (at most 0777)."""
    try:
        mode = int(text, 8)
    except ValueError:
        return None
    return mode if 0 <= mode <= 0o777 else None


def _validate_policy(policy: PolicySection) -> None:
    if policy.reject_threshold < policy.junk_threshold:
        raise ConfigError("policy.reject_threshold", "must not be below policy.junk_threshold")
    if policy.timeout <= 0:
        raise ConfigError("policy.timeout", f"must be positive, got {policy.timeout}")
    if policy.max_sender_entries < 1:
        raise ConfigError(
            "policy.max_sender_entries", f"must be at least 1, got {policy.max_sender_entries}"
        )
    if policy.learn_max_messages < 0:
        raise ConfigError(
            "policy.learn_max_messages", f"must not be negative, got {policy.learn_max_messages}"
        )
    for key in ("dnsbl_ip_zones", "dnsbl_domain_zones"):
        for item in getattr(policy, key):
            zone, equals, score = item.partition("=")
            try:
                float(score)
            except ValueError:
                equals = ""
            if not equals or not zone.strip():
                raise ConfigError(f"policy.{key}", f"expected 'zone=score', got {item!r}")
    _validate_networks("policy.trusted_networks", policy.trusted_networks)


def _validate_milter(section: MilterSection) -> None:
    for key in ("mx", "submission"):
        for index, text in enumerate(getattr(section, key)):
            try:
                parse_filter_address(text)
            except ValueError as exc:
                raise ConfigError(f"milter.{key}[{index}]", f"{text!r}: {exc}") from None
    for key in ("connect_timeout", "command_timeout", "content_timeout", "max_reply_size"):
        if getattr(section, key) <= 0:
            raise ConfigError(f"milter.{key}", f"must be positive, got {getattr(section, key)}")


def _validate_networks(key: str, networks: tuple[str, ...]) -> None:
    for network in networks:
        try:
            ipaddress.ip_network(network, strict=False)
        except ValueError:
            raise ConfigError(key, f"not a network: {network!r}") from None


def _validate_greylisting(section: GreylistingSection) -> None:
    for key in ("delay", "retry_window", "lifetime", "prune_interval"):
        if getattr(section, key) <= 0:
            raise ConfigError(
                f"greylisting.{key}", f"must be positive, got {getattr(section, key)}"
            )
    if section.retry_window <= section.delay:
        raise ConfigError("greylisting.retry_window", "must be longer than greylisting.delay")
    for key, most in (("ipv4_prefix", 32), ("ipv6_prefix", 128)):
        if not 0 <= getattr(section, key) <= most:
            raise ConfigError(f"greylisting.{key}", f"must be 0–{most}")
    if section.auto_allow_clients < 0:
        raise ConfigError("greylisting.auto_allow_clients", "must be 0 (off) or more")
    _validate_networks("greylisting.allow_networks", section.allow_networks)
    for key in ("allow_sender_domains", "skip_recipient_domains"):
        for domain in getattr(section, key):
            try:
                domain_to_ascii(domain)
            except InvalidName:
                raise ConfigError(f"greylisting.{key}", f"not a domain: {domain!r}") from None


def _validate_received_reports(section: ReceivedReportSection) -> None:
    for key in ("max_size", "max_parts"):
        if getattr(section, key) <= 0:
            raise ConfigError(
                f"received_reports.{key}", f"must be positive, got {getattr(section, key)}"
            )
    if section.keep_days < 0:
        raise ConfigError("received_reports.keep_days", "must not be negative")
    for key in ("dmarc_local_part", "tls_local_part"):
        value = getattr(section, key)
        if value and not re.fullmatch(r"[A-Za-z0-9._+-]+", value):
            raise ConfigError(f"received_reports.{key}", f"not a plain local part: {value!r}")


def _validate_web(web: WebSection) -> None:
    if not 1 <= web.page_size <= web.max_page_size:
        raise ConfigError("web.page_size", "must be within 1..web.max_page_size")
    for key in ("max_upload_bytes", "max_form_bytes"):
        if getattr(web, key) < 1024:
            raise ConfigError(f"web.{key}", "must be at least 1024 bytes")
    if web.login_hold_bytes < web.max_form_bytes:
        # A message the login's form carried must fit.
        raise ConfigError("web.login_hold_bytes", "must be at least web.max_form_bytes")
    for key in (
        "max_attachments",
        "max_recipients",
        "max_identities",
        "sse_per_account",
        "max_action_uids",
        "max_html_tags",
        "max_connections",
        "max_connections_per_ip",
    ):
        if getattr(web, key) < 1:
            raise ConfigError(f"web.{key}", "must be at least 1")
    for key in ("session_ttl", "sse_keepalive", "request_head_timeout", "request_body_timeout"):
        if getattr(web, key) <= 0:
            raise ConfigError(f"web.{key}", "must be positive")
    for key in ("hsts_max_age", "request_body_min_rate"):
        if getattr(web, key) < 0:
            raise ConfigError(f"web.{key}", "must be 0 or more")
    if web.session_warning < 0:
        raise ConfigError("web.session_warning", "must be 0 or more")


def _validate_contacts(section: ContactsSection) -> None:
    for key in ("max_per_account", "max_emails", "max_phones", "max_name", "max_note"):
        if getattr(section, key) < 1:
            raise ConfigError(f"contacts.{key}", "must be at least 1")
    if section.max_import_bytes < 1024:
        raise ConfigError("contacts.max_import_bytes", "must be at least 1024 bytes")
    _validate_history("contacts", section.sync_history_days)


def _validate_history(section: str, days: int) -> None:
    """A ``sync_history_days``: 0 (kept) to what date arithmetic handles."""
    if not 0 <= days <= MAX_RETENTION_DAYS:
        raise ConfigError(
            f"{section}.sync_history_days", f"must be 0–{MAX_RETENTION_DAYS}, got {days}"
        )


def _validate_calendars(section: CalendarsSection) -> None:
    for key in (
        "max_per_account",
        "max_objects",
        "max_instances",
        "max_description",
        "max_timezone_bytes",
        "agenda_days",
        "max_invitation_bytes",
    ):
        if getattr(section, key) < 1:
            raise ConfigError(f"calendars.{key}", "must be at least 1")
    for key in ("max_object_bytes", "max_import_bytes"):
        if getattr(section, key) < 1024:
            raise ConfigError(f"calendars.{key}", "must be at least 1024 bytes")
    _validate_history("calendars", section.sync_history_days)


# -- writing and documenting -----------------------------------------------------------------


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        escaped = value.replace("\\", "\\\\").replace('"', '\\"')
        return f'"{escaped}"'
    if isinstance(value, tuple):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, Mapping):
        return (
            "{" + ", ".join(f"{_toml_value(k)} = {_toml_value(v)}" for k, v in value.items()) + "}"
        )
    raise TypeError(f"cannot write {value!r} as TOML")  # pragma: no cover


def _section_docs(config: Config) -> list[tuple[str, str, Any]]:
    """(table name, doc, section object) for every table, listeners expanded."""
    tables: list[tuple[str, str, Any]] = []
    for f in dataclasses.fields(config):
        if f.name == "source":
            continue
        section = getattr(config, f.name)
        if isinstance(section, Listeners):
            for name, doc in LISTENER_DOCS.items():
                tables.append((f"listeners.{name}", doc, getattr(section, name)))
            continue
        tables.append((f.name, f.metadata["doc"], section))
        for sub in dataclasses.fields(section):
            value = getattr(section, sub.name)
            if dataclasses.is_dataclass(value):  # a table inside the table: [store.sqlite]
                tables.append((f"{f.name}.{sub.name}", sub.metadata["doc"], value))
    return tables


def _keys(section: Any) -> list[dataclasses.Field[Any]]:
    """A table's own keys: its fields that are not tables of their own."""
    return [
        f
        for f in dataclasses.fields(section)
        if not dataclasses.is_dataclass(getattr(section, f.name))
    ]


def render_toml(config: Config) -> str:
    """The config as a commented TOML file (what ``pillarbox init`` writes)."""
    lines = [
        "# Pillarbox configuration. Every key is optional; shown values are what this file sets.",
        "# Reference: docs/config.md. Override any key from the environment as",
        "# PILLARBOX__SECTION__KEY=value (e.g. PILLARBOX__LISTENERS__IMAP__PORT=1143).",
        "",
    ]
    for table, doc, section in _section_docs(config):
        lines.append(f"# {doc}")
        lines.append(f"[{table}]")
        for f in _keys(section):
            lines.append(f"# {f.metadata['doc']}")
            lines.append(f"{f.name} = {_toml_value(getattr(section, f.name))}")
        lines.append("")
    return "\n".join(lines)


def render_markdown() -> str:
    """The configuration reference (``docs/config.md``), generated from the fields' docs."""
    defaults = Config()
    out = [
        "# Configuration reference",
        "",
        "Generated from `src/pillarbox/config.py` by `pillarbox config-doc`; do not edit by hand.",
        "",
        "The file is TOML (`pillarbox.toml`, or `--config PATH`, or `$PILLARBOX_CONFIG`). Any key",
        "can be overridden from the environment as `PILLARBOX__SECTION__KEY=value`.",
        "",
    ]
    for table, doc, section in _section_docs(defaults):
        out += [f"## `[{table}]`", "", doc, "", "| key | default | meaning |", "|---|---|---|"]
        for f in _keys(section):
            value = _toml_value(getattr(section, f.name)).replace("|", "\\|")
            out.append(f"| `{f.name}` | `{value}` | {f.metadata['doc']} |")
        out.append("")
    return "\n".join(out)


def dev_config(data_dir: str, hostname: str = "localhost") -> Config:
    """A config for a laptop: loopback, unprivileged ports, plaintext login allowed on loopback."""
    ports = {
        "smtp": 2525,
        "submission": 2587,
        "submissions": 2465,
        "imap": 2143,
        "imaps": 2993,
        "pop3": 2110,
        "pop3s": 2995,
        # Already unprivileged: the standard port, as for http.
        "managesieve": 4190,
        "http": 8080,
        "https": 8443,
    }
    # The OPT_IN_LISTENERS keep their default: off.
    listeners = Listeners(**{name: Listener(port=port) for name, port in ports.items()})
    return Config(
        server=ServerSection(hostname=hostname, data_dir=data_dir),
        listeners=listeners,
        # Loopback only: mail apps on this machine may log in before STARTTLS.
        smtp=SmtpSection(auth_without_tls=True),
        imap=ImapSection(login_without_tls=True),
        pop3=Pop3Section(login_without_tls=True),
        managesieve=ManageSieveSection(login_without_tls=True),
    )


def production_config(data_dir: str, hostname: str) -> Config:
    """Standard ports on every address; needs root or CAP_NET_BIND_SERVICE. Webmail pages
    asked for over plain HTTP are redirected to HTTPS (on 443, with this server's certificate)."""
    defaults = Listeners()
    listeners = Listeners(
        **{
            name: Listener(port=getattr(defaults, name).port, address="::")
            for name in LISTENER_DOCS
            if name not in OPT_IN_LISTENERS
        }
    )
    return Config(
        server=ServerSection(hostname=hostname, data_dir=data_dir),
        listeners=listeners,
        web=WebSection(redirect_http=True),
    )
