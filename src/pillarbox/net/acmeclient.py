"""The ACME client's connection to the CA (certbot's ``acme`` package), and what a failed
exchange with it is called.

The library is synchronous (``requests``): every function here blocks, and is called on the
bounded pool (:func:`pillarbox.blocking.run_blocking`). Its exceptions are turned into reasons
once, here (STYLE §6).
"""

from __future__ import annotations

import requests
from acme import client, messages
from acme import errors as acme_errors
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


def ca_network(key: JWKEC | None, ca_bundle: str) -> client.ClientNetwork:
    """Blocking: the library's HTTP client for the CA, signing with ``key`` (None: for GETs
    only), trusting ``ca_bundle`` (a path; empty: the system's CAs) for the CA's HTTPS."""
    verify: bool | str = ca_bundle or True
    return client.ClientNetwork(
        key,
        alg=ES256,
        # requests' ``verify`` takes a CA bundle's path as well as a bool.
        verify_ssl=verify,  # type: ignore[arg-type]
        user_agent=USER_AGENT,
        timeout=CA_REQUEST_TIMEOUT,
    )


def ca_client(tls: TlsSection, account_key: JWKEC, ca_bundle: str) -> client.ClientV2:
    """Blocking: a client signing with ``account_key``, not logged in to an account yet."""
    network = ca_network(account_key, ca_bundle)
    return client.ClientV2(client.ClientV2.get_directory(tls.acme_directory, network), network)


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
    if isinstance(exc, messages.Error):
        return f"the CA refused: {exc.detail or exc.typ}"
    return f"{type(exc).__name__}: {exc}"
