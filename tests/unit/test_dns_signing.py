"""DNSSEC in the authoritative server's answers (through ``respond``, no sockets): signatures
checked with dnspython's validator against the zone's DNSKEY, denial records byte for byte
(RFC 4034, RFC 4035, RFC 9824)."""

from __future__ import annotations

import time

import dns.dnssec
import dns.edns
import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from pillarbox.dns.authoritative import SoaSettings, StaticZone, StaticZones, respond
from pillarbox.dns.records import DnsRecord
from pillarbox.dns.signing import (
    SignatureBudget,
    SigningPolicy,
    ZoneKey,
    ZoneKeyError,
    ZoneSigner,
    new_key_pem,
    nsec_rdata,
    successor,
    type_bitmap,
)

RECORDS = [
    DnsRecord("a.test", "MX", "10 mx.a.test.", 300),
    DnsRecord("mx.a.test", "A", "127.0.0.1", 300),
    DnsRecord("mx.a.test", "AAAA", "::1", 300),
    DnsRecord("a.test", "TXT", "v=spf1 mx -all", 300),
    DnsRecord("www.a.test", "CNAME", "mx.a.test.", 300),
    DnsRecord("dangling.a.test", "CNAME", "gone.a.test.", 300),
    DnsRecord("deep.below.a.test", "A", "127.0.0.2", 300),
    DnsRecord("_25._tcp.mx.a.test", "TLSA", "3 1 1 " + "ab" * 32, 300),
    DnsRecord("big.a.test", "TXT", "x" * 200, 300),
    DnsRecord("big.a.test", "TXT", "y" * 200, 300),
]
SOA = SoaSettings(ttl=3600, minimum=120)
KEY = ZoneKey("a.test", new_key_pem())
ORIGIN = dns.name.from_text("a.test.")


def zones(signer: ZoneSigner | None = None, *, authentic: bool = False) -> StaticZones:
    signer = signer or ZoneSigner(KEY)
    return StaticZones([StaticZone("a.test", RECORDS, soa=SOA, signer=signer, authentic=authentic)])


ZONES = zones()


async def ask(
    name: str,
    rtype: str,
    *,
    dnssec: bool = True,
    payload: int = 1232,
    source: StaticZones = ZONES,
    ednsflags: int = 0,
) -> dns.message.Message:
    query = dns.message.make_query(
        name, rtype, want_dnssec=dnssec, payload=payload, ednsflags=ednsflags
    )
    reply = await respond(source, query.to_wire(), udp=True)
    assert reply is not None
    return dns.message.from_wire(reply)


def dnskey_rrset() -> dns.rrset.RRset:
    rrset = dns.rrset.RRset(ORIGIN, dns.rdataclass.IN, dns.rdatatype.DNSKEY)
    rrset.add(KEY.dnskey, 3600)
    return rrset


def validated(section: list[dns.rrset.RRset]) -> set[tuple[str, str]]:
    """(owner, type) of every RRset in ``section``, each checked against its RRSIG."""
    keys = {ORIGIN: dnskey_rrset()}
    data = [r for r in section if r.rdtype != dns.rdatatype.RRSIG]
    sigs = {(r.name, r.covers): r for r in section if r.rdtype == dns.rdatatype.RRSIG}
    for rrset in data:
        rrsig = sigs[(rrset.name, rrset.rdtype)]
        assert rrsig.ttl == rrset.ttl  # RFC 4034 §3
        dns.dnssec.validate(rrset, rrsig, keys)  # raises ValidationFailure
    assert len(sigs) == len(data)
    return {(r.name.to_text(), dns.rdatatype.to_text(r.rdtype)) for r in data}


async def test_positive_answers_are_signed_and_validate() -> None:
    reply = await ask("a.test", "MX")
    assert reply.rcode() == dns.rcode.NOERROR
    assert validated(reply.answer) == {("a.test.", "MX")}
    # RFC 4035 §3.1.1: the additional section's RRsets are signed too.
    assert validated(reply.additional) == {("mx.a.test.", "A"), ("mx.a.test.", "AAAA")}
    assert reply.ednsflags & dns.flags.DO  # RFC 3225 §3: DO copied into the reply
    assert not reply.flags & dns.flags.AD  # RFC 4035 §3.1.6: the validator decides
    tlsa = await ask("_25._tcp.mx.a.test", "TLSA")
    assert validated(tlsa.answer) == {("_25._tcp.mx.a.test.", "TLSA")}
    chain = await ask("WWW.a.test", "A")  # each link signed, the first as the question spelled it
    assert validated(chain.answer) == {("WWW.a.test.", "CNAME"), ("mx.a.test.", "A")}


async def test_the_apex_serves_its_dnskey_and_the_ds_names_it() -> None:
    reply = await ask("a.test", "DNSKEY")
    assert validated(reply.answer) == {("a.test.", "DNSKEY")}
    (served,) = reply.answer[0]
    assert served.flags == 257 and served.algorithm == 13  # CSK, ECDSAP256SHA256
    assert dns.dnssec.key_id(served) == KEY.key_tag
    ds = dns.dnssec.make_ds(ORIGIN, served, "SHA256")
    assert KEY.ds_record(3600).value == ds.to_text()
    assert KEY.ds_record(3600).value.split()[:3] == [str(KEY.key_tag), "13", "2"]


async def test_without_do_nothing_is_signed_and_nxdomain_stays() -> None:
    reply = await ask("nope.a.test", "A", dnssec=False)
    assert reply.rcode() == dns.rcode.NXDOMAIN
    assert [r.rdtype for r in reply.authority] == [dns.rdatatype.SOA]
    plain = await ask("a.test", "MX", dnssec=False)
    assert all(r.rdtype != dns.rdatatype.RRSIG for r in plain.answer + plain.additional)
    assert not plain.ednsflags & dns.flags.DO


def nsec_wire(next_name: bytes, bitmap: bytes) -> bytes:
    return next_name + b"\x00" + bytes([len(bitmap)]) + bitmap


async def test_a_name_that_does_not_exist_gets_a_compact_denial() -> None:
    reply = await ask("nope.a.test", "A")
    # RFC 9824 §3: NOERROR, one NSEC at the name, covering only it.
    assert reply.rcode() == dns.rcode.NOERROR
    assert reply.answer == []
    assert validated(reply.authority) == {("a.test.", "SOA"), ("nope.a.test.", "NSEC")}
    soa, nsec = (r for r in reply.authority if r.rdtype != dns.rdatatype.RRSIG)
    assert soa.ttl == nsec.ttl == 120  # RFC 2308 §3, RFC 9077 §3.2
    # \000.nope.a.test; window 0: RRSIG (46), NSEC (47), NXNAME (128).
    expected = nsec_wire(
        b"\x01\x00\x04nope\x01a\x04test\x00", bytes(5) + b"\x03" + bytes(10) + b"\x80"
    )
    assert nsec[0].to_wire() == expected


async def test_compact_answers_ok_restores_nxdomain() -> None:
    """RFC 9824 §5.1: a query with CO (dnspython's own bit, the one after DO) gets NXDOMAIN
    beside the same compact denial, and CO echoed; names that exist, and queries without
    CO, are answered as before."""
    plain = await ask("nope.a.test", "A")
    reply = await ask("nope.a.test", "A", ednsflags=dns.flags.CO)
    assert reply.rcode() == dns.rcode.NXDOMAIN
    assert reply.ednsflags & dns.flags.CO and reply.ednsflags & dns.flags.DO
    assert reply.answer == []
    assert validated(reply.authority) == {("a.test.", "SOA"), ("nope.a.test.", "NSEC")}
    assert reply.authority == plain.authority  # the same records, signatures and all
    assert plain.rcode() == dns.rcode.NOERROR and not plain.ednsflags & dns.flags.CO
    # A CNAME chain ending in a name that does not exist takes that name's rcode (RFC 6604 §3).
    chain = await ask("dangling.a.test", "A", ednsflags=dns.flags.CO)
    assert chain.rcode() == dns.rcode.NXDOMAIN
    assert validated(chain.answer) == {("dangling.a.test.", "CNAME")}
    # NODATA, and an empty non-terminal, exist: NOERROR with CO too.
    for name in ("mx.a.test", "below.a.test"):
        nodata = await ask(name, "TXT", ednsflags=dns.flags.CO)
        assert nodata.rcode() == dns.rcode.NOERROR, name
        assert nodata.ednsflags & dns.flags.CO, name
    # CO without DO: nothing is signed and the name is NXDOMAIN as it always is unsigned.
    unsigned = await ask("nope.a.test", "A", dnssec=False, ednsflags=dns.flags.CO)
    assert unsigned.rcode() == dns.rcode.NXDOMAIN
    assert [r.rdtype for r in unsigned.authority] == [dns.rdatatype.SOA]


async def test_compact_answers_ok_survives_truncation() -> None:
    """The TC reply to a CO query keeps CO and DO in its OPT, and NXDOMAIN's rcode."""
    reply = await ask("big.a.test", "TXT", payload=512, ednsflags=dns.flags.CO)
    assert reply.flags & dns.flags.TC
    assert reply.ednsflags & dns.flags.CO and reply.ednsflags & dns.flags.DO


def test_the_signature_budget_is_a_bucket_of_one_seconds_worth() -> None:
    now = [100.0]
    budget = SignatureBudget(2, clock=lambda: now[0])
    assert [budget.take(), budget.take(), budget.take()] == [True, True, False]
    assert budget.over_budget == 1
    now[0] += 0.5  # half a second refills one
    assert [budget.take(), budget.take()] == [True, False]
    now[0] += 60.0  # an idle minute still holds one second's worth
    assert [budget.take(), budget.take(), budget.take()] == [True, True, False]
    assert budget.over_budget == 3
    with pytest.raises(ValueError, match="must be positive"):
        SignatureBudget(0)


async def test_over_the_budget_udp_answers_needing_a_signature_get_tc() -> None:
    """signing.py notes: a new signature over the budget is not made for a UDP answer: TC,
    no records, DO and CO echoed; over TCP the same question is signed (and validates), and
    answers whose signatures are cached are served over UDP as ever."""
    budget = SignatureBudget(2, clock=lambda: 0.0)  # a frozen clock: nothing refills
    source = zones(ZoneSigner(KEY, budget=budget))
    first = await ask("new1.a.test", "A", source=source)  # SOA and NSEC: two signatures
    assert first.rcode() == dns.rcode.NOERROR and not first.flags & dns.flags.TC
    assert validated(first.authority) == {("a.test.", "SOA"), ("new1.a.test.", "NSEC")}
    deferred = await ask("new2.a.test", "A", source=source, ednsflags=dns.flags.CO)
    assert deferred.flags & dns.flags.TC and deferred.flags & dns.flags.AA
    assert deferred.answer == deferred.authority == [] and deferred.additional == []
    assert deferred.ednsflags & dns.flags.DO and deferred.ednsflags & dns.flags.CO
    assert deferred.rcode() == dns.rcode.NOERROR and budget.over_budget == 1
    again = await ask("new3.a.test", "A", source=source)
    assert again.flags & dns.flags.TC and budget.over_budget == 2
    # The retry over TCP is signed, over the budget.
    query = dns.message.make_query("new3.a.test", "A", want_dnssec=True)
    wire = await respond(source, query.to_wire(), udp=False)
    assert wire is not None
    over_tcp = dns.message.from_wire(wire)
    assert not over_tcp.flags & dns.flags.TC
    assert validated(over_tcp.authority) == {("a.test.", "SOA"), ("new3.a.test.", "NSEC")}
    assert budget.over_budget == 3  # counted, not refused
    # Cached signatures cost nothing: new1's denial, asked again over UDP, is answered.
    cached = await ask("new1.a.test", "A", source=source)
    assert not cached.flags & dns.flags.TC and cached.authority == first.authority
    # Unsigned answers (no DO) never need the budget.
    plain = await ask("new4.a.test", "A", source=source, dnssec=False)
    assert plain.rcode() == dns.rcode.NXDOMAIN and not plain.flags & dns.flags.TC


async def test_nodata_lists_the_types_the_name_has() -> None:
    reply = await ask("mx.a.test", "TXT")
    assert reply.rcode() == dns.rcode.NOERROR
    assert validated(reply.authority) == {("a.test.", "SOA"), ("mx.a.test.", "NSEC")}
    (nsec,) = next(r for r in reply.authority if r.rdtype == dns.rdatatype.NSEC)
    # A (1), AAAA (28), RRSIG (46), NSEC (47).
    expected = nsec_wire(b"\x01\x00\x02mx\x01a\x04test\x00", b"\x40\x00\x00\x08\x00\x03")
    assert nsec.to_wire() == expected
    # An empty non-terminal exists with no types at all; the apex has its SOA, NS and DNSKEY.
    empty = await ask("below.a.test", "A")
    (ent,) = next(r for r in empty.authority if r.rdtype == dns.rdatatype.NSEC)
    assert ent.to_text() == "\\000.below.a.test. RRSIG NSEC"
    apex = await ask("a.test", "AAAA")
    (top,) = next(r for r in apex.authority if r.rdtype == dns.rdatatype.NSEC)
    assert top.to_text() == "\\000.a.test. NS SOA MX TXT RRSIG NSEC DNSKEY"


async def test_a_cname_to_nothing_denies_its_target() -> None:
    reply = await ask("dangling.a.test", "A")
    assert reply.rcode() == dns.rcode.NOERROR
    assert validated(reply.answer) == {("dangling.a.test.", "CNAME")}
    assert validated(reply.authority) == {("a.test.", "SOA"), ("gone.a.test.", "NSEC")}


async def test_nsec_queries_get_the_nsec_and_nxname_queries_formerr() -> None:
    reply = await ask("nope.a.test", "NSEC")
    assert validated(reply.answer) == {("nope.a.test.", "NSEC")}
    assert (await ask("a.test", "TYPE128")).rcode() == dns.rcode.FORMERR  # RFC 9824 §3.5


async def test_signed_answers_too_big_for_the_payload_are_truncated() -> None:
    unsigned = await ask("big.a.test", "TXT", dnssec=False, payload=512)
    assert not unsigned.flags & dns.flags.TC
    small = await ask("big.a.test", "TXT", payload=512)  # the signature takes it past 512
    assert small.flags & dns.flags.TC
    assert small.answer == [] and small.ednsflags & dns.flags.DO
    fits = await ask("big.a.test", "TXT", payload=1232)
    assert not fits.flags & dns.flags.TC
    assert validated(fits.answer) == {("big.a.test.", "TXT")}


async def test_a_signed_zone_never_sets_ad() -> None:
    reply = await ask("a.test", "MX", source=zones(authentic=True))
    assert not reply.flags & dns.flags.AD


def test_signatures_are_kept_until_refresh_and_made_for_new_content() -> None:
    now = [1_800_000_000.0]
    policy = SigningPolicy(validity=1000, refresh=400, inception_offset=60, max_cached=10)
    signer = ZoneSigner(KEY, policy, clock=lambda: now[0])
    a = dns.rdata.from_text("IN", "A", "192.0.2.1").to_wire()
    b = dns.rdata.from_text("IN", "A", "192.0.2.2").to_wire()
    first = signer.rrsig("h.a.test", 1, 300, [a])
    rrsig = dns.rdata.from_wire(dns.rdataclass.IN, dns.rdatatype.RRSIG, first, 0, len(first))
    assert rrsig.inception == 1_800_000_000 - 60
    assert rrsig.expiration == 1_800_000_000 - 60 + 1000
    assert rrsig.original_ttl == 300 and rrsig.labels == 3 and rrsig.key_tag == KEY.key_tag
    now[0] += 399
    assert signer.rrsig("h.a.test", 1, 300, [a]) == first
    assert signer.rrsig("h.a.test", 1, 300, [a, b]) != first  # other content, other signature
    assert signer.rrsig("h.a.test", 1, 60, [a]) != first  # another TTL is signed over
    now[0] += 1
    renewed = signer.rrsig("h.a.test", 1, 300, [a])
    again = dns.rdata.from_wire(dns.rdataclass.IN, dns.rdatatype.RRSIG, renewed, 0, len(renewed))
    assert again.inception == 1_800_000_000 + 400 - 60


def test_successor_is_the_next_name_in_canonical_order() -> None:
    assert successor("x.a.test").to_text() == "\\000.x.a.test."
    # No room for another label (255 octets): the first label's last octet goes up by one,
    # past the capitals ('@' + 1 would be 'A', which sorts as 'a').
    long = ".".join(["a" * 63, "b" * 63, "c" * 63, "d" * 61])
    assert successor(long).labels[0] == b"a" * 62 + b"b"
    at = ".".join(["a" * 62 + "@", "b" * 63, "c" * 63, "d" * 61])
    assert successor(at).labels[0] == b"a" * 62 + b"["
    assert nsec_rdata("x.a.test", [1])[:12] == b"\x01\x00\x01x\x01a\x04test\x00"


def test_a_zone_key_must_be_ecdsa_p256() -> None:
    rsa_pem = rsa.generate_private_key(public_exponent=65537, key_size=2048).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    p384 = ec.generate_private_key(ec.SECP384R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    for pem in (rsa_pem, p384, b"not a key"):
        with pytest.raises(ZoneKeyError):
            ZoneKey("a.test", pem)


async def test_signatures_validate_now() -> None:
    """The inception lies in the past and the expiration ahead of the real clock."""
    reply = await ask("a.test", "TXT")
    sig = next(r for r in reply.answer if r.rdtype == dns.rdatatype.RRSIG)[0]
    assert sig.inception < time.time() < sig.expiration


@pytest.mark.parametrize(
    "types",
    [[1], [1, 28, 46, 47], [6, 2, 15, 16, 46, 47, 48], [46, 47, 128], [1, 257, 65534], [255]],
)
def test_type_bitmaps_are_those_dnspython_writes(types: list[int]) -> None:
    """RFC 4034 §4.1.2, checked against dnspython's own NSEC encoder."""
    listed = " ".join(dns.rdatatype.to_text(dns.rdatatype.RdataType.make(t)) for t in types)
    theirs = dns.rdata.from_text("IN", "NSEC", f"next.a.test. {listed}").to_wire()
    assert theirs is not None
    assert type_bitmap(types) == theirs[len(b"\x04next\x01a\x04test\x00") :]
