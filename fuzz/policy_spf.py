"""Fuzz SPF (pillarbox.policy.spf): record parsing and check_host() on fuzzed TXT records.

Input: lines. Line 0 is the TXT record at ``s.test`` (the MAIL FROM domain); lines 1–9 are the
records at ``n1.test`` … ``n9.test`` (for include:, redirect= and exp=); a last line starting
with ``@`` is the MAIL FROM domain instead of ``s.test``. The first byte's low bit makes the
client IPv6. The resolver is in-process (fuzz/staticdns.py): ``servfail`` and ``slow`` names
fail and time out. Asserted, beyond "no exception":

* ``parse_record`` raises nothing but SPF's own permerror;
* check_host() always gives one of the RFC 7208 §2.6 results (a DNS failure temperror, a bad
  record permerror), within its deadline;
* the RFC 7208 §4.6.4 limits bound the DNS queries one check makes.
"""

from __future__ import annotations

import asyncio
import contextlib

import atheris
import harness

with atheris.instrument_imports(include=["pillarbox"]):
    import staticdns

    from pillarbox.policy import spf
    from pillarbox.policy.spf import SpfLimits, SpfResult

LIMITS = SpfLimits(timeout=0.2)
#: 10 DNS terms, each an mx with 10 hosts (or a ptr with 10 names), plus the records, the
#: %{p} validation and exp=: what RFC 7208 §4.6.4 lets one check ask.
MAX_QUERIES = 1 + 10 * (1 + 10) + (1 + 10) + 1 + 10
LOOP = asyncio.new_event_loop()


def check(data: bytes) -> None:
    if not data:
        return
    lines = data[1:].split(b"\n")
    domain = "s.test"
    if len(lines) > 1 and lines[-1].startswith(b"@"):
        domain = lines.pop()[1:].decode("utf-8", "replace")
    records = {"s.test": [lines[0]]}
    records.update({f"n{i}.test": [line] for i, line in enumerate(lines[1:10], 1)})
    with contextlib.suppress(spf._PermError):  # its one error, a permerror for the caller
        spf.parse_record(lines[0].decode("latin-1"))
    resolver = staticdns.StaticResolver(records)
    ip = "2001:db8::1" if data[0] & 1 else "192.0.2.1"
    outcome = LOOP.run_until_complete(
        spf.check_mail_from(resolver, ip, f"user.name@{domain}", "a.helo.test", limits=LIMITS)
    )
    assert isinstance(outcome.result, SpfResult)
    assert resolver.queries <= MAX_QUERIES, (resolver.queries, data)


def seeds() -> list[bytes]:
    return [
        b"\x00v=spf1 ip4:192.0.2.0/24 ip6:2001:db8::/32 -all",
        b"\x01v=spf1 a mx/24//64 a:a.x.test include:n1.test -all\nv=spf1 ?all",
        b"\x00v=spf1 redirect=n1.test\nv=spf1 exists:%{ir}.%{l1r+-}._spf.%{d} -all exp=n2.test\n"
        b"%{i} may not send for %{d} (%{l}) %{p} %{c} %{r} %{t} %%%_%-",
        b"\x00v=spf1 mx:mxmany.test ptr ptr:host.test -all",
        b"\x00v=spf1 include:servfail.test -all",
        b"\x00v=spf1 a:a.slow.test -all",
        b"\x00v=spf1 a:n1.test a:n2.test a:n3.test -all",
        b"\x00v=spf1 include:n1.test\nv=spf1 include:n2.test\nv=spf1 include:n1.test",
        b"\x00v=spf1 +all\n@mx.example",
        b"\x00v=spf1 -all exp=%{S}.%{H}.%{O}.%{V}\n@x.test",
    ]


if __name__ == "__main__":
    harness.main("policy_spf", check, seeds())
