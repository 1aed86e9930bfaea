"""Fuzz the webmail's HTML sanitiser (pillarbox.web.sanitize) with hostile HTML mail bodies.

Input: byte 0 says whether remote images are loaded (odd) or held back; the rest is an HTML
body as any sender may write it. Asserted, beyond "no exception" and the time bound (the
sanitiser runs on every message opened; ``[web] max_html_tags`` at its default bounds it):

* the output, read back by an HTML parser, has no script-bearing element (script, style,
  iframe, object, embed, form, svg, math…), no event-handler attribute (``on*``), no
  ``srcdoc``/``formaction``, and no URL whose scheme is not http, https, mailto or cid (a
  ``javascript:`` or ``data:`` URL, however spelled) — save the ``cid:`` rewrites to the
  message's own parts, which are the only relative URLs;
* with remote images held back, no image source is remote;
* an inline style holds no ``javascript:``, ``expression(`` or ``@import``.
"""

from __future__ import annotations

import re
from html.parser import HTMLParser

import atheris
import harness

with atheris.instrument_imports(include=["pillarbox"]):
    from pillarbox.config import WebSection
    from pillarbox.web.sanitize import sanitize_html

MAX_TAGS = WebSection().max_html_tags

_FORBIDDEN_TAGS = frozenset(
    {
        "script", "style", "iframe", "frame", "frameset", "object", "embed", "applet", "form",
        "input", "button", "select", "textarea", "meta", "link", "base", "svg", "math",
        "template", "noscript", "portal", "dialog",
    }
)  # fmt: skip
_URL_ATTRIBUTES = frozenset(
    {"href", "src", "cite", "action", "background", "poster", "longdesc", "srcset", "data"}
)
_SCHEMES = ("http:", "https:", "mailto:", "cid:")
#: What a browser strips from a URL before reading its scheme (the URL standard: leading
#: C0 controls and spaces, and tab or newline anywhere).
_URL_NOISE = re.compile(r"^[\x00-\x20]+|[\t\n\r]")


def cid_url(content_id: str) -> str | None:
    return f"/mail/1/2/part/{len(content_id)}?inline=1" if content_id.startswith("a") else None


class _Checked(HTMLParser):
    def __init__(self, load_remote: bool) -> None:
        super().__init__(convert_charrefs=True)
        self.load_remote = load_remote

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        assert tag not in _FORBIDDEN_TAGS, tag
        for name, value in attrs:
            assert not name.startswith("on") and name not in ("srcdoc", "formaction"), name
            if value is None:
                continue
            if name in _URL_ATTRIBUTES:
                url = _URL_NOISE.sub("", value).lower()
                own = url.startswith("/mail/1/2/part/") and tag == "img" and name == "src"
                assert own or url.startswith(_SCHEMES), (tag, name, value)
                remote = url.startswith(("http:", "https:", "//"))
                assert not (remote and tag == "img" and not self.load_remote), value
            if name == "style":
                style = value.lower()
                assert not any(w in style for w in ("javascript:", "expression(", "@import"))

    handle_startendtag = handle_starttag


def check(data: bytes) -> None:
    if not data:
        return
    load_remote, source = data[0] % 2 == 1, data[1:].decode("utf-8", "replace")
    safe = sanitize_html(source, load_remote=load_remote, cid_url=cid_url, max_tags=MAX_TAGS)
    assert safe.blocked_images >= 0
    checked = _Checked(load_remote)
    checked.feed(safe.html)
    checked.close()


def seeds() -> list[bytes]:
    return [
        b"\x00<script>alert(1)</script><img src=x onerror=alert(1)><body onload=alert(1)>",
        b'\x00<a href="java&#x09;script:alert(1)">x</a><a href="data:text/html,<b>">y</a>',
        b'\x00<form action="http://e/"><input name=p></form><iframe src="http://e/"></iframe>',
        b'\x00<svg><script>alert(1)</script></svg><math><mi xlink:href="javascript:x">m</mi>',
        b'\x01<img src="http://e/t.png"><img src="cid:a1@x"><img src="cid:zz@x">'
        b'<p style="color:red;background:url(http://e/t);behavior:url(x)">p</p>',
        b'\x00<table bgcolor="#eee" cellpadding=2><tr><td nowrap style="font-size:12px">c</td>'
        b"</tr></table><font color=red face=Arial>f</font><center>c</center>",
        b'\x00<noscript><p title="</noscript><img src=x onerror=alert(1)>"></noscript>',
        b"\x00<!--<img src=x onerror=alert(1)>--><![CDATA[<script>]]><template><script>",
    ]


if __name__ == "__main__":
    harness.main("html_sanitize", check, seeds(), max_len=65536)
