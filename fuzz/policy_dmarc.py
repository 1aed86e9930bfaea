"""Fuzz DMARC (pillarbox.policy.dmarc): record parsing and evaluation on fuzzed records.

Input: byte 0 picks the discovery (public suffix list, or the RFC 9989 tree walk) and the
authenticated identifiers; the rest is lines. A last line starting with ``@`` is the author
domain (else ``mail.sub.example.com``); the other lines are the TXT records at
``_dmarc.<name>`` for the author domain and each of its parents in turn. The resolver is
in-process (fuzz/staticdns.py): ``servfail`` and ``slow`` names fail and time out. Asserted,
beyond "no exception":

* ``parse_record`` returns a record or None, and a record's canonical ``text()`` parses back
  to an equal record (what its docstring promises; reports quote it);
* evaluation gives one of the RFC 7489 §11.2 results (a DNS failure temperror) within its
  deadline, asking a bounded number of names (RFC 9989 §4.10: at most eight per walk).
"""

from __future__ import annotations

import asyncio

import atheris
import harness

with atheris.instrument_imports(include=["pillarbox"]):
    import staticdns

    from pillarbox.policy import dmarc
    from pillarbox.policy.dmarc import AuthIdentity, Discovery, DmarcResult

LOOP = asyncio.new_event_loop()
TIMEOUT = 0.2


def _parents(domain: str) -> list[str]:
    labels = domain.split(".")
    return [".".join(labels[i:]) for i in range(len(labels))]


def check(data: bytes) -> None:
    if not data:
        return
    flags = data[0]
    lines = data[1:].split(b"\n")
    author = "mail.sub.example.com"
    if len(lines) > 1 and lines[-1].startswith(b"@"):
        author = lines.pop()[1:].decode("utf-8", "replace")
    names = _parents(author.strip().lower().rstrip("."))
    records = {f"_dmarc.{name}": [line] for name, line in zip(names, lines, strict=False)}
    for line in lines:
        record = dmarc.parse_record(line.decode("utf-8", "replace"))
        if record is not None:
            assert dmarc.parse_record(record.text()) == record, (line, record.text())
    org = dmarc.organizational_domain(author) or author
    spf = AuthIdentity("pass", (author, org, "other.test", "")[flags & 3])
    dkim = [AuthIdentity("pass" if flags & 4 else "fail", names[-1]), AuthIdentity("pass", org)]
    discovery = Discovery.TREEWALK if flags & 8 else Discovery.PSL
    resolver = staticdns.StaticResolver(records)
    outcome = LOOP.run_until_complete(
        dmarc.evaluate(
            resolver, [author], spf, dkim[: (flags >> 4) & 3], discovery=discovery, timeout=TIMEOUT
        )
    )
    assert isinstance(outcome.result, DmarcResult)
    assert resolver.queries <= 40, resolver.queries


def seeds() -> list[bytes]:
    return [
        b"\x00v=DMARC1; p=reject; sp=quarantine; np=reject; adkim=s; aspf=r; pct=50; "
        b"fo=1:d; rf=afrf; ri=3600; rua=mailto:a@example.com!10m,https://x; ruf=mailto:f@x",
        b"\x18\nv=DMARC1; p=none; psd=n\nv=DMARC1; p=reject; psd=y",
        b"\x2bv=DMARC1; p=quarantine; t=y\nv=DMARC1; p=reject\n@a.b.c.d.e.f.g.h.i.example.co.uk",
        b"\x08v=DMARC1;p=reject\nv=DMARC1;p=none\n@x.servfail.example.com",
        b"\x08v=DMARC1;p=reject\n@x.slow.example.com",
        b"\x01 v = DMARC1 ; P=Reject; sp=bogus; rua=mailto:x@y",
    ]


if __name__ == "__main__":
    harness.main("policy_dmarc", check, seeds())
