"""Two-factor web login (TOTP, RFC 6238): enrolment in the settings, the code step of the
login, turning it off.

Implementation notes:

- **The secret at rest** is sealed with AES-256-GCM under ``data_dir/totp-key``
  (:mod:`.totpseal`: a key of its own, so replacing ``web-secret`` ends sessions and nothing
  else), with the account id as associated data. A database dump, a backup of it or the
  PostgreSQL server alone therefore give no codes away; whoever reads the data directory has
  both (for SQLite the database lives there: its file mode is then the protection). The
  secret is never logged. A secret that does not open (the key file lost, or nodes with
  different ones) is said so at the code step, which still takes recovery codes, and shown
  as unreadable on the admin's accounts page; the admin removes the enrolment there (or
  ``pillarbox user 2fa ADDRESS --disable``) and the owner enrols again.
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
  turns it into a session with a new id. The password step answers with a redirect to the
  code page (Post/Redirect/Get), so a reload of that page never posts the password again. A
  message being written whose session ended (the login page carries it, :mod:`.composeform`)
  rides through both steps: the password step holds it for the code page
  (:mod:`.loginhold`: in the store, sealed, so any node's code page finds it), whose forms
  carry it on — to the code step, which saves it in Drafts as a one-step login does, or back
  to the password step ("Start again"). A wrong code is answered with a redirect to the code
  page saying so (Post/Redirect/Get again: a reload sends no code, so it is no second
  failure) — unless the store no longer holds the message the form carries (another login
  to the account replaced it): then with the code page itself, the form's message in it
  (:func:`_code_refused`); the rate limit's refusal stays a 429 with ``Retry-After``. A code is
  accepted within ±1 step, once (the last accepted step per account is claimed atomically
  in the store, so a replayed or raced code fails), or a recovery code is consumed. Wrong
  codes count into the login rate limits of the client address and of the account, like
  wrong passwords.
- **Not covered by design:** API bearer tokens (issued only from a logged-in session, each a
  256-bit secret of its own) and app passwords for the mail protocols, which cannot ask for a
  code — with a second factor, those protocols take app passwords only
  (:mod:`pillarbox.auth.directory`).
- **Turning it off**, and replacing the recovery codes, need the password and a current code
  (or a recovery code), so a session left open on a shared computer cannot do either.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import UTC, datetime
from enum import Enum
from urllib.parse import quote

import segno
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
    CARRIED_NOTICE,
    carrying_login_page,
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
from pillarbox.web.composeform import carried_fields, kept_in_drafts
from pillarbox.web.mailaccess import MailAccess
from pillarbox.web.session import Session
from pillarbox.web.totpseal import TotpSealer

_log = Log("web.2fa")
#: The issuer shown in authenticator apps, before the host name.
ISSUER = "Pillarbox"


# -- operations ------------------------------------------------------------------------------------


def _now() -> float:
    return datetime.now(UTC).timestamp()


class CodeCheck(Enum):
    """What a submitted code proved."""

    PASSED = "passed"
    WRONG = "wrong"
    #: Not a recovery code, and the stored secret does not open under this server's key.
    UNREADABLE = "unreadable"


async def check_code(
    services: Services,
    sealer: TotpSealer,
    account: Account,
    enrolment: TotpEnrolment,
    code: str,
    now: float,
) -> CodeCheck:
    """Whether ``code`` is a current one-time code (then its step is used up) or an unused
    recovery code (then it is); UNREADABLE when it is no recovery code and the stored secret
    does not open, so nothing but a recovery code could pass."""
    if totp.looks_like_recovery_code(code):
        used = await services.store.use_recovery_code(account.id, totp.recovery_digest(code))
        if used:
            _log.info("recovery code used", account=account.address)
        return CodeCheck.PASSED if used else CodeCheck.WRONG
    key = sealer.unseal(account.id, enrolment.sealed_secret)
    if key is None:
        _log.error(
            "stored TOTP secret does not open under data_dir/totp-key: restore that file, or "
            "remove the enrolment (admin accounts page, pillarbox user 2fa ADDRESS --disable)",
            account=account.address,
        )
        return CodeCheck.UNREADABLE
    step = totp.matching_step(key, code, now, after=enrolment.last_step)
    if step is not None and await services.store.claim_totp_step(account.id, step):
        return CodeCheck.PASSED
    return CodeCheck.WRONG


#: Said when the secret does not open: only a recovery code, or the admin, can help.
UNREADABLE_TEXT = (
    "this server cannot read your authenticator's key: use a recovery code, "
    "or ask the administrator to remove two-factor login"
)


def qr_data_uri(uri: str) -> str:
    """The key URI as an SVG QR code in a ``data:`` URI (the page's CSP allows data: images,
    and no request for it leaves a trace in any log)."""
    code = segno.make(uri, error="m")
    value: str = code.svg_data_uri(scale=5, border=4, dark="#000", light="#fff")
    return value


def setup_view(sealer: TotpSealer, hostname: str, account: Account, key: bytes) -> dict[str, str]:
    uri = totp.key_uri(key, issuer=f"{ISSUER} {hostname}", account=account.address)
    return {
        "secret": totp.encode_secret(key),
        "uri": uri,
        "qr": qr_data_uri(uri),
        "sealed": sealer.seal(account.id, key, "enrol"),
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
    if (enrolled_already := await _not_enrolled(request, account)) is not None:
        return enrolled_already
    view = setup_view(app.sealer, app.services.hostname, account, totp.new_secret())
    return await render_settings(request, account, totp_setup=view)


async def confirm(request: Request) -> Response:
    app = web(request)
    account = await require_account(request)
    form = await posted_form(request)
    if (enrolled_already := await _not_enrolled(request, account)) is not None:
        return enrolled_already
    key = app.sealer.unseal(account.id, field_text(form, "sealed"), "enrol")
    if key is None:
        return await render_settings(
            request, account, status_code=400, errors={"2fa": "start the set-up again"}
        )
    view = setup_view(app.sealer, app.services.hostname, account, key)
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
        account.id, app.sealer.seal(account.id, key), [totp.recovery_digest(c) for c in codes]
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
    checked = await check_code(
        services, app.sealer, account, enrolment, field_text(form, "code"), _now()
    )
    if checked is CodeCheck.UNREADABLE:
        raise UserError(UNREADABLE_TEXT)
    if checked is CodeCheck.WRONG:
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
    return redirect("/settings?saved=2fa")


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
    request: Request,
    target: str,
    *,
    status_code: int = 200,
    error: str = "",
    carried: Sequence[tuple[str, str]] = (),
    notice: str = "",
) -> Response:
    """The code step's page; ``carried``: a message being written that the password step
    carried (:mod:`.composeform`), handed on in this one's forms (the code's, and "Start
    again", back to the password step)."""
    return web(request).render(
        request,
        "login_code.html",
        status_code=status_code,
        next=target,
        error=error,
        carried=carried,
        notice=notice or (CARRIED_NOTICE if carried else ""),
    )


#: In the code page's address when the password step held a message for it (:mod:`.loginhold`):
#: a page that finds none then says so.
HELD_PARAM = "held"
#: What the code page says when the message its password step held is not there.
NOT_HELD_NOTICE = (
    "The message you were writing could not be kept through this step (another login to this "
    "account since, or the servers do not share their key files). With the page's script on, "
    "this browser kept a copy: log in, and the compose page in this tab offers to restore it."
)
#: In the code page's address after a refused code (Post/Redirect/Get: reloading the page
#: that says so sends no code again, so it counts no other failure): what to say.
ERROR_PARAM = "error"
_REFUSED_TEXT = {
    "wrong": "Wrong or already used code.",
    "unreadable": UNREADABLE_TEXT[0].upper() + UNREADABLE_TEXT[1:] + ".",
}


def _code_page_address(target: str, *, held: bool, error: str = "") -> str:
    """The code page's address: where to go next, whether a message was held for it, and
    the refusal it shows (a key of ``_REFUSED_TEXT``)."""
    address = f"/login/code?next={_quote(target)}"
    if held:
        address += f"&{HELD_PARAM}=1"
    if error:
        address += f"&{ERROR_PARAM}={error}"
    return address


async def needs_second_factor(services: Services, account: Account) -> bool:
    return await services.store.get_totp(account.id) is not None


async def password_step(
    request: Request, account: Account, target: str, carried: Sequence[tuple[str, str]] = ()
) -> Response:
    """The answer to a correct password when a code must follow: a pending session, and a
    redirect to the code page (Post/Redirect/Get: reloading that page asks for it again and
    never posts the password twice). ``carried`` fields, which a redirect cannot take along,
    are held for that page under the pending session, in the store (:mod:`.loginhold`)."""
    app = web(request)
    now = _now()
    pending = app.codec.password_step(account.id, account.password_hash, now)
    if carried:
        await app.login_holds.keep(account.id, pending.sid, carried, now)
    response = redirect(_code_page_address(target, held=bool(carried)))
    set_session(request, response, pending)
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
    """The code page, with the message its password step held put back in its forms: as
    often as it is reloaded (on any node), until the login is done or the password step
    expires; after a refused code, saying so."""
    app = web(request)
    target = next_target(request.query_params.get("next", "/mail"))
    account = await _pending(request)
    if account is None:
        return redirect(f"/login?next={_quote(target)}&reason=expired")
    session: Session = request.state.session
    carried = await app.login_holds.held(account.id, session.sid, _now())
    lost = not carried and request.query_params.get(HELD_PARAM) == "1"
    if lost:
        _log.info("message held for the code page not found", account=account.address)
    error = _REFUSED_TEXT.get(request.query_params.get(ERROR_PARAM, ""), "")
    notice = NOT_HELD_NOTICE if lost else ""
    return code_page(request, target, error=error, carried=carried, notice=notice)


async def start_again(request: Request) -> Response:
    """The code page's "Start again": the password step anew, with the login page holding the
    message that page's form carried (a link there would drop it)."""
    form = await posted_form(request)
    target = next_target(field_text(form, "next", "/mail"))
    carried = carried_fields(form)
    if not carried:
        return redirect(f"/login?next={_quote(target)}")
    return carrying_login_page(request, target, carried, status_code=200)


async def _code_refused(
    request: Request,
    account: Account,
    target: str,
    carried: Sequence[tuple[str, str]],
    error: str,
) -> Response:
    """The answer to a refused code (``error``, a key of ``_REFUSED_TEXT``): a redirect to the
    code page saying so (Post/Redirect/Get), which puts the held message back in its forms.

    Unless the form carries a message that the store no longer holds for this session: another
    password step for the account held its own in its place since this page was shown (one
    hold per account). The newer hold wins — holding this form's message again would take that
    other login's away, and it would take this one's back, each login undoing the other — so
    the page a redirect leads to could only say the message is gone, while this request has
    it in hand. The answer is then the code page itself, 401, the message in its forms as it
    rode in from the page before, the store untouched. What this costs: a reload of that
    page posts the code again (the browser asks first), one more failure if it is still
    wrong, which beats a message lost."""
    if carried:
        session: Session = request.state.session
        if not await web(request).login_holds.held(account.id, session.sid, _now()):
            _log.info(
                "message held for the code page replaced: the form's answered in the page",
                account=account.address,
            )
            text = _REFUSED_TEXT[error]
            return code_page(request, target, status_code=401, error=text, carried=carried)
    return redirect(_code_page_address(target, held=bool(carried), error=error))


async def code_submit(request: Request) -> Response:
    app = web(request)
    form = await posted_form(request)
    target = next_target(field_text(form, "next", "/mail"))
    carried = carried_fields(form)
    account = await _pending(request)
    if account is None and carried:
        # The password step again, the message still in hand: 401, its form was not taken.
        return carrying_login_page(request, target, carried)
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
        limited = code_page(request, target, status_code=429, error=error, carried=carried)
        return refused(limited, exc)
    enrolment = await services.store.get_totp(account.id)
    now = _now()
    checked = CodeCheck.PASSED  # removed by the admin meanwhile: the password step stands alone
    if enrolment is not None:
        code = field_text(form, "code")
        checked = await check_code(services, app.sealer, account, enrolment, code, now)
    # A refused code: Post/Redirect/Get, the code page (and the message held for it) read
    # again, so that reloading what says so posts no code twice. Not for the rate limit
    # above: its 429 carries Retry-After, and a reload of it during the wait counts nothing.
    if checked is CodeCheck.UNREADABLE:
        outcomes["unreadable_secret"].inc()
        return await _code_refused(request, account, target, carried, "unreadable")
    if checked is CodeCheck.WRONG:
        services.authenticator.second_factor_failed(ip, account.address)
        outcomes["wrong_code"].inc()
        _log.info("wrong second-factor code", account=account.address, remote_ip=ip)
        return await _code_refused(request, account, target, carried, "wrong")
    services.authenticator.second_factor_passed(account.address)
    outcomes["passed"].inc()
    session: Session = request.state.session
    await app.login_holds.drop(account.id, session.sid)
    if carried:
        target = await kept_in_drafts(MailAccess(services, account), carried) or target
    done = redirect(target)
    set_session(request, done, app.codec.login(account.id, account.password_hash, now))
    return done


def routes() -> list[BaseRoute]:
    return [
        Route("/login/code", code_form, methods=["GET"]),
        Route("/login/code", code_submit, methods=["POST"]),
        Route("/login/again", start_again, methods=["POST"]),
        Route("/settings/2fa/setup", begin, methods=["POST"]),
        Route("/settings/2fa/confirm", confirm, methods=["POST"]),
        Route("/settings/2fa/disable", disable, methods=["POST"]),
        Route("/settings/2fa/recovery", new_recovery_codes, methods=["POST"]),
    ]
