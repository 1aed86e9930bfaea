"""A key rollover of a hosted zone seen by caching validators: three Unbound resolvers in
front of the live server, each anchored at one DS set a parent could be showing (the old DS,
both, only the new one), keep what they validated in their caches across the steps, and
every answer they give along the way is secure (AD) — where the rules say so: the one
holding the old DS alone loses the zone once the old key is removed, as it should (by then
no parent shows that set, and no cache holds it).

Unbound's ``cache-max-ttl`` stands in for the zones' TTLs, so "a TTL has passed" takes
seconds here, and ``dns.zone_check_interval`` (how long a built zone is served) is 3 s
instead of 30; the rollover's own waits (the DNSKEY TTL, the days a retired key stays) are
passed by moving the keys' times back in the store. ``--finish --force`` goes on without a
parent zone (test_dnssec_delv.py covers ``--finish`` waiting for the parent). Skipped
without Unbound.
"""

from __future__ import annotations

import asyncio
import dataclasses
import shutil
import time
from pathlib import Path

import pytest

from pillarbox import config as cfg
from pillarbox.dns.authoritative import DEFAULT_SOA
from pillarbox.dns.resolver import DnsTemporaryError
from pillarbox.testing.command import run_pillarbox
from pillarbox.testing.live import LiveServer, free_port, loopback_config, serving_dns
from pillarbox.testing.rollover import backdate_key, printed_ds
from pillarbox.testing.unbound import Unbound

pytestmark = pytest.mark.skipif(
    shutil.which("unbound") is None, reason="Unbound not installed (apt-get install unbound)"
)

DOMAIN = "pillarbox.test"
HOST = f"mail.{DOMAIN}"
ADDRESS = "192.0.2.25"
#: Unbound's cache-max-ttl: how long "a TTL" lasts in this test.
TTL = 3
#: ``dns.zone_check_interval``: how long a zone built from the store is served.
ZONE_CHECK = 3.0


async def answer(unbound: Unbound, name: str, rtype: str) -> str:
    """``secure`` (AD, with records), ``insecure`` or ``bogus`` (SERVFAIL)."""
    try:
        found = await unbound.resolver().records(name, rtype)
    except DnsTemporaryError:
        return "bogus"
    assert found.records, (name, rtype)
    return "secure" if found.authentic else "insecure"


def answers(validators: dict[str, Unbound], *questions: tuple[str, str]) -> dict[str, set[str]]:
    """Per validator, what its answers to ``questions`` were."""

    async def ask_all() -> dict[str, set[str]]:
        return {
            name: {await answer(unbound, q, t) for q, t in questions}
            for name, unbound in validators.items()
        }

    return asyncio.run(ask_all())


def test_caching_validators_stay_secure_across_a_rollover(tmp_path: Path) -> None:
    port = free_port("127.0.0.1")
    base = loopback_config(tmp_path / "data", only=("smtp",))
    config = serving_dns(
        dataclasses.replace(base, server=dataclasses.replace(base.server, hostname=HOST)),
        port,
        addresses=(ADDRESS,),
        dnssec=True,
        zone_check_interval=ZONE_CHECK,
    )
    (tmp_path / "pillarbox.toml").write_text(cfg.render_toml(config))
    assert run_pillarbox(tmp_path, "domain", "add", DOMAIN).returncode == 0
    (old_ds,) = printed_ds(run_pillarbox(tmp_path, "dns", "records", DOMAIN).stdout)
    data = tmp_path / "data"
    mx, host, spf = (DOMAIN, "MX"), (HOST, "A"), (DOMAIN, "TXT")

    def rollover(*options: str) -> str:
        done = run_pillarbox(tmp_path, "dns", "rollover", DOMAIN, *options)
        assert done.returncode == 0, done.stderr
        return done.stdout

    with (
        LiveServer(config),
        Unbound(tmp_path / "old", DOMAIN, [old_ds], port, cache_max_ttl=TTL) as old,
    ):
        # Step 0: the zone validated (and cached) from the only DS there is.
        assert answers({"old": old}, mx, host) == {"old": {"secure"}}

        # Step 1: the next key published. The old validator keeps its cached DNSKEY RRset
        # (one key) for a while, then fetches the new one (two keys, each signing it).
        new_ds = printed_ds(rollover())[1]
        time.sleep(ZONE_CHECK + TTL)  # every node serves it; every cache has it
        with (
            Unbound(tmp_path / "both", DOMAIN, [old_ds, new_ds], port, cache_max_ttl=TTL) as both,
            Unbound(tmp_path / "new", DOMAIN, [new_ds], port, cache_max_ttl=TTL) as new,
        ):
            validators = {"old": old, "both": both, "new": new}
            secure = {name: {"secure"} for name in validators}
            assert answers(validators, mx, host) == secure

            # Step 3: the new key signs the data (the DNSKEY TTL has passed). The validators'
            # cached DNSKEY RRsets already hold it: fresh data signed by it validates at once,
            # and so does what they cached from the old key.
            backdate_key(data, "published", DEFAULT_SOA.ttl + ZONE_CHECK)
            rollover("--finish", "--force")
            time.sleep(ZONE_CHECK)
            assert answers(validators, spf, mx, host) == secure
            time.sleep(TTL)  # everything cached has turned over: all signed by the new key
            assert answers(validators, spf, mx, host) == secure

            # Step 4: the retired key removed. The old DS alone no longer leads anywhere
            # (no parent shows it by now); the others never notice.
            backdate_key(data, "retired", config.dns.dnssec_retire_seconds)
            time.sleep(ZONE_CHECK + TTL)
            assert answers(validators, spf, mx, host) == {
                "old": {"bogus"},
                "both": {"secure"},
                "new": {"secure"},
            }
