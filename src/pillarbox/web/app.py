"""The ASGI application: webmail, account settings, admin, JSON API, autoconfig.

Implementation notes:

- **Why Starlette** (not FastAPI): the pages are server-rendered forms, and the JSON API's
  OpenAPI document is generated from the API's own route table (:mod:`.api`), so FastAPI's
  main gift — schemas from pydantic models — would add pydantic for one document. Starlette is
  the small core FastAPI itself stands on.
- **Every request** passes :class:`Guard`: a body limit enforced while the body streams in (a
  ``Content-Length`` over the limit is refused before a byte is read), the session cookie
  decoded, security headers added to every response (a strict CSP: scripts and styles only
  from this origin, no inline script; framing only by ourselves), and the response counted
  in the metrics by its route's template, never its raw path (``docs/metrics.md``).
- **HTTPS** (the "https" listener; ``scope["scheme"]`` says which): the session cookie is
  ``Secure`` and responses carry HSTS; plain HTTP never does (RFC 6797 §7.2). With
  ``[web] redirect_http`` and an https listener, plain-HTTP requests are redirected there
  (308, so a form's method survives), except under ``/.well-known/``: the ACME CA fetches its
  challenge over HTTP (RFC 8555 §8.3), and autoconfig clients may not follow a redirect. Off
  by default: behind a TLS-terminating proxy every request arrives as plain HTTP.
- **Errors** map once, here: ``NotFound`` → 404, ``PermissionDenied`` (a shared folder's
  rights do not allow it) → 403, ``RateLimited`` → 429 with ``Retry-After``, any other
  ``UserError`` → 400, a bad CSRF token or a missing session → back to login. A page that
  shows the error beside its form itself takes the status from :func:`refusal_status` and the
  header from :func:`refused`, so a throttled form answers 429 as well.
- Pages never change state on GET; every POST checks the CSRF token before anything else.
"""

from __future__ import annotations

import contextlib
import logging
import math
import re
import time
from collections.abc import Awaitable, Callable, Mapping, MutableMapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from jinja2 import Environment, PackageLoader, pass_context, select_autoescape
from jinja2.runtime import Context
from starlette.applications import Starlette
from starlette.datastructures import FormData
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import (
    HTMLResponse,
    JSONResponse,
    PlainTextResponse,
    RedirectResponse,
    Response,
)
from starlette.routing import BaseRoute, Mount
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from pillarbox.auth.tokens import token_digest
from pillarbox.config import LISTENER_DOCS, WebSection
from pillarbox.errors import (
    AlreadyExists,
    BrokenOff,
    NotFound,
    PermissionDenied,
    RateLimited,
    UserError,
)
from pillarbox.net.authcount import CountedAuthenticator
from pillarbox.net.http import origin
from pillarbox.observability.log import Log
from pillarbox.observability.metrics import UNMATCHED_ROUTE, WebMetrics
from pillarbox.services import Services
from pillarbox.sizes import human_size
from pillarbox.store.aclrows import canonical_rights
from pillarbox.store.types import Account, TokenKind
from pillarbox.web.downloads import BROKEN_OFF_FILTER, ended_broken_off
from pillarbox.web.loginhold import LoginHolds
from pillarbox.web.session import (
    BACKGROUND_HEADER,
    COOKIE,
    CSRF_FIELD,
    CSRF_HEADER,
    ENDS_COOKIE,
    LIVE_FEED_PATH,
    Session,
    SessionCodec,
    load_secret,
)
from pillarbox.web.totpseal import TotpSealer, load_key
from pillarbox.web.zone import (
    ReaderZone,
    Style,
    remember_zone,
    when,
    zone_of,
    zone_remembered,
)

#: Paths whose requests may carry attachments, a vCard or an .ics file (the larger body limit
#: applies); and the API's calendar imports, ``/api/v1/calendars/<name>/import``.
UPLOAD_PATHS = (
    "/compose",
    "/api/v1/send",
    "/api/v1/drafts",
    "/contacts/import",
    "/api/v1/contacts/import",
    "/calendar/import",
)
CALENDAR_API = "/api/v1/calendars/"


def upload_path(path: str) -> bool:
    """Whether a request to ``path`` may be as large as ``[web] max_upload_bytes``."""
    return path.startswith(UPLOAD_PATHS) or (
        path.startswith(CALENDAR_API) and path.endswith("/import")
    )


PAGE_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; frame-src 'self'; form-action 'self'; frame-ancestors 'self'; "
    "base-uri 'none'"
)
_SECURITY_HEADERS = (
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"same-origin"),
    (b"x-frame-options", b"SAMEORIGIN"),
    (b"cross-origin-opener-policy", b"same-origin"),
)
#: Never redirected to HTTPS: ACME HTTP-01 challenges (RFC 8555 §8.3: the CA fetches over
#: HTTP), the MTA-STS policy (fetched over HTTPS only anyway) and client autoconfiguration.
NOT_REDIRECTED_PREFIX = "/.well-known/"
#: A Host header fit to put in a redirect: a DNS name or an address literal, with its port.
_HOST = re.compile(r"(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9](?:[A-Za-z0-9.-]{0,252}))(?::[0-9]{1,5})?")

_log = Log("web")


class BodyTooLarge(Exception):
    """The request body exceeded its limit (raised from ``receive`` as it streams in)."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"request body over {limit} bytes")
        self.limit = limit


def within_limit(data: bytes, limit: int) -> bytes:
    """``data`` (a file uploaded, a JSON field's text), or :class:`BodyTooLarge` (413) past
    ``limit`` bytes: a file's own bound, below the body's (``[calendars] max_import_bytes``,
    ``[contacts] max_import_bytes``)."""
    if len(data) > limit:
        raise BodyTooLarge(limit)
    return data


class LoginRequired(Exception):
    """No valid session (or a stale CSRF token): send the visitor to the login page, and then
    back to ``return_to`` (the page the refused form came from). ``carried``: fields of the
    refused form the login page keeps and the login hands back (:func:`.webmail.login`)."""

    def __init__(
        self, reason: str = "", return_to: str = "", carried: Sequence[tuple[str, str]] = ()
    ) -> None:
        super().__init__(reason)
        self.reason = reason
        self.return_to = return_to
        self.carried = tuple(carried)


@dataclass
class Web:
    """Everything a handler needs, kept on ``app.state.web``."""

    services: Services
    #: The ``[web]`` config section: page sizes, body limits, session and stream limits.
    limits: WebSection
    codec: SessionCodec
    #: Seals and opens the two-factor login secrets (``data_dir/totp-key``).
    sealer: TotpSealer
    templates: Environment
    #: Listener name → port clients should use (bound ports where known), for client setup.
    ports: Mapping[str, int]
    #: Messages being written that two-step logins hold between their steps (in the store).
    login_holds: LoginHolds
    streams: dict[int, int] = field(default_factory=dict)

    @property
    def logins(self) -> CountedAuthenticator:
        """The login form's password check, its failures counted as protocol ``web``
        (``pillarbox_auth_failures_total``, as the mail protocols' are)."""
        return CountedAuthenticator(self.services.authenticator, self.services.metrics.auth("web"))

    @property
    def dav_logins(self) -> CountedAuthenticator:
        """CardDAV's and CalDAV's Basic password check (one login for ``/dav/``), counted as
        protocol ``dav``."""
        return CountedAuthenticator(self.services.authenticator, self.services.metrics.auth("dav"))

    def render(
        self, request: Request, template: str, status_code: int = 200, **context: Any
    ) -> HTMLResponse:
        session: Session = request.state.session
        account: Account | None = getattr(request.state, "account", None)
        issued: Session = request.state.issue_cookie or session
        html = self.templates.get_template(template).render(
            request=request,
            csrf=self.codec.csrf_token(session),
            # For the warning before the session ends: when (this response's cookie says it
            # when it refreshes one), and the server's clock, which the browser's may not keep.
            session_ends=self.codec.ends(issued),
            server_now=int(time.time()),
            me=account,
            limits=self.limits,
            reader_zone=zone_of(request),
            shortcuts=shortcuts_on(request),
            **context,
        )
        return HTMLResponse(html, status_code=status_code)


def web(request: Request) -> Web:
    value: Web = request.app.state.web
    return value


# -- per-request guard ----------------------------------------------------------------------------


class Guard:
    """ASGI middleware: body limits, session cookie in and out, security headers, HSTS, the
    redirect to HTTPS, and the request metrics (``metrics``; None: not counted)."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        codec: SessionCodec,
        limits: WebSection,
        hostname: str,
        https_port: int | None = None,
        metrics: WebMetrics | None = None,
    ) -> None:
        self.app = app
        self.codec = codec
        self.limits = limits
        #: Where redirected requests go when their Host header is unfit (this host's name).
        self.hostname = hostname
        #: The https listener's port; None when it is not running.
        self.https_port = https_port
        self._hsts = f"max-age={limits.hsts_max_age}".encode() if limits.hsts_max_age else None
        self.metrics = metrics
        # The server's line about a download this app broke off on purpose (see the filter).
        logging.getLogger("uvicorn.error").addFilter(BROKEN_OFF_FILTER)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        metrics = self.metrics
        if metrics is not None:
            send = _counted(send, scope, metrics, started)
        path: str = scope["path"]
        if "\x00" in path or b"%00" in scope.get("query_string", b""):
            # PostgreSQL's text cannot hold NUL, so a name looked up with one failed the
            # request with a server error; no URL of ours has one (RFC 3986 §2.1 allows it).
            _log.info("request refused", reason="NUL in the path or query", path=path[:200])
            await _bad_request("NUL (%00) in the URL", scope, send)
            return
        secure = scope.get("scheme") == "https"
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        if (
            not secure
            and self.limits.redirect_http
            and self.https_port is not None
            and not path.startswith(NOT_REDIRECTED_PREFIX)
        ):
            # RFC 6797 §7.2: a request over plain HTTP SHOULD get a permanent redirect.
            location = https_location(scope, self.hostname, self.https_port)
            await RedirectResponse(location, status_code=308)(scope, _no_body, send)
            return
        limit = self.limits.max_upload_bytes if upload_path(path) else self.limits.max_form_bytes
        declared = headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            await _too_large(limit, scope, send)
            return
        now = time.time()
        session, fresh = self._session(headers.get("cookie", ""), now)
        state: MutableMapping[str, Any] = scope.setdefault("state", {})
        state["session"] = session
        state["issue_cookie"] = None
        if fresh:
            state["issue_cookie"] = session
        elif self.codec.needs_refresh(session, now) and activity(path, headers):
            state["issue_cookie"] = self.codec.refreshed(session, now)
        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyTooLarge(limit)
            return message

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                out = list(message.get("headers", []))
                names = {name.lower() for name, _ in out}
                out += [(k, v) for k, v in _SECURITY_HEADERS if k not in names]
                if b"content-security-policy" not in names:
                    out.append((b"content-security-policy", PAGE_CSP.encode()))
                # RFC 6797 §7.1: HTTPS responses only; no includeSubDomains, since other hosts
                # under this name (mta-sts.*, autoconfig.*, or unrelated ones) are not ours.
                if secure and self._hsts is not None:
                    out.append((b"strict-transport-security", self._hsts))
                # Server-Timing (W3C): time to the response head, for benchmarks and devtools.
                elapsed = (time.perf_counter() - started) * 1000
                out.append((b"server-timing", f"app;dur={elapsed:.2f}".encode()))
                issue: Session | None = state.get("issue_cookie")
                if issue is not None and b"set-cookie" not in names:
                    out += [(b"set-cookie", c.encode()) for c in self.cookies(issue, secure=secure)]
                message = {**message, "headers": out}
            await send(message)

        try:
            await self.app(scope, limited_receive, send_with_headers)
        except BrokenOff:
            # Logged where it happened; returned from with the response unfinished, the
            # server closes the connection (the ASGI spec's rule), the body's end unsent.
            ended_broken_off()
            return

    def _session(self, cookie_header: str, now: float) -> tuple[Session, bool]:
        """The visitor's session, and whether it is new (no valid cookie came)."""
        for part in cookie_header.split(";"):
            name, _, value = part.strip().partition("=")
            if name == COOKIE:
                session = self.codec.decode(value, now)
                if session is not None:
                    return session, False
        return self.codec.anonymous(now), True

    def cookies(self, session: Session, *, secure: bool) -> list[str]:
        """The Set-Cookie values issuing ``session``: the session, and when it ends
        (:data:`ENDS_COOKIE`, for the pages' script)."""
        tail = f"; Path=/; SameSite=Lax; Max-Age={int(self.codec.ttl)}"
        tail += "; Secure" if secure else ""
        ends = self.codec.ends(session)
        return [
            f"{COOKIE}={self.codec.encode(session)}; HttpOnly{tail}",
            f"{ENDS_COOKIE}={ends}{tail}",
        ]


def activity(path: str, headers: Mapping[str, str]) -> bool:
    """Whether a request is the person's doing, and so refreshes the session: not the live
    feed, which the browser reopens by itself, nor a request the pages' script marks as its
    own (re-reading a page an event said changed). Otherwise a page left open with its feed
    reconnecting, or mail arriving, would never be idle."""
    return path != LIVE_FEED_PATH and BACKGROUND_HEADER not in headers


def _counted(send: Send, scope: Scope, metrics: WebMetrics, started: float) -> Send:
    """``send``, counting the response by its route's template (Starlette's router leaves the
    route it chose in the scope) when its head goes out."""

    async def counted_send(message: Message) -> None:
        if message["type"] == "http.response.start":
            route = getattr(scope.get("route"), "path", None) or UNMATCHED_ROUTE
            metrics.request(route, message["status"], time.perf_counter() - started)
        await send(message)

    return counted_send


def https_location(scope: Scope, fallback_host: str, port: int) -> str:
    """The https URL of a plain-HTTP request: same path and query, on the host the client
    asked for (``fallback_host`` if its Host header is missing or unfit for a URL)."""
    host_header = next((v for k, v in scope["headers"] if k == b"host"), b"").decode("latin-1")
    match = _HOST.fullmatch(host_header)
    host = match.group(1).strip("[]") if match else fallback_host
    target: bytes = scope.get("raw_path") or quote(scope["path"]).encode()
    url = origin("https", host, port) + target.decode("latin-1")
    query: bytes = scope.get("query_string", b"")
    return url + ("?" + query.decode("latin-1") if query else "")


async def _too_large(limit: int, scope: Scope, send: Send) -> None:
    text = f"Too large: the limit is {limit // (1024 * 1024) or 1} MB."
    response = (
        JSONResponse({"error": text}, status_code=413)
        if scope["path"].startswith("/api/")
        else HTMLResponse(f"<!DOCTYPE html><title>Too large</title><p>{text}</p>", 413)
    )
    await response(scope, _no_body, send)


async def _bad_request(text: str, scope: Scope, send: Send) -> None:
    response = (
        JSONResponse({"error": text}, status_code=400)
        if scope["path"].startswith("/api/")
        else PlainTextResponse(text + "\n", 400)
    )
    await response(scope, _no_body, send)


async def _no_body() -> Message:
    return {"type": "http.request", "body": b"", "more_body": False}


# -- helpers for handlers -------------------------------------------------------------------------


async def current_account(request: Request) -> Account | None:
    """The session's account, or None when anonymous, removed, or its password changed."""
    cached: Account | None = getattr(request.state, "account", None)
    if cached is not None:
        return cached
    session: Session = request.state.session
    if session.account_id is None:
        return None
    app = web(request)
    store = app.services.store
    account = await store.get_account_by_id(session.account_id)
    if account is None or app.codec.fingerprint(account.password_hash) != session.fingerprint:
        return None
    if await store.find_token(TokenKind.ENDED_SESSION, _ended_digest(session)) is not None:
        return None
    request.state.account = account
    return account


def _ended_digest(session: Session) -> str:
    return token_digest("session:" + session.sid)


async def end_session(request: Request) -> None:
    """Logout: remember the session's id as ended, so that a copy of its cookie (taken from
    the browser, a proxy log, a shared machine) is refused from now on rather than until it
    expires; records older than a cookie can live are dropped on the way."""
    session: Session = request.state.session
    account = await current_account(request)
    if account is None:
        return
    app = web(request)
    store = app.services.store
    now = datetime.now(UTC)
    for old in await store.list_tokens(account.id, TokenKind.ENDED_SESSION):
        # A cookie is refused ttl seconds after it was issued (+60 s of clock skew) and none
        # of an ended session is refreshed after its end.
        if (now - old.created).total_seconds() > app.codec.ttl + 60:
            await store.remove_token(account.id, old.id)
    with contextlib.suppress(AlreadyExists):  # logged out twice at once
        await store.add_token(account.id, TokenKind.ENDED_SESSION, "", _ended_digest(session))


async def require_account(request: Request) -> Account:
    """The session's account (LoginRequired without one), its pages' time zone resolved: the
    account's setting before the browser's, read here once so that the synchronous render has
    it (:mod:`pillarbox.web.zone`; the JSON API and the live feed, which show no times, do not
    pay for it), and so is its shortcuts switch (:func:`shortcuts_on`)."""
    account = await current_account(request)
    if account is None:
        raise LoginRequired("expired")
    if not zone_remembered(request):
        settings = await web(request).services.store.get_settings(account.id)
        remember_zone(request, settings.time_zone)
        request.state.shortcuts = settings.shortcuts
    return account


def shortcuts_on(request: Request) -> bool:
    """Whether the page's single-key shortcuts are on: the account's setting, as
    :func:`require_account` read it (on for a page without an account)."""
    on: bool = getattr(request.state, "shortcuts", True)
    return on


async def require_admin(request: Request) -> Account:
    account = await require_account(request)
    if not account.is_admin:
        raise HTTPException(403, "administrators only")
    return account


async def posted_form(
    request: Request, *, files: bool = False, carry: Sequence[str] = ()
) -> FormData:
    """The form of a POST after its CSRF token checked out (LoginRequired otherwise, carrying
    the form's non-empty fields named in ``carry`` through the login)."""
    app = web(request)
    limits = app.limits
    form = await request.form(
        max_files=limits.max_attachments if files else 0,
        max_fields=200 + limits.max_action_uids,
        max_part_size=limits.max_upload_bytes if files else limits.max_form_bytes,
    )
    token = form.get(CSRF_FIELD) or request.headers.get(CSRF_HEADER)
    if not isinstance(token, str) or not app.codec.csrf_valid(request.state.session, token):
        reason = "stale" if await current_account(request) is not None else "expired"
        carried = [
            (name, value)
            for name, value in form.multi_items()
            if name in carry and isinstance(value, str) and value and "\x00" not in value
        ]
        if not carry_fits(carried, limits.max_form_bytes):
            # The login's form would be refused (413) with the password in it: the login
            # page says so instead, and the browser's own copy (app.js) is offered back.
            _log.info("form too large to carry through the login", path=request.url.path)
            raise LoginRequired(UNKEPT_REASON, field_text(form, "return_to"))
        raise LoginRequired(reason, field_text(form, "return_to"), carried)
    if any(isinstance(value, str) and "\x00" in value for _, value in form.multi_items()):
        # No form field means a NUL, and PostgreSQL's text cannot hold one.
        _log.info("form refused", reason="NUL in a field", path=request.url.path[:200])
        raise HTTPException(400, "a form field holds a NUL character")
    return form


#: Bytes of a login step's form that are not the fields it carries: its own (CSRF token,
#: ``next``, address, password, code) and the multipart framing around them.
LOGIN_FORM_HEADROOM = 8 * 1024
#: Multipart framing of one carried field, at most: the boundary line and the part's
#: ``Content-Disposition`` with the field's name (RFC 7578 §4.2).
_PART_FRAMING = 200
_LINE_BREAK = re.compile(r"\r\n|\r|\n")
#: The login page's reason when a form was too large to carry (:func:`.webmail.login_page`).
UNKEPT_REASON = "unkept"


def carry_fits(carried: Sequence[tuple[str, str]], limit: int) -> bool:
    """Whether the login steps' forms can carry ``carried`` within ``limit`` (``[web]
    max_form_bytes``, which they are held to; over it the login itself would be refused).
    They post it as multipart/form-data (no percent-encoding to triple non-ASCII text), each
    value as UTF-8 with its line breaks as CRLF (HTML's form submission normalizes them)."""
    size = LOGIN_FORM_HEADROOM
    for _, value in carried:
        size += _PART_FRAMING + len(_LINE_BREAK.sub("\r\n", value).encode())
    return size <= limit


def field_text(form: FormData, name: str, default: str = "") -> str:
    value = form.get(name)
    return value if isinstance(value, str) else default


#: The field a destructive form carries once its person has confirmed: set by the confirmation
#: page's button, or by app.js after ``window.confirm`` on a ``data-confirm`` button.
CONFIRMED_FIELD = "confirmed"


def unconfirmed(
    request: Request,
    form: FormData,
    *,
    what: str,
    button: str,
    back: str,
) -> Response | None:
    """None when ``form`` is confirmed; else, doing nothing, the page Roundcube and Fastmail
    show before something is destroyed without script: ``what`` would be destroyed, the
    form's fields posted again with a fresh CSRF token behind ``button``, and a way ``back``.
    A button with ``data-confirm`` asks in the browser and skips this page."""
    if field_text(form, CONFIRMED_FIELD) == "1":
        return None
    fields = [
        (name, value)
        for name, value in form.multi_items()
        if isinstance(value, str) and name not in (CSRF_FIELD, CONFIRMED_FIELD)
    ]
    return web(request).render(
        request,
        "confirm.html",
        what=what,
        button=button,
        fields=fields,
        action=request.url.path,
        back=next_target(back),
    )


#: The largest number a form or API field may carry: the stores' integers are 64-bit signed.
MAX_FIELD_NUMBER = 2**63 - 1


def field_number(value: object) -> int | None:
    """A field that names something by number (a UID, a folder, a queued message), or None:
    ASCII digits only (``str.isdigit`` also takes "²", which ``int`` refuses, and "٣", which
    it reads as 3), and no more than the store's integers hold (a longer one overflowed the
    store, or passed Python's limit on digits: a server error either way)."""
    if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) <= 19:
        number = int(value)
        if number <= MAX_FIELD_NUMBER:
            return number
    return None


def set_session(request: Request, response: Response, session: Session) -> None:
    """Replace the visitor's session (login, logout) on this response."""
    guard: Guard = request.app.state.guard
    for cookie in guard.cookies(session, secure=request.url.scheme == "https"):
        response.headers.append("set-cookie", cookie)


def next_target(value: str) -> str:
    """Only paths of this site (never ``//host`` or a scheme): no open redirect."""
    if value.startswith("/") and not value.startswith("//") and "\\" not in value:
        return value
    return "/mail"


def sealed(request: Request, name: str, text: str) -> dict[str, str]:
    """Query parameters carrying ``text`` as ``name`` to a page of this session, with its seal
    (``name_seal``; nothing when ``text`` is empty): :func:`unsealed` reads it back."""
    if not text:
        return {}
    seal = web(request).codec.notice_seal(request.state.session, text)
    return {name: text, f"{name}_seal": seal}


def unsealed(request: Request, name: str) -> str:
    """The text of query parameter ``name`` when its seal holds for this session, else "": a
    page never shows words a link made elsewhere put in its address."""
    text = request.query_params.get(name, "")
    seal = request.query_params.get(f"{name}_seal")
    return (
        text if text and web(request).codec.notice_valid(request.state.session, text, seal) else ""
    )


def redirect(url: str) -> RedirectResponse:
    return RedirectResponse(url, status_code=303)


def refusal_status(exc: UserError) -> int:
    """The status of a form or call refused with ``exc``: 429 for a rate limit (RFC 6585 §4:
    the client may try again later, unlike after a 400), else 400."""
    return 429 if isinstance(exc, RateLimited) else 400


def refused(response: Response, exc: UserError) -> Response:
    """``response``, with ``Retry-After`` in whole seconds (RFC 9110 §10.2.3) when ``exc`` is a
    rate limit: rounded up, so a client waiting that long is not refused again."""
    if isinstance(exc, RateLimited):
        response.headers["retry-after"] = str(max(1, math.ceil(exc.retry_after)))
    return response


def client_ip(request: Request) -> str:
    return request.client.host if request.client else "0.0.0.0"


# -- the application ------------------------------------------------------------------------------


def _templates() -> Environment:
    env = Environment(
        loader=PackageLoader("pillarbox.web", "templates"),
        autoescape=select_autoescape(["html", "xml"]),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["size"] = human_size
    env.filters["when"] = _when
    env.filters["urlquote"] = lambda s: quote(str(s), safe="")
    env.filters["rights"] = canonical_rights  # RFC 4314 §2.1 letters, in its order
    return env


@pass_context
def _when(context: Context, value: datetime | None, style: Style = "short") -> str:
    """``{{ value|when }}`` / ``{{ value|when('full') }}``: every time a page shows, in the
    reader's zone (:mod:`pillarbox.web.zone`; :meth:`Web.render` puts it in the context)."""
    if value is None:
        return ""
    zone: ReaderZone = context["reader_zone"]
    return when(value, zone.tz, style, now=datetime.now(UTC))


Handler = Callable[[Request], Awaitable[Response]]


async def _login_required(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, LoginRequired)
    if request.url.path.startswith("/api/"):
        return JSONResponse({"error": "authentication required"}, status_code=401)
    target = request.url.path
    if request.method == "GET" and request.url.query:
        target += "?" + request.url.query
    if request.method != "GET":
        target = exc.return_to or _safe_referer(request) or "/mail"
    reason = exc.reason or "expired"
    if exc.carried:
        # The login page itself, not a redirect to it: the fields ride in its form. 401 as
        # after a wrong password: the form was not taken.
        return carrying_login_page(request, next_target(target), exc.carried)
    return redirect(f"/login?next={quote(target, safe='')}&reason={reason}")


#: What the login page says when it carries a message being written (:class:`LoginRequired`).
CARRIED_NOTICE = (
    "Log in again to continue: the message you were writing is kept, and opens from Drafts "
    "(attach any new files again)."
)


def carrying_login_page(
    request: Request, target: str, carried: Sequence[tuple[str, str]], *, status_code: int = 401
) -> HTMLResponse:
    """The login page holding a message being written in its form (:mod:`.composeform`), to
    go to ``target`` after; 401 unless said otherwise: the form that brought it was not
    taken."""
    return web(request).render(
        request,
        "login.html",
        status_code=status_code,
        next=target,
        notice=CARRIED_NOTICE,
        carried=carried,
    )


def _safe_referer(request: Request) -> str:
    referer = request.headers.get("referer", "")
    origin = f"{request.url.scheme}://{request.url.netloc}"
    return referer[len(origin) :] if referer.startswith(origin + "/") else ""


async def _error_page(
    request: Request, status: int, text: str, headers: Mapping[str, str] | None = None
) -> Response:
    if request.url.path.startswith("/api/"):
        return JSONResponse({"error": text}, status_code=status, headers=headers)
    app = web(request)
    await current_account(request)
    page = app.render(request, "error.html", status_code=status, status=status, message=text)
    page.headers.update(headers or {})
    return page


async def _not_found(request: Request, exc: Exception) -> Response:
    return await _error_page(request, 404, str(exc) or "not found")


async def _permission_denied(request: Request, exc: Exception) -> Response:
    return await _error_page(request, 403, str(exc))


async def _user_error(request: Request, exc: Exception) -> Response:
    return await _error_page(request, 400, str(exc))


async def _rate_limited(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RateLimited)
    text = f"too many attempts; wait {math.ceil(exc.retry_after)} s"
    return refused(await _error_page(request, 429, text), exc)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    # The exception's headers are part of the answer: a 405 names the methods the resource
    # has in Allow (RFC 9110 §15.5.6 "MUST").
    return await _error_page(request, exc.status_code, exc.detail, exc.headers)


async def _too_large_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, BodyTooLarge)
    text = f"Too large: the limit is {exc.limit // (1024 * 1024) or 1} MB."
    return await _error_page(request, 413, text)


async def _client_gone(request: Request, exc: Exception) -> Response:
    """The client closed the connection before its request body ended: nobody is left to
    answer, and the peer's doing is a log line, not a server fault's traceback (a client
    could fill the log with them)."""
    _log.info("client went away before its request body ended", path=request.url.path)
    return Response(status_code=400)


def create_app(
    services: Services,
    *,
    ports: Mapping[str, int] | None = None,
) -> ASGIApp:
    """The web app of a running server; ``ports`` are the listener ports clients should use
    (default: the configured ones)."""
    from pillarbox.web import (
        account,
        acme,
        admin,
        api,
        autoconfig,
        calendarpage,
        contacts,
        dav,
        filters,
        invitations,
        live,
        mtasts,
        sharing,
        twofactor,
        webmail,
    )

    config = services.config
    limits = config.web
    # The TOTP key first: made from an existing web-secret (the upgrade), never from a new one.
    sealer = TotpSealer(load_key(config.data_dir))
    codec = SessionCodec(load_secret(config.data_dir), ttl=limits.session_ttl)
    configured = {
        name: getattr(config.listeners, name).port
        for name in LISTENER_DOCS
        if getattr(config.listeners, name).enabled
    }
    holds = LoginHolds(services.store, sealer, limits.login_hold_bytes)
    state = Web(services, limits, codec, sealer, _templates(), dict(ports or configured), holds)
    routes: list[BaseRoute] = [
        *twofactor.routes(),
        *webmail.routes(),
        *contacts.routes(),
        *calendarpage.routes(),
        *invitations.routes(),
        *dav.routes(),
        *sharing.routes(),
        *filters.routes(),
        *account.routes(),
        *admin.routes(),
        *api.routes(config),
        *autoconfig.routes(),
        *mtasts.routes(),
        *acme.routes(),
        *live.routes(),
        Mount("/static", StaticFiles(packages=[("pillarbox.web", "static")]), name="static"),
    ]
    app = Starlette(
        routes=routes,
        exception_handlers={
            LoginRequired: _login_required,
            NotFound: _not_found,
            PermissionDenied: _permission_denied,
            RateLimited: _rate_limited,
            UserError: _user_error,
            HTTPException: _http_error,
            BodyTooLarge: _too_large_error,
            ClientDisconnect: _client_gone,
        },
    )
    guard = Guard(
        app,
        codec=codec,
        limits=limits,
        hostname=services.hostname,
        https_port=state.ports.get("https"),
        metrics=services.metrics.web(),
    )
    app.state.web = state
    app.state.acme_challenges = services.acme_challenges
    # Unknown tokens are looked up in the store only while ACME may have shared some there.
    tls = services.config.tls
    http01 = tls.acme and "http-01" in tls.acme_challenges
    app.state.acme_shared = (
        acme.SharedTokens(services.store, tls.acme_shared_answers_max) if http01 else None
    )
    app.state.guard = guard
    return guard
