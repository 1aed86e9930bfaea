"""Fuzz the Sieve language core: lexer, parser, validator and interpreter.

Input: a script (bytes, read as UTF-8 with surrogates). Asserted, beyond "no exception":

* ``compile_script`` raises nothing but SieveError, whose line lies inside the script;
* a script that compiles runs on a fixed message (with METADATA entries, RFC 5490) without
  raising and decides something
  (at least one action; a message not kept or filed was discarded or redirected), with each
  script it includes being itself (RFC 6609: loops and limits are runtime errors);
* a message edited by addheader/deleteheader (RFC 5293) still has its body and parses back
  to the header the script left.
"""

from __future__ import annotations

from datetime import UTC, datetime

import atheris
import harness

with atheris.instrument_imports(include=["pillarbox"]):
    from pillarbox.sieve import (
        Discard,
        FileInto,
        Keep,
        Redirect,
        Reject,
        SieveError,
        SieveMessage,
        compile_script,
    )
    from pillarbox.sieve.environment import items

NOW = datetime(2026, 11, 30, 2, 0, tzinfo=UTC)
MESSAGE = SieveMessage.from_bytes(
    b"From: Ken <ken+lists@example.org>\r\nTo: g: me@example.com;, x@example.net\r\n"
    b"Subject: =?utf-8?q?caf=C3=A9?= $$$\r\nX-Spam-Score: 12\r\n\r\nBody text.\r\n",
    envelope_from="bounce@example.net",
    envelope_to="me+sieve@example.com",
    mailboxes=("INBOX", "Lists"),
    environment=items(host="mx.example.com", remote_ip="192.0.2.1"),
    metadata={("INBOX", "/private/comment"): "caf\u00e9", (None, "/shared/admin"): "mailto:a@b.c"},
)
BODY = b"\r\n\r\nBody text.\r\n"


def check(data: bytes) -> None:
    text = data.decode("utf-8", "surrogateescape")
    try:
        script = compile_script(text)
    except SieveError as exc:
        line = exc.line
        assert 1 <= line <= text.count("\n") + 1, (line, text)
        return
    outcome = script.run(
        MESSAGE, now=NOW, includes=dict.fromkeys(script.includes, script), name="main"
    )
    assert outcome.actions, text
    if outcome.message is not None:
        assert outcome.message.endswith(BODY), outcome.message
        edited = SieveMessage.from_bytes(outcome.message)
        assert edited.raw.count(b"\r\n\r\n") >= 1
    if not any(isinstance(a, Keep | FileInto) for a in outcome.actions):
        assert any(isinstance(a, Discard | Redirect | Reject) for a in outcome.actions), outcome


def seeds() -> list[bytes]:
    return [
        b'require ["fileinto", "imap4flags", "copy"];\r\n'
        b'if header :contains "subject" "caf\xc3\xa9" { fileinto :flags "\\\\Seen" "x"; }\r\n'
        b'elsif address :domain :is ["from", "to"] "example.com" { redirect :copy "a@b.c"; }\r\n'
        b"else { discard; }\r\n",
        b'require ["vacation", "relational", "comparator-i;ascii-numeric"];\r\n'
        b'if header :value "gt" :comparator "i;ascii-numeric" "x-spam-score" "10" { stop; }\r\n'
        b'vacation :days 3 :subject "Away" text:\r\nGone.\r\n..\r\n.\r\n;\r\n',
        b'require ["envelope", "subaddress", "encoded-character", "body"];\r\n'
        b'if allof (envelope :detail "to" "sieve", not exists "x",\r\n'
        b'  body :raw :matches "*${hex:42}ody*") { keep; }\r\n/* c */ # d\r\n',
        b'require ["variables", "fileinto", "mailbox", "date", "index", "relational"];\r\n'
        b'if header :matches :index 1 "subject" "* $*" { set :upperfirst "w" "${1}"; }\r\n'
        b'if allof (mailboxexists "Lists", string :count "ge" ["${w}", ""] "1",\r\n'
        b'  currentdate :value "ge" "date" "2020-01-01") { fileinto :create "L/${w}"; }\r\n',
        b'require ["reject", "date", "vacation-seconds"];\r\n'
        b'if date :is :zone "+0100" "date" "weekday" "0" { reject "Not on Sundays."; }\r\n'
        b'else { vacation :seconds 1800 "In a meeting."; }\r\n',
        b'require ["include", "variables", "environment", "editheader", "fileinto"];\r\n'
        b'global "n"; set "n" "${n}+"; include :once "main"; include :optional "main";\r\n'
        b'if environment :matches "remote-ip" "*" { addheader :last "X-Ip" "${1}"; }\r\n'
        b'deleteheader :index 1 :last :contains "subject" "$"; return;\r\n',
        b'require ["editheader", "variables", "index"];\r\n'
        b'addheader "X-A" "caf\xc3\xa9 ${hex:41}"; deleteheader :matches "to" "*example*";\r\n'
        b'if header :index 1 "x-a" "*" { addheader :last "X-B" text:\r\nb\r\n c\r\n.\r\n; }\r\n',
        b'require ["enotify", "variables", "mboxmetadata", "servermetadata", "reject"];\r\n'
        b'set :encodeurl "s" "caf\xc3\xa9 & co";\r\n'
        b'if metadata :matches "INBOX" "/private/comment" "*"\r\n'
        b'{ notify :importance "1" :message "${1}" "mailto:a@b.c%2Cd@e.f?subject=${s}&x-a=b"; }\r\n'
        b'if allof (servermetadataexists "/shared/admin", valid_notify_method "mailto:",\r\n'
        b'  notify_method_capability "mailto:x@y.z" "online" "maybe") { reject "no"; }\r\n',
        # RFC 5463: ihave blocks compiled with what they name (or not at all), error.
        b'require ["ihave", "fileinto"];\r\n'
        b'if ihave "x-frob" { frob :wibble "x"; fileinto "never"; }\r\n'
        b'elsif ihave ["copy", "imap4flags"] { fileinto :copy :flags "\\\\Seen" "Known"; }\r\n'
        b'if not ihave "variables" { error "no ${x}"; }\r\n',
        b'require ["ihave", "variables"];\r\n'
        b'if ihave ["vacation", "date"] {\r\n'
        b'  if ihave "editheader" { addheader "X-I" "${hex:41}"; } vacation "v"; }\r\n'
        b'if anyof (ihave "encoded-character", not ihave "x") { error "x"; } else { discard; }\r\n',
    ]


if __name__ == "__main__":
    harness.main("sieve_script", check, seeds(), max_len=65536)
