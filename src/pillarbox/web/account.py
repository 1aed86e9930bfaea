"""Account settings: password, display name, app passwords, API tokens, vacation reply,
forwarding, the spam filter's allowed and blocked senders, storage (quota usage, Junk and Trash
retention), the time zone of the pages, and how to set up a mail client.
The operations are shared with the JSON API."""

from __future__ import annotations

import math
import secrets
from dataclasses import dataclass, replace
from datetime import UTC, datetime

from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from pillarbox import provisioning, retention
from pillarbox.auth.tokens import token_digest
from pillarbox.errors import AuthenticationFailed, NotFound, RateLimited, UserError
from pillarbox.identities import identities_of
from pillarbox.mail.people import parse_people
from pillarbox.net.http import origin
from pillarbox.policy import senderlists
from pillarbox.services import Services
from pillarbox.store.types import (
    CREDENTIAL_KINDS,
    Account,
    AccountSettings,
    AccountToken,
    SenderListKind,
    TokenKind,
)
from pillarbox.web import identities, zone
from pillarbox.web.app import (
    Web,
    client_ip,
    field_number,
    field_text,
    posted_form,
    redirect,
    refusal_status,
    refused,
    require_account,
    set_session,
    unconfirmed,
    web,
)
from pillarbox.web.mailreturn import mail_page, noticed

MAX_DISPLAY_NAME = 200
MAX_LABEL = 100
MAX_VACATION_TEXT = 10_000
#: Letters for app passwords: lower case without look-alikes, easy to type on a phone.
_APP_ALPHABET = "abcdefghjkmnpqrstuvwxyz23456789"


# -- operations ------------------------------------------------------------------------------------


def _one_line(text: str, limit: int, what: str) -> str:
    value = " ".join(text.split())
    if len(value) > limit:
        raise UserError(f"{what} is longer than {limit} characters")
    return value


async def change_password(
    services: Services, account: Account, current: str, new: str, remote_ip: str
) -> Account:
    """Change the password after checking the current one (rate-limited like any login)."""
    try:
        await services.authenticator.check_password(
            account.address, current, remote_ip, interactive=True
        )
    except AuthenticationFailed:
        raise UserError("the current password is wrong") from None
    await provisioning.set_password(services.store, services.config, account.address, new)
    updated = await services.store.get_account_by_id(account.id)
    if updated is None:
        raise UserError("the account was removed")
    return updated


async def set_display_name(services: Services, account: Account, name: str) -> None:
    await services.store.set_display_name(
        account.id, _one_line(name, MAX_DISPLAY_NAME, "the display name")
    )


def new_secret(kind: TokenKind) -> str:
    if kind is TokenKind.APP_PASSWORD:
        letters = "".join(secrets.choice(_APP_ALPHABET) for _ in range(20))
        return "-".join(letters[i : i + 5] for i in range(0, 20, 5))  # ~98 bits
    return "pbx_" + secrets.token_urlsafe(32)


async def issue_token(
    services: Services, account: Account, kind: TokenKind, label: str
) -> tuple[AccountToken, str]:
    """A new app password or API token; the secret is returned once and stored only hashed."""
    label = _one_line(label, MAX_LABEL, "the label") or kind.value
    secret = new_secret(kind)
    token = await services.store.add_token(account.id, kind, label, token_digest(secret))
    return token, secret


async def token_account(services: Services, secret: str) -> Account:
    """The account an API token (``Authorization: Bearer``, the API's and CardDAV/CalDAV's)
    was issued to; ``AuthenticationFailed`` for an unknown or revoked one."""
    token = await services.store.find_token(TokenKind.API, token_digest(secret.strip()))
    account = await services.store.get_account_by_id(token.account_id) if token else None
    if account is None:
        raise AuthenticationFailed("unknown or revoked API token")
    return account


async def issued_token(services: Services, account: Account, token_id: int) -> AccountToken:
    """One of the account's app passwords or API tokens (``NotFound`` otherwise: an ended
    session's record is not the user's to see or undo)."""
    store = services.store
    for kind in CREDENTIAL_KINDS:
        for token in await store.list_tokens(account.id, kind):
            if token.id == token_id:
                return token
    raise NotFound("no such token")


async def revoke_issued(services: Services, account: Account, token_id: int) -> None:
    """Revoke one of the account's app passwords or API tokens (:func:`issued_token`)."""
    await issued_token(services, account, token_id)
    await services.store.remove_token(account.id, token_id)


async def update_vacation(
    services: Services,
    account: Account,
    *,
    enabled: bool,
    subject: str,
    body: str,
    until: str,
) -> AccountSettings:
    """Store the auto-reply (delivery applies it)."""
    if len(body) > MAX_VACATION_TEXT:
        raise UserError(f"the auto-reply is longer than {MAX_VACATION_TEXT} characters")
    last_day: datetime | None = None
    if until.strip():
        try:
            last_day = datetime.strptime(until.strip(), "%Y-%m-%d").replace(tzinfo=UTC)
        except ValueError:
            raise UserError("the last day of the auto-reply must be a date") from None
    if enabled and not body.strip():
        raise UserError("write the auto-reply text before switching it on")
    current = await services.store.get_settings(account.id)
    settings = replace(
        current,
        vacation_enabled=enabled,
        vacation_subject=_one_line(subject, 200, "the auto-reply subject"),
        vacation_body=body.replace("\r\n", "\n"),
        vacation_until=last_day,
    )
    await services.store.set_settings(account.id, settings)
    return settings


async def update_forwarding(
    services: Services, account: Account, *, forward_to: str, keep_copy: bool
) -> AccountSettings:
    """Store forwarding addresses (delivery applies them)."""
    addresses, invalid = parse_people(forward_to)
    if invalid:
        raise UserError("not a valid forwarding address: " + ", ".join(invalid))
    if account.address in {p.address for p in addresses}:
        raise UserError("an account cannot forward to itself")
    current = await services.store.get_settings(account.id)
    settings = replace(
        current,
        forward_to=tuple(p.address for p in addresses),
        forward_keep_copy=keep_copy,
    )
    await services.store.set_settings(account.id, settings)
    return settings


async def update_retention(
    services: Services, account: Account, *, junk_days: int | None, trash_days: int | None
) -> AccountSettings:
    """Store how long the account's Junk and Trash keep mail (None: the server's
    ``[retention]``; 0: until deleted; at most ``max_days``); the retention job applies it."""
    section = services.config.retention
    current = await services.store.get_settings(account.id)
    settings = replace(
        current,
        junk_days=retention.checked_days(section, junk_days, "Junk"),
        trash_days=retention.checked_days(section, trash_days, "Trash"),
    )
    await services.store.set_settings(account.id, settings)
    return settings


async def update_time_zone(services: Services, account: Account, name: str) -> AccountSettings:
    """Store the zone the webmail shows times in ("": the browser's, :mod:`.zone`)."""
    if name and zone.known_zone(name) is None:
        raise UserError(f"unknown time zone: {name[: zone.MAX_ZONE_NAME]}")
    current = await services.store.get_settings(account.id)
    settings = replace(current, time_zone=name)
    await services.store.set_settings(account.id, settings)
    return settings


async def update_shortcuts(services: Services, account: Account, on: bool) -> AccountSettings:
    """Switch the webmail's single-key shortcuts on or off for the account, wherever it logs
    in (WCAG 2.1.4)."""
    current = await services.store.get_settings(account.id)
    settings = replace(current, shortcuts=on)
    await services.store.set_settings(account.id, settings)
    return settings


def days_chosen(form: FormData, name: str, what: str) -> int | None:
    """One retention choice of the settings form: ``name`` is ``default`` (None), ``keep``
    (0) or ``days``, with the number in ``<name>_days``."""
    match field_text(form, name):
        case "default":
            return None
        case "keep":
            return 0
        case "days":
            days = field_number(field_text(form, f"{name}_days").strip())
            if not days:
                raise UserError(f"give the number of days {what} keeps mail (1 or more)")
            return days
        case _:
            raise UserError(f"choose how long {what} keeps mail")


@dataclass(frozen=True, slots=True)
class ClientServer:
    """One line of the client set-up table."""

    protocol: str
    host: str
    port: int
    security: str


#: (listener, protocol, security) in the order clients should prefer (RFC 8314 §5: TLS first).
_CLIENT_LISTENERS = (
    ("imaps", "IMAP", "TLS"),
    ("imap", "IMAP", "STARTTLS"),
    ("pop3s", "POP3", "TLS"),
    ("pop3", "POP3", "STARTTLS"),
    ("submissions", "SMTP", "TLS"),
    ("submission", "SMTP", "STARTTLS"),
    # Filters (Sieve scripts) from a mail program's add-on or sieve-connect (RFC 5804: port
    # 4190, STARTTLS only; also announced by the _sieve._tcp SRV record, §1.8).
    ("managesieve", "ManageSieve", "STARTTLS"),
)
#: The protocols mail programs set up an account with (what autoconfig documents describe).
MAIL_PROTOCOLS = frozenset({"IMAP", "POP3", "SMTP"})


def client_servers(app: Web, *, mail_only: bool = False) -> list[ClientServer]:
    """The servers a mail program (and, unless ``mail_only``, a Sieve client) connects to,
    from the listeners that run."""
    host = app.services.hostname
    return [
        ClientServer(protocol, host, app.ports[name], security)
        for name, protocol, security in _CLIENT_LISTENERS
        if name in app.ports and (protocol in MAIL_PROTOCOLS or not mail_only)
    ]


def webmail_url(app: Web) -> str | None:
    """The webmail's address on this host's name: HTTPS when the https listener runs."""
    for scheme in ("https", "http"):
        if scheme in app.ports:
            return origin(scheme, app.services.hostname, app.ports[scheme]) + "/"
    return None


# -- pages ---------------------------------------------------------------------------------------


async def render_settings(
    request: Request, account: Account, *, status_code: int = 200, **extra: object
) -> Response:
    app = web(request)
    store = app.services.store
    return app.render(
        request,
        "settings.html",
        status_code=status_code,
        settings=await store.get_settings(account.id),
        app_passwords=await store.list_tokens(account.id, TokenKind.APP_PASSWORD),
        api_tokens=await store.list_tokens(account.id, TokenKind.API),
        servers=client_servers(app),
        identities=await identities_of(app.services, account),
        owned=sorted(await app.services.router.owned_addresses(account)),
        can_add=len(await store.list_identities(account.id)) < app.limits.max_identities,
        totp=await store.get_totp(account.id),
        quota=await store.quota_usage(account.id),
        sender_entries=[
            (entry, senderlists.shown(entry.pattern))
            for entry in await store.list_sender_entries(account.id)
        ],
        retention=app.services.config.retention,
        quota_marks=app.services.config.quota.warning_thresholds,
        zone_names=zone.zone_names(),
        **extra,
    )


async def settings_refusal(
    request: Request, account: Account, section: str, exc: UserError, **extra: object
) -> Response:
    """The settings page with ``exc`` shown beside ``section``: 429 with ``Retry-After`` when
    it is a rate limit (a wrong password or code checked too often), else 400."""
    text = str(exc)
    if isinstance(exc, RateLimited):
        text = f"too many failed attempts; try again in {math.ceil(exc.retry_after)} seconds"
    response = await render_settings(
        request, account, status_code=refusal_status(exc), errors={section: text}, **extra
    )
    return refused(response, exc)


async def settings_page(request: Request) -> Response:
    account = await require_account(request)
    saved = request.query_params.get("saved", "")
    return await render_settings(request, account, notice="Saved." if saved else "")


async def _apply(request: Request, section: str) -> Response:
    """Run one settings form; errors are shown on the page beside the section."""
    app = web(request)
    account = await require_account(request)
    form = await posted_form(request)
    services = app.services
    try:
        match section:
            case "profile":
                await set_display_name(services, account, field_text(form, "display_name"))
            case "password":
                new = field_text(form, "new_password")
                if new != field_text(form, "confirm_password"):
                    raise UserError("the new passwords differ")
                updated = await change_password(
                    services, account, field_text(form, "current_password"), new,
                    client_ip(request),
                )  # fmt: skip
                response = redirect("/settings?saved=password")
                session = app.codec.login(updated.id, updated.password_hash, _now())
                set_session(request, response, session)
                return response
            case "app-password" | "api-token":
                kind = TokenKind.APP_PASSWORD if section == "app-password" else TokenKind.API
                token, secret = await issue_token(
                    services, account, kind, field_text(form, "label")
                )
                return await render_settings(request, account, new_secret=(token, secret))
            case "vacation":
                await update_vacation(
                    services,
                    account,
                    enabled=form.get("vacation_enabled") == "1",
                    subject=field_text(form, "vacation_subject"),
                    body=field_text(form, "vacation_body"),
                    until=field_text(form, "vacation_until"),
                )
            case "forwarding":
                await update_forwarding(
                    services,
                    account,
                    forward_to=field_text(form, "forward_to"),
                    keep_copy=form.get("forward_keep_copy") == "1",
                )
            case "senders":
                await _apply_sender_entry(services, account, form)
                # "Block sender" on a message returns to it, as mail apps do.
                if page := mail_page(field_text(form, "back")):
                    return redirect(noticed(page, [("done", "blocked")]))
            case "storage":
                await update_retention(
                    services,
                    account,
                    junk_days=days_chosen(form, "junk", "Junk"),
                    trash_days=days_chosen(form, "trash", "Trash"),
                )
            case "identities":
                if field_text(form, "action") == "delete":
                    asked = unconfirmed(
                        request,
                        form,
                        what=f"The identity {field_text(form, 'address')} will be removed: "
                        "its name, Reply-To and signature.",
                        button="Remove identity",
                        back="/settings#identities",
                    )
                    if asked is not None:
                        return asked
                await _apply_identity(services, account, form)
            case "time-zone":
                await update_time_zone(services, account, field_text(form, "time_zone"))
            case "shortcuts":
                await update_shortcuts(services, account, form.get("shortcuts") == "1")
            case _:
                raise UserError("unknown settings section")
    except UserError as exc:
        return await settings_refusal(request, account, section, exc)
    # No #section: a fragment makes the browser skip autofocus, and the section's "Saved." with
    # autofocus both scrolls there and is what a screen reader reads (WCAG 4.1.3).
    return redirect(f"/settings?saved={section}")


async def _apply_identity(services: Services, account: Account, form: FormData) -> None:
    """Add, change or remove one identity (the form's ``id``: 0 for a new one, or for the
    account's own address before anything is stored for it)."""
    identity_id = field_number(field_text(form, "id")) or 0
    if field_text(form, "action") == "delete":
        await services.store.delete_identity(account.id, identity_id)
        return
    identity = await identities.checked_identity(
        services,
        account,
        identity_id=identity_id,
        address=field_text(form, "address"),
        display_name=field_text(form, "display_name"),
        reply_to=field_text(form, "reply_to"),
        signature=field_text(form, "signature"),
        is_default=form.get("is_default") == "1",
    )
    await identities.save(services, account, identity)


async def _apply_sender_entry(services: Services, account: Account, form: FormData) -> None:
    """Allow, block or remove the sender the form names (:mod:`pillarbox.policy.senderlists`)."""
    pattern = field_text(form, "pattern")
    if field_text(form, "action") == "remove":
        await senderlists.remove(services.store, account.id, pattern)
        return
    try:
        kind = SenderListKind(field_text(form, "kind"))
    except ValueError:
        raise UserError("choose Allow or Block") from None
    limit = services.config.policy.max_sender_entries
    await senderlists.put(services.store, account.id, pattern, kind, limit=limit)


def _now() -> float:
    return datetime.now(UTC).timestamp()


async def save_section(request: Request) -> Response:
    return await _apply(request, request.path_params["section"])


async def revoke_token(request: Request) -> Response:
    app = web(request)
    account = await require_account(request)
    form = await posted_form(request)
    token = await issued_token(app.services, account, request.path_params["token"])
    asked = unconfirmed(
        request,
        form,
        what=f"“{token.label}” will be revoked: whatever logs in with it is refused from now on.",
        button="Revoke",
        back="/settings#tokens",
    )
    if asked is not None:
        return asked
    await app.services.store.remove_token(account.id, token.id)
    return redirect("/settings?saved=tokens")


def routes() -> list[BaseRoute]:
    return [
        Route("/settings", settings_page),
        Route("/settings/tokens/{token:int}/revoke", revoke_token, methods=["POST"]),
        Route("/settings/{section}", save_section, methods=["POST"]),
    ]
