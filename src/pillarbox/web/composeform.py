"""The compose form: its fields as a :class:`.composing.Draft`, and the ones a login carries.

Implementation notes:

- **Carried through the login.** A compose form sent or saved after its session ended is
  answered by the login page holding its text fields (:func:`.app.posted_form`, ``carry``);
  the password step, and the code step of a login with a second factor (:mod:`.twofactor`;
  between the two steps the store holds them, sealed, :mod:`.loginhold`), hand them on in their
  own forms, and the step that logs in saves them in Drafts and opens
  them there (:func:`kept_in_drafts`): never sent by a login, never without the CSRF token of
  the page that carried them.
- **Not ``draft_uid``**: the login page's fields are the browser's word, and whoever logs in
  there must not lose a draft of theirs that number names (the earlier version stays in
  Drafts). Uploaded files cannot ride in a page and are lost (the notice says so).
"""

from __future__ import annotations

from dataclasses import replace

from starlette.datastructures import FormData, UploadFile

from pillarbox.errors import UserError
from pillarbox.store.types import SpecialUse
from pillarbox.web.app import field_number, field_text
from pillarbox.web.composing import Draft, Upload
from pillarbox.web.mailaccess import MailAccess

#: The compose form's fields a login keeps when the session ended before the form was sent
#: or saved.
CARRIED = (
    *("identity", "to", "cc", "bcc", "subject", "body", "html", "keep"),
    *("in_reply_to", "references", "replying_to", "forwarding"),
)
#: Before a carried field's name in the login's forms, apart from the login's own fields.
CARRY_PREFIX = "carried."


async def draft_from_form(form: FormData) -> Draft:
    uploads: list[Upload] = []
    for item in form.getlist("attachment"):
        if isinstance(item, UploadFile) and item.filename:
            data = await item.read()
            uploads.append(
                Upload(item.filename, item.content_type or "application/octet-stream", data)
            )
    draft_uid = field_text(form, "draft_uid")
    return Draft(
        to=field_text(form, "to"),
        cc=field_text(form, "cc"),
        bcc=field_text(form, "bcc"),
        subject=field_text(form, "subject"),
        body=field_text(form, "body"),
        html=field_text(form, "html"),
        in_reply_to=field_text(form, "in_reply_to"),
        references=tuple(field_text(form, "references").split()),
        attachments=tuple(uploads),
        kept=tuple(k for k in form.getlist("keep") if isinstance(k, str)),
        replying_to=field_text(form, "replying_to"),
        forwarding=field_text(form, "forwarding"),
        draft_uid=field_number(draft_uid),
        identity=field_number(field_text(form, "identity")),
    )


def carried_fields(form: FormData) -> list[tuple[str, str]]:
    """The compose fields a login step's form carries (``carried.`` names, :data:`CARRIED`
    only: nothing else of the browser's, ``draft_uid`` least of all)."""
    return [
        (name.removeprefix(CARRY_PREFIX), value)
        for name, value in form.multi_items()
        if name.startswith(CARRY_PREFIX)
        and name.removeprefix(CARRY_PREFIX) in CARRIED
        and isinstance(value, str)
    ]


async def kept_in_drafts(access: MailAccess, carried: list[tuple[str, str]]) -> str:
    """The compose page of the message a login carried (its session ended as it was sent or
    saved), saved in Drafts first, so that it survives this tab too; "" when it cannot be
    saved. Its attachments kept from an earlier draft stay when they are the account's (a
    different user may log in at that screen)."""
    fields: list[tuple[str, str | UploadFile]] = list(carried)
    draft = await draft_from_form(FormData(fields))
    for attempt in (draft, replace(draft, kept=())):
        try:
            uid = await access.save_draft(attempt)
        except UserError:
            continue
        return f"/compose?draft={(await access.special(SpecialUse.DRAFTS)).id}:{uid}"
    return ""
