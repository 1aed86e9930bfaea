"""What an operator can tune about the POP3 service: :class:`Pop3Settings` and its
:class:`Pop3Limits`. Both are frozen and validated on construction, raising ``ConfigError`` with
the dotted key (``pop3.…``) the configuration loader reports.

Per-connection facts (is TLS active, may STLS be offered, is this a loopback client allowed to
send a plaintext password) are not settings: they are arguments of
:class:`pillarbox.pop3.server.Pop3Server`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Literal

from pillarbox.errors import ConfigError

# RFC 4422 §3.1: sasl-mech = 1*20mech-char, mech-char = UPPER-ALPHA / DIGIT / HYPHEN / UNDERSCORE.
_SASL_MECHANISM = re.compile(r"[A-Z0-9_-]{1,20}")
_TOKEN = re.compile(r"[\x21-\x7e]+")
_TEXT = re.compile(r"[\x21-\x7e](?:[\x20-\x7e]*[\x21-\x7e])?")


@dataclass(frozen=True, slots=True, kw_only=True)
class Pop3Limits:
    """Every limit the core enforces; each is answered with the protocol's error, never a hang."""

    #: Longest command line, CRLF included. RFC 2449 §4 requires at least 255 octets; 512 leaves
    #: room for clients that overrun it with long user names or AUTH PLAIN initial responses.
    max_command_line: int = 512
    #: Longest SASL client response line. RFC 5034 §4: these "may be of arbitrary length"
    #: depending on the mechanism; SCRAM-SHA-256 responses are well under 1 KiB.
    max_sasl_line: int = 8192
    #: Input the core holds while the application answers an earlier command. A client that
    #: pipelines more than this (RFC 2449 §6.6: "MUST not exceed the window size") is cut off.
    max_buffered_input: int = 256 * 1024
    #: Negative replies to bad commands before the connection is closed.
    max_errors: int = 20
    #: Failed logins (replies with ``[AUTH]``) on one connection before it is closed.
    max_auth_failures: int = 3
    #: Seconds a failed login's ``-ERR`` is held back, to slow down password guessing.
    auth_failure_delay: float = 2.0
    #: Seconds without input or output before the connection is dropped (no UPDATE).
    #: RFC 1939 §3: an autologout timer "MUST be of at least 10 minutes' duration".
    idle_timeout: float = 600.0
    #: Seconds from connecting within which the client must log in, busy or not; then
    #: ``-ERR`` and close. §3's 10 minutes protect a logged-in user's session; one that never
    #: logs in only holds a connection slot (Dovecot's pop3-login gives it 3 minutes).
    login_timeout: float = 180.0

    def __post_init__(self) -> None:
        if self.max_command_line < 255:
            raise ConfigError("pop3.limits.max_command_line", "must be at least 255 (RFC 2449 §4)")
        if self.max_sasl_line < self.max_command_line:
            raise ConfigError("pop3.limits.max_sasl_line", "must be at least max_command_line")
        if self.max_buffered_input < self.max_sasl_line:
            raise ConfigError("pop3.limits.max_buffered_input", "must be at least max_sasl_line")
        if self.max_errors < 1:
            raise ConfigError("pop3.limits.max_errors", "must be at least 1")
        if self.max_auth_failures < 1:
            raise ConfigError("pop3.limits.max_auth_failures", "must be at least 1")
        if self.auth_failure_delay < 0:
            raise ConfigError("pop3.limits.auth_failure_delay", "must not be negative")
        if self.idle_timeout < 600:
            raise ConfigError("pop3.limits.idle_timeout", "must be at least 600 (RFC 1939 §3)")
        if not 0 < self.login_timeout <= self.idle_timeout:
            raise ConfigError("pop3.limits.login_timeout", "must be positive, at most idle_timeout")


@dataclass(frozen=True, slots=True, kw_only=True)
class Pop3Settings:
    #: Name in the greeting and sign-off lines.
    hostname: str
    #: Argument of the IMPLEMENTATION capability (RFC 2449 §6.9); None leaves it out.
    implementation: str | None = "Pillarbox"
    #: SASL mechanisms offered by AUTH (RFC 5034), implemented in ``pillarbox.auth.sasl``.
    #: PLAIN is only offered under TLS or on connections allowed plaintext authentication.
    sasl_mechanisms: tuple[str, ...] = ("PLAIN", "SCRAM-SHA-256")
    #: Accept APOP (RFC 1939 §7). Off by default and unadvertised: the digest is MD5 over the
    #: greeting's timestamp and the *plaintext* shared secret, and Pillarbox stores only argon2id
    #: hashes and SCRAM verifiers, so only an application keeping per-user APOP secrets can use it.
    apop: bool = False
    #: EXPIRE capability (RFC 2449 §6.7): minimum retention in days, "NEVER", or None to omit.
    expire: int | Literal["NEVER"] | None = None
    #: LOGIN-DELAY capability (RFC 2449 §6.5) in seconds; None to omit. The application enforces
    #: it, answering a login with :data:`pillarbox.pop3.responses.LOGIN_DELAY`.
    login_delay: int | None = None
    limits: Pop3Limits = field(default_factory=Pop3Limits)

    def __post_init__(self) -> None:
        if not _TOKEN.fullmatch(self.hostname):
            raise ConfigError("pop3.hostname", "must be printable ASCII without spaces")
        if self.implementation is not None and not _TEXT.fullmatch(self.implementation):
            raise ConfigError("pop3.implementation", "must be printable ASCII")
        for mechanism in self.sasl_mechanisms:
            if not _SASL_MECHANISM.fullmatch(mechanism):
                raise ConfigError(
                    "pop3.sasl_mechanisms", f"{mechanism!r} is not an upper-case SASL name"
                )
        expire_valid = self.expire is None or self.expire == "NEVER"
        if not expire_valid and not (type(self.expire) is int and self.expire >= 0):
            raise ConfigError("pop3.expire", "must be a number of days or NEVER")
        if self.login_delay is not None and self.login_delay < 0:
            raise ConfigError("pop3.login_delay", "must not be negative")
