"""Rich text from the compose editor: the server's allow-list, the text/plain alternative, and
the multipart/alternative message built from it."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from pillarbox.mail.parse import parse_message, part_text
from pillarbox.mail.people import Person
from pillarbox.web.composing import Draft, Upload, build_message, check_recipients
from pillarbox.web.reading import body_parts
from pillarbox.web.richtext import plain_alternative, sanitize_composed

NOW = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
ME = Person("Alice", "alice@example.org")


@pytest.mark.parametrize(
    ("source", "kept"),
    [
        ("<b>bold</b> <i>it</i> <u>u</u>", "<b>bold</b> <i>it</i> <u>u</u>"),
        ("<script>alert(1)</script>text", "text"),
        ('<a href="javascript:alert(1)">x</a>', '<a rel="noopener noreferrer">x</a>'),
        ('<a href="https://ok.example/" onclick="x()" target="_top">ok</a>',
         '<a href="https://ok.example/" rel="noopener noreferrer">ok</a>'),
        ('<img src="https://tracker.example/p.gif">hi', "hi"),
        ('<p style="background:url(https://x.example/)">para</p>', "<p>para</p>"),
        ("<form><input name=p></form><iframe src=x></iframe>", ""),
        ("<ul><li>1</li></ul><ol><li>2</li></ol>", "<ul><li>1</li></ul><ol><li>2</li></ol>"),
        ("<span>plain</span> &lt;tag&gt;", "plain &lt;tag&gt;"),
    ],
)  # fmt: skip
def test_only_the_editors_vocabulary_is_kept(source: str, kept: str) -> None:
    assert sanitize_composed(source) == kept


def test_plain_alternative_keeps_structure() -> None:
    html = sanitize_composed(
        '<div>Hello <b>Bob</b>, see <a href="https://ex.org/x">this</a> and '
        '<a href="mailto:c@ex.org">c@ex.org</a></div>'
        "<ul><li>one</li><li>two<ol><li>a</li><li>b</li></ol></li></ul>"
        "<div>after<br>break</div><blockquote>quoted <i>text</i><br>second</blockquote>"
        "<p>end &amp; &lt;tag&gt;</p>"
    )
    assert plain_alternative(html) == (
        "Hello *Bob*, see this <https://ex.org/x> and c@ex.org\n"
        "\n"
        "- one\n"
        "- two\n"
        "  1. a\n"
        "  2. b\n"
        "\n"
        "after\n"
        "break\n"
        "\n"
        "> quoted _text_\n"
        "> second\n"
        "\n"
        "end & <tag>\n"
    )


def test_rich_draft_is_sent_as_multipart_alternative() -> None:
    draft = Draft(
        to="bob@example.org",
        subject="Notes",
        body="ignored: the text comes from the HTML",
        html="<div>Grüße, <b>Bob</b><script>alert(1)</script></div><ul><li>item</li></ul>",
        attachments=(Upload("a.txt", "text/plain", b"attached"),),
    )
    recipients = check_recipients(draft, max_recipients=5)
    raw, _ = build_message(
        draft, sender=ME, recipients=recipients, hostname="mx.test", now=NOW, include_bcc=False
    )
    info = parse_message(raw)
    assert (info.body.type, info.body.subtype) == ("multipart", "mixed")
    alternative = info.body.parts[0]
    assert [(p.type, p.subtype) for p in alternative.parts] == [("text", "plain"), ("text", "html")]
    bodies = body_parts(info)
    assert bodies.plain is not None and bodies.html is not None
    assert part_text(raw, bodies.plain) == "Grüße, *Bob*\r\n\r\n- item\r\n"
    html = part_text(raw, bodies.html)
    assert "<b>Bob</b>" in html and "<li>item</li>" in html and "script" not in html
    assert info.attachments[0].filename == "a.txt"


def test_plain_draft_stays_single_part() -> None:
    draft = Draft(to="bob@example.org", subject="Plain", body="just text", html="  ")
    raw, _ = build_message(
        draft,
        sender=ME,
        recipients=check_recipients(draft, max_recipients=5),
        hostname="mx.test",
        now=NOW,
        include_bcc=False,
    )
    info = parse_message(raw)
    assert (info.body.type, info.body.subtype) == ("text", "plain")
