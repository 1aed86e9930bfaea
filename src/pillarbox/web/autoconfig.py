"""Mail client autoconfiguration documents.

- Thunderbird autoconfig (the "clientConfig" v1.1 format): ``/.well-known/autoconfig/mail/
  config-v1.1.xml`` and, on the ``autoconfig.<domain>`` host, ``/mail/config-v1.1.xml``; the
  address comes from ``?emailaddress=``. Its ``webMail`` element names the webmail's login
  page, over HTTPS when the https listener runs.
- Microsoft autodiscover (POX, "Outlook 2006" response schema): ``POST /autodiscover/
  autodiscover.xml`` with the address in the request's ``EMailAddress`` element.
- Apple configuration profile (``com.apple.mail.managed`` payload) for the logged-in account:
  ``/settings/mobileconfig``. Unsigned: iOS shows it as "unverified", which is honest.

Only hosted domains are answered (others get 404), so the endpoints do not confirm anything
about foreign domains; the documents name no account-specific secrets. Servers are listed TLS
first (RFC 8314 §5), then STARTTLS. ManageSieve is not in them: none of the three formats has
an element for it (clients find it by the ``_sieve._tcp`` SRV record, RFC 5804 §1.8, or on the
settings page, which lists it).
"""

from __future__ import annotations

import plistlib
import re
import uuid
from xml.sax.saxutils import escape, quoteattr

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from pillarbox.errors import InvalidName, NotFound
from pillarbox.mail.address import parse_address
from pillarbox.web.account import ClientServer, client_servers, webmail_url
from pillarbox.web.app import Web, require_account, web

#: The address element of an autodiscover request; the body is never parsed as XML (no
#: entity expansion, no external entities: nothing to harden).
_AUTODISCOVER_ADDRESS = re.compile(rb"<EMailAddress>\s*([^<\s]{3,254})\s*</EMailAddress>", re.I)
_XML_TYPE = "application/xml; charset=utf-8"


async def _hosted_address(app: Web, text: str) -> str:
    try:
        address = parse_address(text.strip())
    except InvalidName:
        raise NotFound("not an address") from None
    if address.is_literal or await app.services.store.get_domain(address.domain) is None:
        raise NotFound("not a domain hosted here")
    return address.normalised


def _socket_type(server: ClientServer) -> str:
    return "SSL" if server.security == "TLS" else "STARTTLS"


def thunderbird_xml(app: Web, address: str) -> str:
    domain = address.rpartition("@")[2]
    lines = [
        '<?xml version="1.0" encoding="UTF-8"?>',
        '<clientConfig version="1.1">',
        f"  <emailProvider id={quoteattr(domain)}>",
        f"    <domain>{escape(domain)}</domain>",
        f"    <displayName>{escape(domain)} mail</displayName>",
        f"    <displayShortName>{escape(domain)}</displayShortName>",
    ]
    for server in client_servers(app, mail_only=True):
        kind = {"IMAP": "imap", "POP3": "pop3", "SMTP": "smtp"}[server.protocol]
        element = "outgoingServer" if kind == "smtp" else "incomingServer"
        lines += [
            f'    <{element} type="{kind}">',
            f"      <hostname>{escape(server.host)}</hostname>",
            f"      <port>{server.port}</port>",
            f"      <socketType>{_socket_type(server)}</socketType>",
            "      <username>%EMAILADDRESS%</username>",
            "      <authentication>password-cleartext</authentication>",
            f"    </{element}>",
        ]
    lines.append("  </emailProvider>")
    login = webmail_url(app)
    if login is not None:
        page = quoteattr(login + "login")
        lines += ["  <webMail>", f"    <loginPage url={page}/>", "  </webMail>"]
    lines += ["</clientConfig>", ""]
    return "\n".join(lines)


async def thunderbird(request: Request) -> Response:
    app = web(request)
    address = await _hosted_address(app, request.query_params.get("emailaddress", ""))
    return Response(thunderbird_xml(app, address), media_type=_XML_TYPE)


def autodiscover_xml(app: Web, address: str) -> str:
    protocols = []
    for server in client_servers(app, mail_only=True):
        if server.protocol == "POP3":
            kind = "POP3"
        elif server.protocol == "IMAP":
            kind = "IMAP"
        else:
            kind = "SMTP"
        protocols.append(
            "      <Protocol>\n"
            f"        <Type>{kind}</Type>\n"
            f"        <Server>{escape(server.host)}</Server>\n"
            f"        <Port>{server.port}</Port>\n"
            f"        <LoginName>{escape(address)}</LoginName>\n"
            "        <SPA>off</SPA>\n"
            f"        <SSL>{'on' if server.security == 'TLS' else 'off'}</SSL>\n"
            f"        <Encryption>{'SSL' if server.security == 'TLS' else 'TLS'}</Encryption>\n"
            "        <AuthRequired>on</AuthRequired>\n"
            "      </Protocol>"
        )
    return (
        '<?xml version="1.0" encoding="utf-8"?>\n'
        '<Autodiscover xmlns="http://schemas.microsoft.com/exchange/autodiscover/responseschema/2006">\n'
        '  <Response xmlns="http://schemas.microsoft.com/exchange/autodiscover/outlook/responseschema/2006a">\n'
        "    <Account>\n"
        "      <AccountType>email</AccountType>\n"
        "      <Action>settings</Action>\n" + "\n".join(protocols) + "\n"
        "    </Account>\n"
        "  </Response>\n"
        "</Autodiscover>\n"
    )


async def autodiscover(request: Request) -> Response:
    app = web(request)
    body = await request.body()
    match = _AUTODISCOVER_ADDRESS.search(body)
    if match is None:
        raise NotFound("no EMailAddress in the request")
    address = await _hosted_address(app, match.group(1).decode("utf-8", "replace"))
    return Response(autodiscover_xml(app, address), media_type=_XML_TYPE)


def mobileconfig_profile(app: Web, address: str, display_name: str) -> bytes:
    servers = client_servers(app, mail_only=True)
    incoming = next((s for s in servers if s.protocol == "IMAP"), None)
    outgoing = next((s for s in servers if s.protocol == "SMTP"), None)
    if incoming is None or outgoing is None:
        raise NotFound("this server offers no IMAP or no submission listener")
    host = app.services.hostname
    reverse = ".".join(reversed(host.split(".")))
    payload = {
        "PayloadType": "com.apple.mail.managed",
        "PayloadVersion": 1,
        "PayloadIdentifier": f"{reverse}.pillarbox.mail.{address}",
        "PayloadUUID": str(uuid.uuid5(uuid.NAMESPACE_URL, f"mailto:{address}#mail")),
        "PayloadDisplayName": address,
        "EmailAccountDescription": address,
        "EmailAccountName": display_name or address,
        "EmailAccountType": "EmailTypeIMAP",
        "EmailAddress": address,
        "IncomingMailServerAuthentication": "EmailAuthPassword",
        "IncomingMailServerHostName": incoming.host,
        "IncomingMailServerPortNumber": incoming.port,
        "IncomingMailServerUseSSL": incoming.security == "TLS",
        "IncomingMailServerUsername": address,
        "OutgoingMailServerAuthentication": "EmailAuthPassword",
        "OutgoingMailServerHostName": outgoing.host,
        "OutgoingMailServerPortNumber": outgoing.port,
        "OutgoingMailServerUseSSL": outgoing.security == "TLS",
        "OutgoingMailServerUsername": address,
        "OutgoingPasswordSameAsIncomingPassword": True,
    }
    profile = {
        "PayloadType": "Configuration",
        "PayloadVersion": 1,
        "PayloadIdentifier": f"{reverse}.pillarbox.{address}",
        "PayloadUUID": str(uuid.uuid5(uuid.NAMESPACE_URL, f"mailto:{address}")),
        "PayloadDisplayName": f"Mail: {address}",
        "PayloadDescription": f"Sets up the mail account {address} on {host}.",
        "PayloadContent": [payload],
    }
    return plistlib.dumps(profile, fmt=plistlib.FMT_XML)


async def mobileconfig(request: Request) -> Response:
    app = web(request)
    account = await require_account(request)
    data = mobileconfig_profile(app, account.address, account.display_name)
    return Response(
        data,
        media_type="application/x-apple-aspen-config",
        headers={"content-disposition": 'attachment; filename="mail.mobileconfig"'},
    )


def routes() -> list[BaseRoute]:
    return [
        Route("/.well-known/autoconfig/mail/config-v1.1.xml", thunderbird),
        Route("/mail/config-v1.1.xml", thunderbird),
        Route("/autodiscover/autodiscover.xml", autodiscover, methods=["POST"]),
        Route("/Autodiscover/Autodiscover.xml", autodiscover, methods=["POST"]),
        Route("/settings/mobileconfig", mobileconfig),
    ]
