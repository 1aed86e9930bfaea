"""HTML mail made safe to show: nh3 (ammonia) with an allow-list, plus the frame's CSP.

Implementation notes — two independent layers, so a gap in one is not a hole:

1. **Sanitiser** (:func:`sanitize_html`): only listed tags and attributes survive; ``script``,
   ``style``, ``iframe``, ``object``, forms and every ``on*`` handler are gone (their content too
   for script/style); URLs must be ``http``, ``https``, ``mailto`` or ``cid`` and never relative
   (a relative URL would point at this web app). Inline ``style`` keeps only properties that
   cannot fetch anything (no ``background``/``*-image``/``content``/``cursor``: those take
   ``url()``). Remote images lose their ``src`` unless the reader asked for them; ``cid:``
   images are rewritten to the message's own parts. Links open in a new browsing context with
   ``rel="noopener noreferrer"`` so the message cannot reach the webmail window.
2. **Bounded time**: nh3's parser (html5ever) builds the tree in time quadratic in the
   number of open elements, with no depth cap (html5ever issues #289, #788): 220 KB of
   ``<b></p>`` took a minute. Each tag costs at most a walk over the elements before it, so
   the sanitiser reads at most ``[web] max_html_tags`` tags (every ``<`` that may open one
   is counted, a linear scan over-counting what the parser sees) and cuts the HTML before
   the next: :attr:`SafeHtml.truncated`, which the reader is told. It runs off the event
   loop (nh3 releases the GIL).
3. **Frame** (:func:`frame_csp`): the HTML is served as its own document inside an
   ``<iframe sandbox>`` with a CSP that forbids script, forms, plugins and every fetch but images
   from this origin (and remote images only after "load images"); ``sandbox`` without
   ``allow-scripts`` means that even a sanitiser bug cannot run code.
"""

from __future__ import annotations

import html
import re
from collections.abc import Callable
from dataclasses import dataclass

import nh3

_TAGS = frozenset(nh3.ALLOWED_TAGS | {"font", "tfoot", "center"}) - {"map", "area"}
_LAYOUT = frozenset({"align", "valign", "width", "height", "bgcolor", "border"})
_ATTRIBUTES: dict[str, set[str]] = {
    **{tag: set(attrs) for tag, attrs in nh3.ALLOWED_ATTRIBUTES.items()},
    "*": {"style", "title", "dir", "lang"},
    "font": {"color", "face", "size"},
    "table": {*nh3.ALLOWED_ATTRIBUTES["table"], *_LAYOUT, "cellpadding", "cellspacing"},
    "td": {*nh3.ALLOWED_ATTRIBUTES["td"], *_LAYOUT, "nowrap"},
    "th": {*nh3.ALLOWED_ATTRIBUTES["th"], *_LAYOUT, "nowrap"},
    "tr": {*nh3.ALLOWED_ATTRIBUTES["tr"], *_LAYOUT},
    "div": {"align"},
    "p": {"align"},
    "img": {*nh3.ALLOWED_ATTRIBUTES["img"], "border", "hspace", "vspace"},
}
_STYLE_PROPERTIES = frozenset(
    {
        "color", "background-color", "font", "font-family", "font-size", "font-style",
        "font-weight", "font-variant", "text-align", "text-decoration", "text-indent",
        "text-transform", "line-height", "letter-spacing", "word-spacing", "white-space",
        "vertical-align", "direction", "display", "width", "height", "max-width", "min-width",
        "max-height", "min-height", "margin", "margin-top", "margin-right", "margin-bottom",
        "margin-left", "padding", "padding-top", "padding-right", "padding-bottom",
        "padding-left", "border", "border-top", "border-right", "border-bottom", "border-left",
        "border-color", "border-style", "border-width", "border-collapse", "border-spacing",
        "border-radius", "table-layout", "list-style-type", "overflow-wrap", "word-break",
    }
)  # fmt: skip
_SCHEMES = frozenset({"http", "https", "mailto", "cid"})
_REMOTE = ("http:", "https:", "//")
#: What may open a tag, a comment or a declaration in HTML (WHATWG HTML §13.2.5.6, tag open
#: state): ``<`` and a letter, ``/``, ``!`` or ``?``.
_TAG_OPEN = re.compile(r"<[A-Za-z/!?]")
#: What a URL parser drops before reading the scheme (WHATWG URL §4.4 basic URL parser:
#: leading and trailing C0 controls and spaces; ASCII tabs and newlines anywhere).
_URL_NOISE = re.compile(r"^[\x00-\x20]+|[\x00-\x20]+$|[\t\n\r]")


@dataclass(frozen=True, slots=True)
class SafeHtml:
    """Sanitised HTML, how many remote images were held back (0: no "load images" button),
    and whether the HTML was cut at ``max_html_tags`` (the reader is told)."""

    html: str
    blocked_images: int
    truncated: bool = False


def _bounded(source: str, max_tags: int) -> tuple[str, bool]:
    """``source`` cut before its tag number ``max_tags + 1``, and whether it was."""
    for count, match in enumerate(_TAG_OPEN.finditer(source), start=1):
        if count > max_tags:
            return source[: match.start()], True
    return source, False


def sanitize_html(
    source: str, *, load_remote: bool, cid_url: Callable[[str], str | None], max_tags: int
) -> SafeHtml:
    """Sanitise one HTML body (see the module notes), of at most ``max_tags`` tags.
    ``cid_url(content_id)`` gives the URL of a part of the same message, or None when there
    is no such part (the image is dropped)."""
    source, truncated = _bounded(source, max_tags)
    blocked = 0
    rewritten: set[str] = set()

    def attribute(tag: str, name: str, value: str) -> str | None:
        nonlocal blocked
        if tag != "img" or name != "src":
            return value
        # Read as the browser's URL parser (and ammonia's) will: "\x01http:" and "ht\ttp:"
        # are http URLs, and were shown although remote images were held back.
        cleaned = _URL_NOISE.sub("", value)
        lowered = cleaned.lower()
        if lowered.startswith("cid:"):
            url = cid_url(cleaned[4:].strip("<>"))
            if url is not None:
                rewritten.add(url)
            return url
        if lowered.startswith(_REMOTE) and not load_remote:
            blocked += 1
            return None
        return value

    cleaned = nh3.clean(
        source,
        tags=set(_TAGS),
        clean_content_tags={"script", "style", "template", "title"},
        attributes=_ATTRIBUTES,
        attribute_filter=attribute,
        url_schemes=set(_SCHEMES),
        # Relative URLs would address this web app; only our own cid: rewrites may be relative.
        url_relative=lambda url: url if url in rewritten else None,
        filter_style_properties=set(_STYLE_PROPERTIES),
        set_tag_attribute_values={"a": {"target": "_blank"}},
        link_rel="noopener noreferrer",
    )
    return SafeHtml(cleaned, blocked, truncated)


def frame_csp(*, load_remote: bool) -> str:
    """The Content-Security-Policy of the message frame document."""
    images = "'self' data:" + (" https: http:" if load_remote else "")
    return (
        f"default-src 'none'; img-src {images}; style-src 'unsafe-inline'; "
        "form-action 'none'; base-uri 'none'; frame-ancestors 'self'; "
        "sandbox allow-same-origin allow-popups allow-popups-to-escape-sandbox"
    )


#: Attributes of the <iframe> element that shows :func:`frame_document`.
FRAME_SANDBOX = "allow-same-origin allow-popups allow-popups-to-escape-sandbox"


def frame_document(body: str) -> str:
    """A complete document around sanitised HTML, with a neutral default style."""
    return (
        '<!DOCTYPE html><html><head><meta charset="utf-8">'
        '<meta name="referrer" content="no-referrer">'
        "<style>body{font:15px/1.45 system-ui,sans-serif;margin:0;padding:8px;"
        "overflow-wrap:anywhere;color:#111;background:#fff}img{max-width:100%;height:auto}"
        "blockquote{margin:0 0 0 .8em;padding-left:.8em;border-left:3px solid #ccc}</style>"
        f"</head><body>{body}</body></html>"
    )


def text_document(text: str) -> str:
    """A plain-text body as a frame document (a message whose only body is text)."""
    return frame_document(f'<pre style="white-space:pre-wrap">{html.escape(text)}</pre>')
