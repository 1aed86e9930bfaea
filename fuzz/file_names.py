"""Fuzz the file names a sender gives attachments: their cleaning when a message is parsed
(``_filename`` in pillarbox.mail.parse: RFC 2231 extended values, RFC 2047 encoded words),
the ``Content-Disposition`` of a download (pillarbox.web.downloads) and the names the CLI
saves attachments under (pillarbox.cli.mail.reading).

Input: byte 0 even — the header of an attachment in a two-part message (as any sender may
write it); odd — a file name as it may be stored (UTF-8, anything not being kept as lone
surrogates: metadata parsed before the cleaning). Asserted, beyond "no exception":

* a parsed name holds no control character (C0, DEL, NEL), no line or paragraph separator,
  no lone surrogate, no blank at either end, and is not empty;
* the ``Content-Disposition`` built from any name is printable ASCII (a header value HTTP
  servers send); read back by our own parser it gives the name as the parser would have
  cleaned it; its ``filename*`` read by the email package (``get_filename``) is the name
  (but for the blanks at its ends, which that package strips); its ASCII ``filename``
  fallback alone reads back as itself (unless it looks like RFC 2047 encoded words, which
  lenient readers decode);
* the names the CLI saves a message's attachments under stay in the target directory: one
  path component, not empty, no ``/``, ``\\`` or control, not hidden (no leading ``.``), at
  most ``MAX_FILENAME`` bytes before a counter, distinct without regard to case.
"""

from __future__ import annotations

import email
import email.policy
import re
from pathlib import PurePosixPath

import atheris
import harness

with atheris.instrument_imports(include=["pillarbox"]):
    from pillarbox.cli.mail.reading import MAX_FILENAME, attachment_targets, safe_filename
    from pillarbox.mail.decode import printable
    from pillarbox.mail.model import Attachment
    from pillarbox.mail.parse import parse_message
    from pillarbox.web.downloads import disposition

#: Characters no parsed name may hold: printable()'s, and lone surrogates.
_UNCLEAN = re.compile(r"[\x00-\x1f\x7f\x85\u2028\u2029\ud800-\udfff]")
_DIRECTORY = PurePosixPath("/home/ann/saved")


def _message(header: bytes) -> bytes:
    return (
        b"MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n"
        b"--b\r\nContent-Type: text/plain\r\n\r\nhello\r\n"
        b"--b\r\n" + header + b"\r\n\r\ndata\r\n--b--\r\n"
    )


def _read_back(header: str) -> str | None:
    """The file name our parser reads from a download's ``Content-Disposition``."""
    part = b"Content-Type: application/octet-stream\r\nContent-Disposition: "
    info = parse_message(part + header.encode("ascii") + b"\r\n\r\ndata")
    names = [a.filename for a in info.attachments]
    assert len(names) == 1, (header, names)
    return names[0]


def _check_disposition(name: str) -> None:
    header = disposition("attachment", name)
    assert header.isascii() and header.isprintable(), header
    cleaned = printable(name).strip() or None
    assert _read_back(header) == cleaned, (name, header)
    fallback, extended = header.rsplit("; filename*=", 1)  # the quoted fallback may hold one
    if name:
        # The email package prefers whichever comes first (RFC 6266 §4.3 wants filename*):
        # it is given the extended value alone, which carries the name as it is.
        other = email.message_from_bytes(
            b"Content-Disposition: attachment; filename*=" + extended.encode() + b"\r\n\r\n",
            policy=email.policy.compat32,
        )
        read = other.get_filename() or ""
        assert printable(read).strip() == printable(name).strip(), (header, read)
    ascii_name = fallback.split('filename="', 1)[1][:-1]
    if "=?" not in ascii_name:  # else read as RFC 2047 words, as by lenient clients (ours)
        assert (_read_back(fallback) or "") == ascii_name.strip(), (fallback, ascii_name)


def _check_saved(attachments: tuple[Attachment, ...]) -> None:
    targets = attachment_targets(attachments, _DIRECTORY)  # type: ignore[arg-type]
    names = [str(path.name) for _, path in targets]
    for (_, path), name in zip(targets, names, strict=True):
        assert path.parent == _DIRECTORY, path
        assert name and name not in (".", "..") and not name.startswith("."), name
        assert not _UNCLEAN.search(name) and "/" not in name and "\\" not in name, name
        assert len(name.encode()) <= MAX_FILENAME + 8, name  # "-" and a counter
    assert len({n.lower() for n in names}) == len(names), names


def check(data: bytes) -> None:
    if not data:
        return
    if data[0] % 2:
        name = data[1:].decode("utf-8", "replace")
        _check_disposition(name)
        assert safe_filename(name, "x")
        return
    info = parse_message(_message(data[1:]))
    for attachment in info.attachments:
        name = attachment.filename
        if name is None:
            continue
        assert name and not _UNCLEAN.search(name) and name == name.strip(), name
        _check_disposition(name)
    _check_saved(info.attachments * 2)


def seeds() -> list[bytes]:
    return [
        b'\x00Content-Type: application/pdf; name="report.pdf"\r\n'
        b'Content-Disposition: attachment; filename="report.pdf"',
        b"\x00Content-Type: application/pdf\r\nContent-Disposition: attachment;\r\n"
        b" filename*=UTF-8''%E2%82%AC%0D%0Arates%00.pdf",
        b"\x00Content-Type: application/pdf\r\nContent-Disposition: attachment;\r\n"
        b" filename*0*=UTF-8''%C3%A9t%C3%A9;\r\n filename*1=\"../../.bashrc\"",
        b'\x00Content-Type: image/png; name="=?utf-8?q?=E2=80=A8evil=0A=2E=2E=5Cx.png?="',
        b'\x00Content-Type: text/plain\r\nContent-Disposition: inline; filename="a\\"b\\\\c"',
        b"\x00Content-Type: message/rfc822\r\n\r\nSubject: inner\r\n\r\nbody",
        '\x01r\u00e9sum\u00e9 "final".pdf\r\n\u2028x'.encode(),
        b"\x01" + b"a" * 300 + b".tar.gz",
    ]


if __name__ == "__main__":
    harness.main("file_names", check, seeds(), max_len=4096)
