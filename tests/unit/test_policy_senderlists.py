"""An account's allow and block lists (``policy.senderlists``): what a user may list, what an
entry covers, when an allow entry stands, and the operations the web, the API and the CLI
share (on SQLite; the store's own methods are in the contract suite)."""

from __future__ import annotations

import pytest
import test_policy_learning

from pillarbox.errors import NotFound, UserError
from pillarbox.policy import senderlists
from pillarbox.policy.reputation import SenderFacts
from pillarbox.store.sqlite.store import SqliteStore
from pillarbox.store.types import SenderListEntry, SenderListKind

ALLOW, BLOCK = SenderListKind.ALLOW, SenderListKind.BLOCK
#: SQLite with the account bob@example.org.
store = test_policy_learning.store


@pytest.mark.parametrize(
    ("typed", "stored"),
    [
        ("Ann@Example.ORG", "ann@example.org"),
        ("  example.org ", "example.org"),
        ("@example.org", "example.org"),  # as some filters write a domain
        ("example.org.", "example.org"),
        ("bücher.example", "xn--bcher-kva.example"),
        ("ann@BÜCHER.example", "ann@xn--bcher-kva.example"),
        ("top", "top"),  # a whole suffix: may be blocked (below: never allowed)
    ],
)
def test_patterns_are_stored_lowercase_with_a_labels(typed: str, stored: str) -> None:
    assert senderlists.pattern_of(typed) == stored


@pytest.mark.parametrize(
    ("typed", "why"),
    [
        ("", "give an address or a domain"),
        ("@", "give an address or a domain"),
        ("x y", "not an address or a domain"),
        ("ann@", "not an address or a domain"),
        ("ann@[192.0.2.1]", "an address literal names no sender's domain"),
        ("a" * 250 + "@b.example", "at most 254 characters"),
        ("a..b@example.org", "not an address or a domain"),
    ],
)
def test_what_is_no_address_or_domain_is_refused(typed: str, why: str) -> None:
    with pytest.raises(UserError) as refused:
        senderlists.pattern_of(typed)
    assert why in str(refused.value)


@pytest.mark.parametrize(
    ("pattern", "address", "covered"),
    [
        ("ann@example.org", "ann@example.org", True),
        ("ann@example.org", "bob@example.org", False),
        ("ann@example.org", "ann@mail.example.org", False),
        ("example.org", "ann@example.org", True),
        ("example.org", "ann@mail.example.org", True),  # subdomains too
        ("example.org", "ann@badexample.org", False),  # not a suffix of a label
        ("example.org", "ann@example.org.evil.test", False),
        ("xn--bcher-kva.example", "ann@bücher.example", True),  # a U-label From (RFC 6532)
        ("ann@xn--bcher-kva.example", "ann@bücher.example", True),
        ("top", "x@anything.top", True),
    ],
)
def test_what_an_entry_covers(pattern: str, address: str, covered: bool) -> None:
    assert (senderlists.chosen([SenderListEntry(pattern, ALLOW)], address) is not None) is covered


def test_an_address_entry_decides_before_its_domains() -> None:
    entries = [
        SenderListEntry("ann@example.org", ALLOW),
        SenderListEntry("example.org", BLOCK),
    ]
    assert senderlists.chosen(entries, "ann@example.org") == entries[0]
    assert senderlists.chosen(list(reversed(entries)), "ann@example.org") == entries[0]
    assert senderlists.chosen(entries, "bob@example.org") == entries[1]
    assert senderlists.chosen(entries, "bob@other.test") is None
    assert senderlists.chosen(entries, "") is None  # no From: nothing to match


@pytest.mark.parametrize(
    ("facts", "stands"),
    [
        # Checked here, nothing vouched: anyone could have written that From.
        (SenderFacts("ann@example.org", client_ip="192.0.2.1"), False),
        # DMARC passed for the From domain.
        (SenderFacts("ann@example.org", from_verified=True, client_ip="192.0.2.1"), True),
        # SPF or DKIM passed for the From domain's organizational domain (relaxed alignment).
        (
            SenderFacts(
                "ann@mail.example.org", verified_domains=("example.org",), client_ip="192.0.2.1"
            ),
            True,
        ),
        # ... for another domain only: not the author's.
        (
            SenderFacts("ann@example.org", verified_domains=("bulk.test",), client_ip="192.0.2.1"),
            False,
        ),
        # Not checked here (a trusted relay, a file): the entry stands.
        (SenderFacts("ann@example.org"), True),
    ],
)
def test_an_allow_entry_stands_for_a_from_its_domain_vouched_for(
    facts: SenderFacts, stands: bool
) -> None:
    assert senderlists.vouched(facts) is stands


async def test_put_changes_the_kind_and_remove_takes_the_typed_form(store: SqliteStore) -> None:
    bob = await store.get_account("bob@example.org")
    assert bob is not None
    entry = await senderlists.put(store, bob.id, "Ann@Example.org", ALLOW, limit=10)
    assert entry == SenderListEntry("ann@example.org", ALLOW)
    await senderlists.put(store, bob.id, "ann@example.org", BLOCK, limit=10)
    await senderlists.put(store, bob.id, "top", BLOCK, limit=10)
    assert await store.list_sender_entries(bob.id) == [
        SenderListEntry("ann@example.org", BLOCK),
        SenderListEntry("top", BLOCK),
    ]
    assert await senderlists.remove(store, bob.id, " ANN@example.org") == "ann@example.org"
    with pytest.raises(NotFound) as gone:
        await senderlists.remove(store, bob.id, "ann@example.org")
    assert "ann@example.org is on neither list" in str(gone.value)


async def test_a_public_suffix_may_be_blocked_never_allowed(store: SqliteStore) -> None:
    bob = await store.get_account("bob@example.org")
    assert bob is not None
    for suffix in ("top", "co.uk", "ann@co.uk"):
        with pytest.raises(UserError) as refused:
            await senderlists.put(store, bob.id, suffix, ALLOW, limit=10)
        assert "is a public suffix" in str(refused.value)
    assert await store.list_sender_entries(bob.id) == []


async def test_the_limit_counts_both_lists_and_allows_a_change_at_it(store: SqliteStore) -> None:
    bob = await store.get_account("bob@example.org")
    assert bob is not None
    await senderlists.put(store, bob.id, "a.test", ALLOW, limit=2)
    await senderlists.put(store, bob.id, "b.test", BLOCK, limit=2)
    with pytest.raises(UserError) as full:
        await senderlists.put(store, bob.id, "c.test", BLOCK, limit=2)
    assert "at most 2 entries (policy.max_sender_entries)" in str(full.value)
    # Changing an entry already there adds none.
    await senderlists.put(store, bob.id, "a.test", BLOCK, limit=2)
    assert [e.kind for e in await store.list_sender_entries(bob.id)] == [BLOCK, BLOCK]
