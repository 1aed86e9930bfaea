"""A front to Pebble that adds ACME renewal information (RFC 9773), for tests.

Debian's Pebble (2.4) has no renewal information. :class:`AriFront` is a small HTTPS server on
loopback that relays every request to Pebble byte for byte, adds ``renewalInfo`` (its own URL)
to the directory it relays, and answers ``GET renewalInfo/<id>`` with the window the test set
for that certificate (a far-off one otherwise), recording each identifier asked about. A
server given the front's directory URL does everything else at Pebble's own URLs.
"""

from __future__ import annotations

import base64
import datetime
import http.client
import json
import ssl
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType

from cryptography import x509

from pillarbox.testing.pebble import Pebble

DAY = datetime.timedelta(days=1)


def utc_text(moment: datetime.datetime) -> str:
    """``moment`` as RFC 3339 in UTC, to the second, as a CA writes a window (RFC 9773 §4.2)."""
    return moment.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def certificate_ari_id(certificate: x509.Certificate) -> str:
    """The certificate's renewal information identifier (RFC 9773 §4.1), built as the test's
    own oracle: its authority key identifier's keyIdentifier from ``cryptography``, and the
    serial number's content octets as they stand in the certificate's DER, each base64url
    without padding, joined by ".". Not :func:`pillarbox.certificates.ari_identifier`, whose
    result it checks."""
    aki = certificate.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier)
    assert aki.value.key_identifier is not None
    return ".".join(
        base64.urlsafe_b64encode(part).rstrip(b"=").decode()
        for part in (aki.value.key_identifier, _der_serial(certificate))
    )


def _der_serial(certificate: x509.Certificate) -> bytes:
    """The serialNumber INTEGER's content octets in the certificate's DER. RFC 5280 §4.1: the
    TBSCertificate SEQUENCE opens with ``[0] EXPLICIT version`` (a v3 certificate's), then
    ``serialNumber``; each is tag, length, content, and a serial of at most 20 octets
    (§4.1.2.2) has a one-octet length."""
    tbs = certificate.tbs_certificate_bytes
    at = 2 + (tbs[1] & 0x7F if tbs[1] & 0x80 else 0)  # past the SEQUENCE's tag and length
    assert tbs[at] == 0xA0, "no [0] version: not a v3 certificate"
    at += 2 + tbs[at + 1]
    assert tbs[at] == 0x02, "no INTEGER serialNumber after the version"
    return tbs[at + 2 : at + 2 + tbs[at + 1]]


class AriFront:
    """``with AriFront(pebble) as front:`` — Pebble's directory at :attr:`directory_url`, with
    renewal information: :attr:`windows` (identifier → (start, end)) as the test sets them,
    :attr:`default` for any other certificate; :attr:`asked` the identifiers asked about, in
    order; :attr:`failing` makes every renewal information request a 500."""

    def __init__(self, pebble: Pebble) -> None:
        self.pebble = pebble
        now = datetime.datetime.now(datetime.UTC)
        self.default = (now + 60 * DAY, now + 61 * DAY)
        self.windows: dict[str, tuple[datetime.datetime, datetime.datetime]] = {}
        self.asked: list[str] = []
        self.failing = False
        #: The Retry-After sent (seconds): short, so a client that did not bound it would ask
        #: again within the test.
        self.retry_after = 1
        cert, key = pebble.https_identity
        self._context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self._context.load_cert_chain(cert, key)
        self._upstream = ssl.create_default_context(cafile=str(pebble.ca_bundle))
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.socket = self._context.wrap_socket(self._server.socket, server_side=True)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def base(self) -> str:
        return f"https://127.0.0.1:{self._server.server_address[1]}"

    @property
    def directory_url(self) -> str:
        return f"{self.base}/dir"

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        front = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                if self.path.startswith("/renewalInfo/"):
                    front._renewal_info(self)
                else:
                    front._relay(self)

            do_HEAD = do_POST = do_GET

        return Handler

    def _renewal_info(self, handler: BaseHTTPRequestHandler) -> None:
        identifier = handler.path.removeprefix("/renewalInfo/")
        self.asked.append(identifier)
        if self.failing:
            handler.send_error(500, "renewal information broken for the test")
            return
        start, end = self.windows.get(identifier, self.default)
        body = json.dumps(
            {"suggestedWindow": {"start": utc_text(start), "end": utc_text(end)}}
        ).encode()
        handler.send_response(200)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Retry-After", str(self.retry_after))
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        handler.wfile.write(body)

    def _relay(self, handler: BaseHTTPRequestHandler) -> None:
        """Pebble's answer to the same request, unchanged but for ``renewalInfo`` added to the
        directory."""
        length = int(handler.headers.get("Content-Length") or 0)
        body = handler.rfile.read(length) if length else None
        upstream = http.client.HTTPSConnection(
            "127.0.0.1", self.pebble.port, context=self._upstream, timeout=30
        )
        try:
            headers = {k: v for k, v in handler.headers.items() if k.lower() != "host"}
            upstream.request(handler.command, handler.path, body=body, headers=headers)
            response = upstream.getresponse()
            data = response.read()
        finally:
            upstream.close()
        if handler.path == "/dir" and response.status == 200:
            directory = json.loads(data)
            directory["renewalInfo"] = f"{self.base}/renewalInfo"
            data = json.dumps(directory).encode()
        handler.send_response(response.status)
        for key, value in response.getheaders():
            if key.lower() not in ("content-length", "transfer-encoding", "connection"):
                handler.send_header(key, value)
        handler.send_header("Content-Length", str(len(data)))
        handler.end_headers()
        if handler.command != "HEAD":
            handler.wfile.write(data)

    def __enter__(self) -> AriFront:
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._server.shutdown()
        self._server.server_close()
