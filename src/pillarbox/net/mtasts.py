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
- **Read-through** (PostgreSQL nodes share the store): before it would fetch or refresh a
  policy, and whenever memory holds no unexpired policy of the domain, a node reads what the
  store holds of it (:meth:`~pillarbox.store.interface.Store.sts_cache_entry`, one read) and
  takes whatever is later than its own: a policy another node fetched (so it is used without
  being fetched again, and enforced even if an attacker strips the TXT record from this
  node's view), or a failure another node met (so the retry wait holds cluster-wide). The
  cost is one indexed read per delivery to a domain without a cached policy, the common case
  of domains with no MTA-STS; a fetch costs a TLS handshake and an HTTP exchange.
  A store no other process writes (``shared`` false: SQLite, whose server lock makes this
  server the data directory's only one, and only the server's queue fetches policies) holds
  nothing memory lacks once :meth:`MtaStsPolicies.load` has put all of it there and the
  cache's bound has pushed nothing out since (:attr:`PolicyCache.dropped`): then the read is
  skipped, a miss costs nothing but the dictionary lookup (docs/mta-sts.md has the figures).
- **Refresh** (§3.3 SHOULD, §10.2): :meth:`MtaStsPolicies.keep_fresh`, a task of the queue
  runner, fetches each cached policy again once it is due (:meth:`PolicyCache.refresh_due`),
  whether or not mail goes to its domain and whatever its TXT record says; a failed refresh
  is logged as a warning (unless the mode is ``none``) and the cached policy stays in force.
- **Persistence** (§5.1, §10.2): every policy fetched is written to the store
  (:class:`~pillarbox.store.types.StsPolicyRecord`) before it is applied, and
  :meth:`MtaStsPolicies.load`, run by the queue runner before its first delivery, puts the
  unexpired ones back in the cache. A restart therefore forgets nothing an attacker could
  exploit (stripping the TXT record, blocking the policy host) before ``max_age`` ends, and
  the refreshes resume on the loaded policies' schedule (their fetch times are kept). Failed
  fetches are written too (:class:`~pillarbox.store.types.StsFetchFailure`: the id, the
  time, the §4.3.2.2 result type and the reason) and loaded alike, so a restart waits out
  :data:`FETCH_RETRY_SECONDS` (and a failed refresh :data:`REFRESH_RETRY_SECONDS`) as the
  process before it would have; a successful fetch forgets the domain's failure in the same
  write. Expired policies, and failures older than :data:`FAILURE_KEPT_SECONDS` (which decide
  nothing more), are dropped at load and each refresh round.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import Callable
from datetime import UTC, datetime

import h11

from pillarbox.dns.resolver import DnsTemporaryError, Resolver
from pillarbox.errors import PillarboxError
from pillarbox.observability.log import Log
from pillarbox.queue.mtasts import (
    CACHE_ENTRIES,
    FAILURE_KEPT_SECONDS,
    MAX_POLICY_SIZE,
    REFRESH_SECONDS,
    CachedPolicy,
    FailedFetch,
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
from pillarbox.store.types import StsFetchFailure, StsPolicyRecord

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


def failure_type(exc: PolicyFetchError | InvalidPolicy) -> ResultType:
    """Why a policy could not be had, as a TLS report names it (RFC 8460 §4.3.2.2): an invalid
    policy file, a policy host whose certificate fails PKIX, or any other failure to fetch."""
    if isinstance(exc, InvalidPolicy):
        return ResultType.STS_POLICY_INVALID
    if "certificate verify failed" in exc.reason.lower():
        return ResultType.STS_WEBPKI_INVALID
    return ResultType.STS_POLICY_FETCH_ERROR


def _at(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


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
        shared: bool = True,
        cache: PolicyCache | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """``store``: where fetched policies are kept across restarts (None: memory only);
        ``shared``: whether other nodes write it too
        (:func:`~pillarbox.store.open.is_postgresql` of its URL), so that misses are read
        through (module notes)."""
        self._resolver = resolver
        self._context = context
        self._port = port
        self._timeout = timeout
        self._max_size = max_size
        #: Seconds after a fetch when a cached policy is fetched again (``queue.mta_sts_refresh``).
        self._refresh = refresh
        self._cache = cache or PolicyCache()
        self._store = store
        self._shared = shared
        #: :meth:`load` put everything the store held in memory.
        self._loaded_all = False
        self._clock = clock
        self._locks: dict[str, asyncio.Lock] = {}

    @property
    def refreshing(self) -> bool:
        """Cached policies are refreshed ahead of expiry (:meth:`keep_fresh`); 0 turns it off."""
        return self._refresh > 0

    def fetch_failure(self, domain: str) -> FailedFetch | None:
        """The domain's last failed policy fetch, if none has succeeded since."""
        return self._cache.failure(domain)

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
        record = await self._record(domain)
        if self._cache.get(domain, now) is None or (
            record is not None and self._cache.fetch_due(domain, record, now)
        ):
            await self._read_through(domain, now)
        cached = self._cache.get(domain, now)
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
            failure = FailedFetch(record.id, now, failure_type(exc), str(exc))
            self._cache.fetch_failed(domain, failure)
            await self._keep(domain, failure)
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
        _log.info(
            f"policy {kind}ed",
            domain=domain,
            id=record.id,
            mode=policy.mode.value,
            mx=",".join(policy.mx),
            max_age=policy.max_age,
        )
        return fetched

    async def _keep(self, domain: str, kept: CachedPolicy | FailedFetch) -> None:
        """Write a fetched policy, or a failed fetch, to the store (module notes); a store that
        fails is logged, and memory serves meanwhile."""
        if self._store is None:
            return
        try:
            if isinstance(kept, CachedPolicy):
                policy = kept.policy
                await self._store.save_sts_policy(
                    StsPolicyRecord(
                        domain=domain,
                        policy_id=kept.id,
                        mode=policy.mode.value,
                        mx=policy.mx,
                        max_age=policy.max_age,
                        fetched=_at(kept.fetched),
                    )
                )
            else:
                await self._store.save_sts_fetch_failure(
                    StsFetchFailure(
                        domain=domain,
                        policy_id=kept.id,
                        failed=_at(kept.failed),
                        result_type=kept.result_type.value,
                        reason=kept.reason,
                    )
                )
        except Exception:
            _log.exception("policy fetch not kept in the store", domain=domain)

    def _take_policy(self, row: StsPolicyRecord) -> bool:
        """Put a policy read from the store in the cache (unless one fetched later is held);
        False for a row this version cannot read."""
        try:
            policy = Policy(Mode(row.mode), row.mx, row.max_age)
        except ValueError:  # a mode from another version of the store's writer
            return False
        self._cache.store(row.domain, CachedPolicy(policy, row.policy_id, row.fetched.timestamp()))
        return True

    def _take_failure(self, row: StsFetchFailure) -> None:
        """Put a failed fetch read from the store in the cache (unless something later of the
        domain is held)."""
        try:
            result_type = ResultType(row.result_type)
        except ValueError:  # a result type from another version of the store's writer
            return
        failure = FailedFetch(row.policy_id, row.failed.timestamp(), result_type, row.reason)
        self._cache.fetch_failed(row.domain, failure)

    @property
    def reads_through(self) -> bool:
        """Whether a miss reads the store: it may hold what memory does not (module notes)."""
        if self._store is None:
            return False
        return self._shared or not self._loaded_all or self._cache.dropped > 0

    async def _read_through(self, domain: str, now: float) -> None:
        """Take what the store holds of ``domain`` where it is later than memory's (module
        notes: another node's fetch or failure); a store that fails is logged."""
        if self._store is None or not self.reads_through:
            return
        try:
            entry = await self._store.sts_cache_entry(domain, _at(now))
        except Exception:
            _log.exception("cached policy not read", domain=domain)
            return
        if entry.policy is not None:
            self._take_policy(entry.policy)
        if entry.failure is not None:
            self._take_failure(entry.failure)

    async def _prune(self, now: float) -> None:
        """Drop the store's expired policies and the failures that decide nothing more."""
        assert self._store is not None
        await self._store.prune_sts_policies(_at(now))
        await self._store.prune_sts_fetch_failures(_at(now - FAILURE_KEPT_SECONDS))

    async def load(self) -> int:
        """Put the store's unexpired policies and its recent failed fetches in the cache, after
        dropping the rest; how many policies (module notes). A store that fails is logged:
        policies are then fetched anew."""
        if self._store is None:
            return 0
        now = self._clock()
        try:
            await self._prune(now)
            kept = await self._store.sts_policies(_at(now))
            failed = await self._store.sts_fetch_failures(_at(now - FAILURE_KEPT_SECONDS))
        except Exception:
            _log.exception("cached policies not loaded")
            return 0
        # Oldest first: the LRU keeps the latest.
        loaded = sum(self._take_policy(row) for row in reversed(kept[:CACHE_ENTRIES]))
        for row in reversed(failed[:CACHE_ENTRIES]):
            self._take_failure(row)
        self._loaded_all = len(kept) <= CACHE_ENTRIES and len(failed) <= CACHE_ENTRIES
        if loaded or failed:
            _log.info("cached policies loaded", policies=loaded, failures=len(failed))
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
                    if self._cache.refreshable(domain, now, self._refresh) is None:
                        continue  # expired meanwhile, or a delivery fetched it meanwhile
                    await self._read_through(domain, now)
                    cached = self._cache.refreshable(domain, now, self._refresh)
                    if cached is None:
                        continue  # another node refreshed it, or failed to, not long ago
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
                    await self._prune(self._clock())
            except Exception:  # a bug here must not end the refreshes for good
                _log.exception("policy refresh round failed")
            due = self._cache.next_refresh(self._refresh)
            wait = self._refresh if due is None else due - self._clock()
            await asyncio.sleep(min(max(wait, REFRESH_TICK), self._refresh))
