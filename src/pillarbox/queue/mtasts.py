"""MTA-STS (RFC 8461) for outbound delivery, without I/O: the ``_mta-sts`` TXT record, the
policy file, MX host matching, what a policy asks of each MX host, and the policy cache.

The lookups and the HTTPS fetch are in :mod:`pillarbox.net.mtasts`; the runner
(:mod:`pillarbox.queue.runner`) applies :func:`host_plan` to every MX host it tries.

Implementation notes:

- **TXT record** (§3.1): of the records at ``_mta-sts.<domain>``, only those beginning with
  ``v=STSv1;`` count; not exactly one, or one not matching the grammar, is "no policy".
  Unknown fields are ignored; a repeated ``id`` keeps the first (§3.2, last paragraph).
- **Policy file** (§3.2): ``key: value`` lines ended by CRLF or LF, UTF-8; ``version``,
  ``mode`` and ``max_age`` are required once (a repeat is ignored), ``mx`` at least once unless
  the mode is ``none``. A line that is not a field (a blank line included) makes the whole file
  invalid, and an invalid file is no policy: the sender goes on as without MTA-STS (§3.3).
- **MX matching** (§4.1): names compare case-insensitively; ``*.example.com`` matches exactly
  one label in front of ``example.com``.
- **Application** (§5): ``enforce`` sends only to matching MX hosts, only after STARTTLS with
  a certificate that chains to a trusted root and names the MX host; a host that fails is
  a temporary failure of that host (the next MX is tried; §5.1 step 2), never a bounce of its
  own (§5: the message may only fail for good after later attempts looked for a new policy,
  which every attempt does). ``testing`` delivers as without a policy but logs what would
  have failed (and reports it with TLS-RPT, :mod:`.tlsrpt`). ``none`` is no policy.
- **Cache** (§5.1, §3.3): a policy is kept for its ``max_age`` from the fetch and replaced when
  the TXT ``id`` changes; a failed fetch keeps the cached policy, and the same ``id`` is not
  fetched again for :data:`FETCH_RETRY_SECONDS`. Of two policies (or failures) of a domain the
  later one counts, whichever arrives first (another node's, read from the store, may be older
  than the one held); a failure no later than the policy held is stale. No usable TXT record
  does not drop a cached policy (§3.1). A cached policy is refreshed ahead of its expiry (§3.3
  SHOULD, §10.2): once a ``queue.mta_sts_refresh`` interval (a day) has passed since its fetch,
  or half its ``max_age`` if shorter, whatever the TXT record says; a failed refresh waits
  :data:`REFRESH_RETRY_SECONDS`. Time is an argument everywhere: this module reads no clock.
"""

from __future__ import annotations

import enum
import re
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from pillarbox.smtp.replies import Reply

if TYPE_CHECKING:  # .tlsrpt imports this module
    from pillarbox.queue.tlsrpt import ResultType

#: RFC 8461 §3.2: the largest max_age a policy may carry.
MAX_AGE_LIMIT = 31_557_600
#: RFC 8461 §3.3: the suggested limit on the policy body.
MAX_POLICY_SIZE = 64 * 1024
#: RFC 8461 §3.3: after a failed fetch, the same policy id is not fetched again for 5 minutes.
FETCH_RETRY_SECONDS = 300.0
#: RFC 8461 §3.3: cached policies are refreshed before they expire, "a suggested refresh
#: frequency is once per day" (``queue.mta_sts_refresh``).
REFRESH_SECONDS = 86_400.0
#: After a failed refresh, the domain waits this long for the next (§3.3 asks five minutes or
#: more; a refresh is not urgent while the cached policy applies).
REFRESH_RETRY_SECONDS = 3600.0
#: A failed fetch older than both retry waits decides nothing more (the store forgets it).
FAILURE_KEPT_SECONDS = max(FETCH_RETRY_SECONDS, REFRESH_RETRY_SECONDS)
#: Policies kept (LRU by domain).
CACHE_ENTRIES = 10_000

#: RFC 8461 §5 "enforce": an MX host the policy does not list gets no mail (RFC 3463 X.7.0,
#: a security policy status; temporary, §5).
MX_NOT_IN_POLICY = Reply(451, "4.7.0", "the MX host is not allowed by the MTA-STS policy")

# -- the TXT record (§3.1) ------------------------------------------------------------------------

_WSP = "[ \t]"
#: §3.1: records that do not begin with "v=STSv1;" are discarded (the delimiter may carry WSP).
_STS_VERSION = re.compile(rf"v=STSv1{_WSP}*;")
_TXT_FIELD_DELIM = re.compile(rf"{_WSP}*;{_WSP}*")
#: §3.1 sts-id.
_STS_ID = re.compile(r"id=([A-Za-z0-9]{1,32})")
#: §3.1 sts-extension: sts-ext-name "=" sts-ext-value.
_STS_EXTENSION = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,31}=[\x21-\x3a\x3c\x3e-\x7e]+")


@dataclass(frozen=True, slots=True)
class StsRecord:
    """The ``_mta-sts`` TXT record: the id of the domain's current policy."""

    id: str


def parse_record(texts: Sequence[bytes]) -> StsRecord | None:
    """The domain's STS record from all TXT records at ``_mta-sts.<domain>`` (strings already
    joined, §3.1); None when there is no single valid one."""
    candidates = [t for t in texts if _STS_VERSION.match(t.decode("latin-1"))]
    if len(candidates) != 1:
        return None
    try:
        text = candidates[0].decode("ascii")  # §3.1: MUST be US-ASCII
    except UnicodeDecodeError:
        return None
    fields = _TXT_FIELD_DELIM.split(text)
    if fields[-1] == "":
        fields.pop()  # the optional final sts-field-delim
    if len(fields) < 2:
        return None  # sts-version 1*(sts-field-delim sts-field)
    record_id = None
    for item in fields[1:]:
        id_match = _STS_ID.fullmatch(item)
        if id_match is not None:
            record_id = record_id or id_match.group(1)  # a repeated field: the first counts
        elif not _STS_EXTENSION.fullmatch(item):
            return None
    return StsRecord(record_id) if record_id is not None else None


# -- the policy file (§3.2) -----------------------------------------------------------------------


class Mode(enum.Enum):
    ENFORCE = "enforce"
    TESTING = "testing"
    NONE = "none"


@dataclass(frozen=True, slots=True)
class Policy:
    mode: Mode
    #: Lowercase patterns: host names, or ``*.`` and a suffix.
    mx: tuple[str, ...]
    max_age: int


class InvalidPolicy(ValueError):
    """The policy file does not follow RFC 8461 §3.2; the domain is treated as having none."""


#: RFC 5321 §4.1.2 Domain: sub-domain *("." sub-domain), Let-dig [Ldh-str].
_DOMAIN = r"[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*"
#: §3.2 sts-policy-mx-value.
_MX_PATTERN = re.compile(rf"(?:\*\.)?{_DOMAIN}")
#: §3.2 sts-policy-field: name ":" *WSP value, then *WSP before the line ends.
_POLICY_FIELD = re.compile(rf"([A-Za-z0-9][A-Za-z0-9_.\-]{{0,31}}):{_WSP}*(.*?){_WSP}*")
#: §3.2 sts-policy-ext-value: visible characters (UTF-8 too), inner spaces, no controls.
_EXT_VALUE = re.compile(r"[^\x00-\x20\x7f](?:[^\x00-\x1f\x7f]*[^\x00-\x20\x7f])?")
#: §3.2 sts-policy-max-age-value.
_MAX_AGE = re.compile(r"[0-9]{1,10}")


def _lines(body: bytes) -> list[str]:
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidPolicy("the policy is not UTF-8") from None
    # §3.2 sts-policy-term = LF / CRLF, optional after the last field.
    lines = text.split("\n")
    if lines[-1] == "":
        lines.pop()
    return [line.removesuffix("\r") for line in lines]


def parse_policy(body: bytes) -> Policy:
    """The policy served at ``https://mta-sts.<domain>/.well-known/mta-sts.txt``; raises
    :class:`InvalidPolicy` if it is not valid."""
    single: dict[str, str] = {}
    mx: list[str] = []
    for line in _lines(body):
        match = _POLICY_FIELD.fullmatch(line)
        if match is None:
            raise InvalidPolicy(f"not a policy field: {line[:80]!r}")
        name, value = match.groups()
        if name == "mx":
            if not _MX_PATTERN.fullmatch(value):
                raise InvalidPolicy(f"not an MX pattern: {value[:80]!r}")
            mx.append(value.lower())
        elif name in ("version", "mode", "max_age"):
            single.setdefault(name, value)  # §3.2: a repeated field: all but the first ignored
        elif not _EXT_VALUE.fullmatch(value):
            raise InvalidPolicy(f"bad value of {name}")  # unknown fields are ignored when valid
    if single.get("version") != "STSv1":
        raise InvalidPolicy("version is not STSv1")
    try:
        mode = Mode(single.get("mode", ""))
    except ValueError:
        raise InvalidPolicy(f"unknown mode {single.get('mode', '')[:20]!r}") from None
    max_age = single.get("max_age", "")
    if not _MAX_AGE.fullmatch(max_age) or int(max_age) > MAX_AGE_LIMIT:
        raise InvalidPolicy(f"max_age {max_age[:20]!r} is not 0–{MAX_AGE_LIMIT}")
    if not mx and mode is not Mode.NONE:
        raise InvalidPolicy("no mx pattern")  # §3.2: required except in mode "none"
    return Policy(mode, tuple(mx), int(max_age))


# -- applying a policy (§4, §5) -------------------------------------------------------------------


def mx_matches(policy: Policy, host: str) -> bool:
    """RFC 8461 §4.1: ``host`` (an MX record's name) matches one of the policy's patterns."""
    name = host.lower().rstrip(".")
    for pattern in policy.mx:
        if pattern.startswith("*."):
            label, dot, parent = name.partition(".")
            # §4.1: the wildcard is the entire left-most label, and only that one.
            if dot and label and parent == pattern[2:]:
                return True
        elif name == pattern:
            return True
    return False


class TlsPlan(enum.Enum):
    """How to connect to one MX host under its domain's policy."""

    #: No policy (or mode "none"): STARTTLS when offered, any certificate (RFC 7435).
    OPPORTUNISTIC = "opportunistic"
    #: "enforce", the host listed: STARTTLS with a certificate valid for the host, or no mail.
    VERIFIED = "verified"
    #: "testing", the host listed: try as VERIFIED; a failure is logged and the host is used as
    #: OPPORTUNISTIC.
    PROBED = "probed"
    #: "enforce", the host not listed: no connection.
    REFUSED = "refused"


@dataclass(frozen=True, slots=True)
class HostPlan:
    tls: TlsPlan
    #: The policy does not list the host (refused under "enforce", logged under "testing").
    mx_mismatch: bool = False


def host_plan(policy: Policy | None, host: str) -> HostPlan:
    """What the domain's policy asks of delivery to ``host`` (RFC 8461 §5)."""
    if policy is None or policy.mode is Mode.NONE:
        return HostPlan(TlsPlan.OPPORTUNISTIC)
    listed = mx_matches(policy, host)
    if policy.mode is Mode.ENFORCE:
        return HostPlan(TlsPlan.VERIFIED if listed else TlsPlan.REFUSED, not listed)
    # "testing": a host the policy does not list is logged; its certificate is not worth probing.
    return HostPlan(TlsPlan.PROBED if listed else TlsPlan.OPPORTUNISTIC, not listed)


# -- the cache (§5.1, §3.3) -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CachedPolicy:
    policy: Policy
    #: The TXT record's id the policy was fetched under.
    id: str
    #: Wall-clock seconds of the fetch.
    fetched: float

    def fresh(self, now: float) -> bool:
        """RFC 8461 §3.2: a policy is cached for up to max_age from the last fetch."""
        return now < self.fetched + self.policy.max_age

    def refresh_at(self, interval: float) -> float:
        """When to fetch the policy again, ahead of its expiry (§3.3 SHOULD, §10.2): ``interval``
        after the fetch, or halfway through a shorter ``max_age``, never within
        :data:`FETCH_RETRY_SECONDS` of it."""
        return self.fetched + max(FETCH_RETRY_SECONDS, min(interval, self.policy.max_age / 2))


@dataclass(frozen=True, slots=True)
class FailedFetch:
    """A failed policy fetch: the TXT id it was under and when, which decide when the domain is
    asked again (§3.3), and why, as a TLS report names it (RFC 8460 §4.3.2.2)."""

    id: str
    #: Wall-clock seconds of the attempt.
    failed: float
    result_type: ResultType
    reason: str


class PolicyCache:
    """Policies by domain, and the failed fetches since each one's last success (see the
    module notes)."""

    def __init__(self, *, max_entries: int = CACHE_ENTRIES) -> None:
        self._max_entries = max_entries
        self._policies: OrderedDict[str, CachedPolicy] = OrderedDict()
        self._failures: OrderedDict[str, FailedFetch] = OrderedDict()
        #: Unexpired entries the bound pushed out (the least recently used): what the cache
        #: no longer knows though it was told.
        self.dropped = 0

    def get(self, domain: str, now: float) -> CachedPolicy | None:
        """The domain's unexpired policy; an expired one is forgotten."""
        cached = self._policies.get(domain)
        if cached is None:
            return None
        if not cached.fresh(now):
            del self._policies[domain]
            return None
        self._policies.move_to_end(domain)
        return cached

    def fetch_due(self, domain: str, record: StsRecord, now: float) -> bool:
        """Whether to fetch the policy that ``record`` announces (§5.1 step 1, §3.3)."""
        cached = self.get(domain, now)
        if cached is not None and cached.id == record.id:
            return False
        failure = self._failures.get(domain)
        return (
            failure is None
            or failure.id != record.id
            or now >= failure.failed + FETCH_RETRY_SECONDS
        )

    def store(self, domain: str, cached: CachedPolicy) -> None:
        """Keep ``cached`` unless the policy held was fetched after it; it ends the failures
        before it."""
        held = self._policies.get(domain)
        if held is not None and held.fetched > cached.fetched:
            return
        failure = self._failures.get(domain)
        if failure is not None and failure.failed <= cached.fetched:
            del self._failures[domain]
        self._policies[domain] = cached
        self._policies.move_to_end(domain)
        while len(self._policies) > self._max_entries:
            self._policies.popitem(last=False)
            self.dropped += 1

    def refresh_due(self, now: float, interval: float) -> list[str]:
        """Domains whose cached policy is due for a proactive refresh (§3.3): fresh still, and
        past :meth:`_refresh_at`."""
        return [d for d in self._policies if self.refreshable(d, now, interval) is not None]

    def refreshable(self, domain: str, now: float, interval: float) -> CachedPolicy | None:
        """The domain's cached policy if it is due for a refresh now."""
        cached = self._policies.get(domain)
        if cached is None or not cached.fresh(now):
            return None
        return cached if now >= self._refresh_at(domain, cached, interval) else None

    def next_refresh(self, interval: float) -> float | None:
        """When the next refresh falls due; None when no policy is cached."""
        return min(
            (self._refresh_at(d, c, interval) for d, c in self._policies.items()), default=None
        )

    def _refresh_at(self, domain: str, cached: CachedPolicy, interval: float) -> float:
        """:meth:`CachedPolicy.refresh_at`, or :data:`REFRESH_RETRY_SECONDS` after the last
        failed fetch for the domain if that is later."""
        failure = self._failures.get(domain)
        retry = failure.failed + REFRESH_RETRY_SECONDS if failure is not None else 0.0
        return max(cached.refresh_at(interval), retry)

    def fetch_failed(self, domain: str, failure: FailedFetch) -> None:
        """Keep ``failure`` unless a later failure or policy of the domain is held."""
        held = self._failures.get(domain)
        policy = self._policies.get(domain)
        if (held is not None and held.failed > failure.failed) or (
            policy is not None and policy.fetched >= failure.failed
        ):
            return
        self._failures[domain] = failure
        self._failures.move_to_end(domain)
        while len(self._failures) > self._max_entries:
            self._failures.popitem(last=False)
            self.dropped += 1

    def failure(self, domain: str) -> FailedFetch | None:
        """The domain's failed fetch since its last successful one, if any."""
        return self._failures.get(domain)
