"""A front to Pebble that adds ACME renewal information (RFC 9773), for tests.

Debian's Pebble (2.4) has no renewal information. :class:`AriFront` is a small HTTPS server on
loopback that relays every request to Pebble byte for byte, adds ``renewalInfo`` (its own URL)
to the directory it relays, and answers ``GET renewalInfo/<id>`` with the window the test set
for that certificate (a far-off one otherwise), recording each identifier asked about. The
request's Host goes to Pebble unchanged: Pebble names its resources (the directory's URLs, an
order's, an authorization's) after it, and checks a signed request's ``url`` (RFC 8555 §6.4)
against it, so a server given the front's directory URL makes every request through the front.

Pebble 2.4 ignores the ``replaces`` of a new order (RFC 9773 §5; Go's JSON decoding skips a
field it does not know) and never refuses a finalization or fails an order it validated, so
the front does what a CA with ARI would, when the test asks: it records each new order's
payload (:attr:`AriFront.new_orders`), refuses one naming a certificate it replaces as
``alreadyReplaced`` (§7.4), refuses finalizations, or answers an order polled after its
finalization as ``invalid`` (RFC 8555 §7.1.6), each with a problem document (§6.7).
"""

from __future__ import annotations

import base64
import datetime
import http.client
import json
import ssl
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any

from cryptography import x509

from pillarbox.testing.pebble import Pebble

DAY = datetime.timedelta(days=1)
#: RFC 8555 §6.7: the prefix of ACME problem types.
PROBLEM = "urn:ietf:params:acme:error:"


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


def _path(url: str) -> str:
    return urllib.parse.urlsplit(url).path


def _jws_payload(body: bytes) -> dict[str, Any] | None:
    """The JSON payload of a flattened JWS request body (RFC 8555 §6.2), unverified; None for
    a POST-as-GET (empty payload) or a body that is not one."""
    try:
        encoded = json.loads(body)["payload"]
        payload = json.loads(base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4)))
    except (ValueError, KeyError, TypeError):
        return None
    return payload if isinstance(payload, dict) else None


def _send(handler: BaseHTTPRequestHandler, status: int, problem: dict[str, str]) -> None:
    """A problem document (RFC 8555 §6.7) as the answer."""
    body = json.dumps({**problem, "status": status}).encode()
    handler.send_response(status)
    handler.send_header("Content-Type", "application/problem+json")
    handler.send_header("Content-Length", str(len(body)))
    handler.end_headers()
    handler.wfile.write(body)


class AriFront:
    """``with AriFront(pebble) as front:`` — Pebble's directory at :attr:`directory_url`, with
    renewal information: :attr:`windows` (identifier → (start, end)) as the test sets them,
    :attr:`default` for any other certificate; :attr:`asked` the identifiers asked about, in
    order; :attr:`failing` makes every renewal information request a 500, and
    :attr:`offers_renewal_info` False leaves it out of the directory. :attr:`new_orders`:
    the payload of each new-order request, in order; :attr:`refuse_replaces`,
    :attr:`refuse_finalize` and :attr:`invalid_orders` make the front refuse or fail what
    Pebble would grant (the module's notes); :attr:`finalizations` counts the finalization
    requests that reached the front."""

    def __init__(self, pebble: Pebble) -> None:
        self.pebble = pebble
        now = datetime.datetime.now(datetime.UTC)
        self.default = (now + 60 * DAY, now + 61 * DAY)
        self.windows: dict[str, tuple[datetime.datetime, datetime.datetime]] = {}
        self.asked: list[str] = []
        self.failing = False
        #: Whether the directory names ``renewalInfo`` (False: a CA without ARI, RFC 9773 §5).
        self.offers_renewal_info = True
        #: The Retry-After sent (seconds): short, so a client that did not bound it would ask
        #: again within the test.
        self.retry_after = 1
        self.new_orders: list[dict[str, Any]] = []
        #: The HTTP status refusing a new order that names a certificate it replaces (0:
        #: relayed): RFC 9773 §5's 409, or another a CA might answer.
        self.refuse_replaces = 0
        self.refuse_finalize = False
        self.invalid_orders = False
        self.finalizations = 0
        #: Pebble's URL paths: its directory's newOrder, and the orders it placed (path →
        #: their finalize path), learnt from what the front relays.
        self._new_order_path = ""
        self._orders: dict[str, str] = {}
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
        directory; or, as the test asked, a refusal or a failed order instead."""
        length = int(handler.headers.get("Content-Length") or 0)
        body = handler.rfile.read(length) if length else None
        if body is not None and (refusal := self._refusal(handler.path, _jws_payload(body))):
            _send(handler, *refusal)
            return
        upstream = http.client.HTTPSConnection(
            "127.0.0.1", self.pebble.port, context=self._upstream, timeout=30
        )
        try:
            upstream.putrequest(handler.command, handler.path, skip_host=True)
            for key, value in handler.headers.items():
                upstream.putheader(key, value)
            upstream.endheaders(body)
            response = upstream.getresponse()
            data = response.read()
        finally:
            upstream.close()
        if handler.path == "/dir" and response.status == 200:
            directory = json.loads(data)
            if self.offers_renewal_info:
                directory["renewalInfo"] = f"{self.base}/renewalInfo"
            self._new_order_path = _path(directory["newOrder"])
            data = json.dumps(directory).encode()
        elif handler.path == self._new_order_path and response.status == 201:
            self._orders[_path(response.getheader("Location") or "")] = _path(
                json.loads(data)["finalize"]
            )
        elif handler.path in self._orders and self.invalid_orders and response.status == 200:
            order = json.loads(data)
            if order.get("status") in ("processing", "valid"):  # finalized, RFC 8555 §7.1.6
                order.update(
                    status="invalid",
                    error={"type": PROBLEM + "serverInternal", "detail": "issuance failed"},
                )
                order.pop("certificate", None)
                data = json.dumps(order).encode()
        handler.send_response(response.status)
        for key, value in response.getheaders():
            if key.lower() not in ("content-length", "transfer-encoding", "connection"):
                handler.send_header(key, value)
        handler.send_header("Content-Length", str(len(data)))
        handler.end_headers()
        if handler.command != "HEAD":
            handler.wfile.write(data)

    def _refusal(
        self, path: str, payload: dict[str, Any] | None
    ) -> tuple[int, dict[str, str]] | None:
        """The HTTP status and problem document answering a POST the test wants refused; None
        to relay it."""
        if path == self._new_order_path and payload is not None:
            self.new_orders.append(payload)
            if self.refuse_replaces and "replaces" in payload:
                # RFC 9773 §5: a certificate already replaced is refused with 409 Conflict
                # and an alreadyReplaced problem.
                return self.refuse_replaces, {
                    "type": PROBLEM + "alreadyReplaced",
                    "detail": f"certificate {payload['replaces']} is already replaced",
                }
        if path in self._orders.values():
            self.finalizations += 1
            if self.refuse_finalize:
                return 400, {"type": PROBLEM + "badCSR", "detail": "finalization refused"}
        return None

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
