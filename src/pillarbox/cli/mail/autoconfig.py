"""Discovering an account's servers from its address.

Two published sources are tried, in this order:

1. Thunderbird autoconfig (``config-v1.1.xml``) at ``https://autoconfig.DOMAIN/mail/…`` and
   ``https://DOMAIN/.well-known/autoconfig/mail/…`` — richer (user name form, TLS per server);
2. DNS SRV records (RFC 6186, with RFC 8314 §5.1's ``_submissions``), preferring implicit TLS
   where both are published (RFC 8314 §3.1).

Only HTTPS URLs with verified certificates are used by default: a settings file fetched in the
clear could send the password to anyone. The URL templates, the HTTP getter and the SRV lookup
are parameters so tests can point them at loopback servers.
"""

from __future__ import annotations

import ssl
import urllib.error
import urllib.parse
import urllib.request
import xml.etree.ElementTree as ET
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from pillarbox.errors import UserError
from pillarbox.mailclient.transport import Endpoint, TlsMode

DEFAULT_URL_TEMPLATES = (
    "https://autoconfig.{domain}/mail/config-v1.1.xml?emailaddress={address}",
    "https://{domain}/.well-known/autoconfig/mail/config-v1.1.xml?emailaddress={address}",
)
MAX_CONFIG_BYTES = 256 * 1024
HTTP_TIMEOUT = 10.0

_SOCKET_TYPES = {"SSL": TlsMode.IMPLICIT, "STARTTLS": TlsMode.STARTTLS, "PLAIN": TlsMode.NONE}
# RFC 6186 §3.1–3.3 and RFC 8314 §5.1: (service label, protocol, TLS), preferred first.
SRV_SERVICES: tuple[tuple[str, str, TlsMode], ...] = (
    ("_imaps._tcp", "imap", TlsMode.IMPLICIT),
    ("_imap._tcp", "imap", TlsMode.STARTTLS),
    ("_pop3s._tcp", "pop3", TlsMode.IMPLICIT),
    ("_pop3._tcp", "pop3", TlsMode.STARTTLS),
    ("_submissions._tcp", "smtp", TlsMode.IMPLICIT),
    ("_submission._tcp", "smtp", TlsMode.STARTTLS),
)


@dataclass(frozen=True, slots=True)
class SrvRecord:
    priority: int
    weight: int
    port: int
    target: str


@dataclass(frozen=True, slots=True)
class Discovered:
    """What a domain publishes; ``source`` says where it came from (shown to the user)."""

    source: str
    username: str | None = None
    endpoints: dict[str, Endpoint] = field(default_factory=dict)


HttpGet = Callable[[str], bytes | None]
SrvLookup = Callable[[str], Sequence[SrvRecord]]


def https_get(url: str, *, context: ssl.SSLContext | None = None) -> bytes | None:
    """The body of ``url``, or None when there is nothing usable there (any HTTP or network
    failure: most domains publish no autoconfig, which is not an error)."""
    request = urllib.request.Request(url, headers={"Accept": "application/xml, text/xml"})
    try:
        with urllib.request.urlopen(request, timeout=HTTP_TIMEOUT, context=context) as response:
            body: bytes = response.read(MAX_CONFIG_BYTES + 1)
    except (urllib.error.URLError, OSError, ValueError):
        return None
    return body if len(body) <= MAX_CONFIG_BYTES else None


def dns_srv_lookup(name: str) -> list[SrvRecord]:
    import dns.exception
    import dns.resolver

    try:
        answer = dns.resolver.resolve(name, "SRV", lifetime=HTTP_TIMEOUT)
    except dns.exception.DNSException:
        return []
    return [
        SrvRecord(r.priority, r.weight, r.port, r.target.to_text(omit_final_dot=True))
        for r in answer
    ]


def discover(
    address: str,
    *,
    url_templates: Sequence[str] = DEFAULT_URL_TEMPLATES,
    http_get: HttpGet = https_get,
    srv_lookup: SrvLookup = dns_srv_lookup,
) -> Discovered:
    local, at, domain = address.rpartition("@")
    if not at or not local or not domain:
        raise UserError(f"not an email address: {address!r}")
    domain = domain.lower().rstrip(".")
    for template in url_templates:
        url = template.format(domain=domain, address=urllib.parse.quote(address, safe="@"))
        body = http_get(url)
        if body is None:
            continue
        found = parse_config_xml(body, address, source=url)
        if found.endpoints:
            return found
    found = from_srv(domain, srv_lookup)
    if found.endpoints:
        return found
    raise UserError(
        f"{domain} publishes no autoconfig file and no RFC 6186 SRV records; "
        "give --imap-host/--smtp-host/… instead"
    )


def parse_config_xml(body: bytes, address: str, *, source: str) -> Discovered:
    """Read a Thunderbird ``clientConfig`` (v1.1): the first server of each type wins, as
    in Thunderbird, which lists them by preference."""
    try:
        root = ET.fromstring(body)  # expat does not fetch external entities or DTDs
    except ET.ParseError:
        return Discovered(source)
    provider = root.find("emailProvider")
    if root.tag != "clientConfig" or provider is None:
        return Discovered(source)
    endpoints: dict[str, Endpoint] = {}
    username: str | None = None
    for element in [*provider.findall("incomingServer"), *provider.findall("outgoingServer")]:
        kind = element.get("type", "")
        if kind not in ("imap", "pop3", "smtp") or kind in endpoints:
            continue
        host = (element.findtext("hostname") or "").strip()
        port_text = (element.findtext("port") or "").strip()
        tls = _SOCKET_TYPES.get((element.findtext("socketType") or "").strip().upper())
        # A port is 1–65535 in ASCII digits: the document is another server's ("²" passes
        # isdigit and fails int).
        if not host or tls is None or not (port_text.isascii() and port_text.isdigit()):
            continue
        if len(port_text) > 5 or not 0 < int(port_text) < 65536:
            continue
        endpoints[kind] = Endpoint(_expand(host, address), int(port_text), tls)
        template = (element.findtext("username") or "").strip()
        if template and username is None:
            username = _expand(template, address)
    return Discovered(source, username, endpoints)


def _expand(template: str, address: str) -> str:
    local, _, domain = address.rpartition("@")
    return (
        template.replace("%EMAILADDRESS%", address)
        .replace("%EMAILLOCALPART%", local)
        .replace("%EMAILDOMAIN%", domain)
    )


def from_srv(domain: str, lookup: SrvLookup) -> Discovered:
    endpoints: dict[str, Endpoint] = {}
    for label, protocol, tls in SRV_SERVICES:
        if protocol in endpoints:
            continue
        records = list(lookup(f"{label}.{domain}"))
        # RFC 6186 §3.4 (RFC 2782): target "." means the service is deliberately absent.
        usable = [r for r in records if r.target not in ("", ".") and r.port]
        if not usable:
            continue
        best = min(usable, key=lambda r: (r.priority, -r.weight))
        endpoints[protocol] = Endpoint(best.target.rstrip("."), best.port, tls)
    return Discovered(f"DNS SRV records of {domain}", None, endpoints)
