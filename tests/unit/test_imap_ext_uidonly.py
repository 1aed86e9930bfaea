"""RFC 9586 UIDONLY on the session core with a real SQLite store: which commands name messages
by number (a table over the parser's output), and the responses transcripts do not reach —
a QRESYNC resynchronisation and a conditional STORE answered with UIDFETCH."""

# ruff: noqa: F811 -- ``store`` is the fixture imported from test_imap_session, used by name.
from __future__ import annotations

import re
from pathlib import Path

import pytest
from test_imap_session import USER, deliver, make_wire, store  # noqa: F401

from pillarbox.imap.parser import parse_command
from pillarbox.imap.session import uidonly_refuses
from pillarbox.store.interface import Store
from pillarbox.testing.live import TEST_PASSWORD


@pytest.mark.parametrize(
    ("line", "numbered"),
    [
        (b"a FETCH 1 FLAGS", True),
        (b"a FETCH $ FLAGS", True),  # the command form, whatever its set
        (b"a UID FETCH 1:* FLAGS", False),
        (b"a STORE 1 +FLAGS (\\Seen)", True),
        (b"a UID STORE 1 +FLAGS (\\Seen)", False),
        (b"a COPY 1 Trash", True),
        (b"a UID MOVE 1 Trash", False),
        (b"a SEARCH UID 1:*", True),
        (b"a UID SEARCH UID 1:* SEEN", False),
        (b"a UID SEARCH $", False),  # a saved result is UIDs
        (b"a UID SEARCH NOT (OR SEEN 1:3)", True),
        (b"a UID SORT (DATE) UTF-8 2", True),
        (b"a UID THREAD REFERENCES UTF-8 UID 2", False),
        (b"a REPLACE 1 Drafts {1}\r\nx", True),
        (b"a UID REPLACE 1 Drafts {1}\r\nx", False),
        (b"a UID EXPUNGE 1", False),
        (b"a EXPUNGE", False),
        (b"a SELECT INBOX (QRESYNC (1 2 1:4 (1:2 3:4)))", True),  # seq-match
        (b"a SELECT INBOX (QRESYNC (1 2 1:4))", False),
        (b"a NOOP", False),
    ],
)
def test_commands_that_name_messages_by_number(line: bytes, numbered: bool) -> None:
    assert uidonly_refuses(parse_command(line)) is numbered


async def test_qresync_and_conditional_store_answer_uidfetch(store: Store, tmp_path: Path) -> None:
    for subject in ("one", "two", "three"):
        await deliver(store, subject)
    wire = make_wire(store, tmp_path)
    await wire.login(USER, TEST_PASSWORD)
    await wire.send("e ENABLE QRESYNC UIDONLY IMAP4rev2\r\n")
    out = await wire.send("s SELECT INBOX\r\n")
    assert "[UNSEEN" not in out
    found = re.search(r"\[UIDVALIDITY (\d+)\]", out)
    assert found is not None
    out = await wire.send("t UID STORE 1:3 (UNCHANGEDSINCE 99) +FLAGS.SILENT (\\Seen)\r\n")
    assert out.splitlines()[:3] == [
        "* 1 UIDFETCH (MODSEQ (5))",
        "* 2 UIDFETCH (MODSEQ (5))",
        "* 3 UIDFETCH (MODSEQ (5))",
    ]
    other = make_wire(store, tmp_path)
    await other.login(USER, TEST_PASSWORD)
    await other.send("s SELECT INBOX\r\nf UID STORE 3 +FLAGS (\\Flagged)\r\n")
    await wire.send("c CLOSE\r\n")
    out = await wire.send(f"r SELECT INBOX (QRESYNC ({found.group(1)} 5 1:3))\r\n")
    assert "* 3 UIDFETCH (FLAGS (\\Flagged \\Seen) MODSEQ (6))\r\n" in out
    assert " FETCH " not in out
