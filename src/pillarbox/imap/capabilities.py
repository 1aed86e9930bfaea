"""What the server advertises in CAPABILITY (RFC 9051 §6.1.1, §7.2.2): exactly what works.

IMAP4rev2 folds in many IMAP4rev1 extensions (RFC 9051 Appendix E item 2); they are listed by
name as well so that IMAP4rev1-only clients find them. Each name below is implemented by
:mod:`pillarbox.imap.session` (COMPRESS=DEFLATE with the adapter's help, NOTIFY with
:mod:`pillarbox.imap.notify`). CONTEXT=SEARCH and CONTEXT=SORT (RFC 5267 §4) are not offered:
they require live result updates (UPDATE, CANCELUPDATE); PARTIAL is RFC 9394's, which needs
neither.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final

#: Always advertised (before and after authentication).
BASE: Final = (
    "IMAP4rev1",  # RFC 3501
    "IMAP4rev2",  # RFC 9051
    "LITERAL+",  # RFC 7888
    "SASL-IR",  # RFC 4959
    "ENABLE",  # RFC 5161
    "IDLE",  # RFC 2177
    "NAMESPACE",  # RFC 2342
    "ID",  # RFC 2971
    "UNSELECT",  # RFC 3691
    "UIDPLUS",  # RFC 4315
    "ESEARCH",  # RFC 4731
    "SEARCHRES",  # RFC 5182
    "LIST-EXTENDED",  # RFC 5258
    "LIST-STATUS",  # RFC 5819
    "SPECIAL-USE",  # RFC 6154
    "CREATE-SPECIAL-USE",  # RFC 6154 §3
    "CHILDREN",  # RFC 3348
    "MOVE",  # RFC 6851
    "BINARY",  # RFC 3516
    "MULTIAPPEND",  # RFC 3502
    "REPLACE",  # RFC 8508
    "UTF8=ACCEPT",  # RFC 9755 (was RFC 6855)
    "STATUS=SIZE",  # RFC 8438
    "WITHIN",  # RFC 5032
    "SAVEDATE",  # RFC 8514
    "PREVIEW",  # RFC 8970
    "CONDSTORE",  # RFC 7162 §3.1
    "QRESYNC",  # RFC 7162 §3.2
    "UIDONLY",  # RFC 9586
    "SORT",  # RFC 5256
    "SORT=DISPLAY",  # RFC 5957
    "ESORT",  # RFC 5267 §3
    "PARTIAL",  # RFC 9394: SEARCH, SORT and FETCH
    "THREAD=ORDEREDSUBJECT",  # RFC 5256 §3
    "THREAD=REFERENCES",  # RFC 5256 §3
    "QUOTA",  # RFC 9208
    "QUOTA=RES-STORAGE",  # RFC 9208 §5.1
    "QUOTA=RES-MESSAGE",  # RFC 9208 §5.2
    "OBJECTID",  # RFC 8474
    "NOTIFY",  # RFC 5465
    "METADATA",  # RFC 5464 §1: mailbox and server entries
    "METADATA-SERVER",  # RFC 5464 §1: server entries (implied by METADATA)
    "ACL",  # RFC 4314
    "RIGHTS=texk",  # RFC 4314 §2.1, §5.1.1
)

#: ENABLE arguments that take effect (RFC 5161 §3.1); both switch mailbox names and quoted
#: strings to UTF-8, and IMAP4rev2 switches the other behaviours of RFC 9051 Appendix E.
ENABLEABLE: Final = frozenset({"IMAP4REV2", "UTF8=ACCEPT", "CONDSTORE", "QRESYNC", "UIDONLY"})


def capabilities(
    *,
    authenticated: bool,
    tls_active: bool,
    starttls_available: bool,
    login_allowed: bool,
    mechanisms: Iterable[str],
    append_limit: int,
    compress: bool = True,
) -> tuple[str, ...]:
    """The CAPABILITY list for a connection in its current state.

    Before authentication: STARTTLS while it can still be used (RFC 9051 §6.2.1), LOGINDISABLED
    while plaintext login is refused (RFC 9051 §6.2.3), and the SASL mechanisms this connection
    offers (RFC 9051 §6.2.2). After it, none of those: RFC 9051 §7.2.2 lets the list change with
    the state, and clients re-read it (the OK after login carries it as a response code).
    COMPRESS=DEFLATE only after authentication (as Dovecot: compressing before it buys
    nothing), and only while ``compress`` (not yet active, RFC 4978 §3).
    """
    names = [*BASE, f"APPENDLIMIT={append_limit}"]  # RFC 7889 §3
    if not authenticated:
        if starttls_available and not tls_active:
            names.append("STARTTLS")
        if not login_allowed:
            names.append("LOGINDISABLED")
        names.extend(f"AUTH={name}" for name in mechanisms)
    elif compress:
        names.append("COMPRESS=DEFLATE")  # RFC 4978
    return tuple(names)
