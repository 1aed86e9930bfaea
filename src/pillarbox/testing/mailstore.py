"""What an account holds, read straight from a site's store: the tests of import, export and
backup compare it with what went in."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import datetime
from pathlib import Path
from typing import TypeVar

from pillarbox import config as cfg
from pillarbox.store.interface import Store
from pillarbox.store.open import open_store

T = TypeVar("T")

#: One stored message: its bytes, flags and internal date.
Stored = tuple[bytes, frozenset[str], datetime]


def with_site_store(site: Path, action: Callable[[Store], Awaitable[T]]) -> T:
    """``action`` on the store of ``site/pillarbox.toml``, opened for it and closed after."""
    config = cfg.load(site / "pillarbox.toml")

    async def go() -> T:
        store = open_store(config.store.url, config.data_dir, config.store)
        await store.open()
        try:
            return await action(store)
        finally:
            await store.close()

    return asyncio.run(go())


def account_contents(site: Path, address: str) -> dict[str, list[Stored]]:
    """Every mailbox of ``address`` in the store of ``site/pillarbox.toml`` (empty ones too),
    its messages in UID order."""

    async def read(store: Store) -> dict[str, list[Stored]]:
        account = await store.get_account(address)
        assert account is not None, address
        return {
            box.name: [
                (await store.read_blob(r.blob_id), r.flags, r.internal_date)
                for r in await store.list_messages(box.id)
            ]
            for box in await store.list_mailboxes(account.id)
        }

    return with_site_store(site, read)
