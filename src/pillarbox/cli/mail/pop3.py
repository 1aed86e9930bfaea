"""Fetching mail over POP3 (RFC 1939) with the standard library's poplib.

Order of events per message: RETR → durable local write → remember its UIDL → DELE (unless
``keep``). Deletions only take effect at QUIT (RFC 1939 §6, UPDATE state); if the session
breaks before that, the server keeps the messages and the remembered UIDLs stop them being
stored twice next time. With ``keep``, UIDLs (RFC 1939 §7, unique across sessions) are how a
message already fetched is recognised, so a server without UIDL cannot be used with ``keep``.
"""

from __future__ import annotations

import json
import os
import poplib
import ssl
from dataclasses import dataclass
from pathlib import Path

from pillarbox.cli.mail.localmail import Destination
from pillarbox.errors import ConfigError
from pillarbox.mailclient.transport import (
    ConnectionFailed,
    Endpoint,
    ServerRefused,
    TlsMode,
    translated_errors,
)

UIDL_STATE_FILE = "pop3-uidl.json"


@dataclass(frozen=True, slots=True)
class FetchResult:
    fetched: int
    already_had: int
    deleted: int


class UidlState:
    """The UIDLs already stored locally, one JSON file per account, replaced atomically."""

    def __init__(self, directory: Path) -> None:
        self.path = directory / UIDL_STATE_FILE

    def load(self) -> set[str]:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return set()
        except (ValueError, UnicodeDecodeError) as exc:
            raise ConfigError(
                str(self.path), f"damaged ({exc}); move it away to fetch everything again"
            ) from exc
        return {str(u) for u in data.get("uidls", [])}

    def save(self, uidls: set[str]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        tmp = self.path.with_name(self.path.name + ".tmp")
        with open(tmp, "w", encoding="utf-8") as out:
            json.dump({"uidls": sorted(uidls)}, out)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, self.path)


def fetch(
    endpoint: Endpoint,
    username: str,
    password: str,
    destination: Destination,
    state: UidlState,
    *,
    keep: bool,
    context: ssl.SSLContext,
    timeout: float,
) -> FetchResult:
    with translated_errors(f"POP3 server {endpoint}"):
        client = _connect(endpoint, context, timeout)
        try:
            client.user(username)
            client.pass_(password)
            result, remaining = _transfer(client, destination, state, keep=keep)
            client.quit()  # RFC 1939 §6: the DELEs take effect now
        except BaseException:
            client.close()
            raise
    state.save(remaining)
    return result


def _transfer(
    client: poplib.POP3, destination: Destination, state: UidlState, *, keep: bool
) -> tuple[FetchResult, set[str]]:
    """Move the messages; returns the counts and the UIDLs to remember once QUIT succeeded
    (those still on the server: deleted ones will never be offered again)."""
    listing = _uidls(client, required=keep)
    seen = state.load()
    fetched = already = deleted = 0
    remaining: set[str] = set()
    for number, uidl in listing:
        if uidl is not None and uidl in seen:
            already += 1
        else:
            _, lines, _ = client.retr(number)  # poplib undoes the dot-stuffing
            destination.add(b"\r\n".join(lines) + b"\r\n")
            fetched += 1
            if uidl is not None:
                seen.add(uidl)
                state.save(seen)  # before DELE: a crash now must not mean a second copy
        if keep:
            remaining.add(uidl or "")
        else:
            client.dele(number)
            deleted += 1
    return FetchResult(fetched, already, deleted), remaining - {""}


def _uidls(client: poplib.POP3, *, required: bool) -> list[tuple[int, str | None]]:
    try:
        _, lines, _ = client.uidl()
    except poplib.error_proto as exc:
        if required:
            raise ServerRefused(
                "the POP3 server does not support UIDL, so --keep cannot tell which messages "
                "were fetched before"
            ) from exc
        _, lines, _ = client.list()
        return [(int(line.split()[0]), None) for line in lines]
    pairs: list[tuple[int, str | None]] = []
    for line in lines:
        number, _, uidl = line.decode("ascii", "replace").partition(" ")
        pairs.append((int(number), uidl.strip() or None))
    return pairs


def _connect(endpoint: Endpoint, context: ssl.SSLContext, timeout: float) -> poplib.POP3:
    if endpoint.tls is TlsMode.IMPLICIT:
        return poplib.POP3_SSL(endpoint.host, endpoint.port, timeout=timeout, context=context)
    client = poplib.POP3(endpoint.host, endpoint.port, timeout=timeout)
    if endpoint.tls is TlsMode.STARTTLS:
        try:
            capabilities = client.capa()
        except poplib.error_proto:
            capabilities = {}
        if "STLS" not in capabilities:  # RFC 2595 §4
            client.close()
            raise ConnectionFailed(
                f"POP3 server {endpoint} does not offer STLS; refusing to log in in clear"
            )
        client.stls(context)
    return client
