"""An account's identities ("send as") as every part of the server reads them: those stored,
and the account's own address.

The webmail manages them (:mod:`pillarbox.web.identities`: what an identity may be, its
signature, which one a reply uses); the calendars read their addresses to tell the events the
account organizes or attends (:mod:`pillarbox.calendars`), including an .ics import run by
``pillarbox import ics``, which loads no web code.

Implementation notes:

- **The account's own address is always an identity** (id 0, its display name, no signature)
  unless one is stored for it: the address every client may send as cannot be removed by
  mistake. A stored default wins; otherwise the account's address is the default.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace

from pillarbox.services import Services
from pillarbox.store.types import Account, Identity


def account_identity(account: Account) -> Identity:
    """The account's own address as an identity (id 0): there even when none is stored."""
    return Identity(address=account.address, display_name=account.display_name)


def with_account(account: Account, stored: Iterable[Identity]) -> list[Identity]:
    """The identities to choose from: the stored ones, the default first, and the account's
    own address unless one of them is it; exactly one is the default."""
    identities = list(stored)
    if not any(i.address.lower() == account.address.lower() for i in identities):
        identities.append(account_identity(account))
    if not any(i.is_default for i in identities):
        own = next(i for i in identities if i.address.lower() == account.address.lower())
        identities = [replace(i, is_default=i is own) for i in identities]
    return sorted(identities, key=lambda i: not i.is_default)


async def identities_of(services: Services, account: Account) -> list[Identity]:
    return with_account(account, await services.store.list_identities(account.id))
