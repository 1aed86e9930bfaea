"""Fuzz what the inbound policy reads from a message's header and body besides DKIM/ARC:
removal of forged Authentication-Results (pillarbox.policy.authresults), the header facts
with their Received parsing (pillarbox.policy.headerfacts) and the classifier's tokeniser
(``message_tokens``, pillarbox.policy.classifier).

Input: a whole message. Asserted, beyond "no exception":

* after ``strip_forged`` no Authentication-Results field claiming our authserv-id is left in
  the header (RFC 8601 §5: a receiver removes or renames such fields), other bytes untouched;
* the header facts are among the documented ones (``FACTS``), with and without an envelope
  sender, and never more tokens than ``max_tokens``;
* time stays within the per-input bound however long a field grows (Received fields, address
  fields): regular expressions that backtrack over a whole field are a finding.
"""

from __future__ import annotations

import atheris
import harness

with atheris.instrument_imports(include=["pillarbox"]):
    from pillarbox.mail.headers import scan_header
    from pillarbox.mail.parse import parse_message
    from pillarbox.policy.authresults import authserv_id, strip_forged
    from pillarbox.policy.classifier import DEFAULT_TOKEN_LIMITS, message_tokens
    from pillarbox.policy.headerfacts import FACTS, message_facts

OUR_ID = "mx.test"


def check(raw: bytes) -> None:
    stripped = strip_forged(raw, OUR_ID)
    assert len(stripped) <= len(raw)
    for f in scan_header(stripped, 0, len(stripped), max_fields=10_000).fields:
        if f.key == "authentication-results":
            assert authserv_id(f.value) != OUR_ID, (raw, stripped)
    info = parse_message(raw)
    for sender in (None, "bounce-123@lists.example.org"):
        assert message_facts(raw, info, sender) <= FACTS
    assert len(message_tokens(raw, info)) <= DEFAULT_TOKEN_LIMITS.max_tokens


def seeds() -> list[bytes]:
    return [
        b"Authentication-Results: mx.test; spf=pass smtp.mailfrom=a@b.example\r\n"
        b"Authentication-Results: (comment) MX.TEST (x); dkim=pass\r\n"
        b"Authentication-Results: other.test; dmarc=pass\r\n"
        b"Received: from mail.example.org (mail.example.org [192.0.2.1])\r\n"
        b"\tby mx.test with ESMTPS id 1; Fri, 06 Jun 2025 10:00:00 +0000\r\n"
        b"Received: from unknown (HELO pc-1-2-3.dyn.example.net) (198.51.100.7)\r\n"
        b"  by relay.example.org with SMTP; 6 Jun 2025 09:59:00 -0000\r\n"
        b'From: "News" <news@example.org>\r\nTo: a@b.example, c+tag@d.example\r\n'
        b"Reply-To: <>\r\nReturn-Path: <bounce-1234@example.org>\r\n"
        b"Message-ID: <x@localhost>\r\nDate: Fri, 06 Jun 2025 10:00:00 +0000\r\n"
        b"List-Unsubscribe: <mailto:u@example.org>\r\nPrecedence: bulk\r\n"
        b"Subject: =?utf-8?q?FREE_=E2=82=AC?= offer\r\nX-Mailer: Outlook\r\n"
        b'MIME-Version: 1.0\r\nContent-Type: multipart/alternative; boundary="=_b"\r\n\r\n'
        b"--=_b\r\nContent-Type: text/plain\r\n\r\nVisit www.example.org/x now\r\n--=_b\r\n"
        b'Content-Type: text/html\r\n\r\n<a href="http://x.example/">click</a>\r\n--=_b--\r\n',
        b"authentication-results:mx.test;none\n\nbody",
    ]


if __name__ == "__main__":
    harness.main("message_policy", check, seeds(), max_len=65536)
