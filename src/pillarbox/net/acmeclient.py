"""The ACME client's connection to the CA (certbot's ``acme`` package), and what a failed
exchange with it is called.

The library is synchronous (``requests``): every function here blocks, and is called on the
bounded pool (:func:`pillarbox.blocking.run_blocking`). Its exceptions are turned into reasons
once, here (STYLE §6).
"""

from __future__ import annotations

from typing import Any

import requests
from acme import client, messages
from acme import errors as acme_errors
from josepy.json_util import field
from josepy.jwa import ES256
from josepy.jwk import JWKEC

from pillarbox.config import TlsSection
from pillarbox.errors import PillarboxError

#: Seconds one HTTP request to the CA may take.
CA_REQUEST_TIMEOUT = 30
USER_AGENT = "pillarbox"
#: What an exchange with the CA raises when it fails: the library's errors, a problem document
#: (RFC 8555 §6.7), the HTTP client's, the network's, a body that does not parse.
CA_ERRORS = (
    acme_errors.Error,
    messages.Error,
    requests.RequestException,
    OSError,
    ValueError,
)


class AcmeError(PillarboxError):
    """An attempt to obtain a certificate failed; the message is the reason (the CA's own
    problem detail where it gave one). Neither the operator's mistake nor ours as such (DNS,
    port 80, the CA), so logged as a warning and retried."""


class _ReplacingOrder(messages.NewOrder):
    """A new-order request naming the certificate it replaces (RFC 9773 §5)."""

    replaces: str = field("replaces", omitempty=True)


class CaNetwork(client.ClientNetwork):
    """The library's HTTP client, adding to a new-order request the ``replaces`` field (RFC
    9773 §5) that the library's ``new_order`` does not take: a request is signed here, so the
    field is added to the order the library built, whatever other fields it gave it."""

    #: The ARI identifier (RFC 9773 §4.1) of the certificate the next new order replaces;
    #: "" for none.
    replaces = ""

    def post(self, *args: Any, **kwargs: Any) -> requests.Response:
        url, body, *rest = args
        if self.replaces and isinstance(body, messages.NewOrder):
            body = _ReplacingOrder.from_json({**body.to_json(), "replaces": self.replaces})
        return super().post(url, body, *rest, **kwargs)


class CaClient(client.ClientV2):
    """The library's client, its HTTP client a :class:`CaNetwork`."""

    net: CaNetwork


def ca_network(key: JWKEC | None, ca_bundle: str) -> CaNetwork:
    """Blocking: the library's HTTP client for the CA, signing with ``key`` (None: for GETs
    only), trusting ``ca_bundle`` (a path; empty: the system's CAs) for the CA's HTTPS."""
    verify: bool | str = ca_bundle or True
    return CaNetwork(
        key,
        alg=ES256,
        # requests' ``verify`` takes a CA bundle's path as well as a bool.
        verify_ssl=verify,  # type: ignore[arg-type]
        user_agent=USER_AGENT,
        timeout=CA_REQUEST_TIMEOUT,
    )


def ca_client(tls: TlsSection, account_key: JWKEC, ca_bundle: str) -> CaClient:
    """Blocking: a client signing with ``account_key``, not logged in to an account yet."""
    network = ca_network(account_key, ca_bundle)
    return CaClient(client.ClientV2.get_directory(tls.acme_directory, network), network)


def failure_reason(exc: Exception) -> str:
    """The most specific reason an exception of the ACME exchange carries."""
    if isinstance(exc, acme_errors.ValidationError):
        details = [
            f"{authz.body.identifier.value}: {challenge.error.detail or challenge.error.typ}"
            for authz in exc.failed_authzrs
            for challenge in authz.body.challenges
            if challenge.error is not None
        ]
        return "challenge failed: " + "; ".join(details)
    if isinstance(exc, acme_errors.TimeoutError):
        return "the CA did not validate and issue in time"
    if isinstance(exc, acme_errors.IssuanceError):
        # RFC 8555 §7.1.3: an invalid order's "error", the CA's reason for not issuing.
        return f"the CA did not issue: {exc.error.detail or exc.error.typ}"
    if isinstance(exc, messages.Error):
        return f"the CA refused: {exc.detail or exc.typ}"
    return f"{type(exc).__name__}: {exc}"
