"""Two-factor web login (TOTP, RFC 6238): enrolment in the settings, the code step of the
login, turning it off.

Implementation notes:

- **The secret at rest** is sealed with AES-256-GCM under a key derived from the web secret
  (``data_dir/web-secret``, mode 0600), with the account id as associated data (a sealed
  secret copied onto another account's row does not open). A database dump, a backup of it or
  the PostgreSQL server alone therefore give no codes away; whoever reads the data directory
  has both (for SQLite the database lives there: its file mode is then the protection). The
  secret is never logged. Losing ``web-secret`` makes every enrolment unusable — the admin
  removes it (``pillarbox user 2fa ADDRESS --disable``, or "Remove 2FA" on the admin's
  accounts page) and the owner enrols again.
- **Enrolment** (only when none is on; changing the app means turning it off first) makes a
  160-bit secret and shows it three ways (QR code of the
  ``otpauth://`` URI, the URI, the base32 text); the confirm form carries it back sealed (no
  server state for an unfinished set-up). The password and one valid code turn it on (the
  password, because a stolen session must not be able to lock the owner out) — proving the app has
  it — and that code's step is claimed at once. Ten recovery codes are shown once and stored
  as SHA-256 digests, each usable once.
- **The login** with a second factor has two steps: the password step leaves an anonymous
  session naming the pending account (``Session.pending``: nothing accepts it as logged in,
  it is bound to this browser's signed cookie, it lasts ``PENDING_SECONDS``); the code step
  turns it into a session with a new id. A code is accepted within ±1 step, once (the last
  accepted step per account is claimed atomically in the store, so a replayed or raced code
  fails), or a recovery code is consumed. Wrong codes count into the login rate limits of
  the client address and of the account, like wrong passwords.
- **Not covered by design:** API bearer tokens (issued only from a logged-in session, each a
  256-bit secret of its own) and app passwords for the mail protocols, which cannot ask for a
  code — with a second factor, those protocols take app passwords only
  (:mod:`pillarbox.auth.directory`).
- **Turning it off**, and replacing the recovery codes, need the password and a current code
  (or a recovery code), so a session left open on a shared computer cannot do either.
"""

from __future__ import annotations

import base64
import math
import secrets
from datetime import UTC, datetime
from urllib.parse import quote

import segno
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from pillarbox.auth import totp
from pillarbox.errors import AuthenticationFailed, RateLimited, UserError
from pillarbox.observability.log import Log
from pillarbox.services import Services
from pillarbox.store.types import Account, TotpEnrolment
from pillarbox.web.account import render_settings, settings_refusal
from pillarbox.web.app import (
    client_ip,
    field_text,
    next_target,
    posted_form,
    redirect,
    refused,
    require_account,
    set_session,
    web,
)
from pillarbox.web.session import Session, SessionCodec

_log = Log("web.2fa")
_SEAL_VERSION = "v1:"
_NONCE_BYTES = 12
#: The issuer shown in authenticator apps, before the host name.
ISSUER = "Pillarbox"


# -- sealing ---------------------------------------------------------------------------------------


def _aead(codec: SessionCodec) -> AESGCM:
    return AESGCM(codec.subkey(b"totp-secret"))


def seal(codec: SessionCodec, account_id: int, key: bytes, purpose: str = "stored") -> str:
    """``key`` encrypted for ``account_id`` (``purpose`` keeps an enrolment form's value from
    being taken for a stored one and back)."""
    nonce = secrets.token_bytes(_NONCE_BYTES)
    sealed = _aead(codec).encrypt(nonce, key, f"{purpose}:{account_id}".encode())
    return _SEAL_VERSION + base64.urlsafe_b64encode(nonce + sealed).decode("ascii")


def unseal(
    codec: SessionCodec, account_id: int, text: str, purpose: str = "stored"
) -> bytes | None:
    """The key sealed by :func:`seal`, or None if it was not sealed for this account and
    purpose under this server's secret."""
    if not text.startswith(_SEAL_VERSION):
        return None
    try:
        blob = base64.urlsafe_b64decode(text[len(_SEAL_VERSION) :])
        return _aead(codec).decrypt(
            blob[:_NONCE_BYTES], blob[_NONCE_BYTES:], f"{purpose}:{account_id}".encode()
        )
    except (ValueError, InvalidTag):
        return None


# -- operations ------------------------------------------------------------------------------------


def _now() -> float:
    return datetime.now(UTC).timestamp()


async def check_code(
    services: Services,
    codec: SessionCodec,
    account: Account,
    enrolment: TotpEnrolment,
    code: str,
    now: float,
) -> bool:
    """Whether ``code`` is a current one-time code (then its step is used up) or an unused
    recovery code (then it is)."""
    if totp.looks_like_recovery_code(code):
        used = await services.store.use_recovery_code(account.id, totp.recovery_digest(code))
        if used:
            _log.info("recovery code used", account=account.address)
        return used
    key = unseal(codec, account.id, enrolment.sealed_secret)
    if key is None:
        _log.error(
            "stored TOTP secret does not open: web-secret changed? "
            "(pillarbox user 2fa ADDRESS --disable)",
            account=account.address,
        )
        return False
    step = totp.matching_step(key, code, now, after=enrolment.last_step)
    return step is not None and await services.store.claim_totp_step(account.id, step)


def qr_data_uri(uri: str) -> str:
    """The key URI as an SVG QR code in a ``data:`` URI (the page's CSP allows data: images,
    and no request for it leaves a trace in any log)."""
    code = segno.make(uri, error="m")
    value: str = code.svg_data_uri(scale=5, border=4, dark="#000", light="#fff")
    return value


def setup_view(codec: SessionCodec, hostname: str, account: Account, key: bytes) -> dict[str, str]:
    uri = totp.key_uri(key, issuer=f"{ISSUER} {hostname}", account=account.address)
    return {
        "secret": totp.encode_secret(key),
        "uri": uri,
        "qr": qr_data_uri(uri),
        "sealed": seal(codec, account.id, key, "enrol"),
    }


# -- settings --------------------------------------------------------------------------------------


async def _not_enrolled(request: Request, account: Account) -> Response | None:
    """An error page if the account has a second factor already: replacing it goes through
    turning it off (password and code), never around it."""
    if await web(request).services.store.get_totp(account.id) is None:
        return None
    return await render_settings(
        request,
        account,
        status_code=400,
        errors={"2fa": "two-factor login is on already; turn it off first to change the app"},
    )


async def begin(request: Request) -> Response:
    app = web(request)
    account = await require_account(request)
    await posted_form(request)
    if (refused := await _not_enrolled(request, account)) is not None:
        return refused
    view = setup_view(app.codec, app.services.hostname, account, totp.new_secret())
    return await render_settings(request, account, totp_setup=view)


async def confirm(request: Request) -> Response:
    app = web(request)
    account = await require_account(request)
    form = await posted_form(request)
    if (refused := await _not_enrolled(request, account)) is not None:
        return refused
    key = unseal(app.codec, account.id, field_text(form, "sealed"), "enrol")
    if key is None:
        return await render_settings(
            request, account, status_code=400, errors={"2fa": "start the set-up again"}
        )
    view = setup_view(app.codec, app.services.hostname, account, key)
    try:
        # The password again: a stolen session must not lock the owner out of the web login
        # and, with it, the mail protocols' password.
        await app.services.authenticator.check_password(
            account.address, field_text(form, "password"), client_ip(request), interactive=True
        )
    except AuthenticationFailed:
        error = "the password is wrong"
        return await render_settings(
            request, account, status_code=400, totp_setup=view, errors={"2fa": error}
        )
    except RateLimited as exc:
        return await settings_refusal(request, account, "2fa", exc)
    now = _now()
    step = totp.matching_step(key, field_text(form, "code"), now)
    if step is None:
        error = "that code is not the current one: check the app's clock, and try the next code"
        return await render_settings(
            request, account, status_code=400, totp_setup=view, errors={"2fa": error}
        )
    codes = totp.new_recovery_codes()
    await app.services.store.enable_totp(
        account.id, seal(app.codec, account.id, key), [totp.recovery_digest(c) for c in codes]
    )
    await app.services.store.claim_totp_step(account.id, step)
    _log.info("two-factor login enabled", account=account.address)
    return await render_settings(request, account, recovery_codes=codes)


async def _prove_owner(request: Request, account: Account) -> None:
    """Check the form's password and current (or recovery) code; ``UserError`` otherwise. A
    wrong code counts into the login limits."""
    app = web(request)
    form = await posted_form(request)
    services = app.services
    enrolment = await services.store.get_totp(account.id)
    if enrolment is None:
        raise UserError("two-factor login is not on")
    try:
        await services.authenticator.check_password(
            account.address, field_text(form, "password"), client_ip(request), interactive=True
        )
    except AuthenticationFailed:
        raise UserError("the password is wrong") from None
    if not await check_code(
        services, app.codec, account, enrolment, field_text(form, "code"), _now()
    ):
        services.authenticator.second_factor_failed(client_ip(request), account.address)
        raise UserError("the code is wrong or was used already")


async def disable(request: Request) -> Response:
    account = await require_account(request)
    try:
        await _prove_owner(request, account)
    except UserError as exc:
        return await settings_refusal(request, account, "2fa", exc)
    await web(request).services.store.disable_totp(account.id)
    _log.info("two-factor login disabled", account=account.address)
    return redirect("/settings?saved=2fa#2fa")


async def new_recovery_codes(request: Request) -> Response:
    """Replace the recovery codes (all used, or the sheet lost): the old ones stop working."""
    account = await require_account(request)
    try:
        await _prove_owner(request, account)
    except UserError as exc:
        return await settings_refusal(request, account, "2fa", exc)
    codes = totp.new_recovery_codes()
    digests = [totp.recovery_digest(c) for c in codes]
    if not await web(request).services.store.replace_recovery_codes(account.id, digests):
        return await render_settings(
            request, account, status_code=400, errors={"2fa": "two-factor login is not on"}
        )
    _log.info("new recovery codes issued", account=account.address)
    return await render_settings(request, account, recovery_codes=codes)


# -- the login's second step -----------------------------------------------------------------------


def code_page(
    request: Request, target: str, *, status_code: int = 200, error: str = ""
) -> Response:
    return web(request).render(
        request, "login_code.html", status_code=status_code, next=target, error=error
    )


async def needs_second_factor(services: Services, account: Account) -> bool:
    return await services.store.get_totp(account.id) is not None


def password_step(request: Request, account: Account, target: str) -> Response:
    """The answer to a correct password when a code must follow: a pending session."""
    app = web(request)
    response = redirect(f"/login/code?next={_quote(target)}")
    set_session(
        request, response, app.codec.password_step(account.id, account.password_hash, _now())
    )
    return response


def _quote(target: str) -> str:
    return quote(target, safe="")


async def _pending(request: Request) -> Account | None:
    """The account whose password step this browser passed, recently, with the password
    unchanged since."""
    app = web(request)
    session: Session = request.state.session
    account_id = session.pending(_now())
    if account_id is None:
        return None
    account = await app.services.store.get_account_by_id(account_id)
    if account is None or app.codec.fingerprint(account.password_hash) != session.fingerprint:
        return None
    return account


async def code_form(request: Request) -> Response:
    target = next_target(request.query_params.get("next", "/mail"))
    if await _pending(request) is None:
        return redirect(f"/login?next={_quote(target)}&reason=expired")
    return code_page(request, target)


async def code_submit(request: Request) -> Response:
    app = web(request)
    form = await posted_form(request)
    target = next_target(field_text(form, "next", "/mail"))
    account = await _pending(request)
    if account is None:
        return redirect(f"/login?next={_quote(target)}&reason=expired")
    services = app.services
    outcomes = services.metrics.second_factor
    ip = client_ip(request)
    try:
        services.authenticator.check_limits(ip, account.address)
    except RateLimited as exc:
        outcomes["rate_limited"].inc()
        error = f"Too many failed attempts. Try again in {math.ceil(exc.retry_after)} seconds."
        return refused(code_page(request, target, status_code=429, error=error), exc)
    enrolment = await services.store.get_totp(account.id)
    now = _now()
    if enrolment is not None and not await check_code(
        services, app.codec, account, enrolment, field_text(form, "code"), now
    ):
        services.authenticator.second_factor_failed(ip, account.address)
        outcomes["wrong_code"].inc()
        _log.info("wrong second-factor code", account=account.address, remote_ip=ip)
        return code_page(request, target, status_code=401, error="Wrong or already used code.")
    # Removed by the admin meanwhile (enrolment None): the password step stands alone.
    services.authenticator.second_factor_passed(account.address)
    outcomes["passed"].inc()
    done = redirect(target)
    set_session(request, done, app.codec.login(account.id, account.password_hash, now))
    return done


def routes() -> list[BaseRoute]:
    return [
        Route("/login/code", code_form, methods=["GET"]),
        Route("/login/code", code_submit, methods=["POST"]),
        Route("/settings/2fa/setup", begin, methods=["POST"]),
        Route("/settings/2fa/confirm", confirm, methods=["POST"]),
        Route("/settings/2fa/disable", disable, methods=["POST"]),
        Route("/settings/2fa/recovery", new_recovery_codes, methods=["POST"]),
    ]
