"""Fuzz the WebDAV/CardDAV request bodies (pillarbox.davxml) with arbitrary bytes.

Input: the body of a PROPFIND (byte 0 even) or a REPORT (odd), as any client that passed the
login may send it. Asserted, beyond "no exception" other than ``BadRequestBody``:

* a parsed addressbook-query matches a fixed contact without raising, and its limit is a
  non-negative number;
* the multistatus answering the parsed request's hrefs (a multiget's, text from the input)
  is well-formed XML naming them back.
"""

from __future__ import annotations

from xml.etree.ElementTree import fromstring

import atheris
import harness

with atheris.instrument_imports(include=["pillarbox"]):
    from pillarbox import davxml
    from pillarbox.davxml import DAV, BadRequestBody, Found, Multiget, Query, tag
    from pillarbox.store.types import Contact

CONTACT = Contact(
    uid="z", display_name="Zoë Martin", emails=("zoe@example.org",), phones=("+33 1",)
)


def check(data: bytes) -> None:
    if not data:
        return
    report, body = data[0] % 2 == 1, data[1:]
    try:
        parsed = davxml.report(body) if report else davxml.propfind(body)
    except BadRequestBody:
        return
    if isinstance(parsed, Query):
        davxml.matches(parsed, CONTACT)
        assert parsed.limit is None or parsed.limit >= 0
    if isinstance(parsed, Multiget):
        hrefs = [h for h in parsed.hrefs if h.isprintable()]
        written = fromstring(davxml.multistatus([Found(h, status=404) for h in hrefs]))
        assert [r.findtext(tag(DAV, "href")) for r in written] == hrefs


def seeds() -> list[bytes]:
    ns = b'xmlns:d="DAV:" xmlns:c="urn:ietf:params:xml:ns:carddav"'
    return [
        b"\x00",
        b"\x00<d:propfind " + ns + b"><d:prop><d:getetag/><c:address-data/></d:prop></d:propfind>",
        b"\x00<d:propfind xmlns:d='DAV:'><d:propname/></d:propfind>",
        b"\x01<c:addressbook-multiget " + ns + b"><d:prop><d:getetag/></d:prop>"
        b"<d:href>/dav/addressbooks/a@b/contacts/x.vcf</d:href></c:addressbook-multiget>",
        b"\x01<c:addressbook-query " + ns + b'><c:filter test="allof">'
        b'<c:prop-filter name="EMAIL"><c:text-match match-type="ends-with">.org'
        b'</c:text-match></c:prop-filter><c:prop-filter name="ORG"><c:is-not-defined/>'
        b"</c:prop-filter></c:filter><c:limit><c:nresults>3</c:nresults></c:limit>"
        b"</c:addressbook-query>",
        b'\x00<!DOCTYPE d [<!ENTITY a "aaaa">]><d:propfind xmlns:d="DAV:">&a;</d:propfind>',
    ]


if __name__ == "__main__":
    harness.main("dav_xml", check, seeds(), max_len=65536)
