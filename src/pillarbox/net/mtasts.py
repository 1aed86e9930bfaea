"""MTA-STS (RFC 8461) lookups for outbound delivery: the ``_mta-sts`` TXT record through the
project's resolver, the policy over HTTPS, and the cache in between. The rules are in
:mod:`pillarbox.queue.mtasts`; this module only moves bytes and reads the clock.

Implementation notes:

- **Fetch** (§3.3): ``GET https://mta-sts.<domain>/.well-known/mta-sts.txt`` with HTTP/1.1 (h11,
  the sans-I/O HTTP core) over an asyncio stream. The policy host's addresses come from
  :class:`~pillarbox.dns.resolver.Resolver` like every other name mail delivery looks up; the
  certificate must chain to a trusted root (the system's store, or ``queue.mta_sts_ca_bundle``)
  and name the policy host (SNI and check both use it). Only a 200 counts; a redirect is not
  followed; no HTTP cache is used. The media type must be ``text/plain`` (§3.2 SHOULD), the
  body at most ``max_size`` bytes, and the whole fetch takes at most ``timeout`` seconds
  (§3.3 suggests 64 KiB and a minute).
- **Lookup** (§5.1): every delivery attempt to a domain asks for its TXT record (cached by
  the resolver for its TTL) and fetches the policy only when the cache has none under that
  id. Concurrent lookups of one domain share one fetch. A failed fetch is logged (§3.3: alert
  the administrator) unless the cached policy's mode is ``none``, and kept until a fetch of
  the domain succeeds (:meth:`MtaStsPolicies.fetch_failure`, for TLS reports, RFC 8460
  §4.3.2.2).
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

import h11

from pillarbox.dns.resolver import DnsTemporaryError, Resolver
from pillarbox.errors import PillarboxError
from pillarbox.observability.log import Log
from pillarbox.queue.mtasts import (
    CACHE_ENTRIES,
    MAX_POLICY_SIZE,
    CachedPolicy,
    InvalidPolicy,
    Mode,
    Policy,
    PolicyCache,
    parse_policy,
    parse_record,
)
from pillarbox.queue.tlsrpt import ResultType

#: RFC 8461 §3.2: the policy's fixed well-known path.
POLICY_PATH = "/.well-known/mta-sts.txt"
#: RFC 8461 §3.3: the suggested timeout of a fetch.
FETCH_TIMEOUT = 60.0
_READ_SIZE = 16 * 1024

_log = Log("mta-sts")


class PolicyFetchError(PillarboxError):
    """No policy could be had from the policy host; ``reason`` says why (for the log)."""

    def __init__(self, url: str, reason: str) -> None:
        super().__init__(f"{url}: {reason}")
        self.reason = reason


def policy_host(domain: str) -> str:
    """RFC 8461 §3.2: "mta-sts" prepended to the Policy Domain."""
    return f"mta-sts.{domain}"


def _media_type(response: h11.Response) -> str:
    for name, value in response.headers:
        if name == b"content-type":
            return value.split(b";", 1)[0].strip().decode("latin-1").lower()
    return ""


async def _exchange(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, host: str, max_size: int
) -> bytes:
    conn = h11.Connection(h11.CLIENT)
    request = h11.Request(
        method="GET",
        target=POLICY_PATH,
        headers=[("Host", host), ("User-Agent", "Pillarbox"), ("Connection", "close")],
    )
    writer.write(conn.send(request) + (conn.send(h11.EndOfMessage()) or b""))
    await writer.drain()
    body = bytearray()
    while True:
        event = conn.next_event()
        if event is h11.NEED_DATA:
            conn.receive_data(await reader.read(_READ_SIZE))
        elif isinstance(event, h11.Response):
            if event.status_code != 200:
                # §3.3: only a 200 is a policy; a 3xx is not followed.
                raise ValueError(f"HTTP status {event.status_code}")
            media_type = _media_type(event)
            if media_type != "text/plain":
                raise ValueError(f"media type {media_type or 'missing'}, not text/plain")
        elif isinstance(event, h11.Data):
            body += event.data
            if len(body) > max_size:
                raise ValueError(f"policy larger than {max_size} bytes")
        elif isinstance(event, h11.EndOfMessage):
            return bytes(body)
        elif isinstance(event, h11.ConnectionClosed):
            raise ValueError("connection closed before the policy ended")


async def fetch_policy_text(
    domain: str,
    resolver: Resolver,
    context: ssl.SSLContext,
    *,
    port: int = 443,
    timeout: float = FETCH_TIMEOUT,
    max_size: int = MAX_POLICY_SIZE,
) -> bytes:
    """The policy file of ``domain`` as served; raises :class:`PolicyFetchError`."""
    host = policy_host(domain)
    url = f"https://{host}{POLICY_PATH}"
    failure = f"{host} has no address"
    try:
        async with asyncio.timeout(timeout):
            addresses = await resolver.addresses(host)
            for address in addresses:
                try:
                    reader, writer = await asyncio.open_connection(
                        address, port, ssl=context, server_hostname=host
                    )
                except OSError as exc:  # ssl.SSLError too: the next address
                    failure = f"{address}: {exc.strerror or exc}"
                    continue
                try:
                    return await _exchange(reader, writer, host, max_size)
                finally:
                    writer.close()
    except DnsTemporaryError as exc:
        failure = exc.problem
    except TimeoutError:
        failure = f"no policy within {timeout:g} s"
    except (OSError, ValueError, h11.ProtocolError) as exc:
        failure = str(exc) or type(exc).__name__
    raise PolicyFetchError(url, failure)


@dataclass(frozen=True, slots=True)
class PolicyFailure:
    """Why a policy could not be had, as a TLS report names it (RFC 8460 §4.3.2.2)."""

    result_type: ResultType
    reason: str


def policy_failure(exc: PolicyFetchError | InvalidPolicy) -> PolicyFailure:
    """§4.3.2.2: an invalid policy file, a policy host whose certificate fails PKIX, or any
    other failure to fetch."""
    if isinstance(exc, InvalidPolicy):
        return PolicyFailure(ResultType.STS_POLICY_INVALID, str(exc))
    if "certificate verify failed" in exc.reason.lower():
        return PolicyFailure(ResultType.STS_WEBPKI_INVALID, str(exc))
    return PolicyFailure(ResultType.STS_POLICY_FETCH_ERROR, str(exc))


class MtaStsPolicies:
    """The MTA-STS policy in force for a recipient domain (RFC 8461 §5.1; module notes)."""

    def __init__(
        self,
        resolver: Resolver,
        context: ssl.SSLContext,
        *,
        port: int = 443,
        timeout: float = FETCH_TIMEOUT,
        max_size: int = MAX_POLICY_SIZE,
        cache: PolicyCache | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._resolver = resolver
        self._context = context
        self._port = port
        self._timeout = timeout
        self._max_size = max_size
        self._cache = cache or PolicyCache()
        self._clock = clock
        self._locks: dict[str, asyncio.Lock] = {}
        #: domain → why its last policy fetch failed (cleared by a successful one).
        self._failures: OrderedDict[str, PolicyFailure] = OrderedDict()

    def fetch_failure(self, domain: str) -> PolicyFailure | None:
        """Why the domain's last policy fetch failed, if it did and none has succeeded since."""
        return self._failures.get(domain)

    def _failed(self, domain: str, failure: PolicyFailure) -> None:
        self._failures[domain] = failure
        self._failures.move_to_end(domain)
        while len(self._failures) > CACHE_ENTRIES:
            self._failures.popitem(last=False)

    async def policy_for(self, domain: str) -> Policy | None:
        """The policy to apply to mail for ``domain`` now; None: deliver as without MTA-STS."""
        lock = self._locks.setdefault(domain, asyncio.Lock())
        try:
            async with lock:
                return await self._lookup(domain)
        except Exception:  # a bug here must not stop delivery to the domain for good
            _log.exception("policy lookup failed", domain=domain)
            cached = self._cache.get(domain, self._clock())
            return cached.policy if cached is not None else None
        finally:
            if not lock.locked() and self._locks.get(domain) is lock:
                del self._locks[domain]

    async def _lookup(self, domain: str) -> Policy | None:
        now = self._clock()
        cached = self._cache.get(domain, now)
        try:
            record = parse_record(await self._resolver.txt(f"_mta-sts.{domain}"))
        except DnsTemporaryError:
            record = None
        if record is None or not self._cache.fetch_due(domain, record, now):
            # §3.1: no usable record does not remove a cached policy.
            return cached.policy if cached is not None else None
        try:
            body = await fetch_policy_text(
                domain,
                self._resolver,
                self._context,
                port=self._port,
                timeout=self._timeout,
                max_size=self._max_size,
            )
            policy = parse_policy(body)
        except (PolicyFetchError, InvalidPolicy) as exc:
            self._cache.fetch_failed(domain, record, now)
            self._failed(domain, policy_failure(exc))
            if cached is None or cached.policy.mode is not Mode.NONE:
                _log.warning(
                    "policy fetch failed",
                    domain=domain,
                    id=record.id,
                    reason=str(exc),
                    cached=cached.policy.mode.value if cached is not None else "-",
                )
            # §3.3: a valid cached policy still applies; without one, deliver as without.
            return cached.policy if cached is not None else None
        self._cache.store(domain, CachedPolicy(policy, record.id, now))
        self._failures.pop(domain, None)
        _log.info(
            "policy fetched",
            domain=domain,
            id=record.id,
            mode=policy.mode.value,
            mx=",".join(policy.mx),
            max_age=policy.max_age,
        )
        return policy
