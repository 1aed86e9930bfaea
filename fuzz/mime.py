"""Fuzz the MIME parser (pillarbox.mail.parse.parse_message) and what is built on its result.

Input: a whole message. Asserted, beyond "no exception":

* the offsets contract of ``parse_message``: ``header_start <= body_start <= body_end`` within
  the message, children inside their parent's body, siblings in order without overlap;
* every part's section bytes, its text (``part_text``) and its decoded body
  (``decoded_part``, which may only raise UnknownTransferEncoding) can be produced;
* IMAP renders the ENVELOPE and BODYSTRUCTURE of any message (pillarbox.imap.responses);
* a delivery status notification (pillarbox.mail.dsn) returning this message as its original
  parses as a multipart/report of exactly three parts: the boundary never collides with the
  original's bytes (RFC 2046 §5.1.1), whatever they are.

Seed it with a directory of real or torture messages as a second corpus directory, e.g.
``python fuzz/mime.py /tmp/mime-corpus /work/shared/corpora/<messages>``.
"""

from __future__ import annotations

import contextlib
from datetime import UTC, datetime

import atheris
import harness

with atheris.instrument_imports(include=["pillarbox"]):
    from pillarbox.imap.responses import format_body, format_envelope
    from pillarbox.mail.decode import UnknownTransferEncoding
    from pillarbox.mail.dsn import (
        Action,
        DeliveryReport,
        RecipientReport,
        ReportMessage,
        ReturnContent,
        build_report,
    )
    from pillarbox.mail.model import BodyPart
    from pillarbox.mail.parse import (
        ParseLimits,
        decoded_part,
        parse_message,
        part_text,
        section_bytes,
    )

LIMITS = ParseLimits(max_depth=8, max_parts=64)
WHEN = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
REPORT = DeliveryReport(
    reporting_mta="mx.a.test",
    arrival_date=WHEN,
    recipients=(
        RecipientReport(
            final_recipient="bob@b.test",
            action=Action.FAILED,
            status="5.1.1",
            diagnostic="550 5.1.1 no such user",
        ),
    ),
)
REPORT_MESSAGE = ReportMessage(
    from_address="MAILER-DAEMON@mx.a.test",
    to_address="alice@a.test",
    date=WHEN,
    message_id="<dsn.1@mx.a.test>",
    boundary_seed="b.1",
    max_original=4096,
)


def _walk(raw: bytes, part: BodyPart, lo: int, hi: int, depth: int) -> int:
    """Check ``part`` lies in ``raw[lo:hi]``; return how many parts are below it."""
    assert lo <= part.header_start <= part.body_start <= part.body_end <= hi, (part, lo, hi)
    assert depth < 64
    count = 1
    text = part_text(raw, part)
    assert isinstance(text, str)
    with contextlib.suppress(UnknownTransferEncoding):
        decoded_part(raw, part)
    previous = part.body_start
    for child in part.parts:
        assert child.header_start >= previous, (child, previous)
        count += _walk(raw, child, part.body_start, part.body_end, depth + 1)
        previous = child.body_end
    if part.message is not None:
        assert part.message.header_start == part.body_start
        count += _walk(raw, part.message, part.body_start, part.body_end, depth + 1)
    return count


def check(raw: bytes) -> None:
    info = parse_message(raw, limits=LIMITS)
    assert info.size == len(raw)
    assert 0 <= info.header_end <= len(raw)
    _walk(raw, info.body, 0, len(raw), 0)
    for section in ((), (1,), (1, 1), (2,)):
        for text in ("", "HEADER", "TEXT", "MIME"):
            section_bytes(raw, info, section, text)  # type: ignore[arg-type]
        section_bytes(raw, info, section, "HEADER.FIELDS", ("subject", "from"))
    for utf8 in (False, True):
        format_envelope(info.envelope, utf8=utf8)
        format_body(info.body, extensible=True, utf8=utf8)
        format_body(info.body, extensible=False, utf8=utf8)
    for ret in (ReturnContent.FULL, ReturnContent.HEADERS):
        dsn = build_report(REPORT, REPORT_MESSAGE, raw, ret=ret)
        report = parse_message(dsn)
        assert (report.body.type, report.body.subtype) == ("multipart", "report"), dsn
        assert len(report.body.parts) == 3, (raw, dsn, report.defects)


def seeds() -> list[bytes]:
    root = harness.repo_root()
    found = [
        b"From: a@b.example\r\nTo: c@d.example\r\nSubject: =?utf-8?q?h=C3=A9?=\r\n\r\nbody\r\n",
        b"Content-Type: multipart/mixed; boundary=x\r\n\r\npre\r\n--x\r\n"
        b"Content-Type: text/plain; charset*0*=utf-8''a; name*1=b\r\n\r\nA\r\n--x\r\n"
        b"Content-Type: message/rfc822\r\n\r\nSubject: inner\r\n\r\nI\r\n--x--\r\nepi\r\n",
        b"Content-Type: text/html\r\nContent-Transfer-Encoding: base64\r\n\r\nPGI+aGk8L2I+\r\n",
        b'Content-Type: multipart/alternative; boundary="q"\n\n--q\nContent-Transfer-Encoding:'
        b" quoted-printable\n\na=3Db=\n--q--\n",
    ]
    for path in sorted((root / "tests").rglob("*.eml")):
        found.append(path.read_bytes())
    return found


if __name__ == "__main__":
    harness.main("mime", check, seeds(), max_len=65536)
