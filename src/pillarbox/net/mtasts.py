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
- **Refresh** (§3.3 SHOULD, §10.2): :meth:`MtaStsPolicies.keep_fresh`, a task of the queue
  runner, fetches each cached policy again once it is due (:meth:`PolicyCache.refresh_due`),
  whether or not mail goes to its domain and whatever its TXT record says; a failed refresh
  is logged as a warning (unless the mode is ``none``) and the cached policy stays in force.
- **Persistence** (§5.1, §10.2): every policy fetched is written to the store
  (:class:`~pillarbox.store.types.StsPolicyRecord`) before it is applied, and
  :meth:`MtaStsPolicies.load`, run by the queue runner before its first delivery, puts the
  unexpired ones back in the cache. A restart therefore forgets nothing an attacker could
  exploit (stripping the TXT record, blocking the policy host) before ``max_age`` ends, and
  the refreshes resume on the loaded policies' schedule (their fetch times are kept). Expired
  rows are dropped at load and each refresh round. Failed fetches are not kept: after a
  restart a domain may be asked once more, sooner than :data:`FETCH_RETRY_SECONDS`.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

import h11

from pillarbox.dns.resolver import DnsTemporaryError, Resolver
from pillarbox.errors import PillarboxError
from pillarbox.observability.log import Log
from pillarbox.queue.mtasts import (
    CACHE_ENTRIES,
    MAX_POLICY_SIZE,
    REFRESH_SECONDS,
    CachedPolicy,
    InvalidPolicy,
    Mode,
    Policy,
    PolicyCache,
    StsRecord,
    parse_policy,
    parse_record,
)
from pillarbox.queue.tlsrpt import ResultType
from pillarbox.store.interface import Store
from pillarbox.store.types import StsPolicyRecord

#: RFC 8461 §3.2: the policy's fixed well-known path.
POLICY_PATH = "/.well-known/mta-sts.txt"
#: RFC 8461 §3.3: the suggested timeout of a fetch.
FETCH_TIMEOUT = 60.0
#: Shortest sleep between refresh rounds: refreshes due together go in one round.
REFRESH_TICK = 60.0
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
        refresh: float = REFRESH_SECONDS,
        store: Store | None = None,
        cache: PolicyCache | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """``store``: where fetched policies are kept across restarts (None: memory only)."""
        self._resolver = resolver
        self._context = context
        self._port = port
        self._timeout = timeout
        self._max_size = max_size
        #: Seconds after a fetch when a cached policy is fetched again (``queue.mta_sts_refresh``).
        self._refresh = refresh
        self._cache = cache or PolicyCache()
        self._store = store
        self._clock = clock
        self._locks: dict[str, asyncio.Lock] = {}
        #: domain → why its last policy fetch failed (cleared by a successful one).
        self._failures: OrderedDict[str, PolicyFailure] = OrderedDict()

    @property
    def refreshing(self) -> bool:
        """Cached policies are refreshed ahead of expiry (:meth:`keep_fresh`); 0 turns it off."""
        return self._refresh > 0

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
        record = await self._record(domain)
        if record is not None and self._cache.fetch_due(domain, record, now):
            fetched = await self._fetch(domain, record, cached, now, "fetch")
            if fetched is not None:
                return fetched.policy
        # §3.1: no usable record does not remove a cached policy; §3.3: nor does a failed
        # fetch (without one, mail goes as without MTA-STS).
        return cached.policy if cached is not None else None

    async def _record(self, domain: str) -> StsRecord | None:
        try:
            return parse_record(await self._resolver.txt(f"_mta-sts.{domain}"))
        except DnsTemporaryError:
            return None

    async def _fetch(
        self, domain: str, record: StsRecord, cached: CachedPolicy | None, now: float, kind: str
    ) -> CachedPolicy | None:
        """Fetch the policy ``record`` announces and cache it; None when that failed (``kind``,
        "fetch" or "refresh", names the attempt in the log)."""
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
                # §3.3, §10.2: the administrator is alerted, unless the mode is "none".
                _log.warning(
                    f"policy {kind} failed",
                    domain=domain,
                    id=record.id,
                    reason=str(exc),
                    cached=cached.policy.mode.value if cached is not None else "-",
                )
            return None
        fetched = CachedPolicy(policy, record.id, now)
        self._cache.store(domain, fetched)
        await self._keep(domain, fetched)
        self._failures.pop(domain, None)
        _log.info(
            f"policy {kind}ed",
            domain=domain,
            id=record.id,
            mode=policy.mode.value,
            mx=",".join(policy.mx),
            max_age=policy.max_age,
        )
        return fetched

    async def _keep(self, domain: str, cached: CachedPolicy) -> None:
        """Write a fetched policy to the store (module notes); a store that fails is logged,
        and the policy applies from memory meanwhile."""
        if self._store is None:
            return
        policy = cached.policy
        kept = StsPolicyRecord(
            domain=domain,
            policy_id=cached.id,
            mode=policy.mode.value,
            mx=policy.mx,
            max_age=policy.max_age,
            fetched=datetime.fromtimestamp(cached.fetched, UTC),
        )
        try:
            await self._store.save_sts_policy(kept)
        except Exception:
            _log.exception("policy not kept in the store", domain=domain)

    async def load(self) -> int:
        """Put the store's unexpired policies in the cache, the expired ones dropped; how many
        (module notes). A store that fails is logged: policies are then fetched anew."""
        if self._store is None:
            return 0
        now = datetime.fromtimestamp(self._clock(), UTC)
        try:
            await self._store.prune_sts_policies(now)
            kept = await self._store.sts_policies(now)
        except Exception:
            _log.exception("cached policies not loaded")
            return 0
        loaded = 0
        for row in reversed(kept[:CACHE_ENTRIES]):  # oldest first: the LRU keeps the latest
            try:
                policy = Policy(Mode(row.mode), row.mx, row.max_age)
            except ValueError:  # a mode from another version of the store's writer
                continue
            self._cache.store(
                row.domain, CachedPolicy(policy, row.policy_id, row.fetched.timestamp())
            )
            loaded += 1
        if loaded:
            _log.info("cached policies loaded", policies=loaded)
        return loaded

    async def refresh(self) -> int:
        """Fetch again every cached policy due for it (§3.3 SHOULD: before it expires; §10.2:
        whatever the TXT record says, so that an attacker must foil every refresh over the
        policy's lifetime, not one); the number refreshed."""
        refreshed = 0
        for domain in self._cache.refresh_due(self._clock(), self._refresh):
            lock = self._locks.setdefault(domain, asyncio.Lock())
            try:
                async with lock:
                    now = self._clock()
                    cached = self._cache.refreshable(domain, now, self._refresh)
                    if cached is None:
                        continue  # expired meanwhile, or a delivery fetched it meanwhile
                    # A new id in the TXT record is fetched under that id; no record, or none
                    # to be had, keeps the cached id (§10.2: the refresh goes on regardless).
                    record = await self._record(domain) or StsRecord(cached.id)
                    if await self._fetch(domain, record, cached, now, "refresh") is not None:
                        refreshed += 1
            finally:
                if not lock.locked() and self._locks.get(domain) is lock:
                    del self._locks[domain]
        return refreshed

    async def keep_fresh(self) -> None:
        """:meth:`refresh` as policies fall due, until cancelled (run by the queue runner)."""
        while True:
            try:
                await self.refresh()
                if self._store is not None:  # rows of domains no longer mailed (module notes)
                    await self._store.prune_sts_policies(datetime.fromtimestamp(self._clock(), UTC))
            except Exception:  # a bug here must not end the refreshes for good
                _log.exception("policy refresh round failed")
            due = self._cache.next_refresh(self._refresh)
            wait = self._refresh if due is None else due - self._clock()
            await asyncio.sleep(min(max(wait, REFRESH_TICK), self._refresh))
