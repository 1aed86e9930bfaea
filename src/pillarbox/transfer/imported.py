"""What an import of a calendar (.ics) or an address book (.vcf) file did: one summary for
both, as the Calendar and Contacts pages, the JSON API and ``pillarbox import ics|vcard`` all
report it the same way."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Imported:
    """Entries stored (added, or replacing the one of their UID), entries already stored as
    the file has them (left alone: no new ETag for a client to fetch), and entries skipped,
    with why."""

    stored: int
    unchanged: int
    skipped: int
    reasons: tuple[str, ...]

    def counts(self) -> dict[str, int]:
        """The three counts under the names the pages' redirects and the API answer with."""
        return {"imported": self.stored, "unchanged": self.unchanged, "skipped": self.skipped}

    def as_json(self) -> dict[str, object]:
        return {**self.counts(), "reasons": list(self.reasons)}

    def lines(self) -> list[str]:
        return [
            f"imported {self.stored}, unchanged {self.unchanged}, skipped {self.skipped}",
            *(f"skipped: {reason}" for reason in self.reasons),
        ]
