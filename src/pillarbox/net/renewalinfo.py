"""ACME renewal information (RFC 9773): the CA's renewal window for the certificate presented,
fetched when due, kept in ``renewal-info.json`` for ``pillarbox tls status``.

Implementation notes:

- **Fetched** with the library's HTTP client, unauthenticated (§4.2: a GET of the directory's
  ``renewalInfo`` URL and the certificate's identifier, :func:`~pillarbox.certificates.
  ari_identifier`): at once for a certificate not asked about yet (just issued, taken from
  the store, or at start), then after the response's Retry-After held between an hour and a
  day (§4.3.2, :func:`~pillarbox.certificates.next_renewal_info`); never for an expired
  certificate (§4.2), one without an identifier, or one of another CA directory. A directory
  without ``renewalInfo`` is asked again with the next certificate.
- **Drawn once per window**: the renewal falls at a moment drawn uniformly in the window
  (§4.2), kept while the CA answers the same window (:func:`~pillarbox.certificates.
  drawn_window`); :func:`~pillarbox.certificates.renewal_time` decides with it.
- **Only informs**: a fetch never orders. Ordering is the renewal task's
  (:meth:`~pillarbox.net.acme.CertificateManager._renewal_reason`), and with a shared
  certificate the lease holder's. A failed fetch is logged and tried again after
  :data:`RENEWAL_INFO_RETRY`; meanwhile the window fetched last for the certificate holds, or
  without one the lifetime rule alone.
- **Every node fetches**, with a shared certificate too: the lease is held for an attempt
  only, and the window is what tells a node to claim it; a node left without it would find
  the certificate due by the lifetime rule alone.
- The renewal's order names the certificate it replaces (§5): :meth:`~pillarbox.net.acme.
  CertificateManager._replaced`, sent by :class:`~pillarbox.net.acmeclient.CaNetwork`.
"""

from __future__ import annotations

import datetime
import json
import random
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import josepy
import requests
from acme import client, messages
from acme import errors as acme_errors

from pillarbox.atomicfile import write_atomically
from pillarbox.blocking import run_blocking
from pillarbox.certificates import (
    CertificateFacts,
    RenewalWindow,
    drawn_window,
    next_renewal_info,
    retry_after,
)
from pillarbox.config import TlsSection
from pillarbox.net.acmeclient import CA_ERRORS, ca_network, failure_reason
from pillarbox.net.acmefiles import AcmeFiles, utc_text
from pillarbox.observability.log import Log

#: When to fetch renewal information again after a fetch failed, or without a Retry-After: the
#: library's default (RFC 9773 §4.3.3 leaves it to the client).
RENEWAL_INFO_RETRY = datetime.timedelta(hours=6)
#: What fetching renewal information raises when it fails (the CA down, a problem document, a
#: body that is not renewal information).
_RENEWAL_INFO_ERRORS = (*CA_ERRORS, josepy.errors.Error)


@dataclass(frozen=True, slots=True)
class _FetchedWindow:
    """A renewal window as the CA answered it (RFC 9773 §4.2)."""

    url: str
    start: datetime.datetime
    end: datetime.datetime
    explanation: str
    #: The response's Retry-After (§4.3.2); None without one.
    retry_after: datetime.datetime | None


def _fetch_renewal_info(tls: TlsSection, ca_bundle: str, ari_id: str) -> _FetchedWindow | None:
    """Blocking: the CA's suggested renewal window for the certificate ``ari_id`` names (RFC
    9773 §4.2: a GET, unauthenticated, of the directory's ``renewalInfo`` URL with the
    identifier appended); None when the directory has no ``renewalInfo``.

    The library's ``ClientV2.renewal_time`` makes the same request, but returns only a moment
    it drew in the window, not the window (which ``tls status`` shows, and which tells a window
    the CA moved from the same one fetched again: :func:`drawn_window`), and the Retry-After as
    a naive local time.
    """
    network = ca_network(None, ca_bundle)
    directory = client.ClientV2.get_directory(tls.acme_directory, network)
    try:
        base = str(directory["renewalInfo"])
    except KeyError:
        return None
    url = f"{base.rstrip('/')}/{ari_id}"
    response = network.get(url, content_type="application/json")
    body = response.json()
    window = messages.RenewalInfo.from_json(body).suggested_window
    if window.start is None or window.end is None:
        raise ValueError("the renewal information has no suggestedWindow start and end")
    explanation = body.get("explanationURL") if isinstance(body, dict) else None
    return _FetchedWindow(
        url,
        window.start.astimezone(datetime.UTC),
        window.end.astimezone(datetime.UTC),
        explanation if isinstance(explanation, str) else "",
        retry_after(response.headers.get("Retry-After"), datetime.datetime.now(datetime.UTC)),
    )


def _renewal_info_failure(exc: Exception) -> str:
    """Why renewal information was not fetched: an HTTP error without a problem document (the
    library raises ``ClientError`` holding the response) named by its status and URL."""
    response = exc.args[0] if isinstance(exc, acme_errors.ClientError) and exc.args else None
    if isinstance(response, requests.Response):
        return f"HTTP {response.status_code} {response.reason} from {response.url}"
    return failure_reason(exc)


def stored_window(info: Mapping[str, Any], facts: CertificateFacts) -> RenewalWindow | None:
    """The renewal window ``renewal-info.json`` holds, if it is ``facts``' certificate's."""
    window = info.get("window")
    if info.get("certificate") != facts.ari_id or not isinstance(window, dict):
        return None
    try:
        return RenewalWindow(
            facts.ari_id,
            datetime.datetime.fromisoformat(window["start"]),
            datetime.datetime.fromisoformat(window["end"]),
            datetime.datetime.fromisoformat(window["renew_at"]),
            datetime.datetime.fromisoformat(info["next_check"]),
            str(window.get("explanation_url") or ""),
        )
    except (KeyError, TypeError, ValueError):
        return None


class RenewalInfoFetcher:
    """The CA's renewal window for the certificate one node presents: when to fetch it, the
    window that holds, and ``renewal-info.json``."""

    def __init__(self, tls: TlsSection, ca_bundle: str, files: AcmeFiles, log: Log) -> None:
        self._tls = tls
        self._ca_bundle = ca_bundle
        self._files = files
        self._log = log
        #: The CA's renewal window last fetched; it holds only for the certificate whose
        #: identifier it carries (:func:`~pillarbox.certificates.renewal_time` checks).
        self.window: RenewalWindow | None = None
        #: The certificate (ARI identifier) renewal information was last fetched for, and when
        #: to fetch it again.
        self._fetched_for = ""
        self._next = datetime.datetime.now(datetime.UTC)
        #: Whether the CA's directory had ``renewalInfo`` at the last fetch (None: not known).
        self._offered: bool | None = None

    def due(
        self, facts: CertificateFacts | None, issuer_directory: str, now: datetime.datetime
    ) -> datetime.datetime | None:
        """When to fetch the CA's renewal window for the certificate presented (RFC 9773
        §4.3): at once for one not asked about yet (just issued, taken from the store, or at
        start), else when the last fetch said. None when it is not to be fetched: no
        certificate, one without an identifier (not a CA's), an expired one (§4.2: never
        after it expired), one of another CA directory than ``issuer_directory`` (replaced at
        once anyway)."""
        if (
            facts is None
            or not facts.ari_id
            or facts.not_after <= now
            or issuer_directory != self._tls.acme_directory
        ):
            return None
        return now if self._fetched_for != facts.ari_id else self._next

    async def check(self, facts: CertificateFacts | None, issuer_directory: str) -> None:
        """Fetch the CA's renewal window for the certificate presented when it is time
        (:meth:`due`); the renewal then falls at a moment drawn in it (§4.2). A failed fetch
        is logged and tried again after :data:`RENEWAL_INFO_RETRY`; meanwhile the window
        fetched last for the certificate holds, or without one the lifetime rule alone."""
        now = datetime.datetime.now(datetime.UTC)
        due = self.due(facts, issuer_directory, now)
        if due is None or now < due or facts is None:
            return
        if self._fetched_for != facts.ari_id:
            self.window = None  # another certificate's
        self._fetched_for = facts.ari_id
        info: dict[str, Any] = {
            "certificate": facts.ari_id,
            "serial": f"{facts.serial:x}",
            "checked": utc_text(now),
        }
        try:
            fetched = await run_blocking(
                _fetch_renewal_info, self._tls, self._ca_bundle, facts.ari_id
            )
            window = None
            if fetched is not None:
                # RFC 9773 §4.3.2: ask again after the response's Retry-After, bounded.
                retry = fetched.retry_after or now + RENEWAL_INFO_RETRY
                window = drawn_window(
                    self.window,
                    facts.ari_id,
                    fetched.start,
                    fetched.end,
                    next_fetch=next_renewal_info(now, retry),
                    explanation=fetched.explanation,
                    draw=random.random(),  # §4.2: uniform in the window
                )
        except Exception as exc:
            # Any exception: one the library was not known to raise (logged with its
            # traceback) must not end the renewal task over a fetch that only informs it.
            self._next = now + RENEWAL_INFO_RETRY
            error = _renewal_info_failure(exc)
            fields = {
                "error": error,
                "retry_at": utc_text(self._next),
                "renewal": "in the window fetched before"
                if self.window is not None
                else "by the lifetime rule",
            }
            if isinstance(exc, _RENEWAL_INFO_ERRORS):
                self._log.warning("renewal information not fetched", **fields)
            else:
                self._log.exception("renewal information not fetched", **fields)
            info.update(error=error)
        else:
            if fetched is None or window is None:
                # Asked again with the next certificate (or at the next start): a CA without
                # renewal information costs one look at its directory per certificate.
                self._next = facts.not_after
                if self._offered is not False:
                    self._log.info(
                        "the CA offers no renewal information (RFC 9773): "
                        "renewal by the lifetime rule",
                        ca=self._tls.acme_directory,
                    )
                self._offered = False
                info.update(offered=False)
            else:
                if window.renew_at != (self.window.renew_at if self.window else None):
                    self._log.info(
                        "renewal window",
                        serial=f"{facts.serial:x}",
                        window=window.shown,
                        renew_at=utc_text(window.renew_at),
                        explanation=window.explanation or None,
                    )
                self._offered = True
                self.window = window
                self._next = window.next_fetch
                info.update(url=fetched.url)
        await self._record(info)

    async def _record(self, info: dict[str, Any]) -> None:
        """Write the outcome of a fetch, with the window that holds for the certificate and the
        next fetch, to ``renewal-info.json`` (for ``pillarbox tls status``)."""
        if self.window is not None:
            info["window"] = {
                "start": utc_text(self.window.start),
                "end": utc_text(self.window.end),
                "renew_at": utc_text(self.window.renew_at),
                "explanation_url": self.window.explanation or None,
            }
        info["next_check"] = utc_text(self._next)
        try:
            await run_blocking(
                write_atomically, self._files.renewal_info, json.dumps(info, indent=2).encode()
            )
        except OSError as exc:
            self._log.warning(
                "renewal information not recorded",
                path=str(self._files.renewal_info),
                error=str(exc),
            )
