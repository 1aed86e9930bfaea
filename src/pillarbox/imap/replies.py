"""Every status reply the IMAP session sends, as a named constant (STYLE §5).

Handlers return one of these; the session tags it (``REPLY.tagged(tag)``) or adds a dynamic
response code (``OK_APPEND.with_code(appenduid(...))``). Response codes are RFC 9051 §7.1 and
RFC 5530 names; the condition (OK/NO/BAD) follows RFC 9051 §7.1: BAD for a protocol error of
the client (syntax, wrong state), NO for a well-formed request that cannot be honoured.
"""

from __future__ import annotations

from typing import Final

from pillarbox.imap.responses import (
    ALREADYEXISTS,
    AUTHENTICATIONFAILED,
    CANNOT,
    CLOSED,
    COMPRESSIONACTIVE,
    EXPUNGEISSUED,
    HASCHILDREN,
    METADATA_TOOMANY,
    NONEXISTENT,
    NOPERM,
    OVERQUOTA,
    PRIVACYREQUIRED,
    READ_ONLY,
    READ_WRITE,
    SERVERBUG,
    TRYCREATE,
    UIDREQUIRED,
    UNAVAILABLE,
    UNKNOWN_CTE,
    USEATTR,
    Condition,
    Reply,
)

OK, NO, BAD, BYE = Condition.OK, Condition.NO, Condition.BAD, Condition.BYE

# -- any state ------------------------------------------------------------------------------
GREETING: Final = Reply(OK, "Pillarbox IMAP ready")
OK_CAPABILITY: Final = Reply(OK, "CAPABILITY completed")
OK_NOOP: Final = Reply(OK, "NOOP completed")
OK_LOGOUT: Final = Reply(OK, "LOGOUT completed")
BYE_LOGOUT: Final = Reply(BYE, "Logging out")
OK_ID: Final = Reply(OK, "ID completed")
BYE_AUTOLOGOUT: Final = Reply(BYE, "Autologout: idle for too long")  # RFC 9051 §5.4
BYE_LOGIN_TIMEOUT: Final = Reply(BYE, "No login in time, disconnecting")
BYE_TOO_MANY_ERRORS: Final = Reply(BYE, "Too many invalid commands")
BYE_SHUTDOWN: Final = Reply(BYE, "Server shutting down", UNAVAILABLE)
BYE_BUSY: Final = Reply(BYE, "Too many connections, try again later", UNAVAILABLE)
BYE_MAILBOX_GONE: Final = Reply(BYE, "The selected mailbox was deleted by another session")
BAD_WRONG_STATE: Final = Reply(BAD, "Command not valid in this state")
BAD_BAD_SEQUENCE: Final = Reply(BAD, "Message sequence number out of range")  # RFC 9051 §9
BAD_UID_REQUIRED: Final = Reply(BAD, "Message numbers are not used after UIDONLY", UIDREQUIRED)
NO_SERVER_FAULT: Final = Reply(NO, "Internal server error, try again", SERVERBUG)

# -- not authenticated (RFC 9051 §6.2) ------------------------------------------------------
OK_STARTTLS: Final = Reply(OK, "Begin TLS negotiation now")
BAD_TLS_ACTIVE: Final = Reply(BAD, "TLS is already active")
BAD_NO_TLS: Final = Reply(BAD, "STARTTLS is not available here")
NO_LOGIN_DISABLED: Final = Reply(NO, "Use STARTTLS or port 993 before LOGIN", PRIVACYREQUIRED)
OK_LOGGED_IN: Final = Reply(OK, "Logged in")
NO_AUTH_FAILED: Final = Reply(NO, "Authentication failed", AUTHENTICATIONFAILED)
NO_AUTH_THROTTLED: Final = Reply(NO, "Too many failed logins, try again later", UNAVAILABLE)
NO_BAD_CREDENTIALS_ENCODING: Final = Reply(NO, "Credentials must be UTF-8", AUTHENTICATIONFAILED)
NO_MECHANISM: Final = Reply(NO, "Unsupported authentication mechanism", CANNOT)
BAD_AUTH_CANCELLED: Final = Reply(BAD, "Authentication cancelled")  # RFC 9051 §6.2.2
BAD_SASL_RESPONSE: Final = Reply(BAD, "Invalid base64 in SASL response")

# -- authenticated (RFC 9051 §6.3) ----------------------------------------------------------
OK_ENABLE: Final = Reply(OK, "ENABLE completed")
OK_HIGHESTMODSEQ: Final = Reply(OK, "Highest")  # RFC 7162 §3.1.2.1, code added per mailbox
#: RFC 7162 §3.2, §6: MODSEQ items went out while a VANISHED with a lower one is withheld.
OK_HIGHESTMODSEQ_HELD_BACK: Final = Reply(OK, "Expunges held back; resynchronise from here")
OK_MAILBOXID: Final = Reply(OK, "Mailbox id")  # RFC 8474 §4.1, code added per mailbox
BAD_QRESYNC_NOT_ENABLED: Final = Reply(BAD, "QRESYNC must be enabled first")  # RFC 7162 §3.2.5
OK_GETQUOTA: Final = Reply(OK, "GETQUOTA completed")
OK_GETQUOTAROOT: Final = Reply(OK, "GETQUOTAROOT completed")
NO_NO_QUOTA_ROOT: Final = Reply(NO, "No such quota root", NONEXISTENT)  # RFC 9208 §4.2
NO_SETQUOTA: Final = Reply(NO, "Quotas are set by the administrator", NOPERM)
OK_GETMETADATA: Final = Reply(OK, "GETMETADATA completed")  # RFC 5464 §4.2
OK_SETMETADATA: Final = Reply(OK, "SETMETADATA completed")  # RFC 5464 §4.3
NO_METADATA_MAXSIZE: Final = Reply(NO, "Entry value too large")  # code added: the limit
NO_METADATA_TOOMANY: Final = Reply(NO, "Too many entries", METADATA_TOOMANY)
NO_METADATA_OVERQUOTA: Final = Reply(NO, "Entries exceed the account's limit", OVERQUOTA)
#: RFC 5464 §3.2.1.1 /shared/admin; RFC 6154 §4 /private/specialuse (set by CREATE (USE)).
NO_METADATA_READ_ONLY: Final = Reply(NO, "Entry is read-only", NOPERM)
#: RFC 4314 (ACL); NOPERM is RFC 5530 §3's "the access control system does not permit".
OK_SETACL: Final = Reply(OK, "SETACL completed")
OK_DELETEACL: Final = Reply(OK, "DELETEACL completed")
OK_GETACL: Final = Reply(OK, "GETACL completed")
OK_LISTRIGHTS: Final = Reply(OK, "LISTRIGHTS completed")
OK_MYRIGHTS: Final = Reply(OK, "MYRIGHTS completed")
NO_PERMISSION: Final = Reply(NO, "Permission denied", NOPERM)
BAD_RIGHTS: Final = Reply(BAD, "Unknown right in rights list")  # RFC 4314 §3.1: MUST be BAD
NO_OWNER_RIGHTS: Final = Reply(NO, "The owner always has every right", CANNOT)  # §2
NO_UNKNOWN_IDENTIFIER: Final = Reply(NO, "No such user on this server", CANNOT)
NO_OTHER_USERS_NAME: Final = Reply(NO, "Names below Other Users are other users'", CANNOT)
NO_SHARED_RENAME: Final = Reply(NO, "Mailboxes cannot be renamed across owners", CANNOT)
OK_COMPRESS: Final = Reply(OK, "DEFLATE active")  # RFC 4978 §3
NO_COMPRESSION_ACTIVE: Final = Reply(NO, "DEFLATE active via COMPRESS", COMPRESSIONACTIVE)
BAD_COMPRESS_MECHANISM: Final = Reply(BAD, "Only DEFLATE is supported")
#: Untagged OK lines of SELECT/EXAMINE (RFC 9051 §6.3.2); codes are added per mailbox.
OK_PERMANENTFLAGS: Final = Reply(OK, "Flags permitted")
OK_UIDVALIDITY: Final = Reply(OK, "UIDs valid")
OK_UIDNEXT: Final = Reply(OK, "Predicted next UID")
OK_UNSEEN: Final = Reply(OK, "First unseen message")  # RFC 3501 only (RFC 9051 App. E item 11)
OK_SELECT_RW: Final = Reply(OK, "SELECT completed", READ_WRITE)
OK_EXAMINE_RO: Final = Reply(OK, "EXAMINE completed", READ_ONLY)
CLOSED_PREVIOUS: Final = Reply(OK, "Previous mailbox closed", CLOSED)  # RFC 9051 §6.3.2
NO_NO_MAILBOX: Final = Reply(NO, "No such mailbox", NONEXISTENT)
NO_TRYCREATE: Final = Reply(NO, "Destination mailbox does not exist", TRYCREATE)
OK_CREATE: Final = Reply(OK, "CREATE completed")
NO_EXISTS: Final = Reply(NO, "Mailbox already exists", ALREADYEXISTS)
NO_BAD_NAME: Final = Reply(NO, "Invalid mailbox name", CANNOT)
NO_USEATTR: Final = Reply(NO, "Unsupported special-use attribute", USEATTR)  # RFC 6154 §3
OK_DELETE: Final = Reply(OK, "DELETE completed")
NO_DELETE_INBOX: Final = Reply(NO, "INBOX cannot be deleted", CANNOT)  # RFC 9051 §6.3.5
NO_HAS_CHILDREN: Final = Reply(NO, "Mailbox has inferior mailboxes", HASCHILDREN)
OK_RENAME: Final = Reply(OK, "RENAME completed")
OK_SUBSCRIBE: Final = Reply(OK, "SUBSCRIBE completed")
OK_UNSUBSCRIBE: Final = Reply(OK, "UNSUBSCRIBE completed")
OK_LIST: Final = Reply(OK, "LIST completed")
OK_LSUB: Final = Reply(OK, "LSUB completed")
OK_NAMESPACE: Final = Reply(OK, "NAMESPACE completed")
OK_STATUS: Final = Reply(OK, "STATUS completed")
OK_APPEND: Final = Reply(OK, "APPEND completed")
NO_OVERQUOTA: Final = Reply(NO, "Over quota", OVERQUOTA)
NO_EMPTY_MESSAGE: Final = Reply(NO, "Cannot store an empty message", CANNOT)
BAD_RECENT_FLAG: Final = Reply(BAD, "\\Recent cannot be set by a client")  # RFC 9051 §2.3.2
OK_IDLE_DONE: Final = Reply(OK, "IDLE terminated")
BAD_IDLE_DONE: Final = Reply(BAD, "Expected DONE to end IDLE")  # RFC 9051 §6.3.13

# -- selected (RFC 9051 §6.4) ---------------------------------------------------------------
OK_CHECK: Final = Reply(OK, "CHECK completed")
OK_CLOSE: Final = Reply(OK, "CLOSE completed")
OK_UNSELECT: Final = Reply(OK, "UNSELECT completed")
OK_EXPUNGE: Final = Reply(OK, "EXPUNGE completed")
NO_READ_ONLY: Final = Reply(NO, "Mailbox is read-only", READ_ONLY)
OK_SEARCH: Final = Reply(OK, "SEARCH completed")
OK_FETCH: Final = Reply(OK, "FETCH completed")
NO_FETCH_EXPUNGED: Final = Reply(
    NO, "Some messages were expunged by another session", EXPUNGEISSUED
)
NO_UNKNOWN_CTE: Final = Reply(NO, "Unknown Content-Transfer-Encoding", UNKNOWN_CTE)
OK_STORE: Final = Reply(OK, "STORE completed")
OK_STORE_MODIFIED: Final = Reply(OK, "Conditional STORE failed")  # RFC 7162 §3.1.3, + MODIFIED
OK_SORT: Final = Reply(OK, "SORT completed")
OK_THREAD: Final = Reply(OK, "THREAD completed")
BAD_THREAD_ALGORITHM: Final = Reply(BAD, "Unknown threading algorithm")
OK_COPY: Final = Reply(OK, "COPY completed")
OK_MOVE: Final = Reply(OK, "MOVE completed")
OK_REPLACE: Final = Reply(OK, "REPLACE completed")  # RFC 8508 §3.2
OK_REPLACE_READY: Final = Reply(OK, "Replacement message ready")  # RFC 8508 §4.3: APPENDUID
NO_REPLACE_NO_MESSAGE: Final = Reply(NO, "No such message to replace", NONEXISTENT)
NO_REPLACE_EXPUNGED: Final = Reply(NO, "The message to replace was expunged", EXPUNGEISSUED)
OK_MOVE_UIDS: Final = Reply(OK, "Moved")  # the untagged COPYUID carrier (RFC 6851 §4.3)
