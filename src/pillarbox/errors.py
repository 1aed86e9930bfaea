"""The error tree shared by every part of Pillarbox.

Two families never mix: :class:`UserError` is a mistake by whoever drives us (an operator's bad
argument, a client's bad command) and is logged at INFO; :class:`ServerFault` is our own failure
(storage broken, invariant violated) and is logged at ERROR. Protocol cores define their own
subclasses carrying the wire reply; low-level ``OSError``/``ssl`` errors are mapped once, in
``pillarbox.net``.
"""

from __future__ import annotations


class PillarboxError(Exception):
    """Root of every error Pillarbox raises on purpose."""


class UserError(PillarboxError):
    """The caller asked for something that cannot be done; nothing is broken."""


class ConfigError(UserError):
    """The configuration is invalid; ``key`` is the dotted path of the offending field."""

    def __init__(self, key: str, problem: str) -> None:
        super().__init__(f"{key}: {problem}" if key else problem)
        self.key = key
        self.problem = problem


class NotFound(UserError):
    """A named thing (domain, account, mailbox, message) does not exist."""


class PermissionDenied(UserError):
    """The caller may see the thing but its rights do not allow this (an ACL, RFC 4314)."""


class AlreadyExists(UserError):
    """A thing to be created exists already."""


class PreconditionFailed(UserError):
    """A conditional write found the thing changed since the writer read it (RFC 9110
    §13.1.1 If-Match, §13.1.2 If-None-Match): written meanwhile by another, so nothing was
    written over it."""


class InvalidName(UserError):
    """A name (address, domain, mailbox) is not valid where it was given."""


class QuotaExceeded(UserError):
    """Storing this would take an account over its quota."""


class TooManyEntries(UserError):
    """New entries would pass the number allowed: METADATA entries for a mailbox or the
    server, contacts for an account."""


class AuthenticationFailed(UserError):
    """Credentials were wrong, or the account may not log in."""


class RateLimited(UserError):
    """Too many attempts; ``retry_after`` is seconds until the next one may succeed."""

    def __init__(self, message: str, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class StoreInUse(UserError):
    """A running server forbids this on its store: a second server on one SQLite data
    directory, or a migration under running servers (docs/upgrading.md)."""


class BrokenOff(PillarboxError):
    """A file streamed out cannot be finished: what it is made of went away meanwhile (a
    calendar deleted during its export). Its first bytes are out already, so no error can
    take its place, and it must not end as if whole. A web download's status was sent with
    them: the web app ends the request there (:class:`pillarbox.web.app.Guard`) and the
    connection is closed without the body's last chunk — incomplete by RFC 9112 §8, which
    every HTTP client reports, rather than keep a file that looks whole and is not;
    ``pillarbox export --ics`` writes no file. Not a ``UserError``: the web app's error pages
    are for responses not yet started."""


class ServerFault(PillarboxError):
    """Pillarbox itself failed; the operation may be retried later."""


class StorageError(ServerFault):
    """The store could not complete an operation."""


class SchemaTooNew(StorageError):
    """The database was upgraded by a later Pillarbox: this one refuses it rather than guess at
    tables it does not know (going back needs the backup taken before the upgrade)."""

    def __init__(self, found: int, known: int) -> None:
        super().__init__(
            f"database schema version {found} is newer than this Pillarbox ({known}): a later "
            "version upgraded it; run that version, or restore the backup taken before the "
            "upgrade (docs/upgrading.md)"
        )
        self.found = found
        self.known = known
