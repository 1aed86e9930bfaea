"""Simple HTML written in the compose editor: what is sent, and its plain-text alternative.

Implementation notes:

- The editor (``static/app.js``) offers bold, italic, links and lists, but the browser posts
  whatever its ``contenteditable`` produced — or anything a hand-made request carries. So the
  server keeps only that small vocabulary (:func:`sanitize_composed`, nh3 with an allow-list):
  no scripts, styles, images, event handlers or ``javascript:`` links leave this server in
  someone's name.
- The message is ``multipart/alternative`` (RFC 2046 §5.1.4: the plainest first) with a
  ``text/plain`` part derived from the sanitised HTML (:func:`plain_alternative`): paragraphs
  and line breaks kept, lists as ``-`` / ``1.`` items, links as ``text <url>``, quotes as
  ``>`` lines, so readers without HTML lose the formatting and nothing else.
"""

from __future__ import annotations

import re
from html.parser import HTMLParser

import nh3

#: What the editor produces (execCommand's tags in Chromium and Firefox), nothing more.
COMPOSE_TAGS = frozenset(
    {"p", "div", "br", "b", "strong", "i", "em", "u", "a", "ul", "ol", "li", "blockquote"}
)
_ATTRIBUTES = {"a": {"href"}}
_SCHEMES = frozenset({"http", "https", "mailto"})
_BLOCKS = frozenset({"p", "div", "ul", "ol", "blockquote"})
_BLANK_RUNS = re.compile(r"\n{3,}")
_WHITESPACE = re.compile(r"\s+")


def sanitize_composed(source: str) -> str:
    """The editor's HTML reduced to :data:`COMPOSE_TAGS` (links: http, https, mailto only)."""
    return nh3.clean(
        source,
        tags=set(COMPOSE_TAGS),
        attributes={tag: set(names) for tag, names in _ATTRIBUTES.items()},
        url_schemes=set(_SCHEMES),
        link_rel="noopener noreferrer",
        strip_comments=True,
    ).strip()


def html_document(fragment: str) -> str:
    """A whole HTML document around sanitised editor output (what the text/html part holds)."""
    return (
        '<!DOCTYPE html>\n<html><head><meta charset="utf-8"></head>\n'
        f"<body>\n{fragment}\n</body></html>\n"
    )


class _PlainText(HTMLParser):
    """Editor HTML → lines of text, each line ``[quote prefix, text]``."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.lines: list[list[str]] = [["", ""]]
        self.lists: list[list[int]] = []  # per open list: [ordered (0/1), next number]
        self.quote = 0
        self.href: str | None = None
        self.link_text: list[str] = []

    def _prefix(self) -> str:
        return "> " * self.quote

    def _break(self, *, blank: bool = False) -> None:
        """Start a fresh line (a blank one before it when ``blank`` and text precedes)."""
        if self.lines[-1][1].strip():
            self.lines.append([self._prefix(), ""])
        else:
            self.lines[-1][0] = self._prefix()
        if blank and len(self.lines) > 1 and self.lines[-2][1].strip():
            self.lines.insert(-1, [self._prefix(), ""])

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in ("b", "strong"):
            self.lines[-1][1] += "*"
        elif tag in ("i", "em"):
            self.lines[-1][1] += "_"
        elif tag == "br":
            self.lines.append([self._prefix(), ""])
        elif tag == "a":
            self.href = dict(attrs).get("href") or ""
            self.link_text = []
        elif tag in ("ul", "ol"):
            self._break(blank=not self.lists)
            self.lists.append([int(tag == "ol"), 1])
        elif tag == "li":
            self._break()
            indent = "  " * max(0, len(self.lists) - 1)
            if self.lists and self.lists[-1][0]:
                self.lines[-1][1] = f"{indent}{self.lists[-1][1]}. "
                self.lists[-1][1] += 1
            else:
                self.lines[-1][1] = f"{indent}- "
        elif tag == "blockquote":
            self._break(blank=True)
            self.quote += 1
            self.lines[-1][0] = self._prefix()
        elif tag in _BLOCKS:
            self._break(blank=True)

    def handle_endtag(self, tag: str) -> None:
        if tag in ("b", "strong"):
            self.lines[-1][1] += "*"
        elif tag in ("i", "em"):
            self.lines[-1][1] += "_"
        elif tag == "a" and self.href is not None:
            text = "".join(self.link_text).strip()
            if self.href and text != self.href.removeprefix("mailto:"):
                self.lines[-1][1] += f" <{self.href}>"
            self.href = None
        elif tag in ("ul", "ol") and self.lists:
            self.lists.pop()
            self._break(blank=not self.lists)
        elif tag == "blockquote" and self.quote:
            self.quote -= 1
            self._break(blank=True)
        elif tag in _BLOCKS:
            self._break(blank=True)

    def handle_data(self, data: str) -> None:
        text = _WHITESPACE.sub(" ", data)
        if not self.lines[-1][1].strip():
            text = text.lstrip()
        if self.href is not None:
            self.link_text.append(text)
        self.lines[-1][1] += text


def plain_alternative(safe_html: str) -> str:
    """The text/plain part for sanitised editor HTML (see the module notes)."""
    parser = _PlainText()
    parser.feed(safe_html)
    parser.close()
    text = "\n".join((prefix + line.rstrip()).rstrip() for prefix, line in parser.lines)
    return _BLANK_RUNS.sub("\n\n", text).strip("\n") + "\n"
