"""Output: plain-text tables for people, JSON for scripts.

Tables are sized to their content and cut long cells with "…" at a width per column, so a
listing stays one line per message on an 80–120 column terminal. Cell text is stripped of
control characters: a subject is written by a stranger and must not move our cursor.
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from pillarbox.cli.mail.reading import ReadableMessage
from pillarbox.mailclient.imap import Folder, Summary

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")


def clean(text: str) -> str:
    """One line of display text: control and bidi-override characters become spaces."""
    return _CONTROL.sub(" ", text)


def _width(text: str) -> int:
    return sum(2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in text)


def _fit(text: str, width: int) -> str:
    if _width(text) <= width:
        return text + " " * (width - _width(text))
    out = ""
    for char in text:
        if _width(out + char) > width - 1:
            break
        out += char
    return out + "…" + " " * (width - 1 - _width(out))


def table(headers: Sequence[str], rows: Sequence[Sequence[str]], limits: Sequence[int]) -> str:
    """Columns as wide as their widest cell up to ``limits`` (0: no limit); the last column
    is not padded."""
    cleaned = [[clean(c) for c in row] for row in rows]
    widths = [
        min(max([_width(h), *(_width(r[i]) for r in cleaned)]), limit or 10_000)
        for i, (h, limit) in enumerate(zip(headers, limits, strict=True))
    ]
    lines = []
    for row in [list(headers), *cleaned]:
        cells = [_fit(c, w) for c, w in zip(row[:-1], widths, strict=False)]
        last = row[-1] if _width(row[-1]) <= widths[-1] else _fit(row[-1], widths[-1])
        lines.append("  ".join([*cells, last]).rstrip())
    return "\n".join(lines)


def as_json(data: Any) -> str:
    return json.dumps(data, indent=2, ensure_ascii=False, default=_json_default)


def _json_default(value: object) -> str:
    if isinstance(value, datetime):
        return value.isoformat()
    return str(value)


# -- the shapes the commands print --------------------------------------------------------------


def short_date(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M") if value is not None else ""


def flag_letters(flags: Sequence[str]) -> str:
    """mutt-like: N new (unseen), F flagged, A answered, D deleted."""
    lowered = {f.lower() for f in flags}
    return "".join(
        letter
        for letter, present in (
            ("N", "\\seen" not in lowered),
            ("F", "\\flagged" in lowered),
            ("A", "\\answered" in lowered),
            ("D", "\\deleted" in lowered),
        )
        if present
    )


def summary_table(summaries: Sequence[Summary]) -> str:
    rows = [
        [str(s.uid), short_date(s.date), s.sender, s.subject, flag_letters(s.flags)]
        for s in summaries
    ]
    return table(["UID", "DATE", "FROM", "SUBJECT", "FLAGS"], rows, [0, 16, 28, 60, 0])


def summary_json(summary: Summary) -> dict[str, Any]:
    return {
        "uid": summary.uid,
        "date": summary.date,
        "from": summary.sender,
        "subject": summary.subject,
        "flags": list(summary.flags),
        "size": summary.size,
    }


def folder_table(folders: Sequence[Folder]) -> str:
    rows = [
        [
            f.name,
            "" if f.messages is None else str(f.messages),
            "" if f.unseen is None else str(f.unseen),
        ]
        for f in folders
    ]
    return table(["FOLDER", "MESSAGES", "UNREAD"], rows, [40, 0, 0])


def folder_json(folder: Folder) -> dict[str, Any]:
    return {
        "name": folder.name,
        "flags": list(folder.flags),
        "messages": folder.messages,
        "unseen": folder.unseen,
    }


def message_text(message: ReadableMessage) -> str:
    lines = [f"{name}: {clean(value)}" for name, value in message.headers if value]
    lines.append("")
    lines.append(_printable_body(message.text))
    if message.attachments:
        lines += ["", "Attachments:"]
        lines += [
            f"  [{a.section}] {clean(a.filename or '(no name)')}  {a.content_type}  {a.size} bytes"
            for a in message.attachments
        ]
    return "\n".join(lines)


def _printable_body(text: str) -> str:
    # Keep line breaks and tabs; remove what would drive the terminal (ESC sequences etc.).
    return re.sub(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]", "", text)


def message_json(uid: int, message: ReadableMessage) -> dict[str, Any]:
    return {
        "uid": uid,
        "headers": dict(message.headers),
        "message_id": message.info.message_id,
        "text": message.text,
        "attachments": [
            {
                "section": a.section,
                "filename": a.filename,
                "content_type": a.content_type,
                "size": a.size,
            }
            for a in message.attachments
        ],
    }
