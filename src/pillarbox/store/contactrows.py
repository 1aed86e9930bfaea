"""Backend-neutral pieces of the ``contacts`` table: the case-folded text a search or a
recipient completion matches, kept beside each row so that both backends match (and sort)
alike — SQLite's ``lower()`` folds ASCII only, PostgreSQL's follows its locale."""

from __future__ import annotations

from pillarbox.store.types import Contact


def search_text(contact: Contact) -> str:
    """The label first (the list's order), then the name, addresses and organisation, one a
    line, case-folded."""
    parts = (contact.label, contact.display_name, *contact.emails, contact.organization)
    return "\n".join(part.casefold() for part in parts)


def search_key(text: str) -> str:
    """What a search for ``text`` looks for in :func:`search_text`."""
    return text.strip().casefold()
