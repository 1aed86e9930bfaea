"""WebDAV (RFC 4918) and CardDAV (RFC 6352) XML: request bodies read, multistatus written
(CalDAV's own bodies: :mod:`pillarbox.caldavxml`).

Implementation notes:

- **Parsing is expat with no document type**: a body with a ``<!DOCTYPE`` (hence any entity
  declaration, internal or external) is refused before an entity could be expanded, so neither
  external entities (XXE) nor entity expansion (billion laughs) can happen; elements nest at
  most :data:`MAX_DEPTH` deep. The body's size is the caller's (``[contacts]``, ``[web]``).
  Any of it — malformed XML, a DTD, an unexpected root — raises :class:`BadRequestBody`, the
  web layer's 400.
- **What is read**: PROPFIND (``prop``, ``allprop``, ``propname``; an empty body is
  ``allprop``, RFC 4918 §9.1), REPORT ``addressbook-multiget`` (RFC 6352 §8.7: the requested
  properties and hrefs) and ``addressbook-query`` (§8.6: ``prop-filter`` with ``text-match``
  or ``is-not-defined``, ``anyof``/``allof``, ``limit``), ``sync-collection`` (RFC 6578 §3.2,
  on a calendar or the address book: token, limit); any other REPORT is named so the
  caller can refuse it (RFC 4918 §9.x / RFC 3253 §3.6: ``supported-report``).
- **Matching** (:func:`matches`) reads a stored :class:`Contact`, the only properties the store
  keeps: FN, EMAIL, TEL, ORG, NOTE, UID. Collations (RFC 4790): ``i;octet`` compares as is,
  ``i;ascii-casemap`` and ``i;unicode-casemap`` (the default, RFC 6352 §8.3) case-folded.
- Pure: no I/O; properties are built by the caller as elements, serialised here.
"""

from __future__ import annotations

import xml.parsers.expat
from collections.abc import Sequence
from dataclasses import dataclass
from xml.etree.ElementTree import Element, SubElement, TreeBuilder, register_namespace, tostring

from pillarbox.store.types import Contact

DAV = "DAV:"
CARDDAV = "urn:ietf:params:xml:ns:carddav"  # RFC 6352 §10.1
CALDAV = "urn:ietf:params:xml:ns:caldav"  # RFC 4791 §4
APPLE_ICAL = "http://apple.com/ns/ical/"  # calendar-color's namespace
CALENDARSERVER = "http://calendarserver.org/ns/"  # getctag's namespace
#: How deep a request's elements may nest (a PROPFIND or REPORT needs five or six).
MAX_DEPTH = 32
#: RFC 6352 §8.6: the collations a server must support; the default is the last.
COLLATIONS = frozenset({"i;octet", "i;ascii-casemap", "i;unicode-casemap"})
MATCH_TYPES = frozenset({"equals", "contains", "starts-with", "ends-with"})  # RFC 6352 §10.5.4

for _namespace, _prefix in (
    (DAV, "d"),
    (CARDDAV, "card"),
    (CALDAV, "cal"),
    (CALENDARSERVER, "cs"),
    (APPLE_ICAL, "ical"),
):
    register_namespace(_prefix, _namespace)


def tag(namespace: str, name: str) -> str:
    """ElementTree's ``{namespace}name``."""
    return f"{{{namespace}}}{name}"


class BadRequestBody(Exception):
    """The request body is not the XML this method takes (400)."""


@dataclass(frozen=True, slots=True)
class PropFind:
    """RFC 4918 §14.20: the properties asked for (``{ns}name``), or all of them."""

    names: tuple[str, ...] = ()
    allprop: bool = False
    propname: bool = False
    #: The vCard version ``address-data`` asks for (RFC 6352 §10.4: 3.0 unless it says 4.0).
    vcard_version: str = "3.0"


@dataclass(frozen=True, slots=True)
class TextMatch:
    """RFC 6352 §10.5.4."""

    text: str
    collation: str = "i;unicode-casemap"
    match_type: str = "contains"
    negate: bool = False


@dataclass(frozen=True, slots=True)
class PropFilter:
    """RFC 6352 §10.5.1: one vCard property tested (``is_not_defined``, or its text matches;
    no test at all: the property is present)."""

    name: str  # upper case
    matches: tuple[TextMatch, ...] = ()
    is_not_defined: bool = False
    anyof: bool = True


@dataclass(frozen=True, slots=True)
class Multiget:
    props: PropFind
    hrefs: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Query:
    props: PropFind
    filters: tuple[PropFilter, ...] = ()
    anyof: bool = True  # RFC 6352 §10.5: the filter's test, "anyof" by default
    limit: int | None = None


@dataclass(frozen=True, slots=True)
class SyncCollection:
    """RFC 6578 §6.1: the token the client last had ("" for an initial sync)."""

    props: PropFind
    token: str
    limit: int | None = None


@dataclass(frozen=True, slots=True)
class OtherReport:
    """A REPORT this server does not do (the caller answers 403 ``supported-report``)."""

    name: str


def parse(body: bytes) -> Element:
    """The document element of ``body``; :class:`BadRequestBody` for malformed XML, a
    document type declaration, or nesting past :data:`MAX_DEPTH`."""
    builder = TreeBuilder()
    parser = xml.parsers.expat.ParserCreate(namespace_separator=" ")
    depth = 0

    def start(name: str, attributes: dict[str, str]) -> None:
        nonlocal depth
        depth += 1
        if depth > MAX_DEPTH:
            raise BadRequestBody(f"elements nested deeper than {MAX_DEPTH}")
        builder.start(_clark(name), {_clark(k): v for k, v in attributes.items()})

    def end(name: str) -> None:
        nonlocal depth
        depth -= 1
        builder.end(_clark(name))

    def doctype(*_: object) -> None:
        raise BadRequestBody("a document type declaration is not accepted")

    parser.StartElementHandler = start
    parser.EndElementHandler = end
    parser.CharacterDataHandler = builder.data
    parser.StartDoctypeDeclHandler = doctype
    parser.EntityDeclHandler = doctype
    try:
        parser.Parse(body, True)
    except xml.parsers.expat.ExpatError as exc:
        raise BadRequestBody(f"malformed XML: {exc}") from None
    return builder.close()


def _clark(name: str) -> str:
    namespace, _, local = name.rpartition(" ")
    return f"{{{namespace}}}{local}" if namespace else local


def asked_props(root: Element) -> PropFind:
    """The ``prop``/``allprop``/``propname`` child of a PROPFIND or REPORT body."""
    if root.find(tag(DAV, "propname")) is not None:
        return PropFind(propname=True)
    prop = root.find(tag(DAV, "prop"))
    if prop is None:
        return PropFind(allprop=True)
    data = prop.find(tag(CARDDAV, "address-data"))
    version = "4.0" if data is not None and data.get("version") == "4.0" else "3.0"
    return PropFind(names=tuple(child.tag for child in prop), vcard_version=version)


def propfind(body: bytes) -> PropFind:
    """A PROPFIND body (RFC 4918 §9.1: none at all means ``allprop``)."""
    if not body.strip():
        return PropFind(allprop=True)
    root = parse(body)
    if root.tag != tag(DAV, "propfind"):
        raise BadRequestBody("expected DAV:propfind")
    return asked_props(root)


def text_match(element: Element, default_collation: str = "i;unicode-casemap") -> TextMatch:
    """A ``text-match`` (RFC 6352 §10.5.4; RFC 4791 §9.7.5 has no match-type and defaults to
    ``i;ascii-casemap``)."""
    collation = element.get("collation", default_collation)
    match_type = element.get("match-type", "contains")
    if collation not in COLLATIONS:
        raise BadRequestBody(f"unsupported collation {collation[:40]!r}")
    if match_type not in MATCH_TYPES:
        raise BadRequestBody(f"unsupported match-type {match_type[:40]!r}")
    negate = element.get("negate-condition", "no") == "yes"
    return TextMatch(element.text or "", collation, match_type, negate)


def _prop_filter(element: Element) -> PropFilter:
    name = element.get("name", "").upper()
    if not name:
        raise BadRequestBody("prop-filter without a name")
    return PropFilter(
        name=name,
        matches=tuple(text_match(m) for m in element.iter(tag(CARDDAV, "text-match"))),
        is_not_defined=element.find(tag(CARDDAV, "is-not-defined")) is not None,
        anyof=element.get("test", "anyof") != "allof",
    )


def nresults(element: Element | None) -> int | None:
    """A ``limit``'s ``nresults`` (RFC 6352 §10.6, RFC 5323 §5.17), None when not given."""
    if element is None:
        return None
    text = (element.text or "").strip()
    if not text.isascii() or not text.isdigit() or len(text) > 9:
        raise BadRequestBody("nresults must be a number")
    return int(text)


def sync_collection(root: Element) -> SyncCollection:
    """RFC 6578 §6.1: a ``sync-collection`` REPORT's token, properties and limit."""
    token = (root.findtext(tag(DAV, "sync-token")) or "").strip()
    limit = nresults(root.find(f"{tag(DAV, 'limit')}/{tag(DAV, 'nresults')}"))
    return SyncCollection(asked_props(root), token, limit)


def report(body: bytes) -> Multiget | Query | SyncCollection | OtherReport:
    root = parse(body)
    if root.tag == tag(CARDDAV, "addressbook-multiget"):
        hrefs = tuple((h.text or "").strip() for h in root.findall(tag(DAV, "href")))
        return Multiget(asked_props(root), hrefs)
    if root.tag == tag(DAV, "sync-collection"):
        return sync_collection(root)
    if root.tag != tag(CARDDAV, "addressbook-query"):
        return OtherReport(root.tag)
    filter_element = root.find(tag(CARDDAV, "filter"))
    filters: tuple[PropFilter, ...] = ()
    anyof = True
    if filter_element is not None:
        filters = tuple(
            _prop_filter(f) for f in filter_element.findall(tag(CARDDAV, "prop-filter"))
        )
        anyof = filter_element.get("test", "anyof") != "allof"
    limit = nresults(root.find(f"{tag(CARDDAV, 'limit')}/{tag(CARDDAV, 'nresults')}"))
    return Query(asked_props(root), filters, anyof, limit)


# -- addressbook-query matching --------------------------------------------------------------------


def _values(contact: Contact, name: str) -> tuple[str, ...]:
    """The values of vCard property ``name`` our writer gives ``contact``."""
    match name:
        case "FN":
            return (contact.label,)
        case "EMAIL":
            return contact.emails
        case "TEL":
            return contact.phones
        case "ORG":
            return (contact.organization,) if contact.organization else ()
        case "NOTE":
            return (contact.note,) if contact.note else ()
        case "UID":
            return (contact.uid,)
    return ()


def _fold(text: str, collation: str) -> str:
    if collation == "i;octet":
        return text
    if collation == "i;ascii-casemap":
        return "".join(c.lower() if c.isascii() else c for c in text)
    return text.casefold()


def text_matches(match: TextMatch, value: str) -> bool:
    wanted, have = _fold(match.text, match.collation), _fold(value, match.collation)
    found = {
        "equals": have == wanted,
        "contains": wanted in have,
        "starts-with": have.startswith(wanted),
        "ends-with": have.endswith(wanted),
    }[match.match_type]
    return found != match.negate


def _prop_matches(prop: PropFilter, contact: Contact) -> bool:
    values = _values(contact, prop.name)
    if prop.is_not_defined:
        return not values
    if not prop.matches:
        return bool(values)
    # RFC 6352 §10.5.4: a text-match matches a property if any of its values matches.
    results = (any(text_matches(m, v) for v in values) for m in prop.matches)
    return any(results) if prop.anyof else all(results)


def matches(query: Query, contact: Contact) -> bool:
    """Whether ``contact`` passes the query's filter (RFC 6352 §10.5; none: every contact)."""
    if not query.filters:
        return True
    results = (_prop_matches(p, contact) for p in query.filters)
    return any(results) if query.anyof else all(results)


# -- writing ---------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Found:
    """One ``DAV:response`` of a multistatus: the resource's properties that exist (each a
    filled element), those that do not (their names), or a bare status for the whole of it."""

    href: str
    props: Sequence[Element] = ()
    missing: Sequence[str] = ()
    status: int | None = None
    #: Properties answered with another status (a PROPPATCH's 403 and 424), by status.
    others: Sequence[tuple[int, Sequence[str]]] = ()


_REASONS = {
    200: "OK",
    403: "Forbidden",
    404: "Not Found",
    409: "Conflict",
    424: "Failed Dependency",
}


def _status(code: int) -> str:
    return f"HTTP/1.1 {code} {_REASONS[code]}"


def element(name: str, text: str | None = None, *children: Element) -> Element:
    """A property or other element named ``{ns}name``, with text or children."""
    made = Element(name)
    made.text = text
    made.extend(children)
    return made


def multistatus(responses: Sequence[Found], sync_token: str | None = None) -> bytes:
    """RFC 4918 §13: the 207 body (with RFC 6578 §6.4's ``sync-token`` after the responses
    of a sync-collection report)."""
    root = Element(tag(DAV, "multistatus"))
    for found in responses:
        response = SubElement(root, tag(DAV, "response"))
        SubElement(response, tag(DAV, "href")).text = found.href
        if found.status is not None:
            SubElement(response, tag(DAV, "status")).text = _status(found.status)
            continue
        named = [([Element(n) for n in names], code) for code, names in found.others]
        for props, code in [
            (found.props, 200),
            ([Element(n) for n in found.missing], 404),
            *named,
        ]:
            if props:
                propstat = SubElement(response, tag(DAV, "propstat"))
                SubElement(propstat, tag(DAV, "prop")).extend(props)
                SubElement(propstat, tag(DAV, "status")).text = _status(code)
    if sync_token is not None:
        SubElement(root, tag(DAV, "sync-token")).text = sync_token
    return document(root)


def error(*conditions: Element) -> bytes:
    """RFC 4918 §16: a ``DAV:error`` body naming the failed pre- or postconditions."""
    return document(element(tag(DAV, "error"), None, *conditions))


def document(root: Element) -> bytes:
    """``root`` serialised. A carriage return (a vCard's CRLF line ends, RFC 6350 §3.2, in
    ``address-data``) is written as ``&#13;``: written raw, every XML parser would turn CRLF
    into LF (XML 1.0 §2.11) and the client would not get the card byte for byte. Element
    text is the only place one can be (ElementTree escapes it in attributes already)."""
    body: bytes = tostring(root, encoding="utf-8", xml_declaration=True)
    return body.replace(b"\r", b"&#13;")
