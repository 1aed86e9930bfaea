"""Forwarding at delivery: an account's forwarding addresses and aliases that expand to remote
addresses both send the message on through the outbound queue, the way Postfix's local(8)
``.forward`` and virtual(5) aliases do, with what today's receivers need to accept it.

Implementation notes (the rules are also in docs/forwarding.md):

- **Envelope sender** (SPF, RFC 7208 §1.1.1 on forwarding): a sender at a domain we host is
  kept — our own SPF record covers us; the null sender of a bounce stays null; any other sender
  is rewritten by SRS (:mod:`.srs`) into an address at the forwarding domain, so the next hop's
  SPF check sees our domain and a bounce comes back to our MX, which reverses it
  (:meth:`pillarbox.queue.intake.Intake.check_recipient`).
- **Authentication** of the forwarded copy: mail that arrived at the MX gets an ARC set
  (RFC 8617 §5.1) sealed with the forwarding domain's newest active RSA key, its AAR copying our
  ``Authentication-Results`` (which carries ``arc=`` for an existing chain, so the seal chains
  onto it); mail our own user submitted is DKIM-signed instead, as any submission leaving
  us (:mod:`.signing`). A message that cannot be sealed (its chain had failed, no RSA key) goes
  unsealed, logged — sealing never stops mail.
- **Loops**: each forwarded copy carries ``Delivered-To: <the forwarding address>`` (RFC 9228),
  as Postfix's local(8) writes; a message that arrives already carrying ``Delivered-To`` for an
  address that would forward it is a loop (:func:`looped`), and intake does not forward it
  again.
- **Spam** is never forwarded: a copy the policy files in Junk stays in the account's Junk
  (see :mod:`.intake` for aliases, which have no mailbox).
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from pillarbox.blocking import run_sized
from pillarbox.config import Config
from pillarbox.mail import trace
from pillarbox.mail.headers import raw_text, scan_header
from pillarbox.observability.log import Log
from pillarbox.policy import arc
from pillarbox.queue import dkim, srs
from pillarbox.queue.signing import sign_outbound, signing_keys
from pillarbox.store.interface import Store
from pillarbox.store.types import NewQueueRecipient

SRS_KEY_FILE = "srs.key"
#: Header fields read when looking for Delivered-To (a hostile header stays bounded).
MAX_SCANNED_FIELDS = 1000

_log = Log("forward")


def srs_settings(config: Config) -> srs.SrsSettings:
    """The SRS key from ``forwarding.srs_secret``, or else the one kept in the data directory
    (made on first start, readable by this user only). Blocking: called once at start-up."""
    section = config.forwarding
    if section.srs_secret:
        secret = section.srs_secret.encode("utf-8")
    else:
        secret = _stored_secret(config.data_dir / SRS_KEY_FILE)
    return srs.SrsSettings(secret=secret, max_age_days=section.srs_max_age_days)


def _stored_secret(path: Path) -> bytes:
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch(mode=0o600)
        path.write_text(secrets.token_hex(32), encoding="ascii")
    return path.read_text(encoding="ascii").strip().encode("ascii")


def looped(raw: bytes, address: str) -> bool:
    """Whether ``raw`` already went through ``address`` (a ``Delivered-To`` field naming it)."""
    block = scan_header(raw, 0, len(raw), max_fields=MAX_SCANNED_FIELDS)
    wanted = address.lower()
    return any(
        f.key == "delivered-to" and raw_text(f.value).strip().lower() == wanted
        for f in block.fields
    )


@dataclass(frozen=True, slots=True)
class Forward:
    """One copy to send on: the address whose forwarding it is, and where it goes."""

    #: The account's or alias's address: ``Delivered-To``, and the SRS domain.
    via: str
    targets: tuple[NewQueueRecipient, ...]
    #: Our fields to put on top (``Authentication-Results``, for the ARC AAR).
    headers: bytes = b""


class Forwarder:
    """Queues forwarded copies (see the module notes)."""

    def __init__(
        self,
        store: Store,
        settings: srs.SrsSettings,
        *,
        hostname: str,
        seal: bool,
    ) -> None:
        self._store = store
        self._srs = settings
        self._hostname = hostname
        self._seal = seal

    def _envelope_sender(self, sender: str, domain: str, hosted_sender: bool, now: datetime) -> str:
        if not sender or hosted_sender:
            return sender
        return srs.forward(self._srs, sender, domain, srs.day_number(now))

    async def send(
        self,
        forward: Forward,
        sender: str,
        message: bytes,
        *,
        submitted: bool,
        hosted_sender: bool,
        now: datetime,
        ret: str | None = None,
        envid: str | None = None,
        requiretls: bool = False,
    ) -> int:
        """Queue ``message`` for ``forward.targets``; the queue id. ``requiretls``: the
        message's RFC 8689 tag, which its copies keep (§4.1, §6)."""
        domain = forward.via.rpartition("@")[2]
        copy = trace.delivered_to(forward.via) + forward.headers + message
        if submitted:
            copy = await sign_outbound(self._store, copy)
        elif self._seal:
            copy = await self._sealed(copy, domain) + copy
        envelope = self._envelope_sender(sender, domain, hosted_sender, now)
        queued = await self._store.enqueue(
            envelope, copy, list(forward.targets), ret=ret, envid=envid, requiretls=requiretls
        )
        _log.info("forwarded", via=forward.via, queue=queued.id, recipients=len(forward.targets))
        return queued.id

    async def _sealed(self, raw: bytes, domain: str) -> bytes:
        """The ARC set for ``raw`` from ``domain``, or nothing (logged) when it cannot be."""
        keys = [
            k
            for k in signing_keys(await self._store.list_dkim_keys(domain))
            if k.algorithm is dkim.DkimAlgorithm.RSA_SHA256  # dkimpy seals with RSA only
        ]
        if not keys:
            _log.info("forwarded unsealed: no RSA key", domain=domain)
            return b""
        try:
            return await run_sized(len(raw), _seal, raw, domain, keys[0], self._hostname)
        except arc.ArcSealError as exc:
            _log.info("forwarded unsealed", domain=domain, reason=str(exc))
            return b""


def _seal(raw: bytes, domain: str, key: dkim.DkimKey, authserv_id: str) -> bytes:
    return arc.seal(
        raw,
        domain=domain,
        selector=key.selector,
        private_pem=key.private_pem,
        authserv_id=authserv_id,
    )
