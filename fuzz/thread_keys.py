"""Fuzz the Message-ID, In-Reply-To and References keys a message is threaded by (the ids
``pillarbox.mail.parse`` keeps, the THREADID keys of ``pillarbox.store.threadrows``) and the
reply the webmail writes to such a message.

Input: a message's header (bytes, as any sender may write it). Asserted, beyond "no
exception":

* every id kept, every thread key and every text field a store keeps in a column (subject,
  addresses, header and body text) is text both stores hold: valid Unicode (no surrogate
  escapes), no NUL (a PostgreSQL text column refuses it); a key fits :data:`MAX_KEY_BYTES`;
  only a message without a Message-ID has a content key (no id passes for one); parsing is
  deterministic;
* the webmail's reply to the message (``reply_draft``, ``build_message``) is built without
  raising and, read back, has the keys that put it in the original's thread: the original's
  own id and every reference it kept (those a header can carry so that they read back:
  ``angle`` leaves out UTF-8 ids and ids with controls or blanks in their id-right).
"""

from __future__ import annotations

from datetime import UTC, datetime

import atheris
import harness

with atheris.instrument_imports(include=["pillarbox"]):
    from pillarbox.mail.parse import parse_message
    from pillarbox.store.threadrows import (
        CONTENT_KEY,
        MAX_KEY_BYTES,
        ThreadAssigner,
        thread_keys,
    )
    from pillarbox.web.composing import Recipients, angle, build_message, reply_draft
    from pillarbox.web.reading import Person

NOW = datetime(2026, 11, 30, 2, 0, tzinfo=UTC)
DIGEST = "0" * 64
ME = Person("Me", "me@example.com")


def _keys(raw: bytes) -> list[str]:
    info = parse_message(raw)
    columns = (info.subject, info.from_addr, info.to_addr, info.cc_addr, info.message_id)
    columns += (info.in_reply_to, *info.references, info.header_text, info.body_text)
    for text in columns:
        text.encode("utf-8")  # strict: no surrogate escape reaches a store
        assert "\x00" not in text, text
    keys = thread_keys(info.message_id, info.in_reply_to, info.references, DIGEST)
    content = [key for key in keys if key.startswith(CONTENT_KEY)]
    assert content == ([] if info.message_id else [CONTENT_KEY + DIGEST]), keys
    assert all(len(key.encode("utf-8")) <= MAX_KEY_BYTES for key in keys), keys
    return keys


def check(data: bytes) -> None:
    keys = _keys(data)
    assert _keys(data) == keys
    info = parse_message(data)
    draft = reply_draft(
        info, "", own_addresses={ME.address}, reply_all=False, origin="1:1", received=NOW
    )
    recipients = Recipients(to=(Person("", "you@example.org"),))
    reply, _ = build_message(
        draft, sender=ME, recipients=recipients, hostname="mx.example.com", now=NOW,
        include_bcc=False,
    )  # fmt: skip
    reply_keys = _keys(reply)
    kept = [k for k in (info.message_id, *info.references) if k in keys and angle(k)]
    assert all(key in reply_keys for key in kept), (kept, reply_keys, reply)
    threads = ThreadAssigner(1)
    if kept and threads.assign(keys) != threads.assign(reply_keys):
        raise AssertionError((keys, reply_keys))


def seeds() -> list[bytes]:
    return [
        b"Message-ID: <a.b@example.org>\r\nIn-Reply-To: <1@x>\r\nReferences: <1@x>\r\n"
        b" <2@y>\r\n\r\nbody",
        b'Message-ID: <"quoted local"@example.org>\r\nReferences: <1@x> (comment) <2 @ y>\r\n',
        b"Message-ID: <caf\xc3\xa9@example.org>\r\nIn-Reply-To: <\xff@x>\r\n\r\n",
        b"Message-ID: bare@example.org\r\nIn-Reply-To: foo <1@x> bar\r\n\r\n",
        b"References: <1@x> <2@x> <1@x>\r\nSubject: no id\r\n\r\n",
        b"Message-ID: <" + b"x" * 1000 + b"@example.org>\r\nReferences: <a@b>\r\n\r\n",
    ]


if __name__ == "__main__":
    harness.main("thread_keys", check, seeds(), max_len=65536)
