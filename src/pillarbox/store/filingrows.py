"""The columns of ``queue_recipients`` that keep a queued local recipient's
:class:`~pillarbox.store.types.Filing`, as both backends write and read them: no decision is
a NULL ``filed_mailbox`` (``filed_spam`` false, ``filed_fields`` NULL)."""

from __future__ import annotations

from pillarbox.store.types import Filing

COLUMNS = "filed_mailbox, filed_spam, filed_fields"


def filing_row(filing: Filing | None) -> tuple[str | None, bool, bytes | None]:
    """``filing``'s values in :data:`COLUMNS` order."""
    if filing is None:
        return None, False, None
    return filing.mailbox, filing.spam, filing.fields


def filing_of(mailbox: object, spam: object, fields: object) -> Filing | None:
    """The filing read back from :data:`COLUMNS`."""
    if mailbox is None:
        return None
    raw = bytes(fields) if isinstance(fields, bytes | bytearray | memoryview) else b""
    return Filing(str(mailbox), bool(spam), raw)
