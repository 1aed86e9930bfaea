"""The cluster's ACME account (RFC 8555 §7.3): found or made in the store, registered with the
CA, replaced once the CA no longer takes it.

Implementation notes:

- **One account per cluster**, per CA directory, in the store (``acme_accounts``, any backend):
  its key is made by the first attempt and stored if no node stored one first, then read back,
  so that two nodes at once both use the one that was stored. The account is registered with
  it (RFC 8555 §7.3; a key the CA knows already has it name the account's URL, §7.3.1) and its
  URL stored, after which attempts go straight to ordering (a CA answering that URL with
  accountDoesNotExist, §6.7, gets the key registered again).
- **A deactivated account is replaced** (§7.3.6: deactivated by us or by the CA, or revoked,
  it is refused for good, ``unauthorized``): on an ``unauthorized`` answer to any request of an
  attempt under it (the order, a challenge's response, a poll, the finalization; or to its
  registration) the account is looked at (:func:`gone_status`), and only when it is
  deactivated or revoked a new key takes the old one's place in the store, by a
  compare-and-swap on the old key, and is registered; of two nodes at once one key is stored
  and both register it, which makes one account. Any other ``unauthorized`` (a name, a CAA
  record) fails the attempt as before. Another directory (another CA, or staging) is another
  account.
- **From an earlier version**: a node has ``account.key`` in its data directory: its first
  attempt takes that key into the store when the store holds none for the directory yet (the
  CA's account goes on), and renames the file ``account.key.old``, whichever key the store
  kept.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from dataclasses import dataclass, replace

import requests
from acme import client, messages
from acme import errors as acme_errors
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from josepy.jwk import JWKEC

from pillarbox.blocking import run_blocking
from pillarbox.config import TlsSection
from pillarbox.errors import StorageError
from pillarbox.net.acmeclient import AcmeError, ca_client
from pillarbox.net.acmefiles import AcmeFiles
from pillarbox.net.acmekeys import file_key, new_key_pem
from pillarbox.observability.log import Log
from pillarbox.store.interface import Store
from pillarbox.store.types import AcmeAccount


def account_jwk(account: AcmeAccount) -> JWKEC:
    """The account's key as the ACME client signs with it."""
    try:
        key = serialization.load_pem_private_key(account.key_pem, password=None)
    except ValueError as exc:
        raise AcmeError(f"the stored ACME account key does not load: {exc}") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise AcmeError("the stored ACME account key is not an EC key")
    return JWKEC(key=key)


def register(acme: client.ClientV2, tls: TlsSection) -> None:
    """Blocking: register the client's key with the CA, or find the account it has (RFC 8555
    §7.3.1: the CA names its URL), and log the client in to it."""
    registration = messages.NewRegistration.from_data(
        email=tls.acme_email or None, terms_of_service_agreed=True
    )
    try:
        acme.new_account(registration)
    except acme_errors.ConflictError as exc:
        acme.net.account = messages.RegistrationResource(
            uri=exc.location, body=messages.Registration()
        )


def _registered_url(tls: TlsSection, ca_bundle: str, account: AcmeAccount) -> str:
    """Blocking: register ``account``'s key with the CA (or find the account it has, §7.3.1);
    the account's URL."""
    acme = ca_client(tls, account_jwk(account), ca_bundle)
    register(acme, tls)
    registered = acme.net.account
    return registered.uri if registered is not None else ""


#: RFC 8555 §7.1.6: the account statuses that never become valid again: "deactivated" (by the
#: client, or by the CA, §7.3.6) and "revoked" (by the CA).
ACCOUNT_GONE = (messages.STATUS_DEACTIVATED.name, messages.STATUS_REVOKED.name)
_GONE_NAMED = re.compile(rf"\b({'|'.join(ACCOUNT_GONE)})\b", re.IGNORECASE)


class AccountGone(AcmeError):
    """The CA will never take requests under the account at ``url`` (``""``: its key's
    registration was refused) again: it is ``status`` (:data:`ACCOUNT_GONE`). Raised by an
    order, placed or under way; the attempt replaces the account and orders again."""

    def __init__(self, url: str, status: str) -> None:
        super().__init__(f"the CA says the ACME account {url or '(its key)'} is {status}")
        self.url = url
        self.status = status


def refused_account_status(refusal: messages.Error) -> str:
    """The status of :data:`ACCOUNT_GONE` an ``unauthorized`` refusal names as the account's
    (Pebble: "Account has been deactivated"; Boulder: 'Account is not valid, has status
    "deactivated"', and for a registration "An account with the provided public key exists
    but is deactivated"); "" for any other refusal."""
    if refusal.code != "unauthorized":
        return ""
    named = _GONE_NAMED.search(refusal.detail or "")
    return named.group(1).lower() if named is not None else ""


def gone_status(acme: client.ClientV2, url: str, refusal: messages.Error) -> str:
    """Blocking: the account's status when ``refusal`` (of a request under the account at
    ``url``, or with ``url`` empty of its key's registration) is the CA's answer to an account
    it will never take again (RFC 8555 §7.3.6: "the server MUST NOT accept further requests
    authorized by that account's key"); "" for any other refusal (an ``unauthorized`` for a
    name, a CAA record, a policy) and when the account cannot be looked at now.

    The account is looked at rather than the refusal believed: a POST-as-GET of its URL
    (§7.3) answers an account object, whose status is the CA's word, or is refused in turn,
    the refusal then naming the status (:func:`refused_account_status`: a CA refuses a
    deactivated account even that). A registration refused has no URL to look at; its
    refusal names the status the same way.
    """
    if refusal.code != "unauthorized":
        return ""
    if not url:
        return refused_account_status(refusal)
    try:
        response = acme.net.post(url, None, new_nonce_url=acme.directory["newNonce"])
        body = response.json()
    except messages.Error as exc:
        return refused_account_status(exc)
    except (acme_errors.Error, requests.RequestException, ValueError):
        return ""
    status = body.get("status") if isinstance(body, dict) else None
    return status if status in ACCOUNT_GONE else ""


@contextlib.contextmanager
def account_checked(acme: client.ClientV2, url: str) -> Iterator[None]:
    """Blocking: requests under the account at ``url`` (``""``: its key's registration); a
    refusal that is the CA's answer to an account it no longer takes (:func:`gone_status`)
    raised as :class:`AccountGone`, any other as it came."""
    try:
        yield
    except messages.Error as exc:
        if status := gone_status(acme, url, exc):
            raise AccountGone(url, status) from exc
        raise


@dataclass(frozen=True, slots=True)
class AcmeAccounts:
    """The account of ``tls.acme_directory`` in ``store``, as the attempts of one node use it."""

    store: Store
    tls: TlsSection
    #: Where the CA's HTTPS certificate is trusted from ("": the system's CAs).
    ca_bundle: str
    files: AcmeFiles
    log: Log

    async def current(self) -> AcmeAccount:
        """The account to order under: the store's for the CA directory. At the first attempt
        (none stored) this node's ``account.key`` of an earlier version, if it has one, else a
        new key, goes to the store unless another node's went first; either way the one the
        store holds is used, and the file is renamed (:meth:`_retire_key_file`)."""
        directory = self.tls.acme_directory
        account = await self.store.acme_account(directory)
        if account is None:
            from_file = await run_blocking(file_key, self.files.account_key)
            pem = from_file if from_file is not None else await run_blocking(new_key_pem)
            account = await self.store.add_acme_account(AcmeAccount(directory, pem, ""))
            if account.key_pem != pem:
                self.log.info("ACME account key of another node used", ca=directory)
            elif from_file is not None:
                self.log.info(
                    "ACME account key taken into the store",
                    path=str(self.files.account_key),
                    ca=directory,
                )
            else:
                self.log.info("ACME account key made and stored", ca=directory)
        await self._retire_key_file()
        return account

    async def replace(self, old: AcmeAccount, gone: AccountGone) -> AcmeAccount:
        """Put a new account in place of ``old``, which the CA deactivated (RFC 8555 §7.3.6:
        never to be used again): a new key in the store unless another node replaced ``old``
        first (then its key is used, and registering it finds its account, §7.3.1: one new
        account for the cluster), registered (§7.3) and its URL stored. The registration's
        failure fails the attempt; the next one registers the stored key as any new one."""
        pem = await run_blocking(new_key_pem)
        new = AcmeAccount(old.directory, pem, "")
        account = await self.store.replace_acme_account(old.key_pem, new)
        url = account.url or await run_blocking(_registered_url, self.tls, self.ca_bundle, account)
        self.log.warning(
            "ACME account replaced: the CA no longer takes the old one",
            # The order under way may have stored a URL since ``old`` was read.
            old_url=gone.url or old.url or "(its URL never stored)",
            new_url=url,
            status=gone.status,
            by="this node" if account.key_pem == pem else "another node",
            ca=old.directory,
        )
        if url != account.url:
            await self.note_url(account, url)
        return replace(account, url=url)

    async def _retire_key_file(self) -> None:
        """Rename an earlier version's ``account.key`` to ``account.key.old`` once the store
        holds the account: never read again (another CA directory gets an account of its
        own), kept for the operator (the key of an account the CA still has; when another
        node's key was stored first, of one the cluster no longer uses)."""
        try:
            await run_blocking(self.files.account_key.rename, self.files.old_account_key)
        except FileNotFoundError:
            return
        except OSError as exc:
            self.log.warning("account.key not renamed", error=str(exc))
            return
        self.log.info(
            "account.key no longer used (the account is in the store)",
            path=str(self.files.old_account_key),
        )

    async def note_url(self, account: AcmeAccount, url: str) -> None:
        """Store the account's URL the CA named; one that cannot be stored now is logged (the
        next attempt finds the account again by its key, RFC 8555 §7.3.1)."""
        try:
            await self.store.set_acme_account_url(account.directory, account.key_pem, url)
        except StorageError as exc:
            self.log.warning("ACME account URL not stored", url=url, error=str(exc))
            return
        self.log.info("ACME account URL stored", url=url, ca=account.directory)
