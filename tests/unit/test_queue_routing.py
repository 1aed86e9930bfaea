"""Recipient resolution on a real SQLite store: accounts, aliases (also remote and looping),
plus-addressing, catch-all, unknown and remote addresses."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from pillarbox.mail.address import parse_address
from pillarbox.queue.routing import Router
from pillarbox.store.interface import Store
from pillarbox.store.open import open_store


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    s = open_store("sqlite:routing.sqlite3", tmp_path)
    await s.open()
    await s.add_domain("example.org")
    for user in ("alice", "bob"):
        await s.add_account(f"{user}@example.org", "!")
    yield s
    await s.close()


async def resolve(store: Store, address: str) -> tuple[set[str], set[str], set[str | None]]:
    resolution = await Router(store).resolve(parse_address(address))
    return (
        {r.account.address for r in resolution.local},
        set(resolution.remote),
        {r.tag for r in resolution.local},
    )


async def test_account_and_remote(store: Store) -> None:
    assert await resolve(store, "Alice@Example.ORG") == ({"alice@example.org"}, set(), {None})
    assert await resolve(store, "x@elsewhere.example") == (set(), {"x@elsewhere.example"}, set())


async def test_unknown_local_part_resolves_to_nothing(store: Store) -> None:
    resolution = await Router(store).resolve(parse_address("nobody@example.org"))
    assert resolution.hosted and resolution.unknown


async def test_plus_address_keeps_the_tag(store: Store) -> None:
    assert await resolve(store, "bob+lists@example.org") == ({"bob@example.org"}, set(), {"lists"})


async def test_alias_to_local_and_remote_targets(store: Store) -> None:
    await store.add_alias("team@example.org", ["alice@example.org", "carol@elsewhere.example"])
    await store.add_alias("all@example.org", ["team@example.org", "bob@example.org"])
    local, remote, _ = await resolve(store, "all@example.org")
    assert local == {"alice@example.org", "bob@example.org"}
    assert remote == {"carol@elsewhere.example"}


async def test_alias_loop_ends(store: Store) -> None:
    await store.add_alias("a@example.org", ["b@example.org", "alice@example.org"])
    await store.add_alias("b@example.org", ["a@example.org"])
    assert await resolve(store, "a@example.org") == ({"alice@example.org"}, set(), {None})


async def test_catch_all_only_for_unknown_addresses(store: Store) -> None:
    await store.add_alias("@example.org", ["bob@example.org"])
    assert (await resolve(store, "anything@example.org"))[0] == {"bob@example.org"}
    assert (await resolve(store, "alice@example.org"))[0] == {"alice@example.org"}


async def test_only_aliases_resolving_to_the_account_alone_are_owned(store: Store) -> None:
    await store.add_alias("sales@example.org", ["alice@example.org"])
    await store.add_alias("shared@example.org", ["alice@example.org", "bob@example.org"])
    alice = await store.get_account("alice@example.org")
    assert alice is not None
    assert await Router(store).owned_addresses(alice) == {
        "alice@example.org",
        "sales@example.org",
    }


async def test_postmaster_without_an_alias_reaches_the_admins(store: Store) -> None:
    """RFC 5321 §4.5.1: every hosted domain accepts its postmaster from the start, as the
    domain's admins (else the server's); an alias or a catch-all names someone else."""
    assert (await Router(store).resolve(parse_address("postmaster@example.org"))).unknown
    await store.add_domain("other.example")
    await store.add_account("root@other.example", "!", is_admin=True)
    assert (await resolve(store, "PostMaster@example.org"))[0] == {"root@other.example"}
    await store.add_account("carol@example.org", "!", is_admin=True)
    assert (await resolve(store, "postmaster@example.org"))[0] == {"carol@example.org"}
    await store.add_alias("@example.org", ["bob@example.org"])
    assert (await resolve(store, "postmaster@example.org"))[0] == {"bob@example.org"}
    await store.add_alias("postmaster@example.org", ["alice@example.org"])
    assert (await resolve(store, "postmaster@example.org"))[0] == {"alice@example.org"}


async def test_hostmaster_the_soa_names_reaches_the_admins_too(store: Store) -> None:
    """The SOA record of our zones names hostmaster@ the domain (RFC 2142 §7): mail to it is
    taken from the start, as postmaster's; another role name stays unknown."""
    await store.add_account("carol@example.org", "!", is_admin=True)
    assert (await resolve(store, "Hostmaster@example.org"))[0] == {"carol@example.org"}
    assert (await Router(store).resolve(parse_address("webmaster@example.org"))).unknown
    await store.add_alias("hostmaster@example.org", ["alice@example.org"])
    assert (await resolve(store, "hostmaster@example.org"))[0] == {"alice@example.org"}
