"""One ACME order (RFC 8555 §7.4): placed under the account with a challenge chosen per
authorization, then answered, validated and finalized into a certificate chain.

Both steps block (the library's client is synchronous) and run on the bounded pool; between
them the attempt (:meth:`pillarbox.net.acme.CertificateManager.obtain`) offers the answers on
the event loop (:class:`~pillarbox.net.acmechallenge.ChallengeAnswers`).
"""

from __future__ import annotations

import datetime
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass

from acme import client, crypto_util, messages
from acme import errors as acme_errors

from pillarbox.config import TlsSection
from pillarbox.net.acmeaccount import account_checked, account_jwk, register
from pillarbox.net.acmechallenge import Challenge, choose_challenge
from pillarbox.net.acmeclient import AcmeError, ca_client, failure_reason
from pillarbox.store.types import AcmeAccount

#: Seconds between two looks at the authorizations the CA is still validating.
POLL_INTERVAL = 1.0
#: RFC 9773 §7.4: the CA's refusal of an order naming a certificate already replaced.
ALREADY_REPLACED = messages.ERROR_PREFIX + "alreadyReplaced"


class ReplacementRefused(AcmeError):
    """The CA refused a new order because of the certificate it names as the one it replaces
    (RFC 9773 §5); the message is the CA's reason. The attempt orders again without it."""


@dataclass(frozen=True, slots=True)
class Order:
    """An order placed, its challenges not yet answered."""

    client: client.ClientV2
    order: messages.OrderResource
    challenges: tuple[Challenge, ...]
    #: The account's URL, as stored or as the CA named it now.
    account_url: str
    #: The ARI identifier of the certificate the order named as the one it replaces (RFC
    #: 9773 §5); "" when it named none.
    replaces: str


def _new_order(
    acme: client.ClientV2, tls: TlsSection, url: str, csr: bytes
) -> messages.OrderResource:
    """Blocking: log ``acme`` in to the account at ``url`` (when empty, registered now, or
    found by its key) and order the certificate of ``csr``."""
    if not url:
        register(acme, tls)
        return acme.new_order(csr)
    # RFC 8555 §6.2: requests name the account by its URL ("kid"); nothing to register.
    acme.net.account = messages.RegistrationResource(uri=url, body=messages.Registration())
    try:
        return acme.new_order(csr)
    except messages.Error as exc:
        # RFC 8555 §6.7: the CA knows no account at the stored URL (a test CA restarted, a
        # staging CA reset): the same key registered again, never a new key.
        if exc.code != "accountDoesNotExist":
            raise
        acme.net.account = None  # §7.3: a new-account request carries the key, not a URL
        register(acme, tls)
        return acme.new_order(csr)


def place_order(
    tls: TlsSection,
    ca_bundle: str,
    names: tuple[str, ...],
    account: AcmeAccount,
    dns_domains: Mapping[str, str],
    key_pem: bytes,
    replaces: str,
) -> Order:
    """Blocking: log in, order a certificate for ``names`` and the private key ``key_pem``,
    choose a challenge per pending authorization and prepare its answer (``dns_domains``:
    identifier → the hosted domain whose zone our DNS server serves its record in, for those
    dns-01 can answer).

    ``replaces``: the ARI identifier of the certificate the new one replaces ("" for none),
    named in the order if the CA offers renewal information; :class:`ReplacementRefused` if
    the CA refuses the order because of it."""
    account_key = account_jwk(account)
    acme = ca_client(tls, account_key, ca_bundle)
    csr = crypto_util.make_csr(key_pem, list(names))
    # RFC 9773 §5: "Clients SHOULD NOT include this field if the ACME server has not
    # indicated that it supports this protocol by advertising the renewalInfo resource".
    acme.net.replaces = replaces if _offers_renewal_info(acme) else ""
    try:
        with account_checked(acme, account.url):
            order = _new_order(acme, tls, account.url, csr)
    except (messages.Error, acme_errors.ConflictError) as exc:
        if acme.net.replaces and (refusal := _replacement_refusal(exc)):
            raise ReplacementRefused(refusal) from exc
        raise
    prepared: list[Challenge] = []
    for authorization in order.authorizations:
        if authorization.body.status == messages.STATUS_VALID:
            continue  # RFC 8555 §7.1.3: the CA may reuse an authorization already proven
        prepared.append(
            choose_challenge(authorization.body, account_key, tls.acme_challenges, dns_domains)
        )
    registered = acme.net.account
    account_url = registered.uri if registered is not None else ""
    return Order(acme, order, tuple(prepared), account_url, acme.net.replaces)


def _offers_renewal_info(acme: client.ClientV2) -> bool:
    try:
        acme.directory["renewalInfo"]
    except KeyError:
        return False
    return True


def _replacement_refusal(exc: messages.Error | acme_errors.ConflictError) -> str:
    """Why the CA refused a new order because of its ``replaces`` (RFC 9773 §5); "" when the
    refusal has another cause. Taken as the replacement's: a 409 Conflict, the status §5
    gives the ``alreadyReplaced`` problem of a certificate another order replaced (the
    library keeps no problem document of a 409, only its Location), and any problem of that
    type (§7.4) or whose detail speaks of the replacement (a CA's check that the certificate
    is the account's and shares an identifier with the order has no type of its own; Boulder
    answered a second replacement with ``conflict`` before the RFC)."""
    if isinstance(exc, acme_errors.ConflictError):
        return "HTTP 409 Conflict: the certificate is already replaced"
    if exc.typ == ALREADY_REPLACED or "replace" in (exc.detail or "").lower():
        return failure_reason(exc)
    return ""


def _unsettled(authorization: messages.AuthorizationResource) -> bool:
    return authorization.body.status in (messages.STATUS_PENDING, messages.STATUS_PROCESSING)


def finish_order(placed: Order, timeout: float, stop: threading.Event) -> bytes:
    """Blocking: answer the challenges, wait for validation and issuance; the PEM chain.

    Every authorization still pending is looked at in each round, and the first one the CA
    calls invalid ends the wait: one authorization's validation may take the CA long (a
    name whose server holds the connection open; Pebble gives up after 15 s, a real CA's
    validation from several places may take longer, one never processed lasts to ``timeout``)
    while another's already failed, and a failure is reported as soon as the CA knows it.
    The wait is polled here rather than by the library, so that ``stop`` (set when the server
    shuts down) ends it within :data:`POLL_INTERVAL`: the pool's threads are waited for at
    shutdown.

    The account is looked at when the CA refuses any of these requests, as when it refused
    the order (:func:`~pillarbox.net.acmeaccount.account_checked`): deactivated or revoked
    after the order was placed, it is :class:`~pillarbox.net.acmeaccount.AccountGone` here
    too, and the same attempt replaces it.
    """
    with account_checked(placed.client, placed.account_url):
        return _validated_and_issued(placed, timeout, stop)


def _validated_and_issued(placed: Order, timeout: float, stop: threading.Event) -> bytes:
    """Blocking: :func:`finish_order`'s exchange with the CA."""
    acme = placed.client
    for challenge in placed.challenges:
        acme.answer_challenge(challenge.body, challenge.response)
    deadline = time.monotonic() + timeout
    authorizations = list(placed.order.authorizations)
    while True:
        # RFC 8555 §7.1.6: pending until the CA has validated, then valid or invalid (or
        # deactivated, expired, revoked: none of them will become valid either).
        waiting = [i for i, a in enumerate(authorizations) if _unsettled(a)]
        failed = [
            a
            for a in authorizations
            if not _unsettled(a) and a.body.status != messages.STATUS_VALID
        ]
        if failed:
            raise acme_errors.ValidationError(failed)
        if not waiting:
            break
        if stop.wait(POLL_INTERVAL):
            raise AcmeError("stopped while the CA was validating")
        if time.monotonic() > deadline:
            raise acme_errors.TimeoutError()
        for i in waiting:
            authorizations[i], _ = acme.poll(authorizations[i])
    # The library compares with naive local time.
    left = max(1.0, deadline - time.monotonic())
    order = acme.finalize_order(
        placed.order.update(authorizations=authorizations),
        datetime.datetime.now() + datetime.timedelta(seconds=left),
    )
    if not order.fullchain_pem:
        raise AcmeError("the CA issued no certificate")
    return order.fullchain_pem.encode()
