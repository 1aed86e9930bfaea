"""Rolling a hosted zone's signing key over to a new one (``pillarbox dns rollover``), for a
zone whose parent we do not control: the operator carries each DS to the registrar by hand.

The keys stand in the store (``dnssec_keys``), one per :class:`~pillarbox.store.types.
DnssecKeyState` at most, so every node serving the zone signs with the same ones; this module
reads them into a :class:`KeyRing`, says where a rollover stands (:func:`rollover_status`)
against the DS set the parent publishes, and moves it on. It does no I/O of its own but
through the store, and the clock is an argument.

Implementation notes:

* **The method** is the double-signature of the DNSKEY RRset (RFC 6781 §4.1.2, RFC 7583
  §3.2.1 "Double-KSK") for the key's secure-entry-point half, with pre-publication (RFC 6781
  §4.1.1.1, RFC 7583 §3.1.1) for its zone-signing half, as a CSK rollover combines them
  (RFC 7583 §3.3). Steps, with the key states:

  1. ``dns rollover`` makes the next key ``published``: it joins the DNSKEY RRset and signs
     that RRset beside the active key; the data stays signed by the active key alone.
  2. Once the new DNSKEY RRset is in every cache (its TTL after the last node serves it,
     :meth:`RolloverTiming.ready_at`) the operator gives the registrar the new DS, beside
     the old one or in its place.
  3. ``dns rollover --finish`` (once the parent shows the new DS): the next key becomes
     ``active`` and signs everything, the old one ``retired``: still in the DNSKEY RRset,
     still signing it (both in one store transaction,
     :data:`~pillarbox.store.types.DNSSEC_FINISH`).
  4. :meth:`RolloverTiming.remove_at` later (``dns.dnssec_retire_seconds``: the parent's DS
     TTL, so no cache holds a DS set naming the old key alone, and the zone's TTLs, so no
     cache holds data the old key signed) the retired key is removed by the first node to
     read the keys after that.

  Why a validator never finds the zone bogus: the DNSKEY RRset is signed by every key in it
  at every step, so whichever DS set a validator holds — the old one, both, or only the new
  one — one of its DS names a key that signs the RRset (RFC 4035 §5.2); and the key that
  signs the data is in every cached DNSKEY RRset before its first signature is served (step
  2 waits for that) and stays in it until the data it signed has expired from caches (step
  4).

* **Why not double-DS** (RFC 6781 §4.1.2, RFC 7583 §3.2.2): it would have the registrar
  publish the new DS before the zone changes and take the old one away after, two visits
  to the registrar with the zone's change waiting on the first; here one visit suffices
  (the DS replaced), and a registrar that takes only one DS at a time is no obstacle.
  **Why not signing the data twice** (RFC 6781 §4.1.1.2): the signatures are made online,
  as answers go out (:mod:`pillarbox.dns.signing`): every answer would carry two RRSIGs per
  RRset and every new name cost two ECDSA signings, for the days the rollover lasts; only
  the DNSKEY RRset, signed once per refresh and cached, carries two here.

* **The parent's DS set** is looked up with ``[dns]``'s resolver (as ``dns check`` does):
  ``--finish`` is refused until it names the next key, unless ``--force`` (the operator
  knows better, or the parent is not visible from here). It never waits on the old DS being
  gone: a DS naming no key of the zone is ignored by validators as long as another names a
  key that signs the DNSKEY RRset (RFC 4035 §5.2; RFC 6840 §5.11), so the status asks for
  its removal without depending on it.

* **A stored key that does not load** (a corrupt row, a restore gone wrong) is left out of
  the ring and reported (:attr:`KeyRing.broken`). Without a loadable active key the zone is
  served unsigned (:mod:`pillarbox.dns.hosted`); ``dns rollover --force`` replaces a broken
  active key by a new one at once.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from pillarbox.dns.check import canonical_ds
from pillarbox.dns.records import DnsRecord
from pillarbox.dns.signing import ZoneKey, ZoneKeyError, new_key_pem
from pillarbox.errors import UserError
from pillarbox.store.interface import Store
from pillarbox.store.types import DnssecKey, DnssecKeyState


class RolloverRefused(UserError):
    """A rollover step asked for out of turn (one under way, not ready, no next key)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class RolloverTiming:
    """How long each step waits (module notes)."""

    #: TTL of the DNSKEY RRset the zones serve (the SOA's, :class:`~pillarbox.dns.
    #: authoritative.SoaSettings`).
    dnskey_ttl: int
    #: Seconds until every node serves a change to the keys (the zones' cache).
    propagation: float
    #: Seconds a retired key stays published (``dns.dnssec_retire_seconds``).
    retire_after: int

    def ready_at(self, published: DnssecKey) -> datetime:
        """When the next key's DNSKEY is in every cache: its DS may go to the registrar."""
        return published.changed + timedelta(seconds=self.dnskey_ttl + self.propagation)

    def remove_at(self, retired: DnssecKey) -> datetime:
        """When the retired key leaves the DNSKEY RRset."""
        return retired.changed + timedelta(seconds=self.retire_after)


@dataclass(frozen=True, slots=True)
class RingKey:
    """A stored key and the key it loads as."""

    stored: DnssecKey
    key: ZoneKey

    @property
    def state(self) -> DnssecKeyState:
        return self.stored.state


@dataclass(frozen=True, slots=True)
class KeyRing:
    """A zone's keys as the store holds them: the ones that load, by state, and the ones
    that do not (each with why)."""

    domain: str
    keys: tuple[RingKey, ...]
    broken: tuple[tuple[DnssecKey, str], ...] = ()

    @classmethod
    def load(cls, domain: str, stored: Sequence[DnssecKey]) -> KeyRing:
        keys, broken = [], []
        for row in stored:
            try:
                keys.append(RingKey(row, ZoneKey(domain, row.key_pem)))
            except ZoneKeyError as exc:
                broken.append((row, str(exc)))
        return cls(domain, tuple(keys), tuple(broken))

    def get(self, state: DnssecKeyState) -> RingKey | None:
        return next((k for k in self.keys if k.state is state), None)

    @property
    def active(self) -> RingKey | None:
        """The key that signs the data; None when it does not load (or none was made)."""
        return self.get(DnssecKeyState.ACTIVE)

    def others(self) -> tuple[ZoneKey, ...]:
        """The keys beside the active one in the DNSKEY RRset, signing it alone."""
        return tuple(k.key for k in self.keys if k.state is not DnssecKeyState.ACTIVE)

    def parent_keys(self, timing: RolloverTiming, now: datetime) -> tuple[ZoneKey, ...]:
        """The keys whose DS the parent may hold at ``now`` without a validator finding the
        zone bogus: the active key, and a published next key once every cache holds the
        DNSKEY RRset naming it (:meth:`RolloverTiming.ready_at`); never a retired key (its
        DS is to go). What the CDS and CDNSKEY RRsets ask for (:mod:`pillarbox.dns.cds`)."""
        active, published = self.active, self.get(DnssecKeyState.PUBLISHED)
        found = [] if active is None else [active.key]
        if published is not None and now >= timing.ready_at(published.stored):
            found.append(published.key)
        return tuple(found)

    def parent_ds(self, timing: RolloverTiming, now: datetime, ttl: int) -> list[DnsRecord]:
        """The DS records the parent should publish now, each saying so in its purpose: the
        active key's, and during step 2 the next key's (from its ready time)."""
        found = []
        active, published = self.active, self.get(DnssecKeyState.PUBLISHED)
        if active is not None:
            purpose = "DNSSEC delegation signer, for the registrar"
            if published is not None:
                purpose += "; kept until the next key's DS replaces it"
            found.append(_ds(active.key, ttl, purpose))
        if published is not None:
            ready = timing.ready_at(published.stored)
            when = "now" if now >= ready else f"from {ready:%Y-%m-%d %H:%M} UTC, not before"
            purpose = f"DNSSEC rollover: the next key's DS, for the registrar {when}"
            found.append(_ds(published.key, ttl, purpose))
        return found


def _ds(key: ZoneKey, ttl: int, purpose: str) -> DnsRecord:
    ds = key.ds_record(ttl)
    return DnsRecord(ds.name, ds.type, ds.value, ds.ttl, purpose)


def broken_key_fix(domain: str) -> str:
    """What an operator does about a stored key of ``domain`` that does not load."""
    return (
        "restore the store (its dnssec_keys) from a backup, or run `pillarbox dns rollover "
        f"{domain} --force`: it removes the key, and makes a new active key if that one was "
        "it (then give the registrar the new DS at once: `pillarbox dns records`)"
    )


class RolloverStep(enum.Enum):
    """Where a zone's rollover stands (module notes' steps)."""

    #: One key, no rollover.
    SIGNED = "signed"
    #: Step 1: the next key is published; its DS must not reach the parent yet.
    PUBLISHED = "published"
    #: Step 2: the next key's DS may go to the registrar; the parent does not show it yet.
    READY = "ready"
    #: Step 2 done: the parent shows the next key's DS; ``--finish`` may go on.
    SUBMITTED = "submitted"
    #: Step 3 done: the old key is retired, removed at its time.
    RETIRED = "retired"
    #: The active key does not load: the zone is served unsigned.
    BROKEN = "broken"


@dataclass(frozen=True, slots=True)
class RolloverStatus:
    step: RolloverStep
    #: What the step means and what to do next, for the operator.
    advice: tuple[str, ...]

    @property
    def may_finish(self) -> bool:
        return self.step is RolloverStep.SUBMITTED


def rollover_status(
    ring: KeyRing, timing: RolloverTiming, now: datetime, parent: Sequence[str] | None
) -> RolloverStatus:
    """Where ``ring``'s rollover stands at ``now``, given the DS values the parent publishes
    (None: the lookup failed); first of all, when the parent's DS set names none of the
    zone's keys (a broken active key replaced by ``--force``, a DS left from a removed key),
    that the registrar needs the active key's DS at once."""
    status = _step_status(ring, timing, now, parent)
    ours = {canonical_ds(k.key.ds_record(timing.dnskey_ttl).value) for k in ring.keys}
    if ring.active is None or not parent or ours & {canonical_ds(v) for v in parent}:
        return status
    # RFC 4035 §5.2: a DS set none of whose records matches a DNSKEY of the zone leaves no
    # authentication path: validators find the zone bogus.
    urgent = (
        f"the parent's DS names no key of {ring.domain}: validating resolvers fail the zone "
        f"until the registrar has the active key's DS (tag {ring.active.key.key_tag}): give "
        "it now"
    )
    return replace(status, advice=(urgent, *status.advice))


def _step_status(
    ring: KeyRing, timing: RolloverTiming, now: datetime, parent: Sequence[str] | None
) -> RolloverStatus:
    """:func:`rollover_status` without the check of the parent's DS against our keys."""
    domain, active = ring.domain, ring.active
    if active is None:
        return RolloverStatus(
            RolloverStep.BROKEN,
            (
                f"the active key of {domain} does not load: the zone is served unsigned",
                broken_key_fix(domain),
            ),
        )
    seen = None if parent is None else {canonical_ds(v) for v in parent}
    published, retired = ring.get(DnssecKeyState.PUBLISHED), ring.get(DnssecKeyState.RETIRED)
    parent_line = (
        "the parent's DS set could not be looked up"
        if parent is None
        else f"the parent publishes {len(parent)} DS record(s)"
        + "".join(f"\n  {v}" for v in parent)
    )
    if published is not None:
        tag = published.key.key_tag
        ready = timing.ready_at(published.stored)
        if now < ready:
            return RolloverStatus(
                RolloverStep.PUBLISHED,
                (
                    f"the next key (tag {tag}) is published beside the active key "
                    f"(tag {active.key.key_tag}); caches learn it by {ready:%Y-%m-%d %H:%M} UTC",
                    "then give the registrar its DS (in place of the old one, or beside it), "
                    f"and once the parent shows it run `pillarbox dns rollover {domain} "
                    "--finish`",
                    parent_line,
                ),
            )
        new_ds = canonical_ds(published.key.ds_record(timing.dnskey_ttl).value)
        if seen is None or new_ds not in seen:
            return RolloverStatus(
                RolloverStep.READY,
                (
                    f"give the registrar the DS of the next key (tag {tag}) now: every cache "
                    "holds its DNSKEY",
                    parent_line,
                    "--finish waits until the parent shows it"
                    + ("" if seen is None else " (it does not yet)"),
                ),
            )
        return RolloverStatus(
            RolloverStep.SUBMITTED,
            (
                f"the parent shows the next key's DS (tag {tag})",
                parent_line,
                f"run `pillarbox dns rollover {domain} --finish`: the next key then signs the zone",
            ),
        )
    if retired is not None:
        old_ds = canonical_ds(retired.key.ds_record(timing.dnskey_ttl).value)
        lines = [
            f"the old key (tag {retired.key.key_tag}) is retired: it stays in the DNSKEY "
            f"RRset until {timing.remove_at(retired.stored):%Y-%m-%d %H:%M} UTC, then goes",
            parent_line,
        ]
        if seen is not None and old_ds in seen:
            lines.append(f"remove the old key's DS (tag {retired.key.key_tag}) at the registrar")
        return RolloverStatus(RolloverStep.RETIRED, tuple(lines))
    return RolloverStatus(
        RolloverStep.SIGNED,
        (f"signed with one key (tag {active.key.key_tag}), no rollover under way", parent_line),
    )


async def key_ring(
    store: Store, domain: str, now: datetime, timing: RolloverTiming | None
) -> KeyRing:
    """``domain``'s keys, an active one made and stored if it has none (of nodes making one
    at once, each gets the one stored first); with ``timing``, a retired key past its
    removal time is removed first."""
    stored = await store.dnssec_keys(domain)
    if not stored:
        # ECDSA P-256 key generation takes well under a millisecond: no executor needed.
        state = DnssecKeyState.ACTIVE
        stored = [await store.add_dnssec_key(DnssecKey(domain, new_key_pem(), now, state, now))]
    ring = KeyRing.load(domain, stored)
    retired = ring.get(DnssecKeyState.RETIRED)
    if timing is not None and retired is not None and now >= timing.remove_at(retired.stored):
        await store.remove_dnssec_key(retired.stored)  # another node's removal is as good
        ring = KeyRing(domain, tuple(k for k in ring.keys if k is not retired), ring.broken)
    return ring


def _new_key(ring: KeyRing) -> bytes:
    """A new key whose tag no key of ``ring`` has: the tag tells keys apart in the DS, the
    RRSIGs and the operator's view (RFC 4034 Appendix B: tags may collide; never ours)."""
    tags = {k.key.key_tag for k in ring.keys}
    while True:
        pem = new_key_pem()
        if ZoneKey(ring.domain, pem).key_tag not in tags:
            return pem


async def start_rollover(
    store: Store, ring: KeyRing, now: datetime, *, force: bool = False
) -> KeyRing:
    """Step 1: a next key, published; the keys afterwards. Refused while a rollover is under
    way (a published or retired key) or a stored key does not load. With ``force`` the keys
    that do not load are removed first, and a broken active key is replaced by a new active
    key at once (the zone was served unsigned, so nothing gets worse)."""
    domain = ring.domain
    if force and ring.broken:
        for row, _why in ring.broken:
            await store.remove_dnssec_key(row)
        ring = KeyRing(domain, ring.keys)
        if ring.active is None:
            state = DnssecKeyState.ACTIVE
            await store.add_dnssec_key(DnssecKey(domain, _new_key(ring), now, state, now))
            return KeyRing.load(domain, await store.dnssec_keys(domain))
    if ring.broken:
        states = ", ".join(row.state.value for row, _why in ring.broken)
        raise RolloverRefused(
            f"{domain}: a stored key does not load ({states}); --force removes it"
            + (" and makes a new active key" if ring.active is None else "")
        )
    under_way = [k.state.value for k in ring.keys if k.state is not DnssecKeyState.ACTIVE]
    if under_way:
        raise RolloverRefused(
            f"{domain}: a rollover is under way (a {', '.join(under_way)} key): see "
            f"`pillarbox dns rollover {domain} --status`"
        )
    state = DnssecKeyState.PUBLISHED
    await store.add_dnssec_key(DnssecKey(domain, _new_key(ring), now, state, now))
    return KeyRing.load(domain, await store.dnssec_keys(domain))


async def finish_rollover(
    store: Store, status: RolloverStatus, domain: str, now: datetime, *, force: bool = False
) -> None:
    """Step 3: the next key active, the old one retired. Refused unless the parent shows the
    next key's DS (``status``), or ``force`` (a next key is needed even then)."""
    if not (status.may_finish or (force and status.step in _FORCEABLE)):
        raise RolloverRefused(
            f"{domain}: not finished ({status.step.value}): "
            + "; ".join(status.advice)
            + ("" if status.step not in _FORCEABLE else " (--force finishes anyway)")
        )
    if not await store.finish_dnssec_rollover(domain, now):
        raise RolloverRefused(f"{domain}: no next key to finish with (another node finished?)")


#: Steps ``--finish --force`` goes on from: a next key is published.
_FORCEABLE = frozenset({RolloverStep.PUBLISHED, RolloverStep.READY, RolloverStep.SUBMITTED})
