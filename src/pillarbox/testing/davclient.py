"""What the CardDAV and CalDAV tests read from the live server with httpx: an account's client
over HTTPS, and the parts of a multistatus or a ``DAV:error`` they check."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from xml.etree.ElementTree import Element, fromstring

import httpx

from pillarbox.testing.live import TEST_PASSWORD, LiveServer
from pillarbox.testing.webclient import server_trust

D = "{DAV:}"


@contextmanager
def dav_client(live: LiveServer, user: str) -> Iterator[httpx.Client]:
    """``user``'s client over HTTPS, with the account password (no second factor)."""
    with httpx.Client(
        base_url=f"https://127.0.0.1:{live.port('https')}",
        auth=(user, TEST_PASSWORD),
        verify=server_trust(live),
        timeout=30,
    ) as client:
        yield client


def responses(response: httpx.Response) -> dict[str, Element]:
    """href → its DAV:response element, of a 207 multistatus."""
    assert response.status_code == 207, response.text
    assert response.headers["content-type"].startswith("application/xml")
    root = fromstring(response.content)
    return {r.findtext(f"{D}href", ""): r for r in root.findall(f"{D}response")}


def found(response: Element, name: str) -> Element | None:
    """Property ``name`` in the response's 200 propstat."""
    for propstat in response.findall(f"{D}propstat"):
        if "200" in propstat.findtext(f"{D}status", ""):
            return propstat.find(f"{D}prop/{name}")
    return None


def text_of(response: Element, name: str) -> str:
    value = found(response, name)
    assert value is not None, name
    return value.text or ""


def error_of(response: httpx.Response) -> list[str]:
    """The conditions a ``DAV:error`` body names."""
    assert response.headers["content-type"].startswith("application/xml"), response.text
    root = fromstring(response.content)
    assert root.tag == f"{D}error"
    return [child.tag for child in root]
