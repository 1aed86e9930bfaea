"""The policy's trusted networks: a client in them skips the DNS checks, one outside does not,
however often each connects (the answer is kept per address)."""

from __future__ import annotations

from pathlib import Path

import pytest

from pillarbox.dns.resolver import DnsResolver
from pillarbox.mail.parse import parse_message
from pillarbox.policy import pipeline
from pillarbox.policy.pipeline import Arrival, InboundPolicy, PolicySettings
from pillarbox.store.sqlite.store import SqliteStore

MESSAGE = b"From: Ann <ann@example.net>\r\nTo: bob@example.org\r\nSubject: hi\r\n\r\nHello.\r\n"

#: Nothing that would ask DNS: an untrusted client's checks find nothing to look up.
QUIET = PolicySettings(
    check_spf=False,
    check_dkim=False,
    check_dmarc=False,
    check_arc=False,
    use_classifier=False,
    trusted_networks=("127.0.0.0/8", "2001:db8::/32"),
)


async def client_ip_kept(policy: InboundPolicy, client_ip: str) -> str:
    """The client address the assessment keeps for reputation: "" when trusted."""
    arrival = Arrival(client_ip, "client.test", "ann@example.net")
    assessment = await policy.assess(arrival, MESSAGE, parse_message(MESSAGE))
    return assessment.sender.client_ip


@pytest.mark.parametrize("kept", [4096, 2])
async def test_trust_is_decided_per_address(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, kept: int
) -> None:
    monkeypatch.setattr(pipeline, "_TRUSTED_CLIENTS_KEPT", kept)
    store = SqliteStore(tmp_path / "unused.db")  # never opened: nothing here reads it
    resolver = DnsResolver(nameserver="127.0.0.1:9")
    policy = InboundPolicy(QUIET, store, resolver, hostname="mx.test")
    for _ in range(3):  # kept answers (and, with room for two, forgotten ones) alike
        assert await client_ip_kept(policy, "127.0.0.1") == ""
        assert await client_ip_kept(policy, "192.0.2.7") == "192.0.2.7"
        assert await client_ip_kept(policy, "::ffff:127.0.0.2") == ""  # RFC 4291 §2.5.5.2
        assert await client_ip_kept(policy, "2001:db8::1") == ""
        assert await client_ip_kept(policy, "not an address") == "not an address"
