"""Dot-stuffing for the line-oriented transfers of SMTP DATA (RFC 5321 §4.5.2) and POP3
(RFC 1939 §3): a line that begins with "." gets one more "." on the wire."""

from __future__ import annotations


def stuff(data: bytes) -> bytes:
    """Stuff ``data`` (CRLF lines) for transmission; the terminating ``.CRLF`` is not added."""
    if not data:
        return data
    stuffed = data.replace(b"\r\n.", b"\r\n..")
    if stuffed.startswith(b"."):
        stuffed = b"." + stuffed
    return stuffed
