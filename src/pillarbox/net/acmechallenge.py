"""ACME challenges (RFC 8555 §8): which one answers each authorization, and the answers put
where the CA will look for them while an attempt lasts.

Implementation notes:

- **Challenge choice** (``[tls] acme_challenges``, in order of preference), per authorization:
  http-01 or tls-alpn-01 for a name that is not a wildcard (each proves the one name it is
  asked under), tls-alpn-01 answered by the https listener, which ``pillarbox serve`` hands
  :attr:`~pillarbox.net.acme.CertificateManager.tls_alpn`; dns-01 when our authoritative DNS
  server serves the hosted domain whose zone holds ``_acme-challenge.<name>``, or else when
  ``acme_dns_hook`` is set. A wildcard's authorization is for its base name and only dns-01
  can prove it (RFC 8555 §7.1.3, §8.4). No choice left fails the attempt naming the name and
  each type's reason.
- **Challenge responses** (http-01) live in one dict, token → key authorization
  (``Services.acme_challenges``), that the web app's ``/.well-known/acme-challenge/`` route
  and the dedicated challenge listener look tokens up in, and in the store (``acme_answers``),
  where those of every other node look a token they do not hold up: behind a balancer the
  CA's request may reach any node. A token never becomes a path. Each attempt removes its
  tokens when it ends; their expiry (the attempt's timeout and
  :data:`~pillarbox.dns.acmerecords.EXPIRY_MARGIN`) is the backstop after a crash.
- **TLS-ALPN-01 answers** are a context per name presenting its validation certificate
  (:mod:`pillarbox.net.tlsalpn`), made off the loop before the CA is told to validate and
  dropped when the attempt ends; the name and key authorization go to the store too, where
  every other node's copy picks them up, and the CA is told to validate once they have (twice
  :data:`~pillarbox.store.types.ACME_ANSWER_LAG`: a refresh may have read the store just
  before). http-01 answers wait as long: a node remembers "none pending" that long.
- **Concurrent attempts**: a name's tls-alpn-01 answer can be only one key authorization at a
  time: the store refuses a second node's while the first is pending, and that attempt fails
  and is retried with the back-off (http-01 tokens differ per attempt and never collide; dns-01
  names carry several values).
- **DNS-01 answers** in our zones are TXT records published through the store
  (:mod:`pillarbox.dns.acmerecords`), so every node's DNS server serves them; the CA is told to
  validate only once our own server answers them (§8.4). Elsewhere the administrator's command
  publishes them (:mod:`pillarbox.net.acmehook`) and must return once they are visible. Either
  way they are withdrawn when the attempt ends, validated or not.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
from collections.abc import AsyncIterator, Mapping, MutableMapping
from dataclasses import dataclass

from acme import challenges, messages
from josepy.jwk import JWKEC

from pillarbox.blocking import run_blocking
from pillarbox.certificates import acme_identifier, dns01_record_name, dns01_txt_value
from pillarbox.config import TlsSection
from pillarbox.dns.acmerecords import (
    EXPIRY_MARGIN,
    AcmeChallengeRecords,
    ChallengeRecord,
    NotAnswerable,
)
from pillarbox.errors import AlreadyExists, StorageError, TooManyEntries
from pillarbox.net.acmeclient import AcmeError
from pillarbox.net.acmehook import HookFailed, run_hook
from pillarbox.net.tlsalpn import TlsAlpnAnswers, validation_context
from pillarbox.observability.log import Log
from pillarbox.store.interface import Store
from pillarbox.store.types import ACME_ANSWER_LAG, ACME_HTTP01, ACME_TLS_ALPN01, AcmeAnswer

HTTP01 = ACME_HTTP01
DNS01 = "dns-01"
TLS_ALPN01 = ACME_TLS_ALPN01  # registered with the acme library by pillarbox.net.tlsalpn
#: The ``domain`` of a dns-01 record our DNS server does not serve: ``acme_dns_hook`` publishes it.
EXTERNAL_ZONE = ""


@dataclass(frozen=True, slots=True)
class Challenge:
    """One challenge chosen and its answer: for http-01 the token and key authorization the
    challenge route serves, for tls-alpn-01 the name and key authorization the validation
    certificate is made of, for dns-01 the TXT record to publish."""

    body: messages.ChallengeBody
    response: challenges.ChallengeResponse
    kind: str
    name: str
    token: str
    key_authorization: str
    record: ChallengeRecord | None = None


def choose_challenge(
    authorization: messages.Authorization,
    account_key: JWKEC,
    preference: tuple[str, ...],
    dns_domains: Mapping[str, str],
) -> Challenge:
    """The first challenge type of ``preference`` the CA offers and we can answer for this
    authorization, with its answer; :class:`AcmeError` naming why when there is none."""
    name = authorization.identifier.value
    shown = f"*.{name}" if authorization.wildcard else name
    offered = {getattr(body.chall, "typ", ""): body for body in authorization.challenges}
    reasons = []
    for kind in preference:
        body = offered.get(kind)
        if body is None:
            reasons.append(f"the CA offers no {kind}")
        elif kind == HTTP01 and authorization.wildcard:
            reasons.append("http-01 cannot prove a wildcard (RFC 8555 §8.3)")
        elif kind == TLS_ALPN01 and authorization.wildcard:
            reasons.append("tls-alpn-01 cannot prove a wildcard (CAs take dns-01 only)")
        elif kind == DNS01 and name not in dns_domains:
            reasons.append(
                f"dns-01 needs our DNS server to serve {dns01_record_name(name)} "
                "(no hosted domain's zone holds it) or tls.acme_dns_hook"
            )
        else:
            response, _ = body.response_and_validation(account_key)
            key_authorization = response.key_authorization
            record = None
            if kind == DNS01:
                # RFC 8555 §8.4: the TXT record under _acme-challenge.<identifier>.
                record = ChallengeRecord(
                    dns_domains[name], dns01_record_name(name), dns01_txt_value(key_authorization)
                )
            token = body.chall.encode("token")
            return Challenge(body, response, kind, name, token, key_authorization, record)
    raise AcmeError(f"no challenge for {shown} can be answered: {'; '.join(reasons)}")


@dataclass(frozen=True, slots=True)
class ChallengeAnswers:
    """Where one attempt's answers go: ``responses`` (http-01, this node's), ``tls_alpn``
    (tls-alpn-01, this node's https listener; None: not wanted), ``dns_records`` (dns-01 in
    our zones; None: our DNS server does not run) and ``store`` (http-01 and tls-alpn-01 for
    the other nodes; None: this node alone answers)."""

    tls: TlsSection
    responses: MutableMapping[str, str]
    tls_alpn: TlsAlpnAnswers | None
    dns_records: AcmeChallengeRecords | None
    store: Store | None
    log: Log

    async def dns_domains(self, names: tuple[str, ...]) -> dict[str, str]:
        """Identifier → where dns-01 can publish its record: the hosted domain whose zone our
        DNS server holds it in, else "" for the hook (``acme_dns_hook``); identifiers neither
        can serve are left out (none at all when dns-01 is not wanted)."""
        if DNS01 not in self.tls.acme_challenges:
            return {}
        found: dict[str, str] = {}
        for name in names:
            identifier = acme_identifier(name)
            domain = None
            if self.dns_records is not None:
                domain = await self.dns_records.hosted_domain_of(dns01_record_name(identifier))
            if domain is not None:
                found[identifier] = domain
            elif self.tls.acme_dns_hook:
                found[identifier] = EXTERNAL_ZONE
        return found

    @contextlib.asynccontextmanager
    async def offered(self, chosen: tuple[Challenge, ...]) -> AsyncIterator[None]:
        """The answers to ``chosen`` offered (every node sees them, the dns-01 records are
        answerable) while the block runs, withdrawn when it ends however it ends."""
        published: list[ChallengeRecord] = []
        shared: list[AcmeAnswer] = []
        try:
            for challenge in chosen:
                if challenge.kind == HTTP01:
                    self.responses[challenge.token] = challenge.key_authorization
                elif challenge.kind == TLS_ALPN01:
                    await self._present(challenge)
            await self._share(chosen, shared)
            await self._publish(tuple(c.record for c in chosen if c.record is not None), published)
            yield
        finally:
            # Out of the store first: a node's refresh skips the names it answers itself.
            await self._unshare(shared)
            for challenge in chosen:
                self.responses.pop(challenge.token, None)
                if self.tls_alpn is not None:
                    self.tls_alpn.remove(challenge.name)
            await self._withdraw(published)

    async def _present(self, challenge: Challenge) -> None:
        """Make the https listener answer ``challenge`` (tls-alpn-01)."""
        assert self.tls_alpn is not None  # chosen only when wanted
        context = await run_blocking(
            validation_context, challenge.name, challenge.key_authorization
        )
        self.tls_alpn.add(challenge.name, context)

    async def _share(self, chosen: tuple[Challenge, ...], shared: list[AcmeAnswer]) -> None:
        """Put the http-01 and tls-alpn-01 answers in the store for the other nodes, each added
        to ``shared`` once written; return only once every node sees them (its tls-alpn-01
        copy refreshed, its memory of "no http-01 answer pending" lapsed)."""
        if self.store is None:
            return
        expires = datetime.datetime.now(datetime.UTC) + datetime.timedelta(
            seconds=self.tls.acme_timeout + EXPIRY_MARGIN
        )
        for challenge in chosen:
            if challenge.kind == HTTP01:
                key = challenge.token
            elif challenge.kind == TLS_ALPN01:
                key = challenge.name.lower()
            else:
                continue
            answer = AcmeAnswer(challenge.kind, key, challenge.key_authorization, expires)
            try:
                await self.store.add_acme_answer(answer, self.tls.acme_shared_answers_max)
            except AlreadyExists:
                raise AcmeError(
                    f"another node's {challenge.kind} attempt for {challenge.name} is pending"
                ) from None
            except TooManyEntries as exc:
                raise AcmeError(f"{challenge.kind} answer for {challenge.name}: {exc}") from None
            shared.append(answer)
        if shared:
            # One lag, and one more for a read of the store just before the write: every
            # node's tls-alpn-01 copy has it, and none still believes no http-01 is pending.
            await asyncio.sleep(2 * ACME_ANSWER_LAG)

    async def _unshare(self, shared: list[AcmeAnswer]) -> None:
        """Remove an attempt's answers from the store; one that cannot be removed now is logged
        (it lapses at its expiry) and does not fail the attempt."""
        if self.store is None or not shared:
            return
        store = self.store

        async def remove_all() -> None:
            for answer in shared:
                await store.remove_acme_answer(answer.kind, answer.key, answer.value)

        try:
            # Shielded: a stop arriving meanwhile does not cut the removal short.
            await asyncio.shield(remove_all())
        except StorageError as exc:
            self.log.warning("shared answers left to expire", error=str(exc))

    async def _publish(
        self, records: tuple[ChallengeRecord, ...], published: list[ChallengeRecord]
    ) -> None:
        """Publish the dns-01 records (ours through our DNS server, others by the hook), each
        added to ``published`` as it goes out; return once all are answerable (RFC 8555 §8.4)."""
        if not records:
            return
        ours = tuple(r for r in records if r.domain != EXTERNAL_ZONE)
        self.log.info(
            "publishing dns-01 records",
            names=",".join(r.name for r in records),
            records=len(records),
            by_hook=len(records) - len(ours),
        )
        for record in records:
            if record.domain == EXTERNAL_ZONE:
                published.append(record)  # a hook that fails halfway may have published it
                try:
                    await run_hook(self.tls.acme_dns_hook, record, self.tls.acme_dns_hook_timeout)
                except HookFailed as exc:
                    raise AcmeError(f"dns hook for {record.name}: {exc}") from None
        if ours:
            assert self.dns_records is not None  # no hosted domain was found otherwise
            published.extend(ours)
            try:
                await self.dns_records.publish_and_wait(ours, self.tls.acme_timeout)
            except NotAnswerable as exc:
                raise AcmeError(str(exc)) from None

    async def _withdraw(self, records: list[ChallengeRecord]) -> None:
        """Withdraw an attempt's dns-01 records; one that cannot be removed now is logged (ours
        lapse at their expiry) and does not fail the attempt."""
        ours = tuple(r for r in records if r.domain != EXTERNAL_ZONE)
        if ours and self.dns_records is not None:
            try:
                # Shielded: a stop arriving meanwhile does not cut the removal short.
                await asyncio.shield(self.dns_records.withdraw(ours))
            except StorageError as exc:
                self.log.warning("dns-01 records left to expire", error=str(exc))
        cleanup = self.tls.acme_dns_cleanup_hook
        for record in records:
            if record.domain != EXTERNAL_ZONE or not cleanup:
                continue
            try:
                await run_hook(cleanup, record, self.tls.acme_dns_hook_timeout)
            except HookFailed as exc:
                self.log.warning("dns cleanup hook failed", record=record.name, error=str(exc))
