"""WebDAV (RFC 4918) and CardDAV (RFC 6352) XML: what PROPFIND and REPORT bodies are read as,
what is refused (malformed XML, any DTD — so no entity of any kind is expanded —, nesting too
deep), addressbook-query matching on stored contacts, and the multistatus written byte for
byte."""

from __future__ import annotations

from xml.etree.ElementTree import fromstring

import pytest

from pillarbox import davxml
from pillarbox.davxml import (
    CARDDAV,
    DAV,
    Found,
    Multiget,
    OtherReport,
    PropFilter,
    PropFind,
    Query,
    SyncCollection,
    TextMatch,
    element,
    tag,
)
from pillarbox.store.types import Contact

NS = 'xmlns:d="DAV:" xmlns:c="urn:ietf:params:xml:ns:carddav"'


def test_propfind_bodies() -> None:
    assert davxml.propfind(b"") == PropFind(allprop=True)  # RFC 4918 §9.1
    assert davxml.propfind(b"<d:propfind xmlns:d='DAV:'><d:allprop/></d:propfind>") == PropFind(
        allprop=True
    )
    assert davxml.propfind(b"<d:propfind xmlns:d='DAV:'><d:propname/></d:propfind>") == PropFind(
        propname=True
    )
    body = (
        f"<d:propfind {NS} xmlns:x='http://example.com/'><d:prop><d:getetag/>"
        "<c:address-data/><x:other/></d:prop></d:propfind>"
    ).encode()
    assert davxml.propfind(body) == PropFind(
        names=("{DAV:}getetag", f"{{{CARDDAV}}}address-data", "{http://example.com/}other")
    )
    # RFC 6352 §10.4: address-data is vCard 3.0 unless it asks for 4.0.
    v4 = body.replace(b"<c:address-data/>", b'<c:address-data version="4.0"/>')
    assert davxml.propfind(v4).vcard_version == "4.0"


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"<d:propfind xmlns:d='DAV:'>", "malformed XML"),
        (b"not xml", "malformed XML"),
        (b"<propfind/>", "expected DAV:propfind"),
        # XXE: an external entity is never fetched — the DTD is refused before it is read.
        (
            b'<!DOCTYPE d [<!ENTITY e SYSTEM "file:///etc/passwd">]>'
            b"<d:propfind xmlns:d='DAV:'>&e;</d:propfind>",
            "document type declaration",
        ),
        # Billion laughs: internal entities too.
        (
            b'<!DOCTYPE d [<!ENTITY a "aaaa"><!ENTITY b "&a;&a;&a;">]>'
            b"<d:propfind xmlns:d='DAV:'>&b;</d:propfind>",
            "document type declaration",
        ),
        (b"<!DOCTYPE d><d:propfind xmlns:d='DAV:'/>", "document type declaration"),
        (b"<a>" * 33 + b"</a>" * 33, "nested deeper than 32"),
    ],
)
def test_refused_bodies(body: bytes, reason: str) -> None:
    with pytest.raises(davxml.BadRequestBody, match=reason):
        davxml.propfind(body)


def test_nesting_up_to_the_limit_is_read() -> None:
    assert davxml.parse(b"<a>" * 32 + b"</a>" * 32).tag == "a"


def test_report_bodies() -> None:
    multiget = (
        f"<c:addressbook-multiget {NS}><d:prop><d:getetag/></d:prop>"
        "<d:href> /dav/a.vcf </d:href><d:href>/dav/b.vcf</d:href></c:addressbook-multiget>"
    ).encode()
    assert davxml.report(multiget) == Multiget(
        PropFind(names=("{DAV:}getetag",)), ("/dav/a.vcf", "/dav/b.vcf")
    )
    query = (
        f"<c:addressbook-query {NS}><d:prop><d:getetag/></d:prop>"
        '<c:filter test="allof"><c:prop-filter name="email" test="allof">'
        '<c:text-match collation="i;octet" match-type="ends-with">.org</c:text-match>'
        '<c:text-match negate-condition="yes">spam</c:text-match></c:prop-filter>'
        '<c:prop-filter name="ORG"><c:is-not-defined/></c:prop-filter></c:filter>'
        "<c:limit><c:nresults>5</c:nresults></c:limit></c:addressbook-query>"
    ).encode()
    assert davxml.report(query) == Query(
        PropFind(names=("{DAV:}getetag",)),
        (
            PropFilter(
                "EMAIL",
                (
                    TextMatch(".org", "i;octet", "ends-with"),
                    TextMatch("spam", negate=True),
                ),
                anyof=False,
            ),
            PropFilter("ORG", is_not_defined=True),
        ),
        anyof=False,
        limit=5,
    )
    # RFC 6578 §6.1 on the address book too.
    sync = (
        b"<d:sync-collection xmlns:d='DAV:'><d:sync-token>urn:x</d:sync-token>"
        b"<d:limit><d:nresults>7</d:nresults></d:limit><d:prop><d:getetag/></d:prop>"
        b"</d:sync-collection>"
    )
    assert davxml.report(sync) == SyncCollection(PropFind(names=("{DAV:}getetag",)), "urn:x", 7)
    other = b"<d:expand-property xmlns:d='DAV:'/>"
    assert davxml.report(other) == OtherReport("{DAV:}expand-property")
    for bad, reason in (
        (b'<c:text-match collation="i;klingon">x</c:text-match>', "unsupported collation"),
        (b'<c:text-match match-type="regex">x</c:text-match>', "unsupported match-type"),
    ):
        body = (
            f'<c:addressbook-query {NS}><c:filter><c:prop-filter name="FN">'.encode()
            + bad
            + b"</c:prop-filter></c:filter></c:addressbook-query>"
        )
        with pytest.raises(davxml.BadRequestBody, match=reason):
            davxml.report(body)
    nameless = f"<c:addressbook-query {NS}><c:filter><c:prop-filter/></c:filter>"
    with pytest.raises(davxml.BadRequestBody, match="without a name"):
        davxml.report((nameless + "</c:addressbook-query>").encode())
    limit = f"<c:addressbook-query {NS}><c:limit><c:nresults>-1</c:nresults></c:limit>"
    with pytest.raises(davxml.BadRequestBody, match="nresults"):
        davxml.report((limit + "</c:addressbook-query>").encode())


ZOE = Contact(
    uid="z",
    display_name="Zoë Martin",
    emails=("zoe@example.org", "z@work.example"),
    phones=("+33 1 23",),
)


@pytest.mark.parametrize(
    ("prop", "expected"),
    [
        (PropFilter("FN", (TextMatch("ZOË"),)), True),  # i;unicode-casemap by default
        (PropFilter("FN", (TextMatch("ZOË", "i;ascii-casemap"),)), False),  # Ë is not ASCII
        (PropFilter("FN", (TextMatch("ZOë", "i;ascii-casemap"),)), True),
        (PropFilter("FN", (TextMatch("zoë", "i;octet"),)), False),
        (PropFilter("FN", (TextMatch("Zoë Martin", match_type="equals"),)), True),
        (PropFilter("FN", (TextMatch("Zoë", match_type="equals"),)), False),
        (PropFilter("EMAIL", (TextMatch("work.example", match_type="ends-with"),)), True),
        (PropFilter("EMAIL", (TextMatch("zoe@", match_type="starts-with"),)), True),
        (PropFilter("EMAIL", (TextMatch("nobody", negate=True),)), True),
        (PropFilter("TEL", (TextMatch("33 1"),)), True),
        (PropFilter("ORG"), False),  # present? no
        (PropFilter("ORG", is_not_defined=True), True),
        (PropFilter("UID", (TextMatch("z", match_type="equals"),)), True),
        (PropFilter("EMAIL", (TextMatch("zoe"), TextMatch("nope")), anyof=False), False),
        (PropFilter("EMAIL", (TextMatch("zoe"), TextMatch("nope"))), True),
        (PropFilter("ADR"), False),  # a property the store does not keep is never there
    ],
)
def test_query_matching(prop: PropFilter, expected: bool) -> None:
    assert davxml.matches(Query(PropFind(), (prop,)), ZOE) is expected


def test_query_filter_test_and_no_filter() -> None:
    yes = PropFilter("FN", (TextMatch("zoë"),))
    no = PropFilter("FN", (TextMatch("bob"),))
    assert davxml.matches(Query(PropFind(), (yes, no)), ZOE)
    assert not davxml.matches(Query(PropFind(), (yes, no), anyof=False), ZOE)
    assert davxml.matches(Query(PropFind()), ZOE)


def test_multistatus_byte_for_byte() -> None:
    body = davxml.multistatus(
        [
            Found(
                "/dav/a.vcf",
                [element(tag(DAV, "getetag"), '"1"')],
                [tag(CARDDAV, "address-data")],
            ),
            Found("/dav/gone.vcf", status=404),
        ]
    )
    assert body == (
        b"<?xml version='1.0' encoding='utf-8'?>\n"
        b'<d:multistatus xmlns:card="urn:ietf:params:xml:ns:carddav" xmlns:d="DAV:">'
        b"<d:response><d:href>/dav/a.vcf</d:href>"
        b'<d:propstat><d:prop><d:getetag>"1"</d:getetag></d:prop>'
        b"<d:status>HTTP/1.1 200 OK</d:status></d:propstat>"
        b"<d:propstat><d:prop><card:address-data /></d:prop>"
        b"<d:status>HTTP/1.1 404 Not Found</d:status></d:propstat></d:response>"
        b"<d:response><d:href>/dav/gone.vcf</d:href>"
        b"<d:status>HTTP/1.1 404 Not Found</d:status></d:response></d:multistatus>"
    )
    assert davxml.error(element(tag(CARDDAV, "valid-address-data"), "bad & worse")) == (
        b"<?xml version='1.0' encoding='utf-8'?>\n"
        b'<d:error xmlns:card="urn:ietf:params:xml:ns:carddav" xmlns:d="DAV:">'
        b"<card:valid-address-data>bad &amp; worse</card:valid-address-data></d:error>"
    )


def test_address_data_keeps_its_crlf_through_an_xml_parser() -> None:
    card = "BEGIN:VCARD\r\nVERSION:3.0\r\nFN:A\r\nEND:VCARD\r\n"
    body = davxml.multistatus([Found("/dav/a.vcf", [element(tag(CARDDAV, "address-data"), card)])])
    assert b"BEGIN:VCARD&#13;\nVERSION:3.0&#13;\n" in body
    parsed = fromstring(body).find(f".//{{{CARDDAV}}}address-data")
    assert parsed is not None and parsed.text == card
