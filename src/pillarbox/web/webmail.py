"""Webmail pages: login, folders, message list, message view, actions, compose.

Every page is plain server-rendered HTML with forms that work without JavaScript;
``static/app.js`` adds keyboard navigation, live updates and draft keeping on top.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from urllib.parse import urlencode, urlsplit

from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import BaseRoute, Route

from pillarbox.blocking import run_blocking
from pillarbox.errors import AuthenticationFailed, NotFound, RateLimited, UserError
from pillarbox.mail.model import MessageInfo
from pillarbox.mail.parse import UnknownTransferEncoding, decoded_part, part_text
from pillarbox.mail.people import people
from pillarbox.store.types import INBOX, Identity, Mailbox, MessageQuery, SortKey, SpecialUse
from pillarbox.web import identities, twofactor
from pillarbox.web.app import (
    UNKEPT_REASON,
    client_ip,
    current_account,
    end_session,
    field_number,
    field_text,
    next_target,
    posted_form,
    redirect,
    refused,
    require_account,
    sealed,
    set_session,
    unconfirmed,
    unsealed,
    web,
)
from pillarbox.web.composeform import CARRIED, carried_fields, draft_from_form, kept_in_drafts
from pillarbox.web.composing import (
    DRAFT_ORIGIN,
    Draft,
    draft_from_message,
    forward_draft,
    kept_of,
    reply_draft,
)
from pillarbox.web.downloads import foreign_content
from pillarbox.web.mailaccess import (
    FLAGGED,
    NEEDS,
    SEEN,
    Folder,
    MailAccess,
    Opened,
    Page,
    ThreadedPage,
)
from pillarbox.web.mailreturn import MAIL_PAGE, NOTICE_PARAMS, mail_page, noticed
from pillarbox.web.reading import (
    authentication_results,
    body_parts,
    header_values,
    part_at,
    section_of_content_id,
    spam_verdict,
)
from pillarbox.web.richtext import sanitize_composed
from pillarbox.web.sanitize import (
    FRAME_SANDBOX,
    SafeHtml,
    frame_csp,
    frame_document,
    sanitize_html,
)
from pillarbox.web.zone import reader_zone, when

#: Parts served inline under their own type; everything else is a download.
_INLINE_IMAGES = frozenset({"image/png", "image/jpeg", "image/gif", "image/webp", "image/bmp"})
#: Actions after which the message view would be wrong (gone, or marked read again).
_LEAVES_MESSAGE = frozenset({"delete", "move", "spam", "notspam", "unread"})
#: What the page after a list or message action says was done: ``done`` in its query names one
#: of these, ``count`` how many messages, ``to`` a move's folder. Only these fixed texts and
#: the account's own folder names are shown, never text from the query.
_DONE = {
    "read": "marked read",
    "unread": "marked unread",
    "flag": "flagged",
    "unflag": "unflagged",
    "trash": "moved to Trash",
    "expunge": "deleted for good",
    "junk": "moved to Junk",
    "inbox": "moved to the Inbox",
    "move": "moved to {folder}",
}
#: Notices of an action on the message's sender, not on messages (no count).
_DONE_SENDER = {
    "blocked": "Sender blocked: their mail goes to Junk from now on "
    "(Settings, “Allowed and blocked senders”, to undo).",
}
#: Folders of one's own messages: their list names the recipients where others name the sender.
_OWN_MAIL = frozenset({SpecialUse.SENT, SpecialUse.DRAFTS})
#: Folders whose "Delete" deletes for good (:meth:`MailAccess.delete`).
_GONE_FOR_GOOD = frozenset({SpecialUse.TRASH, SpecialUse.JUNK})
_NOTHING_SELECTED = "No message selected: tick the box beside each message to act on first."
_NO_FOLDER = "Nothing moved: choose the folder to move to first."


# -- list parameters (shared with the JSON API) ----------------------------------------------------


@dataclass(frozen=True, slots=True)
class ListParams:
    """A message list request: paging, order, filters and the full-text box."""

    query: MessageQuery
    text: str
    page: int
    page_size: int

    @property
    def offset(self) -> int:
        return (self.page - 1) * self.page_size

    @property
    def searching(self) -> bool:
        q = self.query
        return bool(
            self.text or q.from_contains or q.to_contains or q.subject_contains
            or q.since or q.before
        )  # fmt: skip

    @property
    def filtered(self) -> bool:
        """Searching or narrowed: the list shows matches, not whole conversations."""
        return self.searching or self.query.unseen or self.query.flagged


def _day(text: str) -> datetime | None:
    try:
        return datetime.strptime(text.strip(), "%Y-%m-%d").replace(tzinfo=UTC)
    except ValueError:
        return None


def _int(text: str | None, default: int, low: int, high: int) -> int:
    try:
        return min(high, max(low, int(text or default)))
    except ValueError:
        return default


def list_params(params: Mapping[str, str], *, page_size: int, max_page_size: int) -> ListParams:
    try:
        sort = SortKey(params.get("sort", "date"))
    except ValueError:
        sort = SortKey.DATE
    before = _day(params.get("before", ""))
    query = MessageQuery(
        sort=sort,
        descending=params.get("order", "desc") != "asc",
        from_contains=params.get("from", "").strip(),
        to_contains=params.get("to", "").strip(),
        subject_contains=params.get("subject", "").strip(),
        since=_day(params.get("since", "")),
        before=before + timedelta(days=1) if before else None,  # "before" includes that day
        unseen=params.get("unseen") == "1",
        flagged=params.get("flagged") == "1",
    )
    size = _int(params.get("size"), page_size, 1, max_page_size)
    return ListParams(
        query, params.get("q", "").strip(), _int(params.get("page"), 1, 1, 10**6), size
    )


# -- login ---------------------------------------------------------------------------------------

_REASONS = {
    "expired": (
        "Your session has ended. Log in again to continue; unsent text is kept in this browser."
    ),
    "stale": "That form had expired. Log in again; your unsent text is kept in this browser.",
    "logged-out": "You are logged out.",
    UNKEPT_REASON: (
        "Your session has ended, and the message you were writing is too long to carry "
        "through the login. With the page's script on, this browser kept a copy: log in, and "
        "the compose page in this tab offers to restore it."
    ),
}


async def login_page(request: Request) -> Response:
    app = web(request)
    if await current_account(request) is not None:
        return redirect(next_target(request.query_params.get("next", "/mail")))
    return app.render(
        request,
        "login.html",
        next=next_target(request.query_params.get("next", "/mail")),
        notice=_REASONS.get(request.query_params.get("reason", ""), ""),
    )


async def login(request: Request) -> Response:
    app = web(request)
    form = await posted_form(request)
    username = field_text(form, "username").strip()
    target = next_target(field_text(form, "next", "/mail"))
    carried = carried_fields(form)
    try:
        account = await app.logins.check_password(
            username, field_text(form, "password"), client_ip(request), interactive=True
        )
    except RateLimited as exc:
        response = app.render(
            request,
            "login.html",
            status_code=429,
            next=target,
            username=username,
            carried=carried,
            error=f"Too many failed attempts. Try again in {math.ceil(exc.retry_after)} seconds.",
        )
        return refused(response, exc)
    except AuthenticationFailed:
        return app.render(
            request,
            "login.html",
            status_code=401,
            next=target,
            username=username,
            carried=carried,
            error="Wrong address or password.",
        )
    if await twofactor.needs_second_factor(app.services, account):
        return await twofactor.password_step(request, account, target, carried)
    if carried:
        target = await kept_in_drafts(MailAccess(app.services, account), carried) or target
    done = redirect(target)
    session = app.codec.login(account.id, account.password_hash, datetime.now(UTC).timestamp())
    set_session(request, done, session)
    return done


async def logout(request: Request) -> Response:
    app = web(request)
    await posted_form(request)
    await end_session(request)
    response = redirect("/login?reason=logged-out")
    set_session(request, response, app.codec.anonymous(datetime.now(UTC).timestamp()))
    return response


async def stay_signed_in(request: Request) -> Response:
    """The warning's "Stay signed in" (WCAG 2.2.1: a time limit can be extended by a simple
    action): the session refreshed now, whatever its age, as a request past half its
    lifetime would. The pages' script asks for JSON (when the session ends now); a form
    posted without it goes back to the page it came from."""
    app = web(request)
    await require_account(request)
    form = await posted_form(request)
    session = app.codec.refreshed(request.state.session, datetime.now(UTC).timestamp())
    request.state.issue_cookie = session
    if "application/json" in request.headers.get("accept", ""):
        return JSONResponse({"ends": app.codec.ends(session)})
    return redirect(next_target(field_text(form, "return_to", "/mail")))


# -- folders and lists -----------------------------------------------------------------------------


async def mail_access(request: Request) -> MailAccess:
    return MailAccess(web(request).services, await require_account(request))


async def home(request: Request) -> Response:
    await require_account(request)
    return redirect("/mail")


async def inbox(request: Request) -> Response:
    access = await mail_access(request)
    query = request.url.query  # a notice (sending returns to "/mail") goes along
    return redirect(f"/mail/{(await access.inbox()).id}" + (f"?{query}" if query else ""))


async def message_list(request: Request) -> Response:
    app = web(request)
    access = await mail_access(request)
    place = await access.place(request.path_params["mailbox"])
    mailbox = place.mailbox
    params = list_params(
        request.query_params,
        page_size=app.limits.page_size,
        max_page_size=app.limits.max_page_size,
    )
    threaded = None
    page = None
    wants_threads = request.query_params.get("view") == "threads"
    if wants_threads and not params.filtered:
        threaded = await access.threaded(mailbox, number=params.page, page_size=params.page_size)
    elif params.searching:
        page = await access.search(
            mailbox, params.text, params.query, offset=params.offset, limit=params.page_size
        )
    else:
        page = await access.page(
            mailbox, params.query, offset=params.offset, limit=params.page_size
        )
    kept = {k: v for k, v in request.query_params.items() if k != "page"}
    if (last := _last_page(params.page, page, threaded, params.page_size)) is not None:
        # Past the end (its last messages were just deleted or moved): the last page, not
        # "No messages" under "51–50 of 50".
        return redirect(f"/mail/{mailbox.id}?" + urlencode({**kept, "page": last}))
    # The page's own links (sort, view, pages) do not say again what the last action did.
    base = {k: v for k, v in kept.items() if k not in NOTICE_PARAMS}
    folders = await access.folders()
    return app.render(
        request,
        "mail.html",
        sent_warning=unsealed(request, "warning"),
        folders=folders,
        mailbox=mailbox,
        place=place,
        page=page,
        threaded=threaded,
        wants_threads=wants_threads,
        params=params,
        query_string=lambda **changes: "?" + urlencode({**base, **changes}),
        targets=move_targets(folders, mailbox.id),
        emptiable=mailbox.special_use in _GONE_FOR_GOOD and place.may("te"),
        verdict=verdict_offered(mailbox, access.account.id),
        forever=mailbox.special_use in _GONE_FOR_GOOD,
        unread=sum(f.status.unseen for f in folders if f.owner is None and f.mailbox.name == INBOX),
        done=done_notice(request.query_params, folders),
        addressed=mailbox.special_use in _OWN_MAIL,
        recipients_of=recipients_of,
    )


def _last_page(
    number: int, page: Page | None, threaded: ThreadedPage | None, page_size: int
) -> int | None:
    """The last page when page ``number`` lies past it; None when it is shown as asked."""
    if threaded is not None:
        return threaded.pages if threaded.pages and number > threaded.pages else None
    if page is None or page.rows or not page.total or number == 1:
        return None
    return math.ceil(page.total / page_size)


def verdict_offered(mailbox: Mailbox, account_id: int) -> str:
    """The spam verdict a folder's messages may be given: "notspam" in Junk, none in one's
    own mail (Sent, Drafts: nobody is taught their own words are spam) nor in a folder shared
    by another account (the verdict would move its owner's message to this account's Junk or
    Inbox), else "spam"."""
    if mailbox.account_id != account_id:
        return ""
    if mailbox.special_use is SpecialUse.JUNK:
        return "notspam"
    return "" if mailbox.special_use in _OWN_MAIL else "spam"


def recipients_of(info: MessageInfo) -> str:
    """Who a message of one's own went to, as a Sent or Drafts list shows it: each To and Cc
    recipient by name, else by address."""
    return ", ".join(p.name or p.address for p in people(info.envelope.to + info.envelope.cc))


def move_targets(folders: list[Folder], source_id: int) -> list[Folder]:
    """Where messages may move: the other folders this account may put messages into ("i",
    RFC 4314 §4; every own folder)."""
    return [f for f in folders if f.mailbox.id != source_id and f.may(NEEDS["arrive"])]


async def _uids(form: FormData, limit: int) -> list[int]:
    uids: list[int] = []
    for value in form.getlist("uid"):
        if (uid := field_number(value)) is not None:
            uids.append(uid)
    if len(uids) > limit:
        raise UserError(f"at most {limit} messages at once")
    return uids


async def actions(request: Request) -> Response:
    app = web(request)
    access = await mail_access(request)
    form = await posted_form(request)
    mailbox_id: int = request.path_params["mailbox"]
    uids = await _uids(form, app.limits.max_action_uids)
    action = field_text(form, "action")
    back = next_target(field_text(form, "back", f"/mail/{mailbox_id}"))
    target = field_text(form, "target")
    if action == "move" and uids and not target:
        await access.mailbox(mailbox_id)  # still 404 for another account's folder
        return redirect(_with_notice(back, "nofolder", 0, ""))
    if action == "delete" and uids:
        source = await access.mailbox(mailbox_id, NEEDS["leave"])
        if source.special_use in _GONE_FOR_GOOD:
            count = f"{len(uids)} message{'' if len(uids) == 1 else 's'}"
            asked = unconfirmed(
                request,
                form,
                what=f"{count} in {source.name} will be deleted for good.",
                button="Delete forever",
                back=back,
            )
            if asked is not None:
                return asked
    await apply_action(access, mailbox_id, uids, action, target)
    if action in _LEAVES_MESSAGE and re.fullmatch(r"/mail/\d+/\d+", back):
        back = f"/mail/{mailbox_id}"  # back to the list: the message left, or would be re-read
    done = await _done_key(access, mailbox_id, action) if uids else "none"
    return redirect(_with_notice(back, done, len(uids), target))


async def _done_key(access: MailAccess, mailbox_id: int, action: str) -> str:
    """The :data:`_DONE` key of an applied action: where a deletion or a spam verdict took
    the messages is worth saying."""
    match action:
        case "delete":
            source = await access.mailbox(mailbox_id, NEEDS["leave"])  # as delete checked
            gone = source.special_use in _GONE_FOR_GOOD
            return "expunge" if gone else "trash"
        case "spam":
            return "junk"
        case "notspam":
            return "inbox"
        case _:
            return action


def _with_notice(back: str, done: str, count: int, target: str) -> str:
    """``back`` with the action's notice fields in its query, an earlier notice's dropped."""
    added = [("done", done)] + ([("count", str(count))] if count else [])
    added += [("to", target)] if done == "move" else []
    return noticed(back, added)


def done_notice(params: Mapping[str, str], folders: list[Folder]) -> str:
    """The sentence saying what the action that led to this page did ("" if none did)."""
    done = params.get("done", "")
    if done == "none":
        return _NOTHING_SELECTED
    if done == "nofolder":
        return _NO_FOLDER
    if done in _DONE_SENDER:
        return _DONE_SENDER[done]
    if (text := _DONE.get(done)) is None:
        return ""
    if done == "move":
        to = params.get("to", "")
        names = [f.label for f in folders if str(f.mailbox.id) == to]
        text = text.format(folder=names[0] if names else "another folder")
    count = _int(params.get("count"), 1, 1, 1_000_000)
    return f"{count} message{'' if count == 1 else 's'} {text}."


async def apply_action(
    access: MailAccess, mailbox_id: int, uids: list[int], action: str, target: str
) -> None:
    """One list action on many messages (also the JSON API's)."""
    if not uids:
        await access.mailbox(mailbox_id)  # still 404 for another account's folder
        return
    match action:
        case "read" | "unread":
            await access.set_flag(mailbox_id, uids, SEEN, action == "read")
        case "flag" | "unflag":
            await access.set_flag(mailbox_id, uids, FLAGGED, action == "flag")
        case "move":
            target_id = field_number(target)
            if target_id is None:
                raise UserError("choose a folder to move to")
            await access.move(mailbox_id, uids, target_id)
        case "delete":
            await access.delete(mailbox_id, uids)
        case "spam" | "notspam":
            await access.mark_junk(mailbox_id, uids, action == "spam")
        case _:
            raise UserError(f"unknown action {action!r}")


async def empty_folder(request: Request) -> Response:
    access = await mail_access(request)
    form = await posted_form(request)
    mailbox_id: int = request.path_params["mailbox"]
    mailbox = await access.emptiable(mailbox_id)
    count = (await access.store.mailbox_status(mailbox.id)).messages
    asked = unconfirmed(
        request,
        form,
        what=f"{'The message' if count == 1 else f'All {count} messages'} in {mailbox.name} "
        "will be deleted for good.",
        button=f"Empty {mailbox.name}",
        back=f"/mail/{mailbox_id}",
    )
    if asked is not None:
        return asked
    await access.empty(mailbox_id)
    return redirect(f"/mail/{mailbox_id}")


async def create_folder(request: Request) -> Response:
    access = await mail_access(request)
    form = await posted_form(request)
    mailbox = await access.create_folder(field_text(form, "name"))
    return redirect(f"/mail/{mailbox.id}")


async def rename_folder(request: Request) -> Response:
    access = await mail_access(request)
    form = await posted_form(request)
    mailbox_id: int = request.path_params["mailbox"]
    name = field_text(form, "name").strip()
    # Rename pressed on the name as the form showed it: nothing to do, not "cannot rename".
    if name != (await access.mailbox(mailbox_id, NEEDS["rename"])).name:
        await access.rename_folder(mailbox_id, name)
    return redirect(f"/mail/{mailbox_id}")


async def delete_folder(request: Request) -> Response:
    access = await mail_access(request)
    form = await posted_form(request)
    mailbox_id: int = request.path_params["mailbox"]
    mailbox = await access.deletable(mailbox_id)
    count = (await access.store.mailbox_status(mailbox.id)).messages
    asked = unconfirmed(
        request,
        form,
        what=f"The folder {mailbox.name} and the {count} message{'' if count == 1 else 's'} in "
        "it will be deleted.",
        button="Delete folder",
        back=f"/mail/{mailbox_id}",
    )
    if asked is not None:
        return asked
    await access.delete_folder(mailbox_id)
    return redirect("/mail")


# -- one message -----------------------------------------------------------------------------------


async def _opened(request: Request) -> tuple[MailAccess, Opened]:
    access = await mail_access(request)
    opened = await access.open(request.path_params["mailbox"], request.path_params["uid"])
    return access, opened


def message_base(opened: Opened) -> str:
    return f"/mail/{opened.mailbox.id}/{opened.record.uid}"


async def safe_html(opened: Opened, *, load_remote: bool, max_tags: int) -> SafeHtml | None:
    """The sanitised HTML body, or None; always off the loop: nh3 releases the GIL, so
    the loop runs on while it works (under half a second at the default ``max_html_tags``,
    see :mod:`.sanitize`)."""
    html_part = body_parts(opened.info).html
    if html_part is None:
        return None
    base = message_base(opened)

    def cid_url(content_id: str) -> str | None:
        section = section_of_content_id(opened.info, content_id)
        return f"{base}/part/{section}?inline=1" if section else None

    text = part_text(opened.raw, html_part)
    return await run_blocking(
        sanitize_html, text, load_remote=load_remote, cid_url=cid_url, max_tags=max_tags
    )


async def message_view(request: Request) -> Response:
    # The invitation box reaches CalDAV's module, whose WebDAV base imports the API, which
    # imports this module: imported when first used.
    from pillarbox.web import invitations

    app = web(request)
    access, opened = await _opened(request)
    await access.mark_seen(opened)
    folders = await access.folders()
    bodies = body_parts(opened.info)
    images = request.query_params.get("images") == "1"
    view = request.query_params.get("view", "")
    max_tags = app.services.config.web.max_html_tags
    html = (
        await safe_html(opened, load_remote=images, max_tags=max_tags) if view != "plain" else None
    )
    envelope = opened.info.envelope
    reference = f"{opened.mailbox.id}:{opened.record.uid}"
    return app.render(
        request,
        "message.html",
        folders=folders,
        mailbox=opened.mailbox,
        opened=opened,
        base=message_base(opened),
        reference=reference,
        sender=people(envelope.from_),
        to=people(envelope.to),
        cc=people(envelope.cc),
        # ENVELOPE's reply-to defaults to From (RFC 9051 §7.5.2): show it only when it differs.
        reply_to=[p for p in people(envelope.reply_to) if p not in people(envelope.from_)],
        date=opened.info.sent_date or opened.record.internal_date,
        auth_results=authentication_results(opened.raw, opened.info, app.services.hostname),
        spam=spam_verdict(opened.raw, opened.info),
        has_html=bodies.html is not None,
        has_plain=bodies.plain is not None,
        html=html,
        images=images,
        text=access.text_of(opened) if html is None else "",
        attachments=[a for a in opened.info.attachments if not (a.inline and a.content_id)],
        thread=await access.thread(opened),
        targets=move_targets(folders, opened.mailbox.id),
        flagged=FLAGGED in opened.record.flags,
        verdict=verdict_offered(opened.mailbox, access.account.id),
        forever=opened.mailbox.special_use in _GONE_FOR_GOOD,
        sandbox=FRAME_SANDBOX,
        defects=opened.info.defects,
        invitation=await invitations.shown(
            app.services, access.account, opened, reader_zone(request)
        ),
        invitation_notice=unsealed(request, "invitation"),
        done=done_notice(request.query_params, folders),
        sent_warning=unsealed(request, "warning"),
    )


async def message_frame(request: Request) -> Response:
    """The HTML body as its own sandboxed document (see :mod:`.sanitize`)."""
    _, opened = await _opened(request)
    images = request.query_params.get("images") == "1"
    max_tags = web(request).services.config.web.max_html_tags
    html = await safe_html(opened, load_remote=images, max_tags=max_tags)
    if html is None:
        raise NotFound("this message has no HTML body")
    response = Response(frame_document(html.html), media_type="text/html; charset=utf-8")
    response.headers["content-security-policy"] = frame_csp(load_remote=images)
    response.headers["cache-control"] = "private, no-store"
    return response


def part_response(opened: Opened, section: str, *, inline: bool) -> Response:
    """One part, transfer-decoded: a download, or (``inline``, images of safe types only)
    shown in place. Served under a sandbox CSP either way."""
    part = part_at(opened.info, section)
    if part is None or part.type == "multipart":
        raise NotFound("no such part")
    try:
        data = decoded_part(opened.raw, part)
    except UnknownTransferEncoding:
        data = opened.raw[part.body_start : part.body_end]
    content_type = f"{part.type}/{part.subtype}"
    known = {a.section: a for a in opened.info.attachments}
    attachment = known.get(section)
    filename = (attachment.filename if attachment else None) or f"part-{section}"
    inline = inline and content_type in _INLINE_IMAGES
    response = Response(data, media_type=content_type if inline else "application/octet-stream")
    foreign_content(response, filename, inline=inline)
    response.headers["cache-control"] = "private, max-age=3600"
    return response


async def message_part(request: Request) -> Response:
    """An attachment (download) or an inline image of the message (``?inline=1``)."""
    _, opened = await _opened(request)
    return part_response(
        opened, request.path_params["section"], inline=request.query_params.get("inline") == "1"
    )


async def message_source(request: Request) -> Response:
    _, opened = await _opened(request)
    text = opened.raw.decode("utf-8", "replace")
    return foreign_content(PlainTextResponse(text), None)


# -- compose ---------------------------------------------------------------------------------------


async def compose_page(request: Request) -> Response:
    access = await mail_access(request)
    params = request.query_params
    choices = await access.identities()
    draft = Draft(to=params.get("to", ""), subject=params.get("subject", ""))
    identity = identities.default_identity(choices)
    back = _came_from(request) or f"/mail/{(await access.inbox()).id}"
    if params.get("reply"):
        parent = await access.open_reference(params["reply"])
        draft = reply_draft(
            parent.info,
            access.text_of(parent),
            own_addresses=await access.own_addresses(),
            reply_all=params.get("all") == "1",
            origin=params["reply"],
            received=parent.record.internal_date,
        )
        identity = identities.identity_for(choices, _addressed(parent))
        back = message_base(parent)
    elif params.get("forward"):
        original = await access.open_reference(params["forward"])
        draft = forward_draft(
            original.info,
            access.text_of(original),
            origin=params["forward"],
            received=original.record.internal_date,
        )
        identity = identities.identity_for(choices, _addressed(original))
        back = message_base(original)
    elif params.get("draft"):
        saved = await access.open_reference(params["draft"])
        # Only from this account's Drafts: sending or saving removes the old version there.
        mine = saved.mailbox.account_id == access.account.id
        if saved.mailbox.special_use is not SpecialUse.DRAFTS or not mine:
            raise NotFound("not a draft")
        draft = draft_from_message(
            saved.info,
            access.text_of(saved),
            mailbox_id=saved.mailbox.id,
            uid=saved.record.uid,
            html=access.html_of(saved),
            origin=header_values(saved.raw, saved.info, DRAFT_ORIGIN),
        )
        # A saved draft holds its signature already: only the identity is found again.
        froms = [p.address for p in people(saved.info.envelope.from_)]
        # Back to Drafts: the draft's own page is gone once it is sent.
        return await _compose(
            request,
            access,
            replace(draft, identity=identities.identity_for(choices, froms).id),
            choices,
            back=f"/mail/{saved.mailbox.id}",
        )
    body = identities.insert_signature(draft.body, identity.signature)
    draft = replace(draft, body=body, identity=identity.id)
    return await _compose(request, access, draft, choices, back=back)


def _came_from(request: Request) -> str:
    """The folder or message page the Compose button was pressed on (its same-origin Referer,
    app.py's Referrer-Policy), where sending returns to as Roundcube and Gmail do; else ""
    (the Inbox: other pages show no "Message sent." notice)."""
    referer = urlsplit(request.headers.get("referer", ""))
    same = referer.netloc == request.url.netloc and referer.scheme == request.url.scheme
    if same and MAIL_PAGE.fullmatch(referer.path):
        return noticed(f"{referer.path}?{referer.query}", [])
    return ""


def _addressed(opened: Opened) -> list[str]:
    """The addresses a message was sent to, To before Cc (the identity a reply goes out as)."""
    envelope = opened.info.envelope
    return [p.address for p in (*people(envelope.to), *people(envelope.cc))]


async def _compose(
    request: Request,
    access: MailAccess,
    draft: Draft,
    choices: list[Identity],
    *,
    back: str,
    errors: Mapping[str, str] | None = None,
    notice: str = "",
    status_code: int = 200,
) -> Response:
    app = web(request)
    try:
        kept = [(reference, a) for reference, _, a in await access.kept_parts(draft.kept)]
    except UserError:
        kept = []  # a kept part gone meanwhile (sent from another tab): the error says so
    return app.render(
        request,
        "compose.html",
        status_code=status_code,
        draft=draft,
        identities=choices,
        selected=identities.chosen_or_default(choices, draft.identity),
        errors=errors or {},
        notice=notice,
        back=back,
        max_upload=app.limits.max_upload_bytes,
        kept=kept,
        rich=sanitize_composed(draft.html) if draft.html.strip() else "",
    )


async def compose_submit(request: Request) -> Response:
    app = web(request)
    form = await posted_form(request, files=True, carry=CARRIED)
    access = await mail_access(request)
    draft = await draft_from_form(form)
    back = mail_page(field_text(form, "back")) or f"/mail/{(await access.inbox()).id}"
    if field_text(form, "action") == "save":
        try:
            draft = await _saved(access, draft)
        except UserError as exc:
            return await _compose(
                request,
                access,
                replace(draft, attachments=()),
                await access.identities(),
                back=back,
                errors={"attachment": str(exc)},
                notice="Not saved." + (" Attach files again." if draft.attachments else ""),
                status_code=400,
            )
        now = datetime.now(UTC)
        return await _compose(
            request,
            access,
            draft,
            await access.identities(),
            back=back,
            notice=f"Draft saved at {when(now, reader_zone(request), 'time', now=now)}.",
        )
    result = await access.send(
        draft,
        max_recipients=app.limits.max_recipients,
        client_ip=client_ip(request),
        tls=request.url.scheme == "https",
    )
    if not result.sent:
        note = ""
        if draft.attachments:
            # The files just uploaded would go with this page: kept in Drafts instead, as
            # Gmail keeps every draft, so fixing a typo does not mean attaching them again.
            try:
                draft = await _saved(access, draft)
                note = " It is saved in Drafts with its attachments."
            except UserError:
                draft, note = replace(draft, attachments=()), " Attach files again."
        return await _compose(
            request,
            access,
            draft,
            await access.identities(),
            back=back,
            errors=result.errors,
            notice="Not sent: fix the fields marked below." + note,
            status_code=400,
        )
    notice = {"sent": "1", **sealed(request, "warning", result.warning)}
    return redirect(noticed(back, list(notice.items())))


async def _saved(access: MailAccess, draft: Draft) -> Draft:
    """``draft`` saved in Drafts; as the form shows it then: every attachment kept from the
    saved message, none left to upload."""
    uid = await access.save_draft(draft)
    saved = await access.open((await access.special(SpecialUse.DRAFTS)).id, uid)
    kept = kept_of(saved.info, f"{saved.mailbox.id}:{uid}")
    return replace(draft, draft_uid=uid, attachments=(), kept=kept)


def routes() -> list[BaseRoute]:
    return [
        Route("/", home),
        Route("/login", login_page, methods=["GET"]),
        Route("/login", login, methods=["POST"]),
        Route("/logout", logout, methods=["POST"]),
        Route("/session/extend", stay_signed_in, methods=["POST"]),
        Route("/mail", inbox),
        Route("/mail/{mailbox:int}", message_list),
        Route("/mail/{mailbox:int}/actions", actions, methods=["POST"]),
        Route("/mail/{mailbox:int}/empty", empty_folder, methods=["POST"]),
        Route("/mail/{mailbox:int}/rename", rename_folder, methods=["POST"]),
        Route("/mail/{mailbox:int}/delete", delete_folder, methods=["POST"]),
        Route("/folders", create_folder, methods=["POST"]),
        Route("/mail/{mailbox:int}/{uid:int}", message_view),
        Route("/mail/{mailbox:int}/{uid:int}/frame", message_frame),
        Route("/mail/{mailbox:int}/{uid:int}/part/{section}", message_part),
        Route("/mail/{mailbox:int}/{uid:int}/source", message_source),
        Route("/compose", compose_page, methods=["GET"]),
        Route("/compose", compose_submit, methods=["POST"]),
    ]
