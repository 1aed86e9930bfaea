"""The JSON API (``/api/v1``) and its OpenAPI 3.1 document, generated from one route table.

Implementation notes:

- **Authentication**: ``Authorization: Bearer <API token>`` (issued in the settings; stored as a
  SHA-256 digest), or the browser session cookie — then every request other than GET must carry
  the CSRF token in ``X-CSRF-Token``, as the pages' forms do. A bearer request carries no
  ambient credential, so it needs no CSRF token. Bearer tokens are the second-factor-free
  path by design: a token is issued only from a session that passed the whole login (with the
  code when the account has two-factor login), is a 256-bit secret of its own, and is revoked
  in the settings; the session cookie of a login still waiting for its code grants nothing.
- **The table is the truth**: each :class:`Operation` names its method, path, handler, schemas
  and summary; routing and ``/api/v1/openapi.json`` are both built from it, so the document
  cannot drift from what is served. A request is held to it before its handler runs
  (:class:`_RequestCheck`: the jsonschema library, Draft 2020-12): a body or query parameter
  the document refuses is 400 naming the member (``uids[0] must be an integer``, ``content
  is required``); members it does not name are ignored; an integer is within the stores'
  64 bits whatever its schema says. ``fuzz/api_schemathesis.py`` checks the server against
  the document.
- Errors are ``{"error": "..."}`` with 400 (bad input), 401 (no credentials), 403 (not an
  admin, or a shared folder's rights do not allow it), 404 (absent — or another account's,
  indistinguishably; an id beyond 2^63-1 too), 405 (with ``Allow``), 409 (exists), 413, 429.
- The same operations as the pages: :mod:`.mailaccess`, :mod:`.account`, :mod:`.admin`,
  :mod:`.contacts`, :mod:`.calendarimport`, the .ics and .vcf files of
  :mod:`pillarbox.transfer.ics` and :mod:`pillarbox.transfer.vcf` (and
  :func:`pillarbox.calendars.calendars_of`, the calendars), :mod:`pillarbox.policy.senderlists`
  (the allow and block lists).
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, cast

from jsonschema import Draft202012Validator, validators
from jsonschema.exceptions import best_match
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from pillarbox import ical, provisioning, retention
from pillarbox.blocking import run_sized
from pillarbox.calendars import calendars_of, default_calendar
from pillarbox.config import Config, RetentionSection
from pillarbox.dns.records import DnsRecord
from pillarbox.dns.securerecords import zone_text
from pillarbox.errors import AlreadyExists, AuthenticationFailed, UserError
from pillarbox.mail.people import Person, people
from pillarbox.observability.log import Log
from pillarbox.policy import receivedreports, senderlists
from pillarbox.queue import sendlimits
from pillarbox.sievescripts import InvalidScript
from pillarbox.store.aclrows import canonical_rights
from pillarbox.store.types import (
    CREDENTIAL_KINDS,
    Account,
    AccountSettings,
    AccountToken,
    Calendar,
    Contact,
    Identity,
    QuotaUsage,
    RecipientState,
    SenderListEntry,
    SenderListKind,
    SendingLimits,
    SieveScript,
    SortKey,
    SpecialUse,
    TokenKind,
)
from pillarbox.transfer import ics, vcf
from pillarbox.web import account as account_ops
from pillarbox.web import admin as admin_ops
from pillarbox.web import calendarimport, identities
from pillarbox.web import contacts as contact_ops
from pillarbox.web import filters as filter_ops
from pillarbox.web.app import (
    MAX_FIELD_NUMBER,
    LoginRequired,
    Web,
    client_ip,
    current_account,
    web,
    within_limit,
)
from pillarbox.web.composing import Draft, Upload
from pillarbox.web.downloads import foreign_content
from pillarbox.web.mailaccess import Folder, MailAccess, Opened, Row, Sharing
from pillarbox.web.reading import authentication_results, spam_verdict
from pillarbox.web.session import CSRF_HEADER
from pillarbox.web.sieverules import (
    ACTION_LABELS,
    FIELD_LABELS,
    MATCH_LABELS,
    SCRIPT_NAME,
    rule_from_json,
    rule_json,
    rules_of,
)
from pillarbox.web.webmail import ListParams, apply_action, list_params, part_response, safe_html

_log = Log("web.api")

PREFIX = "/api/v1"
#: Suggestions per recipient completion request, and the longest prefix asked for (an address).
COMPLETION_LIMIT = 10
MAX_COMPLETION_PREFIX = 254
JsonObject = dict[str, Any]


@dataclass(frozen=True, slots=True)
class Call:
    """One API request, authenticated."""

    request: Request
    web: Web
    account: Account
    body: JsonObject

    @property
    def access(self) -> MailAccess:
        return MailAccess(self.web.services, self.account)

    def path(self, name: str) -> Any:
        return self.request.path_params[name]

    def text(self, key: str, default: str = "") -> str:
        value = self.body.get(key, default)
        if not isinstance(value, str):
            raise UserError(f"{key} must be a string")
        return value

    def texts(self, key: str) -> list[str]:
        value = self.body.get(key, [])
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise UserError(f"{key} must be a list of strings")
        return value

    def flag(self, key: str, default: bool = False) -> bool:
        value = self.body.get(key, default)
        if not isinstance(value, bool):
            raise UserError(f"{key} must be true or false")
        return value

    def optional_int(self, key: str) -> int | None:
        value = self.body.get(key)
        if value is not None and (not isinstance(value, int) or isinstance(value, bool)):
            raise UserError(f"{key} must be an integer or null")
        return value  # within 2^63: the body was held to the document (_RequestCheck)


ApiHandler = Callable[[Call], Awaitable[object]]


@dataclass(frozen=True, slots=True)
class Operation:
    method: str
    path: str
    handler: ApiHandler
    summary: str
    tag: str
    response: JsonObject
    body: JsonObject | None = None
    query: tuple[tuple[str, JsonObject, str], ...] = ()  # (name, schema, description)
    admin: bool = False
    status: int = 200
    media_type: str = "application/json"


# -- JSON shapes -----------------------------------------------------------------------------------


def _person(p: Person) -> JsonObject:
    return {"name": p.name, "address": p.address}


def folder_json(folder: Folder) -> JsonObject:
    m = folder.mailbox
    return {
        "id": m.id,
        "name": m.name,
        "special_use": m.special_use.value if m.special_use else None,
        "messages": folder.status.messages,
        "unseen": folder.status.unseen,
        "size": folder.status.size,
        "owner": folder.owner,
        "rights": canonical_rights(folder.rights),
    }


def sharing_json(sharing: Sharing) -> JsonObject:
    return {
        "mailbox": sharing.mailbox.id,
        "owner": sharing.owner,
        "entries": [
            {"identifier": e.listed_identifier, "rights": e.rights} for e in sharing.entries
        ],
    }


def row_json(row: Row) -> JsonObject:
    info = row.info
    return {
        "uid": row.record.uid,
        "flags": sorted(row.record.flags),
        "received": row.record.internal_date.isoformat(),
        "size": row.record.size,
        "subject": info.subject if info else "",
        "from": info.from_addr if info else "",
        "from_name": info.from_name if info else "",
        "to": info.to_addr if info else "",
        "date": info.sent_date.isoformat() if info and info.sent_date else None,
        "preview": info.preview if info else "",
        "attachments": len(info.attachments) if info else 0,
    }


def _spam_json(opened: Opened) -> JsonObject | None:
    verdict = spam_verdict(opened.raw, opened.info)
    if verdict is None:
        return None
    return {
        "score": verdict.score,
        "action": verdict.action,
        "override": verdict.override or None,
        "reasons": [
            {"code": r.code, "detail": r.detail, "score": r.score, "meaning": r.meaning}
            for r in verdict.reasons
        ],
        "more_reasons": verdict.more,
    }


async def message_json(call: Call, opened: Opened, thread: list[Row]) -> JsonObject:
    info = opened.info
    envelope = info.envelope
    base = f"{PREFIX}/mailboxes/{opened.mailbox.id}/messages/{opened.record.uid}"
    max_tags = call.web.services.config.web.max_html_tags
    html = await safe_html(opened, load_remote=False, max_tags=max_tags)
    return {
        "mailbox": opened.mailbox.id,
        "uid": opened.record.uid,
        "flags": sorted(opened.record.flags),
        "received": opened.record.internal_date.isoformat(),
        "date": info.sent_date.isoformat() if info.sent_date else None,
        "subject": info.subject,
        "from": [_person(p) for p in people(envelope.from_)],
        "to": [_person(p) for p in people(envelope.to)],
        "cc": [_person(p) for p in people(envelope.cc)],
        "reply_to": [_person(p) for p in people(envelope.reply_to)],
        "message_id": info.message_id,
        "in_reply_to": info.in_reply_to,
        "references": list(info.references),
        "text": call.access.text_of(opened),
        "html": html.html if html else None,
        "blocked_remote_images": html.blocked_images if html else 0,
        "html_truncated": html.truncated if html else False,
        "attachments": [
            {
                "section": a.section,
                "filename": a.filename,
                "content_type": a.content_type,
                "size": a.size,
                "content_id": a.content_id,
                "url": f"{base}/parts/{a.section}",
            }
            for a in info.attachments
        ],
        "authentication_results": [
            {"method": r.method, "result": r.result, "detail": r.detail}
            for r in authentication_results(opened.raw, info, call.web.services.hostname)
        ],
        "spam": _spam_json(opened),
        "thread": [
            {"mailbox": r.record.mailbox_id, "uid": r.record.uid, "subject": r.info.subject}
            for r in thread
            if r.info is not None
        ],
        "raw_url": f"{base}/raw",
    }


def settings_json(account: Account, settings: AccountSettings) -> JsonObject:
    return {
        "address": account.address,
        "display_name": account.display_name,
        "vacation": {
            "enabled": settings.vacation_enabled,
            "subject": settings.vacation_subject,
            "body": settings.vacation_body,
            "until": f"{settings.vacation_until:%Y-%m-%d}" if settings.vacation_until else None,
        },
        "forwarding": {"to": list(settings.forward_to), "keep_copy": settings.forward_keep_copy},
        "time_zone": settings.time_zone,
        "shortcuts": settings.shortcuts,
    }


def retention_json(section: RetentionSection, settings: AccountSettings) -> JsonObject:
    """Each of Junk and Trash: the account's own days (null: the server's), the server's,
    and the days in force (0: kept until deleted)."""
    shown: JsonObject = {"max_days": section.max_days}
    for name, special_use in (("junk", SpecialUse.JUNK), ("trash", SpecialUse.TRASH)):
        shown[name] = {
            "days": getattr(settings, f"{name}_days"),
            "default": getattr(section, f"{name}_days"),
            "effective": retention.retention_days(section, settings, special_use),
        }
    return shown


def quota_json(usage: QuotaUsage) -> JsonObject:
    return {
        "bytes_used": usage.bytes_used,
        "bytes_limit": usage.bytes_limit,
        "bytes_percent": usage.bytes_percent,
        "messages": usage.messages,
        "messages_limit": usage.messages_limit,
        "messages_percent": usage.messages_percent,
        "percent": usage.percent,
    }


def token_json(token: AccountToken) -> JsonObject:
    return {
        "id": token.id,
        "kind": token.kind.value,
        "label": token.label,
        "created": token.created.isoformat(),
    }


def sender_entry_json(entry: SenderListEntry) -> JsonObject:
    return {"pattern": entry.pattern, "kind": entry.kind.value}


def account_json(account: Account) -> JsonObject:
    return {
        "id": account.id,
        "address": account.address,
        "display_name": account.display_name,
        "is_admin": account.is_admin,
        "quota_bytes": account.quota_bytes,
        "quota_messages": account.quota_messages,
    }


# -- handlers: mail --------------------------------------------------------------------------------


async def me(call: Call) -> object:
    return account_json(call.account)


async def list_mailboxes(call: Call) -> object:
    return [folder_json(f) for f in await call.access.folders()]


async def create_mailbox(call: Call) -> object:
    mailbox = await call.access.create_folder(call.text("name"))
    return {"id": mailbox.id, "name": mailbox.name}


async def rename_mailbox(call: Call) -> object:
    await call.access.rename_folder(call.path("mailbox"), call.text("name"))
    return {"ok": True}


async def delete_mailbox(call: Call) -> object:
    await call.access.delete_folder(call.path("mailbox"))
    return {"ok": True}


async def get_acl(call: Call) -> object:
    return sharing_json(await call.access.sharing(call.path("mailbox")))


async def put_acl(call: Call) -> object:
    sharing = await call.access.share(
        call.path("mailbox"), call.path("identifier"), call.text("rights")
    )
    return sharing_json(sharing)


async def delete_acl(call: Call) -> object:
    return sharing_json(await call.access.unshare(call.path("mailbox"), call.path("identifier")))


def _page_params(call: Call) -> ListParams:
    """The list's page, sort and filters from the query string, within the configured sizes."""
    limits = call.web.limits
    return list_params(
        dict(call.request.query_params),
        page_size=limits.page_size,
        max_page_size=limits.max_page_size,
    )


async def list_messages(call: Call) -> object:
    access = call.access
    mailbox = await access.mailbox(call.path("mailbox"))
    params = _page_params(call)
    page = await access.search(
        mailbox, params.text, params.query, offset=params.offset, limit=params.page_size
    )
    return {
        "total": page.total,
        "page": params.page,
        "size": params.page_size,
        "messages": [row_json(r) for r in page.rows],
    }


async def list_threads(call: Call) -> object:
    access = call.access
    mailbox = await access.mailbox(call.path("mailbox"))
    params = _page_params(call)
    page = await access.threaded(mailbox, number=params.page, page_size=params.page_size)
    return {
        "threads": page.threads,
        "messages": page.messages,
        "page": page.number,
        "pages": page.pages,
        "conversations": [
            {
                "thread": conversation.thread_id,
                "messages": [
                    {**row_json(item.row), "depth": item.depth} for item in conversation.rows
                ],
                "more": conversation.more,
                "unread": conversation.unread,
            }
            for conversation in page.conversations
        ],
    }


async def get_message(call: Call) -> object:
    access = call.access
    opened = await access.open(call.path("mailbox"), call.path("uid"))
    if call.request.query_params.get("mark_seen", "1") != "0":
        await access.mark_seen(opened)
    return await message_json(call, opened, await access.thread(opened))


async def raw_message(call: Call) -> object:
    opened = await call.access.open(call.path("mailbox"), call.path("uid"))
    response = Response(opened.raw, media_type="message/rfc822")
    return foreign_content(response, f"message-{opened.record.uid}.eml")


async def message_part(call: Call) -> object:
    opened = await call.access.open(call.path("mailbox"), call.path("uid"))
    return part_response(opened, call.path("section"), inline=False)


async def act(call: Call) -> object:
    uids = call.body.get("uids", [])
    if not isinstance(uids, list) or not all(
        isinstance(u, int) and not isinstance(u, bool) for u in uids
    ):
        raise UserError("uids must be a list of integers")
    if len(uids) > call.web.limits.max_action_uids:
        raise UserError(f"at most {call.web.limits.max_action_uids} messages at once")
    target = call.body.get("target")
    await apply_action(
        call.access,
        call.path("mailbox"),
        uids,
        call.text("action"),
        str(target) if isinstance(target, int) else "",
    )
    return {"ok": True}


async def empty_mailbox(call: Call) -> object:
    await call.access.empty(call.path("mailbox"))
    return {"ok": True}


def _draft(call: Call) -> Draft:
    uploads: list[Upload] = []
    items = call.body.get("attachments", [])
    if not isinstance(items, list) or len(items) > call.web.limits.max_attachments:
        raise UserError(f"attachments must be a list of at most {call.web.limits.max_attachments}")
    for item in items:
        if not isinstance(item, dict):
            raise UserError("each attachment is an object")
        try:
            data = base64.b64decode(str(item.get("data", "")), validate=True)
        except binascii.Error:
            raise UserError("attachment data must be base64") from None
        uploads.append(
            Upload(
                str(item.get("filename") or "attachment"),
                str(item.get("content_type") or "application/octet-stream"),
                data,
            )
        )
    references = call.body.get("references", [])
    if not isinstance(references, list) or not all(isinstance(r, str) for r in references):
        raise UserError("references must be a list of strings")
    return Draft(
        to=call.text("to"),
        cc=call.text("cc"),
        bcc=call.text("bcc"),
        subject=call.text("subject"),
        body=call.text("body"),
        html=call.text("html"),
        in_reply_to=call.text("in_reply_to"),
        references=tuple(references),
        attachments=tuple(uploads),
        kept=tuple(call.texts("keep")),
        replying_to=call.text("replying_to"),
        forwarding=call.text("forwarding"),
        draft_uid=call.optional_int("draft_uid"),
        identity=call.optional_int("identity"),
    )


async def _draft_forwarding(call: Call) -> Draft:
    """The call's draft; a forward without ``keep`` carries all the forwarded message's
    attachments (with it, those it names: the web form's ticked boxes)."""
    draft = _draft(call)
    if draft.forwarding and "keep" not in call.body:
        draft = replace(draft, kept=await call.access.kept_all(draft.forwarding))
    return draft


async def send(call: Call) -> object:
    result = await call.access.send(
        await _draft_forwarding(call),
        max_recipients=call.web.limits.max_recipients,
        client_ip=client_ip(call.request),
        tls=call.request.url.scheme == "https",
    )
    if not result.sent:
        return JSONResponse({"error": "not sent", "fields": result.errors}, status_code=400)
    return {"sent": True, "warning": result.warning}


async def save_draft(call: Call) -> object:
    """The saved draft's place, and the ``keep`` that carries its attachments into the next
    save or the send (as the web form lists them after a save)."""
    uid = await call.access.save_draft(await _draft_forwarding(call))
    drafts = await call.access.special(SpecialUse.DRAFTS)
    keep = await call.access.kept_all(f"{drafts.id}:{uid}")
    return {"mailbox": drafts.id, "uid": uid, "keep": list(keep)}


# -- handlers: settings ------------------------------------------------------------------------


def identity_json(identity: Identity) -> JsonObject:
    return {
        "id": identity.id,
        "address": identity.address,
        "display_name": identity.display_name,
        "reply_to": identity.reply_to,
        "signature": identity.signature,
        "is_default": identity.is_default,
    }


async def list_identities(call: Call) -> object:
    return [identity_json(i) for i in await call.access.identities()]


async def _save_identity(call: Call, identity_id: int) -> Identity:
    identity = await identities.checked_identity(
        call.web.services,
        call.account,
        identity_id=identity_id,
        address=call.text("address"),
        display_name=call.text("display_name"),
        reply_to=call.text("reply_to"),
        signature=call.text("signature"),
        is_default=call.flag("is_default"),
    )
    return await identities.save(call.web.services, call.account, identity)


async def add_identity(call: Call) -> object:
    return identity_json(await _save_identity(call, 0))


async def put_identity(call: Call) -> object:
    return identity_json(await _save_identity(call, call.path("identity")))


async def delete_identity(call: Call) -> object:
    await call.web.services.store.delete_identity(call.account.id, call.path("identity"))
    return {"ok": True}


async def addresses(call: Call) -> object:
    """Recipient completion: the account's contacts, then its own correspondents (see
    :func:`pillarbox.web.contacts.completions`); nothing of another account's."""
    prefix = call.request.query_params.get("prefix", "").strip()
    found = await contact_ops.completions(call.web.services, call.account, prefix, COMPLETION_LIMIT)
    return {"addresses": found}


def contact_json(contact: Contact) -> JsonObject:
    return {
        "id": contact.id,
        "uid": contact.uid,
        "display_name": contact.display_name,
        "emails": list(contact.emails),
        "phones": list(contact.phones),
        "organization": contact.organization,
        "note": contact.note,
        "created": contact.created.isoformat() if contact.created else None,
        "updated": contact.updated.isoformat() if contact.updated else None,
    }


async def list_contacts(call: Call) -> object:
    search = call.request.query_params.get("q", "").strip()
    found = await call.web.services.store.list_contacts(call.account.id, search)
    return [contact_json(c) for c in found]


async def get_contact(call: Call) -> object:
    contact = await call.web.services.store.get_contact(call.account.id, call.path("contact"))
    return contact_json(contact)


def _contact_body(call: Call, contact_id: int) -> Contact:
    return Contact(
        id=contact_id,
        uid="" if contact_id else call.text("uid"),
        display_name=call.text("display_name"),
        emails=tuple(call.texts("emails")),
        phones=tuple(call.texts("phones")),
        organization=call.text("organization"),
        note=call.text("note"),
    )


async def add_contact(call: Call) -> object:
    return contact_json(
        await contact_ops.save(call.web.services, call.account, _contact_body(call, 0))
    )


async def put_contact(call: Call) -> object:
    contact = _contact_body(call, call.path("contact"))
    return contact_json(await contact_ops.save(call.web.services, call.account, contact))


async def delete_contact(call: Call) -> object:
    await call.web.services.store.delete_contact(
        call.account.id, call.path("contact"), now=datetime.now(UTC)
    )
    return {"ok": True}


async def import_contacts(call: Call) -> object:
    # JSON may hold a lone surrogate ("\udcfc"), which no UTF-8 encodes: passed as its
    # octets, the card holding it is skipped as not UTF-8 (a 500 before).
    data = call.text("vcard").encode("utf-8", "surrogatepass")
    limit = call.web.services.config.contacts.max_import_bytes
    done = await vcf.import_vcards(call.web.services, call.account, within_limit(data, limit))
    return done.as_json()


async def export_contacts(call: Call) -> object:
    return await contact_ops.export_vcards(call.web.services, call.account)


def calendar_json(calendar: Calendar, default: bool) -> JsonObject:
    return {
        "name": calendar.name,
        "display_name": calendar.display_name,
        "color": calendar.color,
        "description": calendar.description,
        # Every calendar holds both (caldav's supported-calendar-component-set): not kept.
        "components": list(ical.COMPONENTS),
        "default": default,
    }


async def list_calendars(call: Call) -> object:
    """The account's calendars as the Calendar page lists them (its first use makes the
    default one), by name."""
    services = call.web.services
    calendars = await calendars_of(services, call.account)
    chosen = await default_calendar(services, call.account, calendars)
    return [calendar_json(c, c.name == chosen) for c in calendars]


async def import_calendar(call: Call) -> object:
    # Lone surrogates as import_contacts passes them: such a file is no UTF-8, refused (400).
    data = call.text("ics").encode("utf-8", "surrogatepass")
    name, create = call.path("name"), call.flag("create")
    limit = call.web.services.config.calendars.max_import_bytes
    done = await ics.import_ics(
        call.web.services, call.account, name, within_limit(data, limit), create=create
    )
    return done.as_json()


async def export_calendar(call: Call) -> object:
    return await calendarimport.export_download(call.web.services, call.account, call.path("name"))


async def get_settings(call: Call) -> object:
    settings = await call.web.services.store.get_settings(call.account.id)
    return {
        **settings_json(call.account, settings),
        "retention": retention_json(call.web.services.config.retention, settings),
    }


async def put_retention(call: Call) -> object:
    settings = await account_ops.update_retention(
        call.web.services,
        call.account,
        junk_days=call.optional_int("junk_days"),
        trash_days=call.optional_int("trash_days"),
    )
    return retention_json(call.web.services.config.retention, settings)


async def get_quota(call: Call) -> object:
    return quota_json(await call.web.services.store.quota_usage(call.account.id))


async def put_profile(call: Call) -> object:
    await account_ops.set_display_name(call.web.services, call.account, call.text("display_name"))
    return {"ok": True}


async def put_time_zone(call: Call) -> object:
    settings = await account_ops.update_time_zone(
        call.web.services, call.account, call.text("time_zone")
    )
    return {"time_zone": settings.time_zone}


async def put_shortcuts(call: Call) -> object:
    settings = await account_ops.update_shortcuts(
        call.web.services, call.account, call.flag("shortcuts")
    )
    return {"shortcuts": settings.shortcuts}


async def put_vacation(call: Call) -> object:
    settings = await account_ops.update_vacation(
        call.web.services,
        call.account,
        enabled=call.flag("enabled"),
        subject=call.text("subject"),
        body=call.text("body"),
        until=call.text("until") if call.body.get("until") is not None else "",
    )
    return settings_json(call.account, settings)["vacation"]


async def put_forwarding(call: Call) -> object:
    to = call.body.get("to", [])
    if not isinstance(to, list) or not all(isinstance(a, str) for a in to):
        raise UserError("to must be a list of addresses")
    settings = await account_ops.update_forwarding(
        call.web.services,
        call.account,
        forward_to=", ".join(to),
        keep_copy=call.flag("keep_copy", True),
    )
    return settings_json(call.account, settings)["forwarding"]


async def change_password(call: Call) -> object:
    await account_ops.change_password(
        call.web.services,
        call.account,
        call.text("current"),
        call.text("new"),
        client_ip(call.request),
    )
    return {"ok": True}


async def list_tokens(call: Call) -> object:
    tokens = await call.web.services.store.list_tokens(call.account.id)
    return [token_json(t) for t in tokens if t.kind in CREDENTIAL_KINDS]


async def create_token(call: Call) -> object:
    try:
        kind = TokenKind(call.text("kind", TokenKind.API.value))
    except ValueError:
        kind = None
    if kind not in CREDENTIAL_KINDS:
        raise UserError("kind must be 'api' or 'app-password'")
    token, secret = await account_ops.issue_token(
        call.web.services, call.account, kind, call.text("label")
    )
    return {**token_json(token), "secret": secret}


async def revoke_token(call: Call) -> object:
    await account_ops.revoke_issued(call.web.services, call.account, call.path("token"))
    return {"ok": True}


async def list_sender_entries(call: Call) -> object:
    listed = await call.web.services.store.list_sender_entries(call.account.id)
    return [sender_entry_json(e) for e in listed]


async def put_sender_entry(call: Call) -> object:
    entry = await senderlists.put(
        call.web.services.store,
        call.account.id,
        call.path("pattern"),
        SenderListKind(call.text("kind")),  # one of them: the body was held to the document
        limit=call.web.services.config.policy.max_sender_entries,
    )
    return sender_entry_json(entry)


async def remove_sender_entry(call: Call) -> object:
    await senderlists.remove(call.web.services.store, call.account.id, call.path("pattern"))
    return {"ok": True}


async def client_setup(call: Call) -> object:
    return [
        {"protocol": s.protocol, "host": s.host, "port": s.port, "security": s.security}
        for s in account_ops.client_servers(call.web)
    ]


# -- handlers: filters (Sieve) --------------------------------------------------------------------


def script_json(script: SieveScript) -> JsonObject:
    return {
        "name": script.name,
        "active": script.active,
        "size": len(script.content.encode("utf-8")),
        "generated": rules_of(script.content) is not None,
    }


def _version(call: Call) -> str | None:
    value = call.body.get("version")
    if value is not None and not isinstance(value, str):
        raise UserError("version must be a string or null")
    return value


async def list_scripts(call: Call) -> object:
    return [
        script_json(s) for s in await call.web.services.store.list_sieve_scripts(call.account.id)
    ]


async def get_script(call: Call) -> object:
    script = await filter_ops.script_named(call.web.services, call.account, call.path("name"))
    rules = rules_of(script.content)
    return {
        **script_json(script),
        "content": script.content,
        "version": filter_ops.version_of(script),
        "rules": None if rules is None else [rule_json(r) for r in rules],
    }


async def put_script(call: Call) -> object:
    script = await filter_ops.save_script(
        call.web.services,
        call.account,
        call.path("name"),
        call.text("content"),
        version=_version(call),
        activate=call.flag("active"),
    )
    return {**script_json(script), "version": filter_ops.version_of(script)}


async def delete_script(call: Call) -> object:
    await filter_ops.delete_script(call.web.services, call.account, call.path("name"))
    return {"ok": True}


async def put_active(call: Call) -> object:
    name = call.body.get("name")
    if name is not None and not isinstance(name, str):
        raise UserError("name must be a string or null")
    await filter_ops.activate(call.web.services, call.account, name or None)
    return {"ok": True}


async def get_rules(call: Call) -> object:
    found = await filter_ops.load_filters(call.web.services, call.account)
    hand = found.hand_written
    return {
        "script": SCRIPT_NAME,
        "rules": None if found.rules is None else [rule_json(r) for r in found.rules],
        "active": found.builder and found.active is not None,
        "version": found.version,
        "hand_written": hand.name if hand is not None else None,
    }


async def put_rules(call: Call) -> object:
    items = call.body.get("rules")
    if not isinstance(items, list):
        raise UserError("rules must be a list")
    rules = [rule_from_json(item) for item in items]
    version = await filter_ops.save_rules(
        call.web.services,
        call.account,
        rules,
        version=_version(call),
        take_over=call.flag("take_over"),
    )
    return {"rules": [rule_json(r) for r in rules], "version": version}


# -- handlers: admin -----------------------------------------------------------------------------


async def admin_dashboard(call: Call) -> object:
    board = await admin_ops.dashboard(call.web.services)
    return {
        "domains": board.domains,
        "accounts": board.accounts,
        "aliases": board.aliases,
        "stored_messages": board.stored_messages,
        "stored_bytes": board.stored_bytes,
        "queued_messages": board.queued_messages,
        "queued_recipients": board.queued_recipients,
    }


async def admin_activity(call: Call) -> object:
    chart = await admin_ops.activity(
        call.web.services, call.request.query_params.get("range", "48h"), datetime.now(UTC)
    )
    return {
        "range": chart.range.key,
        "step_seconds": int(chart.range.step.total_seconds()),
        "intervals": [
            {
                "start": c.start.isoformat(),
                "delivered": c.delivered,
                "junk": c.junk,
                "sent": c.sent,
                "queued": c.queued,
            }
            for c in chart.counts
        ],
    }


async def admin_domains(call: Call) -> object:
    return [
        {"name": d.name, "created": d.created.isoformat()}
        for d in await call.web.services.store.list_domains()
    ]


async def admin_add_domain(call: Call) -> object:
    domain = await provisioning.add_domain(call.web.services.store, call.text("name"))
    return {"name": domain.name, "created": domain.created.isoformat()}


async def admin_remove_domain(call: Call) -> object:
    await provisioning.remove_domain(call.web.services.store, call.path("name"))
    return {"ok": True}


def _dns_record(record: DnsRecord | None) -> object:
    if record is None:
        return None
    return {
        "name": record.name,
        "type": record.type,
        "value": record.value,
        "ttl": record.ttl,
        "purpose": record.purpose,
    }


async def admin_domain_dns(call: Call) -> object:
    services = call.web.services
    records = await admin_ops.domain_records(services, call.path("name"))
    secure = await admin_ops.domain_secure_records(services, records)
    return {
        "domain": records.domain,
        "records": [_dns_record(r) for r in records.records],
        "tlsa": _dns_record(secure.tlsa),
        "no_tlsa": secure.no_tlsa,
        "dnskey": _dns_record(secure.dnskey),
        "ds": _dns_record(secure.ds),
        "dnskeys": [_dns_record(r) for r in secure.dnskeys],
        "ds_records": [_dns_record(r) for r in secure.parent_ds],
        "cds_records": [_dns_record(r) for r in secure.cds_records],
        "zone": zone_text(records, secure),
        "mta_sts_policy": records.mta_sts_policy,
    }


async def admin_domain_reports(call: Call) -> object:
    query = call.request.query_params
    view = await admin_ops.received_reports(
        call.web.services, call.path("name"), query.get("days", "")
    )
    return {
        "domain": view.domain,
        "days": view.days,
        "sources": [
            {
                "kind": s.kind,
                "source": s.source,
                "messages": s.messages,
                "passed": s.passed,
                "failed": s.failed,
                "reports": s.reports,
            }
            for kind in ("dmarc", "tlsrpt")
            for s in view.sources(kind)
        ],
        "reports": [receivedreports.report_json(r) for r in view.reports],
    }


async def admin_accounts(call: Call) -> object:
    return [account_json(a) for a in await call.web.services.store.list_accounts()]


async def admin_add_account(call: Call) -> object:
    services = call.web.services
    account = await provisioning.add_account(
        services.store,
        services.config,
        call.text("address"),
        call.text("password"),
        display_name=call.text("display_name"),
        is_admin=call.flag("is_admin"),
        quota_bytes=call.optional_int("quota_bytes"),
        quota_messages=call.optional_int("quota_messages"),
    )
    return account_json(account)


async def admin_remove_account(call: Call) -> object:
    await admin_ops.remove_account(call.web.services, call.account, call.path("address"))
    return {"ok": True}


async def admin_set_password(call: Call) -> object:
    services = call.web.services
    await provisioning.set_password(
        services.store, services.config, call.path("address"), call.text("password")
    )
    return {"ok": True}


async def admin_set_quota(call: Call) -> object:
    account = await admin_ops.set_quota(
        call.web.services,
        call.path("address"),
        call.optional_int("quota_bytes"),
        call.optional_int("quota_messages"),
    )
    return {"ok": True, "address": account.address}


async def admin_sending_limits(call: Call) -> object:
    return (await admin_ops.sending_state(call.web.services, call.path("address"))).as_json()


async def admin_set_sending_limits(call: Call) -> object:
    limits = SendingLimits(
        call.optional_int("messages"),
        call.optional_int("recipients"),
        call.optional_int("first_time"),
    )
    state = await admin_ops.set_sending_limits(call.web.services, call.path("address"), limits)
    return state.as_json()


async def admin_aliases(call: Call) -> object:
    return [
        {"address": a.address, "targets": list(a.targets)}
        for a in await call.web.services.store.list_aliases()
    ]


async def admin_add_alias(call: Call) -> object:
    targets = call.body.get("targets", [])
    if not isinstance(targets, list) or not all(isinstance(t, str) for t in targets):
        raise UserError("targets must be a list of addresses")
    alias = await provisioning.add_alias(call.web.services.store, call.text("address"), targets)
    return {"address": alias.address, "targets": list(alias.targets)}


async def admin_remove_alias(call: Call) -> object:
    await provisioning.remove_alias(call.web.services.store, call.path("address"))
    return {"ok": True}


async def admin_queue(call: Call) -> object:
    return [
        {
            "id": m.id,
            "sender": m.sender,
            "size": m.size,
            "queued_at": m.queued_at.isoformat(),
            "recipients": [
                {
                    "address": r.address,
                    "state": r.state.value,
                    "attempts": r.attempts,
                    "next_attempt": r.next_attempt.isoformat(),
                    "last_reply": r.last_reply,
                }
                for r in m.recipients
            ],
        }
        for m in await call.web.services.store.list_queue()
    ]


async def admin_retry(call: Call) -> object:
    store = call.web.services.store
    await store.retry_queued(call.path("message"), datetime.now(UTC))
    await store.wake_queue()  # every node's runner, as the admin page's Retry
    return {"ok": True}


async def admin_remove_queued(call: Call) -> object:
    await call.web.services.store.remove_queued(call.path("message"))
    return {"ok": True}


# -- schemas ---------------------------------------------------------------------------------------


def _obj(properties: Mapping[str, JsonObject], required: tuple[str, ...] = ()) -> JsonObject:
    schema: JsonObject = {"type": "object", "properties": dict(properties)}
    if required:
        schema["required"] = list(required)
    return schema


def _ref(name: str) -> JsonObject:
    return {"$ref": f"#/components/schemas/{name}"}


#: Where a list's ``maxItems`` is a config key's value (``"web.max_action_uids"``), until
#: :func:`_limited` writes the value in for the server's config.
_LIMIT = "x-pillarbox-limit"
#: The request lists no config key bounds (docs/security.md, "Input sizes and parsers").
#: Message-IDs a draft's References may name (a long thread's chain stays far below).
MAX_REFERENCES = 500
#: Addresses a forwarding setting may send to.
MAX_FORWARD_TO = 100
#: Rules of the rule builder, and conditions or actions of one rule.
MAX_RULES = 500
MAX_RULE_PARTS = 100
#: Addresses one alias may reach.
MAX_ALIAS_TARGETS = 1000


def _list(item: JsonObject, max_items: int | str | None = None) -> JsonObject:
    """An array of ``item``; at most ``max_items`` of them: a number, or the config key
    whose value bounds it (every list a request may send has a bound, checked before the
    items are: :func:`_overlong`)."""
    schema: JsonObject = {"type": "array", "items": item}
    if isinstance(max_items, int):
        schema["maxItems"] = max_items
    elif max_items is not None:
        schema[_LIMIT] = max_items
    return schema


def _limited(value: Any, config: Config) -> Any:
    """``value`` (a schema, the document) with each config key's bound written in as
    ``maxItems``: the document states the limits this server applies."""
    if isinstance(value, list):
        return [_limited(v, config) for v in value]
    if not isinstance(value, dict):
        return value
    limited = {k: _limited(v, config) for k, v in value.items() if k != _LIMIT}
    if _LIMIT in value:
        section, key = value[_LIMIT].split(".")
        limited["maxItems"] = getattr(getattr(config, section), key)
    return limited


STR: JsonObject = {"type": "string"}
INT: JsonObject = {"type": "integer"}
NUMBER: JsonObject = {"type": "number"}
BOOL: JsonObject = {"type": "boolean"}
NULLABLE_INT: JsonObject = {"type": ["integer", "null"]}
DNS_RECORD = _obj({"name": STR, "type": STR, "value": STR, "ttl": INT, "purpose": STR})


def _nullable(schema: JsonObject, description: str) -> JsonObject:
    """``schema`` or null, saying what it is (and so when it is null)."""
    return {"anyOf": [schema, {"type": "null"}], "description": description}


#: A folder, message, contact, token… by number (a path's ``{name:int}`` too: Starlette's int
#: converter takes ASCII digits only): no id beyond the stores' 64-bit integers exists.
ID: JsonObject = {"type": "integer", "minimum": 0, "maximum": MAX_FIELD_NUMBER}
#: A quota to set: null is none.
QUOTA: JsonObject = {
    "type": ["integer", "null"],
    "minimum": 0,
    "maximum": provisioning.MAX_QUOTA,
    "description": "null: unlimited",
}
#: A sending limit to set (pillarbox.queue.sendlimits.checked).
SENDING_LIMIT: JsonObject = {
    "type": ["integer", "null"],
    "minimum": 0,
    "maximum": sendlimits.MAX_LIMIT,
    "description": "null: the default; 0: unlimited",
}
OK = _obj({"ok": BOOL})
_SENDING_COUNTS = ("messages", "recipients", "first_time")
#: pillarbox.queue.sendlimits.SendingState.as_json
SENDING_STATE = _obj(
    {
        "address": STR,
        "own": _obj(dict.fromkeys(_SENDING_COUNTS, NULLABLE_INT), _SENDING_COUNTS),
        "limits": _obj(dict.fromkeys(_SENDING_COUNTS, INT), _SENDING_COUNTS),
        "sent": _obj(dict.fromkeys(_SENDING_COUNTS, INT), _SENDING_COUNTS),
    },
    ("address", "own", "limits", "sent"),
)
PERSON = _obj({"name": STR, "address": STR})
VACATION = _obj(
    {"enabled": BOOL, "subject": STR, "body": STR, "until": {"type": ["string", "null"]}}
)
FORWARDING = _obj({"to": _list(STR, MAX_FORWARD_TO), "keep_copy": BOOL})
#: pillarbox.policy.receivedreports.report_json
RECEIVED_REPORT = _obj(
    {
        "kind": {"enum": ["dmarc", "tlsrpt"]},
        "organization": STR,
        "report_id": STR,
        "domain": STR,
        "begin": STR,
        "end": STR,
        "received": STR,
        "contact": STR,
        "policy": STR,
        "messages": INT,
        "failed": INT,
        "rows": _list(
            _obj(
                {
                    "source": STR,
                    "messages": INT,
                    "failed": INT,
                    "disposition": STR,
                    "dkim": STR,
                    "spf": STR,
                    "header_from": STR,
                    "detail": STR,
                }
            )
        ),
    }
)
#: AccountSettings.time_zone, checked by pillarbox.web.zone.known_zone.
_TIME_ZONE: JsonObject = {
    "type": "string",
    "description": 'an IANA zone name ("Europe/Paris"); "": the browser\'s zone',
}
#: AccountSettings.shortcuts.
_SHORTCUTS: JsonObject = {
    "type": "boolean",
    "description": "the webmail's single-key shortcuts (j/k, c, /, …) are on",
}

#: SenderListEntry.kind.
_SENDER_LIST_KIND: JsonObject = {
    "enum": [k.value for k in SenderListKind],
    "description": "allow: to the INBOX, whatever the filter says, when the sender's domain "
    "vouches for the message (DMARC, or SPF or DKIM of its organizational domain, passes); "
    "block: to Junk",
}

SCHEMAS: dict[str, JsonObject] = {
    "Error": _obj(
        {"error": STR, "line": {"type": "integer", "description": "a Sieve error's line"}},
        ("error",),
    ),
    "Account": _obj(
        {
            "id": INT,
            "address": STR,
            "display_name": STR,
            "is_admin": BOOL,
            "quota_bytes": NULLABLE_INT,
            "quota_messages": NULLABLE_INT,
        }
    ),
    "Mailbox": _obj(
        {
            "id": INT,
            "name": STR,
            "special_use": {"type": ["string", "null"]},
            "messages": INT,
            "unseen": INT,
            "size": INT,
            "owner": {
                "type": ["string", "null"],
                "description": "the sharing account's address; null for your own folders",
            },
            "rights": {
                "type": "string",
                "description": "your RFC 4314 rights on it (lrswipkxtea on your own)",
            },
        }
    ),
    "Sharing": _obj(
        {
            "mailbox": INT,
            "owner": {"type": "string", "description": "has every right, always"},
            "entries": _list(
                _obj(
                    {
                        "identifier": {
                            "type": "string",
                            "description": "an account's address, or anyone / authenticated; "
                            "with a leading - the entry takes these rights away (RFC 4314 §2)",
                        },
                        "rights": {"type": "string", "description": "RFC 4314 §2.1 letters"},
                    }
                )
            ),
        }
    ),
    "MessageSummary": _obj(
        {
            "uid": INT,
            "flags": _list(STR),
            "received": STR,
            "size": INT,
            "subject": STR,
            "from": STR,
            "from_name": STR,
            "to": STR,
            "date": {"type": ["string", "null"]},
            "preview": STR,
            "attachments": INT,
        }
    ),
    "MessagePage": _obj(
        {"total": INT, "page": INT, "size": INT, "messages": _list(_ref("MessageSummary"))}
    ),
    "Message": _obj(
        {
            "mailbox": INT,
            "uid": INT,
            "flags": _list(STR),
            "received": {"type": "string", "description": "INTERNALDATE, ISO 8601"},
            "date": {"type": ["string", "null"], "description": "the Date field; ISO 8601"},
            "subject": STR,
            "from": _list(PERSON),
            "to": _list(PERSON),
            "cc": _list(PERSON),
            "reply_to": _list(PERSON),
            "message_id": STR,
            "in_reply_to": STR,
            "references": _list(STR),
            "text": STR,
            "html": {"type": ["string", "null"], "description": "sanitised; remote images removed"},
            "blocked_remote_images": {
                "type": "integer",
                "description": "remote images removed from html",
            },
            "html_truncated": {
                "type": "boolean",
                "description": "html was cut at the server's [web] max_html_tags",
            },
            "attachments": _list(
                _obj(
                    {
                        "section": STR,
                        "filename": STR,
                        "content_type": STR,
                        "size": INT,
                        "content_id": {"type": ["string", "null"]},
                        "url": STR,
                    }
                )
            ),
            "authentication_results": _list(_obj({"method": STR, "result": STR, "detail": STR})),
            "spam": {
                "description": "the spam filter's verdict at delivery; null: not judged",
                "oneOf": [
                    {"type": "null"},
                    _obj(
                        {
                            "score": NUMBER,
                            "action": STR,
                            "override": {"type": ["string", "null"]},
                            "reasons": _list(
                                _obj({"code": STR, "detail": STR, "score": NUMBER, "meaning": STR})
                            ),
                            "more_reasons": INT,
                        }
                    ),
                ],
            },
            "thread": {
                **_list(_obj({"mailbox": INT, "uid": INT, "subject": STR})),
                "description": "the conversation's messages in this folder, INBOX and Sent",
            },
            "raw_url": STR,
        }
    ),
    "Draft": _obj(
        {
            "to": STR,
            "cc": STR,
            "bcc": STR,
            "subject": STR,
            "body": STR,
            "html": {
                "type": "string",
                "description": "simple HTML (b, i, u, a, lists, quotes; the rest is removed); "
                "when given, the message is multipart/alternative and body is derived from it",
            },
            "in_reply_to": STR,
            "references": _list(STR, MAX_REFERENCES),
            "replying_to": {"type": "string", "description": "'mailbox:uid' answered"},
            "forwarding": {
                "type": "string",
                "description": "'mailbox:uid' forwarded: without keep, all its attachments "
                "go along, sent or saved in the draft",
            },
            "keep": {
                **_list(STR, "web.max_attachments"),
                "description": "attachments already stored to send or save again, each "
                "'mailbox:uid:section' of a message of this account (a draft's, as "
                "POST /drafts answers them, or the forwarded message's; sections as a "
                "message's attachments list them); the draft_uid draft's attachments not "
                "named here are left out",
            },
            "draft_uid": {
                "type": ["integer", "null"],
                "description": "UID in Drafts of the draft this one replaces (removed once "
                "it is saved or sent)",
            },
            "identity": {
                "type": ["integer", "null"],
                "description": "id of the identity to send as (GET /identities); "
                "absent or null: the default",
            },
            "attachments": _list(
                _obj(
                    {
                        "filename": STR,
                        "content_type": STR,
                        "data": {"type": "string", "contentEncoding": "base64"},
                    }
                ),
                "web.max_attachments",
            ),
        }
    ),
    "Settings": _obj(
        {
            "address": STR,
            "display_name": STR,
            "vacation": VACATION,
            "forwarding": FORWARDING,
            "time_zone": _TIME_ZONE,
            "shortcuts": _SHORTCUTS,
            "retention": _ref("Retention"),
        }
    ),
    "Retention": _obj(
        {
            "max_days": {"type": "integer", "description": "the most days an account may set"},
            **{
                name: _obj(
                    {
                        "days": {
                            "type": ["integer", "null"],
                            "description": f"the account's own days for {name}; null: the "
                            "server's; 0: kept until deleted",
                        },
                        "default": {"type": "integer", "description": "the server's days"},
                        "effective": {"type": "integer", "description": "the days in force"},
                    }
                )
                for name in ("junk", "trash")
            },
        }
    ),
    "Quota": _obj(
        {
            "bytes_used": INT,
            "bytes_limit": NULLABLE_INT,
            "bytes_percent": NULLABLE_INT,
            "messages": INT,
            "messages_limit": NULLABLE_INT,
            "messages_percent": NULLABLE_INT,
            "percent": {
                "type": ["integer", "null"],
                "description": "whole percent of the fuller limit; null without limits",
            },
        }
    ),
    "Identity": _obj(
        {
            "id": {"type": "integer", "description": "0: the account's own address, not stored"},
            "address": STR,
            "display_name": STR,
            "reply_to": STR,
            "signature": {"type": "string", "description": "plain text, without the '-- ' line"},
            "is_default": BOOL,
        }
    ),
    "Contact": _obj(
        {
            "id": INT,
            "uid": {"type": "string", "description": "RFC 6350 UID (urn:uuid: when made here)"},
            "display_name": STR,
            "emails": _list(STR),
            "phones": _list(STR),
            "organization": STR,
            "note": STR,
            "created": {"type": ["string", "null"], "description": "ISO 8601"},
            "updated": {"type": ["string", "null"], "description": "ISO 8601"},
        }
    ),
    "Calendar": _obj(
        {
            "name": {"type": "string", "description": "what /calendars/{name}/… takes"},
            "display_name": STR,
            "color": {"type": "string", "description": '"#RRGGBB" or "#RRGGBBAA", or ""'},
            "description": STR,
            "components": _list({"enum": list(ical.COMPONENTS)}),
            "default": {
                "type": "boolean",
                "description": "where new events and accepted invitations go (and pillarbox "
                "import ics without --calendar)",
            },
        }
    ),
    "Token": _obj(
        {"id": INT, "kind": {"enum": ["api", "app-password"]}, "label": STR, "created": STR}
    ),
    "SenderListEntry": _obj(
        {
            "pattern": {
                "type": "string",
                "description": "an address, or a domain (its subdomains too); lowercase, the "
                "domain as its A-label",
            },
            "kind": _SENDER_LIST_KIND,
        },
        ("pattern", "kind"),
    ),
    "SieveScriptInfo": _obj(
        {
            "name": STR,
            "active": BOOL,
            "size": {"type": "integer", "description": "bytes of UTF-8"},
            "generated": {"type": "boolean", "description": "written by the rule builder"},
        }
    ),
    "FilterRule": _obj(
        {
            "name": STR,
            "enabled": BOOL,
            "match": {"enum": ["all", "any"]},
            "conditions": _list(
                _obj(
                    {
                        "field": {"enum": [f.value for f in FIELD_LABELS]},
                        "match": {"enum": [m.value for m in MATCH_LABELS]},
                        "value": {
                            "type": "string",
                            "description": "text; for size a number with K, M or G; for "
                            "matches a pattern (* any text, ? one character, \\ escapes)",
                        },
                        "header": {"type": "string", "description": "field name (header only)"},
                    },
                    ("field", "match", "value"),
                ),
                MAX_RULE_PARTS,
            ),
            "actions": _list(
                _obj(
                    {
                        "action": {"enum": [a.value for a in ACTION_LABELS]},
                        "target": {
                            "type": "string",
                            "description": "folder (move, copy) or address (redirect*)",
                        },
                    },
                    ("action",),
                ),
                MAX_RULE_PARTS,
            ),
        },
        ("name", "actions"),
    ),
}

_ACTIONS = ["read", "unread", "flag", "unflag", "move", "delete", "spam", "notspam"]
#: A page or page size: read as the stores' integers are, out of range brought within it.
_PAGE_NUMBER: JsonObject = {
    "type": "integer",
    "minimum": -MAX_FIELD_NUMBER,
    "maximum": MAX_FIELD_NUMBER,
}
_PAGE = ("page", _PAGE_NUMBER, "1-based page (beyond the last: an empty page)")
_LIST_QUERY = (
    _PAGE,
    ("size", _PAGE_NUMBER, "messages per page (brought within 1 and [web] max_page_size)"),
    ("sort", {"enum": [k.value for k in SortKey]}, "default date"),
    ("order", {"enum": ["asc", "desc"]}, "default desc"),
    ("q", STR, 'full-text words; "quoted phrases"'),
    ("from", STR, "sender contains"),
    ("to", STR, "first To/Cc address contains"),
    ("subject", STR, "subject contains"),
    ("since", STR, "YYYY-MM-DD"),
    ("before", STR, "YYYY-MM-DD (inclusive)"),
    ("unseen", STR, "1: unread only"),
    ("flagged", STR, "1: flagged only"),
)

_CONTACT_FIELDS: dict[str, JsonObject] = {
    "display_name": STR,
    "emails": _list(STR, "contacts.max_emails"),
    "phones": _list(STR, "contacts.max_phones"),
    "organization": STR,
    "note": STR,
}
_CONTACT_BODY = _obj(
    {
        **_CONTACT_FIELDS,
        "uid": {"type": "string", "description": "kept if given (an existing one is replaced)"},
    }
)

_IDENTITY_BODY = _obj(
    {"address": STR, "display_name": STR, "reply_to": STR, "signature": STR, "is_default": BOOL},
    ("address",),
)

OPERATIONS: tuple[Operation, ...] = (
    Operation("GET", "/me", me, "The authenticated account", "account", _ref("Account")),
    Operation(
        "GET", "/mailboxes", list_mailboxes, "Folders with counts", "mail", _list(_ref("Mailbox"))
    ),
    Operation(
        "POST",
        "/mailboxes",
        create_mailbox,
        "Create a folder",
        "mail",
        _obj({"id": INT, "name": STR}),
        _obj({"name": STR}, ("name",)),
        status=201,
    ),
    Operation(
        "PATCH",
        "/mailboxes/{mailbox:int}",
        rename_mailbox,
        "Rename a folder",
        "mail",
        OK,
        _obj({"name": STR}, ("name",)),
    ),
    Operation("DELETE", "/mailboxes/{mailbox:int}", delete_mailbox, "Delete a folder", "mail", OK),
    Operation(
        "GET",
        "/mailboxes/{mailbox:int}/messages",
        list_messages,
        "A page of messages, sorted, filtered, searched",
        "mail",
        _ref("MessagePage"),
        query=_LIST_QUERY,
    ),
    Operation(
        "GET",
        "/mailboxes/{mailbox:int}/threads",
        list_threads,
        "A page of conversations (the messages sharing an RFC 8474 THREADID, replies placed "
        "by RFC 5256 REFERENCES), newest activity first",
        "mail",
        _obj(
            {
                "threads": INT,
                "messages": INT,
                "page": INT,
                "pages": INT,
                "conversations": _list(
                    _obj(
                        {
                            "thread": STR,
                            "messages": _list(
                                {"allOf": [_ref("MessageSummary"), _obj({"depth": INT})]}
                            ),
                            "more": INT,
                            "unread": INT,
                        }
                    )
                ),
            }
        ),
        query=(
            _PAGE,
            ("size", _PAGE_NUMBER, "about this many messages per page (whole threads)"),
        ),
    ),
    Operation(
        "GET",
        "/mailboxes/{mailbox:int}/messages/{uid:int}",
        get_message,
        "One message (marks it read unless mark_seen=0)",
        "mail",
        _ref("Message"),
        query=(("mark_seen", STR, "0: leave unread"),),
    ),
    Operation(
        "GET",
        "/mailboxes/{mailbox:int}/messages/{uid:int}/raw",
        raw_message,
        "The message as stored (message/rfc822)",
        "mail",
        STR,
        media_type="message/rfc822",
    ),
    Operation(
        "GET",
        "/mailboxes/{mailbox:int}/messages/{uid:int}/parts/{section}",
        message_part,
        "An attachment (decoded, as a download)",
        "mail",
        STR,
        media_type="application/octet-stream",
    ),
    Operation(
        "POST",
        "/mailboxes/{mailbox:int}/actions",
        act,
        "Flag, move, delete, or mark spam many messages",
        "mail",
        OK,
        _obj(
            {"action": {"enum": _ACTIONS}, "uids": _list(ID, "web.max_action_uids"), "target": ID},
            ("action", "uids"),
        ),
    ),
    Operation(
        "POST", "/mailboxes/{mailbox:int}/empty", empty_mailbox, "Empty Trash or Junk", "mail", OK
    ),
    Operation(
        "GET",
        "/mailboxes/{mailbox:int}/acl",
        get_acl,
        "Who may use a folder (RFC 4314 GETACL; needs the a right)",
        "sharing",
        _ref("Sharing"),
    ),
    Operation(
        "PUT",
        "/mailboxes/{mailbox:int}/acl/{identifier}",
        put_acl,
        "Share a folder: give an account of this server (or anyone) exactly these rights, "
        "or with -identifier take exactly these away",
        "sharing",
        _ref("Sharing"),
        _obj(
            {
                "rights": {
                    "type": "string",
                    "description": "RFC 4314 letters, e.g. lr (read only), lrs (read and mark "
                    "read), lrswite (read/write), lrswipkxtea (full)",
                }
            },
            ("rights",),
        ),
    ),
    Operation(
        "DELETE",
        "/mailboxes/{mailbox:int}/acl/{identifier}",
        delete_acl,
        "Stop sharing a folder with someone (-identifier: remove what takes rights away)",
        "sharing",
        _ref("Sharing"),
    ),
    Operation(
        "POST",
        "/send",
        send,
        "Send a message (same path as SMTP submission; copy in Sent)",
        "mail",
        _obj({"sent": BOOL, "warning": STR}),
        _ref("Draft"),
    ),
    Operation(
        "POST",
        "/drafts",
        save_draft,
        "Save a draft to Drafts",
        "mail",
        _obj({"mailbox": INT, "uid": INT, "keep": _list(STR)}),
        _ref("Draft"),
        status=201,
    ),
    Operation(
        "GET",
        "/addresses",
        addresses,
        f"Recipient completion: up to {COMPLETION_LIMIT} recipients, the account's contacts "
        "(name <address>) first, then addresses it wrote to",
        "mail",
        _obj({"addresses": _list(STR)}),
        query=(
            (
                "prefix",
                {"type": "string", "maxLength": MAX_COMPLETION_PREFIX},
                "what was typed (any case): the start of an address it wrote to, or part of a "
                "contact's name, address or organisation",
            ),
        ),
    ),
    Operation(
        "GET",
        "/identities",
        list_identities,
        "Addresses to send as, with their signatures (the default first)",
        "account",
        _list(_ref("Identity")),
    ),
    Operation(
        "POST",
        "/identities",
        add_identity,
        "Add an identity (an address the account may send as)",
        "account",
        _ref("Identity"),
        _IDENTITY_BODY,
        status=201,
    ),
    Operation(
        "PUT",
        "/identities/{identity:int}",
        put_identity,
        "Change an identity",
        "account",
        _ref("Identity"),
        _IDENTITY_BODY,
    ),
    Operation(
        "DELETE",
        "/identities/{identity:int}",
        delete_identity,
        "Remove an identity",
        "account",
        OK,
    ),
    Operation(
        "GET",
        "/contacts",
        list_contacts,
        "The address book, by name; q: only those whose name, address or organisation contains it",
        "contacts",
        _list(_ref("Contact")),
        query=(
            (
                "q",
                {"type": "string", "maxLength": contact_ops.MAX_SEARCH},
                "search text (any case)",
            ),
        ),
    ),
    Operation(
        "POST",
        "/contacts",
        add_contact,
        "Add a contact (a name or an address at least)",
        "contacts",
        _ref("Contact"),
        _CONTACT_BODY,
        status=201,
    ),
    Operation(
        "GET",
        "/contacts/export",
        export_contacts,
        "Every contact as one vCard 4.0 file (text/vcard)",
        "contacts",
        STR,
        media_type=contact_ops.VCARD_TYPE,
    ),
    Operation(
        "POST",
        "/contacts/import",
        import_contacts,
        "Import a .vcf file (vCard 2.1/3.0/4.0; a card whose UID is there replaces that "
        "contact): cards stored, already stored as they are (left alone), and skipped with why",
        "contacts",
        _obj({"imported": INT, "unchanged": INT, "skipped": INT, "reasons": _list(STR)}),
        _obj({"vcard": {"type": "string", "description": "the file's text"}}, ("vcard",)),
    ),
    Operation(
        "GET", "/contacts/{contact:int}", get_contact, "One contact", "contacts", _ref("Contact")
    ),
    Operation(
        "PUT",
        "/contacts/{contact:int}",
        put_contact,
        "Replace a contact's fields (its UID stays)",
        "contacts",
        _ref("Contact"),
        _obj(_CONTACT_FIELDS),
    ),
    Operation(
        "DELETE", "/contacts/{contact:int}", delete_contact, "Delete a contact", "contacts", OK
    ),
    Operation(
        "GET",
        "/calendars",
        list_calendars,
        "The account's calendars, by name: the names import and export take",
        "calendars",
        _list(_ref("Calendar")),
    ),
    Operation(
        "POST",
        "/calendars/{name}/import",
        import_calendar,
        "Import an .ics file into a calendar (one object per UID, one already there replaced, "
        "none sent to attendees; with create, a calendar the account lacks is made first, "
        "named as the file names its calendar): objects stored, already stored as they are, "
        "and skipped with why",
        "calendars",
        _obj({"imported": INT, "unchanged": INT, "skipped": INT, "reasons": _list(STR)}),
        _obj(
            {
                "ics": {"type": "string", "description": "the file's text"},
                "create": {
                    "type": "boolean",
                    "description": "make the calendar when the account lacks it (as MKCALENDAR)",
                },
            },
            ("ics",),
        ),
    ),
    Operation(
        "GET",
        "/calendars/{name}/export",
        export_calendar,
        "A calendar as one .ics file (text/calendar)",
        "calendars",
        STR,
        media_type=calendarimport.ICS_TYPE,
    ),
    Operation(
        "GET",
        "/settings",
        get_settings,
        "Display name, vacation reply, forwarding, time zone, Junk and Trash retention",
        "account",
        _ref("Settings"),
    ),
    Operation(
        "PUT",
        "/settings/profile",
        put_profile,
        "Set the display name",
        "account",
        OK,
        _obj({"display_name": STR}, ("display_name",)),
    ),
    Operation(
        "PUT",
        "/settings/time-zone",
        put_time_zone,
        "Set the time zone the webmail shows times in (an unknown name is 400)",
        "account",
        _obj({"time_zone": _TIME_ZONE}),
        _obj({"time_zone": _TIME_ZONE}, ("time_zone",)),
    ),
    Operation(
        "PUT",
        "/settings/shortcuts",
        put_shortcuts,
        "Switch the webmail's single-key shortcuts on or off (for the account, in every browser)",
        "account",
        _obj({"shortcuts": _SHORTCUTS}),
        _obj({"shortcuts": _SHORTCUTS}, ("shortcuts",)),
    ),
    Operation(
        "PUT",
        "/settings/vacation",
        put_vacation,
        "Set the vacation auto-reply",
        "account",
        VACATION,
        VACATION,
    ),
    Operation(
        "PUT",
        "/settings/retention",
        put_retention,
        "Set how long Junk and Trash keep mail (days after it was put there)",
        "account",
        _ref("Retention"),
        _obj(
            {
                "junk_days": {
                    "type": ["integer", "null"],
                    "minimum": 0,
                    "description": "null or absent: the server's days; 0: until deleted; "
                    "at most the server's max_days",
                },
                "trash_days": {
                    "type": ["integer", "null"],
                    "minimum": 0,
                    "description": "the same for Trash",
                },
            }
        ),
    ),
    Operation("GET", "/quota", get_quota, "Quota usage", "account", _ref("Quota")),
    Operation(
        "PUT",
        "/settings/forwarding",
        put_forwarding,
        "Set forwarding",
        "account",
        FORWARDING,
        FORWARDING,
    ),
    Operation(
        "POST",
        "/password",
        change_password,
        "Change the password",
        "account",
        OK,
        _obj({"current": STR, "new": STR}, ("current", "new")),
    ),
    Operation(
        "GET",
        "/tokens",
        list_tokens,
        "App passwords and API tokens",
        "account",
        _list(_ref("Token")),
    ),
    Operation(
        "POST",
        "/tokens",
        create_token,
        "Issue an app password or API token (secret shown once)",
        "account",
        {"allOf": [_ref("Token"), _obj({"secret": STR})]},
        _obj({"kind": {"enum": ["api", "app-password"]}, "label": STR}),
        status=201,
    ),
    Operation("DELETE", "/tokens/{token:int}", revoke_token, "Revoke a token", "account", OK),
    Operation(
        "GET",
        "/sender-lists",
        list_sender_entries,
        "The spam filter's allowed and blocked senders, by pattern",
        "account",
        _list(_ref("SenderListEntry")),
    ),
    Operation(
        "PUT",
        "/sender-lists/{pattern}",
        put_sender_entry,
        "Allow or block a sender (an address or a domain; an entry there changes kind; at "
        "most [policy] max_sender_entries; a public suffix is never allowed)",
        "account",
        _ref("SenderListEntry"),
        _obj({"kind": _SENDER_LIST_KIND}, ("kind",)),
    ),
    Operation(
        "DELETE",
        "/sender-lists/{pattern}",
        remove_sender_entry,
        "Take a sender off the allow or block list",
        "account",
        OK,
    ),
    Operation(
        "GET",
        "/sieve/scripts",
        list_scripts,
        "Sieve filter scripts (at most one active)",
        "filters",
        _list(_ref("SieveScriptInfo")),
    ),
    Operation(
        "GET",
        "/sieve/scripts/{name:path}",
        get_script,
        "One script's text, version, and its rules if the rule builder wrote it",
        "filters",
        {
            "allOf": [
                _ref("SieveScriptInfo"),
                _obj(
                    {
                        "content": STR,
                        "version": STR,
                        "rules": {"oneOf": [{"type": "null"}, _list(_ref("FilterRule"))]},
                    }
                ),
            ]
        },
    ),
    Operation(
        "PUT",
        "/sieve/scripts/{name:path}",
        put_script,
        "Create or replace a script (compiled first: 400 with line on error; version: "
        "409 if the script changed since; quotas from [sieve])",
        "filters",
        {"allOf": [_ref("SieveScriptInfo"), _obj({"version": STR})]},
        _obj(
            {"content": STR, "active": BOOL, "version": {"type": ["string", "null"]}},
            ("content",),
        ),
    ),
    Operation(
        "DELETE",
        "/sieve/scripts/{name:path}",
        delete_script,
        "Delete a script",
        "filters",
        OK,
    ),
    Operation(
        "PUT",
        "/sieve/active",
        put_active,
        "Activate a script (name null: filtering off)",
        "filters",
        OK,
        _obj({"name": {"type": ["string", "null"]}}, ("name",)),
    ),
    Operation(
        "GET",
        "/sieve/rules",
        get_rules,
        "The rule builder's rules (null when its script was edited by hand)",
        "filters",
        _obj(
            {
                "script": STR,
                "rules": {"oneOf": [{"type": "null"}, _list(_ref("FilterRule"))]},
                "active": BOOL,
                "version": STR,
                "hand_written": {"type": ["string", "null"]},
            }
        ),
    ),
    Operation(
        "PUT",
        "/sieve/rules",
        put_rules,
        "Replace the rules: stored as a generated Sieve script and activated",
        "filters",
        _obj({"rules": _list(_ref("FilterRule")), "version": STR}),
        _obj(
            {
                "rules": _list(_ref("FilterRule"), MAX_RULES),
                "version": {"type": ["string", "null"]},
                "take_over": {
                    "type": "boolean",
                    "description": "activate the rules even if another script is active "
                    "(it stays stored); without it that is refused with 409",
                },
            },
            ("rules",),
        ),
    ),
    Operation(
        "GET",
        "/client-setup",
        client_setup,
        "Servers and ports for mail programs",
        "account",
        _list(_obj({"protocol": STR, "host": STR, "port": INT, "security": STR})),
    ),
    Operation(
        "GET",
        "/admin/dashboard",
        admin_dashboard,
        "Counts of domains, accounts, storage and queue",
        "admin",
        _obj(
            {
                **dict.fromkeys(
                    (
                        "domains",
                        "accounts",
                        "aliases",
                        "stored_messages",
                        "stored_bytes",
                        "queued_messages",
                    ),
                    INT,
                ),
                "queued_recipients": _obj(
                    dict.fromkeys((state.value for state in RecipientState), INT)
                ),
            }
        ),
        admin=True,
    ),
    Operation(
        "GET",
        "/admin/activity",
        admin_activity,
        "Mail per UTC hour (range=48h) or day (range=30d): delivered, spam, sent, queued",
        "admin",
        _obj(
            {
                "range": STR,
                "step_seconds": INT,
                "intervals": _list(
                    _obj(
                        {
                            "start": STR,
                            "delivered": INT,
                            "junk": INT,
                            "sent": INT,
                            "queued": INT,
                        }
                    )
                ),
            }
        ),
        query=(("range", {"enum": list(admin_ops.ACTIVITY_RANGES)}, "default 48h"),),
        admin=True,
    ),
    Operation(
        "GET",
        "/admin/domains",
        admin_domains,
        "Hosted domains",
        "admin",
        _list(_obj({"name": STR, "created": STR})),
        admin=True,
    ),
    Operation(
        "POST",
        "/admin/domains",
        admin_add_domain,
        "Add a domain",
        "admin",
        _obj({"name": STR}),
        _obj({"name": STR}, ("name",)),
        admin=True,
        status=201,
    ),
    Operation(
        "DELETE",
        "/admin/domains/{name}",
        admin_remove_domain,
        "Remove a domain (refused while in use)",
        "admin",
        OK,
        admin=True,
    ),
    Operation(
        "GET",
        "/admin/domains/{name}/dns",
        admin_domain_dns,
        "DNS records to publish",
        "admin",
        _obj(
            {
                "domain": STR,
                "records": _list(DNS_RECORD),
                "tlsa": _nullable(
                    DNS_RECORD, "the MX host's DANE TLSA (RFC 7672), when its key stays"
                ),
                "no_tlsa": {
                    "type": "string",
                    "description": "why no TLSA is offered (empty when one is)",
                },
                "dnskey": _nullable(DNS_RECORD, "the zone's active key, when dns.dnssec signs it"),
                "ds": _nullable(
                    DNS_RECORD, "the active key's DS record for the registrar (RFC 4034 §5)"
                ),
                "dnskeys": {
                    **_list(DNS_RECORD),
                    "description": "the zone's DNSKEY RRset: the active key, and during a key "
                    "rollover the next or previous one (purpose: its state)",
                },
                "ds_records": {
                    **_list(DNS_RECORD),
                    "description": "every DS the parent should publish now, each purpose "
                    "saying what to do with it and when (`pillarbox dns rollover`)",
                },
                "cds_records": {
                    **_list(DNS_RECORD),
                    "description": "the CDS and CDNSKEY records the server publishes for a "
                    "parent that scans (RFC 7344, 8078; dns.dnssec_cds); empty when none",
                },
                "zone": {
                    "type": "string",
                    "description": "what `pillarbox dns records` prints: the records, the "
                    "TLSA, the DNSKEY and the DS as a zone-file fragment",
                },
                "mta_sts_policy": {
                    "type": "string",
                    "description": "the text served at https://mta-sts.<domain>/.well-known/"
                    "mta-sts.txt (RFC 8461 §3.2)",
                },
            }
        ),
        admin=True,
    ),
    Operation(
        "GET",
        "/admin/domains/{name}/reports",
        admin_domain_reports,
        "DMARC and TLS reports received about the domain",
        "admin",
        _obj(
            {
                "domain": STR,
                "days": INT,
                "sources": _list(
                    _obj(
                        {
                            "kind": STR,
                            "source": STR,
                            "messages": INT,
                            "passed": INT,
                            "failed": INT,
                            "reports": INT,
                        }
                    )
                ),
                "reports": _list(RECEIVED_REPORT),
            }
        ),
        query=(
            (
                "days",
                {"type": "integer", "minimum": 1, "maximum": admin_ops.MAX_REPORT_DAYS},
                f"the last this many days (default {receivedreports.DEFAULT_DAYS})",
            ),
        ),
        admin=True,
    ),
    Operation(
        "GET",
        "/admin/accounts",
        admin_accounts,
        "Accounts",
        "admin",
        _list(_ref("Account")),
        admin=True,
    ),
    Operation(
        "POST",
        "/admin/accounts",
        admin_add_account,
        "Add an account",
        "admin",
        _ref("Account"),
        _obj(
            {
                "address": STR,
                "password": STR,
                "display_name": STR,
                "is_admin": BOOL,
                "quota_bytes": QUOTA,
                "quota_messages": QUOTA,
            },
            ("address", "password"),
        ),
        admin=True,
        status=201,
    ),
    Operation(
        "DELETE",
        "/admin/accounts/{address}",
        admin_remove_account,
        "Remove an account and its mail",
        "admin",
        OK,
        admin=True,
    ),
    Operation(
        "PUT",
        "/admin/accounts/{address}/password",
        admin_set_password,
        "Reset a password",
        "admin",
        OK,
        _obj({"password": STR}, ("password",)),
        admin=True,
    ),
    Operation(
        "PUT",
        "/admin/accounts/{address}/quota",
        admin_set_quota,
        "Set quotas (null: unlimited)",
        "admin",
        OK,
        _obj({"quota_bytes": QUOTA, "quota_messages": QUOTA}),
        admin=True,
    ),
    Operation(
        "GET",
        "/admin/accounts/{address}/sending-limits",
        admin_sending_limits,
        "Sending limits and what the account sent in the last 24 hours",
        "admin",
        SENDING_STATE,
        admin=True,
    ),
    Operation(
        "PUT",
        "/admin/accounts/{address}/sending-limits",
        admin_set_sending_limits,
        "Set the account's own sending limits (null: the default, 0: unlimited)",
        "admin",
        SENDING_STATE,
        _obj(dict.fromkeys(_SENDING_COUNTS, SENDING_LIMIT)),
        admin=True,
    ),
    Operation(
        "GET",
        "/admin/aliases",
        admin_aliases,
        "Aliases",
        "admin",
        _list(_obj({"address": STR, "targets": _list(STR)})),
        admin=True,
    ),
    Operation(
        "POST",
        "/admin/aliases",
        admin_add_alias,
        "Add an alias (@domain: catch-all)",
        "admin",
        _obj({"address": STR, "targets": _list(STR)}),
        _obj({"address": STR, "targets": _list(STR, MAX_ALIAS_TARGETS)}, ("address", "targets")),
        admin=True,
        status=201,
    ),
    Operation(
        "DELETE",
        "/admin/aliases/{address}",
        admin_remove_alias,
        "Remove an alias",
        "admin",
        OK,
        admin=True,
    ),
    Operation(
        "GET",
        "/admin/queue",
        admin_queue,
        "The outbound queue",
        "admin",
        _list(
            _obj(
                {
                    "id": INT,
                    "sender": STR,
                    "size": INT,
                    "queued_at": STR,
                    "recipients": _list(
                        _obj(
                            {
                                "address": STR,
                                "state": {"enum": [state.value for state in RecipientState]},
                                "attempts": INT,
                                "next_attempt": STR,
                                "last_reply": {"type": ["string", "null"]},
                            }
                        )
                    ),
                }
            )
        ),
        admin=True,
    ),
    Operation(
        "POST",
        "/admin/queue/{message:int}/retry",
        admin_retry,
        "Retry a queued message now",
        "admin",
        OK,
        admin=True,
    ),
    Operation(
        "DELETE",
        "/admin/queue/{message:int}",
        admin_remove_queued,
        "Remove a queued message",
        "admin",
        OK,
        admin=True,
    ),
)

_PATH_PARAM = re.compile(r"\{(\w+)(?::(\w+))?\}")


def _resolved(schema: JsonObject) -> JsonObject:
    ref = schema.get("$ref")
    return SCHEMAS[ref.rsplit("/", 1)[1]] if isinstance(ref, str) else schema


def _links(created: Operation) -> JsonObject:
    """OpenAPI links (§4.8.20) from a creation (201) to the operations on what it made: the
    first parameter of each path below the creation's takes the answer's member of that name,
    else its id (POST /mailboxes → /mailboxes/{mailbox}/…, POST /admin/domains →
    /admin/domains/{name}/…), so that a client — schemathesis's stateful phase — can follow."""
    members = _resolved(created.response).get("properties", {})
    links: JsonObject = {}
    for op in OPERATIONS if created.status == 201 else ():
        below = _PATH_PARAM.match(op.path, len(created.path) + 1)
        if not op.path.startswith(created.path + "/") or below is None:
            continue
        name = below.group(1)
        member = name if name in members else "id" if "id" in members else None
        if member is not None:
            links[op.handler.__name__] = {
                "operationId": op.handler.__name__,
                "parameters": {name: f"$response.body#/{member}"},
            }
    return links


def openapi_document(version: str = "1", config: Config | None = None) -> JsonObject:
    """The OpenAPI document, with the list bounds of ``config`` (None: the defaults)."""
    paths: dict[str, JsonObject] = {}
    for op in OPERATIONS:
        path = PREFIX + _PATH_PARAM.sub(r"{\1}", op.path)
        parameters: list[JsonObject] = [
            {
                "name": name,
                "in": "path",
                "required": True,
                "schema": ID if converter == "int" else STR,
            }
            for name, converter in _PATH_PARAM.findall(op.path)
        ]
        parameters += [
            {"name": n, "in": "query", "schema": schema, "description": d}
            for n, schema, d in op.query
        ]
        entry: JsonObject = {
            "summary": op.summary,
            "tags": [op.tag],
            "operationId": op.handler.__name__,
            "responses": {
                str(op.status): {
                    "description": "success",
                    "content": {op.media_type.split(";")[0]: {"schema": op.response}},
                },
                "default": {
                    "description": "error",
                    "content": {"application/json": {"schema": _ref("Error")}},
                },
            },
        }
        if parameters:
            entry["parameters"] = parameters
        if op.body is not None:
            entry["requestBody"] = {
                # A body without required members may be left out: it reads as {}.
                "required": bool(_resolved(op.body).get("required")),
                "content": {"application/json": {"schema": op.body}},
            }
        if links := _links(op):
            entry["responses"][str(op.status)]["links"] = links
        if op.admin:
            entry["description"] = "Administrators only."
        paths.setdefault(path, {})[op.method.lower()] = entry
    document: JsonObject = {
        "openapi": "3.1.0",
        "info": {"title": "Pillarbox API", "version": version},
        "servers": [{"url": "/"}],
        "security": [{"bearer": []}, {"session": [], "csrf": []}],
        "components": {
            "schemas": SCHEMAS,
            "securitySchemes": {
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "API token (needs no two-factor code: issue it from the "
                    "settings of a fully logged-in session; revoke it there)",
                },
                "session": {"type": "apiKey", "in": "cookie", "name": "pb_session"},
                "csrf": {"type": "apiKey", "in": "header", "name": "X-CSRF-Token"},
            },
        },
        "paths": paths,
    }
    return cast(JsonObject, _limited(document, config or Config()))


# -- dispatch --------------------------------------------------------------------------------------


async def api_account(request: Request) -> Account:
    """The caller: by bearer token, else by session (+ CSRF header unless GET)."""
    app = web(request)
    authorization = request.headers.get("authorization", "")
    if authorization:
        scheme, _, secret = authorization.partition(" ")
        if scheme.lower() != "bearer" or not secret.strip():
            raise AuthenticationFailed("use Authorization: Bearer <API token>")
        return await account_ops.token_account(app.services, secret)
    account = await current_account(request)
    if account is None:
        raise LoginRequired()
    if request.method != "GET" and not app.codec.csrf_valid(
        request.state.session, request.headers.get(CSRF_HEADER)
    ):
        raise HTTPException(403, "missing or stale X-CSRF-Token")
    return account


def _stored_integer(checker: object, instance: object) -> bool:
    """JSON Schema's "integer" as the stores hold one: an ``int`` (:func:`_json_number` made
    ``1.0`` one; a bool is none, though Python says so) within their 64 bits, so that no
    integer beyond them reaches a handler, whether or not its schema bounds it."""
    return (
        isinstance(instance, int)
        and not isinstance(instance, bool)
        and abs(instance) <= MAX_FIELD_NUMBER
    )


#: Draft 2020-12, the dialect of OpenAPI 3.1, with the stores' integers.
_Validator = validators.extend(
    Draft202012Validator,
    type_checker=Draft202012Validator.TYPE_CHECKER.redefine("integer", _stored_integer),
)


def _validator(schema: JsonObject, config: Config, components: JsonObject) -> Any:
    """A validator of ``schema`` (its list bounds ``config``'s), with the document's
    ``components`` beside it, bounded once for every operation (:func:`routes`): where its
    ``#/components/schemas/…`` references point, as they do in the document."""
    return _Validator({**_limited(schema, config), "components": components})


def _overlong(schema: JsonObject, value: object, name: str, schemas: JsonObject) -> str | None:
    """The first list of ``value`` longer than its schema's ``maxItems``, as a refusal, or
    None: looked at before the validator walks the items (it checks every item first, some
    10 µs each: a 1 MiB body of 500,000 uids held a worker 6.5 s before its bound refused
    it). ``schemas``: the components its references point to."""
    ref = schema.get("$ref")
    if isinstance(ref, str):
        schema = schemas[ref.rsplit("/", 1)[1]]
    for alternative in (*schema.get("allOf", ()), *schema.get("oneOf", ())):
        if (why := _overlong(alternative, value, name, schemas)) is not None:
            return why
    if isinstance(value, list) and "items" in schema:
        limit = schema.get("maxItems")
        if limit is not None and len(value) > limit:
            return f"{name} holds more than {limit} items"
        for index, item in enumerate(value):
            if (why := _overlong(schema["items"], item, f"{name}[{index}]", schemas)) is not None:
                return why
    elif isinstance(value, dict):
        for key, member in schema.get("properties", {}).items():
            why = (
                None
                if key not in value
                else _overlong(member, value[key], _member(name, key), schemas)
            )
            if why is not None:
                return why
    return None


#: How an error names a value of each type: one, and several (a list's items).
_TYPE_WORDS = {
    "string": ("a string", "strings"),
    "integer": ("an integer", "integers"),
    "number": ("a number", "numbers"),
    "boolean": ("true or false", "true or false values"),
    "array": ("a list", "lists"),
    "object": ("an object", "objects"),
    "null": ("null", "nulls"),
}


def _types(schema: JsonObject) -> list[str]:
    kinds = schema.get("type", [])
    return [kinds] if isinstance(kinds, str) else list(kinds)


def _described(schema: JsonObject, *, many: bool = False) -> str:
    """What ``schema`` wants, for an error: "a list of strings", "an integer or null"."""
    schema = _resolved(schema)
    if "enum" in schema:
        return "one of " + ", ".join(f"'{v}'" for v in schema["enum"])
    words = []
    for kind in _types(schema):
        if kind == "array" and not many:
            words.append("a list of " + _described(schema.get("items", {}), many=True))
        else:
            words.append(_TYPE_WORDS[kind][many])
    return " or ".join(words) or ("values" if many else "a value")


def _member(name: str, key: str) -> str:
    return f"{name}.{key}" if name else key


def _beyond_stores(value: object) -> bool:
    """Whether ``value`` is a number with no fractional part (JSON Schema's integer: ``7E99``
    is one; :func:`_json_integer` reads a longer one as ``inf``) beyond the stores' integers."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    integral = isinstance(value, int) or math.isinf(value) or value.is_integer()
    return integral and abs(value) > MAX_FIELD_NUMBER


def _refusal(validator: Any, value: object) -> str | None:
    """Why ``value`` (parsed JSON, or the query parameters) does not match the validator's
    schema, naming the member (``uids[0] must be an integer``), or None. Of several errors the
    library's best match: the shallowest (``action is required`` before ``uids[0]…``); of
    siblings, the one its heuristic picks. Members the schema does not name are ignored."""
    error = best_match(validator.iter_errors(value))
    if error is None:
        return None
    name = ""
    for step in error.absolute_path:
        name = f"{name}[{step}]" if isinstance(step, int) else _member(name, step)
    schema: JsonObject = error.schema
    if error.validator == "required":
        missing = next(key for key in error.validator_value if key not in error.instance)
        return f"{_member(name, missing)} is required"
    if _beyond_stores(error.instance) and "integer" in _types(schema):
        return f"{name} must be below 2^63"
    if error.validator in ("minimum", "maximum"):
        low, high = schema.get("minimum"), schema.get("maximum")
        if high is None:
            return f"{name} must be at least {low}"
        if low is None:
            return f"{name} must be at most {high}"
        return f"{name} must be {low} to {high}"
    if error.validator == "maxLength":
        return f"{name} is longer than {error.validator_value} characters"
    return f"{name} must be {_described(schema)}"  # type, enum


def _json_number(text: str) -> int | float:
    """A JSON number written with a fraction or an exponent: an integer when it has no
    fractional part (``1.0``, ``1E2``), as JSON Schema counts it (validation vocabulary
    §6.1.1: "integer" matches any number with a zero fractional part), else a float. Its
    magnitude is looked at first: ``1e999999999`` is no integer to build."""
    number = Decimal(text)
    integral = number.adjusted() <= 18 and number == number.to_integral_value()
    if integral and abs(number) <= MAX_FIELD_NUMBER:
        return int(number)
    return float(text)


#: Digits of the longest stored integer.
_STORED_DIGITS = len(str(MAX_FIELD_NUMBER))


def _json_integer(text: str) -> int | float:
    """A JSON number of digits alone (or an integer query parameter's): an ``int`` unless it
    has more digits than any stored integer, then its float (``inf`` when huge), beyond the
    stores as it is — ``int()`` would spend time on a long one, and refuses 4301 digits."""
    return int(text) if len(text.lstrip("-")) <= _STORED_DIGITS else float(text)


_QUERY_INTEGER = re.compile(r"-?[0-9]+")


class _Refused(Exception):
    """A request the document refuses (400), and why."""


@dataclass(frozen=True, slots=True)
class _RequestCheck:
    """What an operation's request is held to before its handler runs: its body's and query
    parameters' schemas in the document, each validator built once, with its route."""

    body: Any  # a validator, or None: the operation reads no body
    query: Any
    integers: frozenset[str]  # the integer query parameters

    @classmethod
    def of(cls, op: Operation, config: Config, components: JsonObject) -> _RequestCheck:
        query = _obj({name: schema for name, schema, _ in op.query})
        return cls(
            body=None if op.body is None else _validator(op.body, config, components),
            query=_validator(query, config, components),
            integers=frozenset(name for name, schema, _ in op.query if "integer" in _types(schema)),
        )

    def query_refusal(self, query: Mapping[str, str]) -> str | None:
        """Why the query string does not match the operation's parameters, or None. An
        integer parameter is ASCII digits (``int`` also reads "٣" and " 3 "); other text is a
        string, which an integer is not."""
        values: JsonObject = dict(query)
        for name in self.integers & values.keys():
            if _QUERY_INTEGER.fullmatch(values[name]):
                values[name] = _json_integer(values[name])
        return _refusal(self.query, values)

    def read_body(self, raw: bytes) -> JsonObject:
        """The body (an empty one reads as ``{}``), parsed and held to the document; else
        :class:`_Refused`. Work in proportion to the body (some 10 µs an item of a list):
        a large one is read off the event loop."""
        try:
            body = json.loads(raw or b"{}", parse_float=_json_number, parse_int=_json_integer)
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise _Refused("the body must be JSON") from None
        if not isinstance(body, dict):
            raise _Refused("the body must be a JSON object")
        schema = self.body.schema
        if (why := _overlong(schema, body, "", schema["components"]["schemas"])) is not None:
            raise _Refused(why)
        if _holds_nul(body):
            # JSON writes NUL as \u0000; no field means one, and PostgreSQL's text cannot hold it.
            raise _Refused("the body holds a NUL character")
        if (why := _refusal(self.body, body)) is not None:
            raise _Refused(why)
        return body


def _holds_nul(value: object) -> bool:
    """Whether a string of the parsed JSON ``value``, key or value, holds NUL."""
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_holds_nul(k) or _holds_nul(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_holds_nul(v) for v in value)
    return False


def _refused(op: Operation, status: int, why: str) -> Response:
    _log.info("api request refused", reason=why, path=op.path, status=status)
    return JSONResponse({"error": why}, status_code=status)


def _endpoint(
    operations: Mapping[str, Operation], config: Config, components: JsonObject
) -> Callable[[Request], Awaitable[Response]]:
    """The one endpoint of a path: its operation by method (HEAD is GET's, as Starlette
    routes it), so that a method the path lacks is answered once, 405 with every method it
    has in ``Allow``."""
    checks = {method: _RequestCheck.of(op, config, components) for method, op in operations.items()}

    async def endpoint(request: Request) -> Response:
        method = "GET" if request.method == "HEAD" else request.method
        op, check = operations[method], checks[method]
        try:
            account = await api_account(request)
        except AuthenticationFailed as exc:
            return JSONResponse({"error": str(exc)}, status_code=401)
        if op.admin and not account.is_admin:
            return JSONResponse({"error": "administrators only"}, status_code=403)
        if any(isinstance(v, int) and v > MAX_FIELD_NUMBER for v in request.path_params.values()):
            # No such id can be stored; the store's integer would overflow.
            return _refused(op, 404, "not found")
        if (why := check.query_refusal(request.query_params)) is not None:
            return _refused(op, 400, why)
        body: JsonObject = {}
        if check.body is not None:
            raw = await request.body()
            try:
                body = await run_sized(len(raw), check.read_body, raw)
            except _Refused as exc:
                return _refused(op, 400, str(exc))
        try:
            result = await op.handler(Call(request, web(request), account, body))
        except (AlreadyExists, filter_ops.Conflict) as exc:
            return JSONResponse({"error": str(exc)}, status_code=409)
        except InvalidScript as exc:
            line = {"line": exc.line} if exc.line else {}
            return JSONResponse({"error": str(exc), **line}, status_code=400)
        if isinstance(result, Response):
            return result
        return JSONResponse(result, status_code=op.status)

    return endpoint


async def openapi(request: Request) -> Response:
    return JSONResponse(openapi_document(config=web(request).services.config))


def routes(config: Config) -> list[BaseRoute]:
    """The API's routes, each request held to the document ``config``'s bounds make."""
    by_path: dict[str, dict[str, Operation]] = {}
    for op in OPERATIONS:
        by_path.setdefault(op.path, {})[op.method] = op
    # The components every validator resolves its references in, bounded once: a copy per
    # operation was most of the cost of making the web app (each server start and test).
    components = {"schemas": _limited(SCHEMAS, config)}
    table: list[BaseRoute] = [Route(PREFIX + "/openapi.json", openapi)]
    table += [
        Route(
            PREFIX + path, _endpoint(ops, config, components), methods=list(ops), name=f"api:{path}"
        )
        for path, ops in by_path.items()
    ]
    return table
