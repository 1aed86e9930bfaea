"""The metrics listener: ``GET /metrics`` over plain HTTP/1.1, in the Prometheus text format.

Implementation notes:

- **Off unless configured** (``[listeners.metrics]``, 127.0.0.1:8010 when named): it shows
  how much mail flows, which is the admin's business. Beyond loopback, set
  ``[metrics] bearer_token`` or ``basic_auth_password``; credentials are compared with
  :func:`hmac.compare_digest` (constant time), and a refused scrape gets 401 with a
  ``WWW-Authenticate`` challenge (RFC 9110 §11.6.1, RFC 6750 §3, RFC 7617 §2).
- **Cheap and bounded, so a bad scraper cannot hurt mail flow**: it is a
  :class:`~pillarbox.net.listener.Listener` with its own small connection limits
  (``metrics.max_connections``, at most 4 per address); h11 parses the request with the head
  capped at :data:`MAX_HEAD` octets and a body at :data:`MAX_BODY`; a whole request must arrive
  within ``metrics.request_timeout`` and the next one on a kept-alive connection within
  ``metrics.idle_timeout``; at most :data:`MAX_REQUESTS` per connection. Rendering the registry
  is a few hundred lines of text on the loop.
- **The queue gauges read the store** once per second at most, however many scrapers ask
  (one query, shared by the scrapes that wait on it), bounded by
  ``metrics.queue_query_timeout``; when it fails the scrape still answers, without them.
- Content negotiation is prometheus_client's (``choose_encoder``): the text format 0.0.4, or
  OpenMetrics when the scraper's ``Accept`` asks for it.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hmac
from dataclasses import dataclass

import h11
from prometheus_client.exposition import choose_encoder

from pillarbox.errors import StorageError
from pillarbox.net.channel import Channel
from pillarbox.net.listener import Admission, Handler
from pillarbox.observability.log import Log
from pillarbox.services import Services

#: Request line and headers together; a scrape's are a few hundred octets.
MAX_HEAD = 8 * 1024
#: A GET has no body; a few octets of one are read and dropped, more close the connection.
MAX_BODY = 1024
#: Requests on one kept-alive connection before it is closed.
MAX_REQUESTS = 1000
#: The queue gauges are read from the store at most this often (seconds).
QUEUE_REFRESH = 1.0
PATH = b"/metrics"
REALM = 'realm="pillarbox metrics"'
#: The answer to a connection over the limits (no request is read: it is closed at once).
BUSY = (
    b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: text/plain; charset=utf-8\r\n"
    b"retry-after: 5\r\ncontent-length: 18\r\nconnection: close\r\n\r\ntoo many scrapers\n"
)


@dataclass(frozen=True, slots=True)
class _Response:
    status: int
    headers: list[tuple[bytes, bytes]]
    body: bytes = b""


def _text(status: int, text: str, *extra: tuple[bytes, bytes]) -> _Response:
    return _Response(
        status, [(b"content-type", b"text/plain; charset=utf-8"), *extra], text.encode()
    )


class _Credentials:
    """What a scrape must present, if anything (``[metrics]``)."""

    def __init__(self, services: Services) -> None:
        section = services.config.metrics
        self.token = section.bearer_token.encode()
        self.user = section.basic_auth_username.encode()
        self.password = section.basic_auth_password.encode()

    @property
    def required(self) -> bool:
        return bool(self.token or self.password)

    def challenge(self) -> tuple[bytes, bytes]:
        schemes = []
        if self.token:
            schemes.append(f"Bearer {REALM}")
        if self.password:
            schemes.append(f'Basic {REALM}, charset="UTF-8"')
        return (b"www-authenticate", ", ".join(schemes).encode())

    def accept(self, authorization: bytes | None) -> bool:
        if not self.required:
            return True
        if authorization is None:
            return False
        scheme, _, value = authorization.strip().partition(b" ")
        value = value.strip()
        if self.token and scheme.lower() == b"bearer":
            return hmac.compare_digest(value, self.token)
        if self.password and scheme.lower() == b"basic":
            try:
                decoded = base64.b64decode(value, validate=True)
            except (binascii.Error, ValueError):
                return False
            user, colon, password = decoded.partition(b":")
            # Both compared, always: the time taken does not tell which one was wrong.
            user_ok = hmac.compare_digest(user, self.user)
            password_ok = hmac.compare_digest(password, self.password)
            return bool(colon) and user_ok and password_ok
        return False


class _Exporter:
    """Renders the server's registry, the queue gauges refreshed first."""

    def __init__(self, services: Services) -> None:
        self._services = services
        self._lock = asyncio.Lock()
        self._read_at: float | None = None
        self._log = Log("metrics")

    async def _refresh_queue(self) -> None:
        services = self._services
        loop = asyncio.get_running_loop()
        async with self._lock:  # concurrent scrapes share one query
            if self._read_at is not None and loop.time() - self._read_at < QUEUE_REFRESH:
                return
            try:
                async with asyncio.timeout(services.config.metrics.queue_query_timeout):
                    depth = await services.store.queue_depth()
            except (StorageError, TimeoutError) as exc:
                self._log.warning("queue gauges not read", error=str(exc) or type(exc).__name__)
                services.metrics.queue_query_failures.inc()
                services.metrics.set_queue(None)
            else:
                services.metrics.set_queue(depth)
            self._read_at = loop.time()

    async def render(self, accept: str) -> tuple[bytes, str]:
        await self._refresh_queue()
        encoder, content_type = choose_encoder(accept)
        return encoder(self._services.metrics.registry), content_type


def metrics_handler(services: Services, listener: str) -> Handler:
    credentials = _Credentials(services)
    exporter = _Exporter(services)
    section = services.config.metrics

    async def handle(channel: Channel, admission: Admission) -> None:
        if not admission.admitted:
            await channel.send(BUSY)
            return
        log = Log("metrics", conn=admission.connection_id, remote=channel.peer[0])
        conn = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEAD)
        for served in range(MAX_REQUESTS):
            # A kept-alive connection may idle before its next request; then the request,
            # the body it may carry and our answer have request_timeout together.
            wait = section.request_timeout + (section.idle_timeout if served else 0.0)
            try:
                async with asyncio.timeout(wait):
                    request = await _next_request(conn, channel)
                    if request is None:
                        return
                    response = await _answer(request, credentials, exporter, log)
                    whole = await _drain_body(conn, channel)
                    await _send(channel, conn, response, close=not whole)
                    if not whole:
                        return
            except h11.RemoteProtocolError as exc:
                log.info("bad request", error=str(exc))
                if conn.our_state in (h11.IDLE, h11.SEND_RESPONSE):
                    status = exc.error_status_hint
                    await _send(channel, conn, _text(status, "bad request\n"), close=True)
                return
            except TimeoutError:
                return
            if conn.our_state is h11.MUST_CLOSE or conn.their_state is not h11.DONE:
                return
            conn.start_next_cycle()

    return handle


async def _next_request(conn: h11.Connection, channel: Channel) -> h11.Request | None:
    """The next request's head; None when the client closed the connection."""
    while True:
        event = conn.next_event()
        if isinstance(event, h11.Request):
            # h11 bounds a head that arrives in pieces; one that came whole is measured here.
            size = len(event.method) + len(event.target) + 12
            size += sum(len(name) + len(value) + 4 for name, value in event.headers)
            if size > MAX_HEAD:
                raise h11.RemoteProtocolError("request head too large", error_status_hint=431)
            return event
        if event is h11.NEED_DATA:
            conn.receive_data(await channel.receive(None))
            continue
        return None  # ConnectionClosed (PAUSED cannot happen: a cycle is started first)


async def _drain_body(conn: h11.Connection, channel: Channel) -> bool:
    """Read and drop a request body; False when it is too large (the connection closes)."""
    size = 0
    while True:
        event = conn.next_event()
        if isinstance(event, h11.EndOfMessage):
            return True
        if isinstance(event, h11.Data):
            size += len(event.data)
            if size > MAX_BODY:
                return False
        elif isinstance(event, h11.ConnectionClosed):
            return False
        elif event is h11.NEED_DATA:
            conn.receive_data(await channel.receive(None))


async def _answer(
    request: h11.Request, credentials: _Credentials, exporter: _Exporter, log: Log
) -> _Response:
    path = request.target.split(b"?", 1)[0]
    if path != PATH:
        return _text(404, "not found; metrics are at /metrics\n")
    if request.method not in (b"GET", b"HEAD"):
        return _text(405, "method not allowed\n", (b"allow", b"GET, HEAD"))
    headers = dict(request.headers)  # h11 lower-cases names
    if not credentials.accept(headers.get(b"authorization")):
        log.warning("scrape refused: no valid credentials")
        return _text(401, "unauthorized\n", credentials.challenge())
    body, content_type = await exporter.render(headers.get(b"accept", b"").decode("latin-1"))
    response = _Response(200, [(b"content-type", content_type.encode())], body)
    if request.method == b"HEAD":
        response.headers.append((b"content-length", str(len(body)).encode()))
        return _Response(200, response.headers)
    return response


async def _send(
    channel: Channel, conn: h11.Connection, response: _Response, *, close: bool
) -> None:
    headers = list(response.headers)
    if not any(name == b"content-length" for name, _ in headers):
        headers.append((b"content-length", str(len(response.body)).encode()))
    headers.append((b"cache-control", b"no-store"))
    if close:
        headers.append((b"connection", b"close"))
    data = conn.send(h11.Response(status_code=response.status, headers=headers))
    if response.body:
        data += conn.send(h11.Data(data=response.body)) or b""
    data += conn.send(h11.EndOfMessage()) or b""
    await channel.send(data or b"")
