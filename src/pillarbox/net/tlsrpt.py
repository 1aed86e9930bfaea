"""TLS-RPT (RFC 8460) over HTTPS: a report POSTed to an ``https:`` ``rua`` (§5.4). The report
itself is built in :mod:`pillarbox.queue.tlsrpt`; this module only moves its bytes.

Implementation notes:

- ``POST <path>`` with HTTP/1.1 (h11, as the MTA-STS fetch) and ``Content-Type:
  application/tlsrpt+gzip`` (§5.4, §6.5); any 2xx is success (§5.4: "typically a 200 or 201"),
  anything else a failure, and a redirect is not followed.
- The host's addresses come from the project's resolver; each is tried in turn. The
  certificate is not verified: §3 lets a submitter ignore certificate errors, and a report is
  no secret (it describes sessions the receiver's own servers took part in).
- The whole exchange is bounded by ``timeout``; the response body is read up to
  :data:`MAX_RESPONSE` bytes and discarded.
"""

from __future__ import annotations

import asyncio
import ssl
from urllib.parse import urlsplit

import h11

from pillarbox.dns.resolver import DnsTemporaryError, Resolver
from pillarbox.errors import PillarboxError
from pillarbox.net.smtp_client import opportunistic_context
from pillarbox.queue.tlsrpt import GZIP_MEDIA_TYPE

#: Seconds for one POST, connection included.
POST_TIMEOUT = 60.0
#: Response bytes read before giving up on the body (it carries nothing we use).
MAX_RESPONSE = 64 * 1024
_READ_SIZE = 16 * 1024


class ReportPostError(PillarboxError):
    """The report could not be delivered to the URL; the message says why."""


async def _exchange(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, host: str, target: str, body: bytes
) -> int:
    conn = h11.Connection(h11.CLIENT)
    request = h11.Request(
        method="POST",
        target=target,
        headers=[
            ("Host", host),
            ("User-Agent", "Pillarbox"),
            ("Content-Type", "/".join(GZIP_MEDIA_TYPE)),
            ("Content-Length", str(len(body))),
            ("Connection", "close"),
        ],
    )
    writer.write(conn.send(request) + (conn.send(h11.Data(data=body)) or b""))
    writer.write(conn.send(h11.EndOfMessage()) or b"")
    await writer.drain()
    status = 0
    received = 0
    while True:
        event = conn.next_event()
        if event is h11.NEED_DATA:
            data = await reader.read(_READ_SIZE)
            conn.receive_data(data)
        elif isinstance(event, h11.Response):
            status = event.status_code
        elif isinstance(event, h11.Data):
            received += len(event.data)
            if received > MAX_RESPONSE:
                return status  # the status is what matters; the rest is not read
        elif isinstance(event, h11.EndOfMessage | h11.ConnectionClosed):
            return status


async def post_report(
    url: str,
    body: bytes,
    resolver: Resolver,
    *,
    timeout: float = POST_TIMEOUT,
    context: ssl.SSLContext | None = None,
) -> None:
    """POST the gzipped report ``body`` to ``url`` (§5.4); raises :class:`ReportPostError`."""
    parts = urlsplit(url)
    host = parts.hostname
    if parts.scheme.lower() != "https" or not host:
        raise ReportPostError(f"{url}: not an https URL")
    try:
        port = parts.port or 443
    except ValueError:
        raise ReportPostError(f"{url}: bad port") from None
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    tls = context or opportunistic_context()
    failure = f"{host} has no address"
    try:
        async with asyncio.timeout(timeout):
            for address in await resolver.addresses(host):
                try:
                    reader, writer = await asyncio.open_connection(
                        address, port, ssl=tls, server_hostname=host
                    )
                except OSError as exc:  # ssl.SSLError too: the next address
                    failure = f"{address}: {exc.strerror or exc}"
                    continue
                try:
                    authority = parts.netloc.rpartition("@")[2]
                    status = await _exchange(reader, writer, authority, target, body)
                finally:
                    writer.close()
                if 200 <= status < 300:
                    return
                raise ReportPostError(f"{url}: HTTP status {status}")
    except DnsTemporaryError as exc:
        failure = exc.problem
    except TimeoutError:
        failure = f"no answer within {timeout:g} s"
    except (OSError, h11.ProtocolError) as exc:
        failure = str(exc) or type(exc).__name__
    raise ReportPostError(f"{url}: {failure}")
