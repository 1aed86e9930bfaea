"""What an account holds, read straight from a site's store: the tests of import, export and
backup compare it with what went in."""

from __future__ import annotations

import asyncio
from datetime import datetime
from pathlib import Path

from pillarbox import config as cfg
from pillarbox.store.interface import Store
from pillarbox.store.open import open_store

#: One stored message: its bytes, flags and internal date.
Stored = tuple[bytes, frozenset[str], datetime]


def account_contents(site: Path, address: str) -> dict[str, list[Stored]]:
    """Every mailbox of ``address`` in the store of ``site/pillarbox.toml`` (empty ones too),
    its messages in UID order."""
    config = cfg.load(site / "pillarbox.toml")

    async def read() -> dict[str, list[Stored]]:
        store: Store = open_store(config.store.url, config.data_dir, config.store)
        await store.open()
        try:
            account = await store.get_account(address)
            assert account is not None, address
            return {
                box.name: [
                    (await store.read_blob(r.blob_id), r.flags, r.internal_date)
                    for r in await store.list_messages(box.id)
                ]
                for box in await store.list_mailboxes(account.id)
            }
        finally:
            await store.close()

    return asyncio.run(read())
