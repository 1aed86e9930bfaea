"""Sharing a folder from the webmail: its IMAP access list (RFC 4314), shown and changed
through :class:`~.mailaccess.MailAccess`, which checks the "a" right and validates the grantee
and the rights exactly as for the JSON API.

The page lists the owner (every right, always: RFC 4314 §2) and each entry; a form gives an
account of this server, or everyone here, one of the typical sets of rights
docs/shared-mailboxes.md names or custom ones; each entry has a button to stop sharing. A
refused change is shown above the form, with what was typed kept.
"""

from __future__ import annotations

from dataclasses import dataclass

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from pillarbox.errors import NotFound, PermissionDenied, UserError
from pillarbox.store.aclrows import canonical_rights
from pillarbox.web.app import field_text, posted_form, redirect, web
from pillarbox.web.webmail import mail_access


@dataclass(frozen=True, slots=True)
class Preset:
    key: str
    label: str
    rights: str


#: The typical sets (docs/shared-mailboxes.md, "Rights").
PRESETS: tuple[Preset, ...] = (
    Preset("read", "Read only", "lr"),
    Preset("read-seen", "Read and mark read", "lrs"),
    Preset("read-write", "Read and write", "lrswite"),
    Preset("full", "Full control", "lrswipkxtea"),
)
CUSTOM = "custom"
#: What each right lets the grantee do, in RFC 4314 §2.1 order.
RIGHT_LABELS: dict[str, str] = {
    "l": "see the folder in folder lists",
    "r": "open it and read messages",
    "s": "mark messages read and unread",
    "w": "flag messages (and set other flags)",
    "i": "put messages into it",
    "p": "post to it (kept, no effect here)",
    "k": "create folders below it",
    "x": "rename or delete the folder",
    "t": "mark messages deleted",
    "e": "remove deleted messages for good",
    "a": "change who may use it",
}


def chosen_rights(preset: str, custom: list[str]) -> str:
    """The rights a form asks for: a preset's, or the custom boxes ticked."""
    if preset == CUSTOM:
        return "".join(custom)
    for offered in PRESETS:
        if offered.key == preset:
            return offered.rights
    raise UserError("choose one of the offered sets of rights")


def preset_label(rights: str) -> str:
    """The name of the preset ``rights`` are, or "Custom"."""
    for offered in PRESETS:
        if canonical_rights(offered.rights) == canonical_rights(rights):
            return offered.label
    return "Custom"


async def _render(
    request: Request, mailbox_id: int, *, status_code: int = 200, **extra: object
) -> Response:
    access = await mail_access(request)
    sharing = await access.sharing(mailbox_id)
    return web(request).render(
        request,
        "sharing.html",
        status_code=status_code,
        folders=await access.folders(),
        mailbox=sharing.mailbox,
        sharing=sharing,
        presets=PRESETS,
        right_labels=RIGHT_LABELS,
        preset_label=preset_label,
        **extra,
    )


async def sharing_page(request: Request) -> Response:
    notice = {"shared": "Shared.", "removed": "No longer shared."}
    done = notice.get(request.query_params.get("done", ""), "")
    return await _render(request, request.path_params["mailbox"], notice=done)


async def share(request: Request) -> Response:
    access = await mail_access(request)
    form = await posted_form(request)
    mailbox_id: int = request.path_params["mailbox"]
    grantee = field_text(form, "grantee")
    preset = field_text(form, "preset")
    custom = [r for r in form.getlist("right") if isinstance(r, str)]
    try:
        await access.share(mailbox_id, grantee, chosen_rights(preset, custom))
    except (NotFound, PermissionDenied):
        raise  # the folder itself: 404 or 403, not a mistake in the form
    except UserError as exc:
        return await _render(
            request, mailbox_id, status_code=400, error=str(exc),
            form={"grantee": grantee, "preset": preset, "custom": set(custom)},
        )  # fmt: skip
    return redirect(f"/mail/{mailbox_id}/sharing?done=shared")


async def unshare(request: Request) -> Response:
    access = await mail_access(request)
    form = await posted_form(request)
    mailbox_id: int = request.path_params["mailbox"]
    try:
        await access.unshare(mailbox_id, field_text(form, "grantee"))
    except (NotFound, PermissionDenied):
        raise
    except UserError as exc:
        return await _render(request, mailbox_id, status_code=400, error=str(exc))
    return redirect(f"/mail/{mailbox_id}/sharing?done=removed")


def routes() -> list[BaseRoute]:
    return [
        Route("/mail/{mailbox:int}/sharing", sharing_page, methods=["GET"]),
        Route("/mail/{mailbox:int}/sharing", share, methods=["POST"]),
        Route("/mail/{mailbox:int}/sharing/remove", unshare, methods=["POST"]),
    ]
