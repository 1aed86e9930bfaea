"""Mail filters (``[milter]``, docs/milter.md) on the live MX, against a filter built on
Sendmail's own libmilter (pymilter, tests/interop/scripted_milter.py), with Python's smtplib
as the sending client: what the filter is shown (client, HELO, envelope, header fields and
body as sent), its refusals at MAIL and RCPT with its own replies, and its decisions at end of
message (header and body changes, a new envelope, quarantine to Junk, discard, a multi-line
refusal); a filter that cannot be reached answers with ``milter.default_action``.
"""

from __future__ import annotations

import base64
import json
import shutil
import smtplib
import socket
import socketserver
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dkim
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from pillarbox import config as cfg
from pillarbox.store.types import INBOX
from pillarbox.testing.live import TEST_PASSWORD as PASSWORD
from pillarbox.testing.live import LiveServer, loopback_config

pytest.importorskip("Milter", reason="pymilter (libmilter) is not installed")

ALICE = "alice@example.org"
BOB = "bob@example.org"
#: An account the filter refuses at RCPT (our own check passes it first).
REFUSED = "refused@example.org"
SENDER = "someone@example.net"
SCRIPT = Path(__file__).with_name("scripted_milter.py")


def listening(socket: Path, process: subprocess.Popen[bytes]) -> None:
    """Wait (10 s at most) for a filter started as ``process`` to create its socket."""
    for _ in range(200):
        if socket.exists():
            return
        if process.poll() is not None:
            raise RuntimeError(f"the filter exited with {process.returncode}")
        time.sleep(0.05)
    raise RuntimeError("the filter did not start")


@pytest.fixture
def milter(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """The scripted filter on a Unix socket: its address and its record file."""
    socket = tmp_path / "milter.sock"
    record = tmp_path / "record.jsonl"
    process = subprocess.Popen(
        [sys.executable, str(SCRIPT), f"unix:{socket}", str(record)],
        stdout=subprocess.DEVNULL,
    )
    try:
        listening(socket, process)
        yield f"unix:{socket}", record
    finally:
        process.terminate()
        process.wait(10)


def serve(
    tmp_path: Path, filters: tuple[str, ...], *, policy: bool = False, **milter: Any
) -> LiveServer:
    config = loopback_config(
        tmp_path / "data",
        only=["smtp"],
        policy=cfg.PolicySection(enabled=policy),
        milter=cfg.MilterSection(mx=filters, **milter),
    )
    return LiveServer(config)


@pytest.fixture
def live(tmp_path: Path, milter: tuple[str, Path]) -> Iterator[LiveServer]:
    with serve(tmp_path, (milter[0],)) as server:
        server.add_domain("example.org")
        for address in (ALICE, BOB, REFUSED):
            server.add_account(address, PASSWORD)
        yield server


def send(live: LiveServer, subject: str, *, sender: str = SENDER, to: str = ALICE) -> Any:
    body = (
        f"From: {sender}\r\nTo: {to}\r\nSubject: {subject}\r\nX-Remove-Me: gone\r\n"
        "\r\nHello,\r\nfrom the test.\r\n"
    )
    with smtplib.SMTP("127.0.0.1", live.port("smtp"), local_hostname="client.example.net") as c:
        return c.sendmail(sender, [to], body.encode())


def records(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_the_filter_is_shown_the_session_and_the_message_as_sent(
    live: LiveServer, milter: tuple[str, Path]
) -> None:
    assert send(live, "plain") == {}
    [seen] = records(milter[1])
    assert seen["client"]["address"] == "127.0.0.1"
    assert seen["client"]["hostname"] == "[127.0.0.1]"
    assert seen["helo"] == "client.example.net"
    assert seen["from"] == f"<{SENDER}>"
    assert seen["mail_addr"] == SENDER
    assert seen["rcpt"] == [f"<{ALICE}>"]
    assert seen["headers"] == [
        ["From", SENDER],
        ["To", ALICE],
        ["Subject", "plain"],
        ["X-Remove-Me", "gone"],
    ]
    assert seen["body"] == "Hello,\r\nfrom the test.\r\n"
    [stored] = live.mailbox_messages(ALICE, INBOX)
    assert b"Subject: plain\r\n" in stored


def test_refusals_at_mail_and_rcpt_carry_the_filters_replies(live: LiveServer) -> None:
    with pytest.raises(smtplib.SMTPSenderRefused) as sender:
        send(live, "x", sender="tempfail@example.net")
    assert (sender.value.smtp_code, sender.value.smtp_error) == (
        451,
        b"4.7.1 come back later, says the filter",
    )
    with pytest.raises(smtplib.SMTPRecipientsRefused) as rcpt:
        send(live, "x", to=REFUSED)
    assert rcpt.value.recipients == {REFUSED: (550, b"5.7.1 the filter refuses this one")}
    assert live.mailbox_messages(ALICE, INBOX) == []


def test_header_changes_are_written_into_the_stored_message(live: LiveServer) -> None:
    assert send(live, "edit") == {}
    [stored] = live.mailbox_messages(ALICE, INBOX)
    header = stored.split(b"\r\n\r\n", 1)[0]
    assert b"Subject: edited by the filter\r\n" in header
    assert b"X-Remove-Me" not in header
    assert b"\r\nX-Filtered: yes,\r\n\tfolded\r\n\r\n" in stored
    # Inserted at 0: above every field the message came with (our Received is added after).
    assert b"\r\nX-First: on top\r\nFrom: someone@example.net\r\n" in header
    assert stored.endswith(b"\r\n\r\nHello,\r\nfrom the test.\r\n")


def test_a_replaced_body_is_stored(live: LiveServer) -> None:
    assert send(live, "replace") == {}
    [stored] = live.mailbox_messages(ALICE, INBOX)
    assert stored.endswith(b"\r\n\r\nThe filter wrote this body.\r\n")


def test_a_new_envelope_delivers_to_the_filters_recipient(live: LiveServer) -> None:
    assert send(live, "reroute") == {}
    assert live.mailbox_messages(ALICE, INBOX) == []
    [stored] = live.mailbox_messages(BOB, INBOX)
    assert stored.startswith(b"Return-Path: <rerouted@example.net>\r\n")


def test_quarantine_files_the_message_in_junk_with_the_reason(live: LiveServer) -> None:
    assert send(live, "quarantine") == {}
    assert live.mailbox_messages(ALICE, INBOX) == []
    [stored] = live.mailbox_messages(ALICE, "Junk")
    assert b"X-Pillarbox-Quarantine: looks odd to the filter\r\n" in stored


def test_quarantine_overrides_the_policys_inbox(tmp_path: Path, milter: tuple[str, Path]) -> None:
    """With the inbound policy judging too: its verdict fields stay, the copy goes to Junk."""
    with serve(tmp_path, (milter[0],), policy=True) as live:
        live.add_domain("example.org")
        live.add_account(ALICE, PASSWORD)
        assert send(live, "quarantine") == {}
        assert live.mailbox_messages(ALICE, INBOX) == []
        [stored] = live.mailbox_messages(ALICE, "Junk")
    assert b"X-Pillarbox-Quarantine: looks odd to the filter\r\nX-Pillarbox-Spam: " in stored


def test_discard_answers_250_and_stores_nothing(live: LiveServer) -> None:
    assert send(live, "discard") == {}
    assert live.mailbox_messages(ALICE, INBOX) == []
    assert live.mailbox_messages(ALICE, "Junk") == []


def test_a_refusal_at_end_of_message_is_the_filters_multiline_reply(live: LiveServer) -> None:
    with pytest.raises(smtplib.SMTPDataError) as refused:
        send(live, "reject")
    assert refused.value.smtp_code == 554
    assert refused.value.smtp_error == b"5.7.0 refused by the filter\n5.7.0 second line"
    assert live.mailbox_messages(ALICE, INBOX) == []


@pytest.mark.parametrize(
    ("action", "delivered"),
    [("tempfail", None), ("reject", None), ("accept", True)],
)
def test_a_filter_that_cannot_be_reached_gets_the_default_action(
    tmp_path: Path, action: str, delivered: bool | None
) -> None:
    absent = f"unix:{tmp_path / 'nobody.sock'}"
    with serve(tmp_path, (absent,), default_action=action) as live:
        live.add_domain("example.org")
        live.add_account(ALICE, PASSWORD)
        if delivered:
            assert send(live, "plain") == {}
            assert len(live.mailbox_messages(ALICE, INBOX)) == 1
            return
        with smtplib.SMTP() as client:
            code, text = client.connect("127.0.0.1", live.port("smtp"))
        expected = (
            (421, b"service not available, try again later")
            if action == "tempfail"
            else (554, b"no SMTP service here: refused by a mail filter")
        )
        assert (code, text) == expected


def test_opendkim_signs_what_is_stored(tmp_path: Path) -> None:
    """OpenDKIM (a C filter on libmilter) signs the message at the MX; the signature verifies
    on the stored copy, so the header fields and body it was shown are those we kept, and its
    folded DKIM-Signature field was written back intact."""
    opendkim = shutil.which("opendkim")
    if opendkim is None:
        pytest.skip("opendkim is not installed")
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    key_file = tmp_path / "sel.private"
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
    )
    key_file.chmod(0o600)
    public = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    socket = tmp_path / "opendkim.sock"
    conf = tmp_path / "opendkim.conf"
    conf.write_text(
        "Mode s\nDomain example.net\nSelector sel\n"
        f"KeyFile {key_file}\nSocket unix:{socket}\nInternalHosts 127.0.0.1\n"
        "Canonicalization simple/simple\nBackground no\nSyslog no\nRequireSafeKeys false\n"
        f"PidFile {tmp_path / 'opendkim.pid'}\n"
    )
    process = subprocess.Popen([opendkim, "-f", "-x", str(conf)])
    try:
        listening(socket, process)
        with serve(tmp_path, (f"unix:{socket}",)) as live:
            live.add_domain("example.org")
            live.add_account(ALICE, PASSWORD)
            assert send(live, "signed by OpenDKIM") == {}
            [stored] = live.mailbox_messages(ALICE, INBOX)
    finally:
        process.terminate()
        process.wait(10)
    assert b"\r\nDKIM-Signature: v=1;" in stored
    record = b"v=DKIM1; k=rsa; p=" + base64.b64encode(public)

    def dns(name: bytes, timeout: int = 5) -> bytes:
        assert name == b"sel._domainkey.example.net."
        return record

    assert dkim.verify(stored, dnsfunc=dns)


def test_submission_filters_see_the_login(tmp_path: Path, milter: tuple[str, Path]) -> None:
    config = loopback_config(
        tmp_path / "data",
        only=["submission"],
        policy=cfg.PolicySection(enabled=False),
        milter=cfg.MilterSection(submission=(milter[0],)),
    )
    with LiveServer(config) as live:
        live.add_domain("example.org")
        live.add_account(ALICE, PASSWORD)
        live.add_account(BOB, PASSWORD)
        with smtplib.SMTP("127.0.0.1", live.port("submission")) as client:
            client.login(ALICE, PASSWORD)
            message = f"From: {ALICE}\r\nTo: {BOB}\r\nSubject: edit\r\n\r\nHi.\r\n"
            assert client.sendmail(ALICE, [BOB], message.encode()) == {}
        [seen] = records(milter[1])
        assert (seen["from"], seen["auth_authen"]) == (f"<{ALICE}>", ALICE)
        [stored] = live.mailbox_messages(BOB, INBOX)
        assert b"\r\nSubject: edited by the filter\r\n" in stored


class HostileFilter(socketserver.ThreadingTCPServer):
    """A filter on loopback that negotiates, then misbehaves as ``mode`` says once it is sent
    end of message: ``silent`` never answers, ``garbage`` answers with an unknown reply code,
    ``huge`` announces a 2 GiB packet, ``progress`` keeps sending progress past the content
    timeout, then continues with a header added."""

    allow_reuse_address = True
    daemon_threads = True

    def __init__(self, mode: str) -> None:
        self.mode = mode
        super().__init__(("127.0.0.1", 0), _HostileHandler)


class _HostileHandler(socketserver.BaseRequestHandler):
    server: HostileFilter

    def handle(self) -> None:
        sock: socket.socket = self.request
        while True:
            head = _read(sock, 4)
            if head is None:
                return
            (length,) = struct.unpack(">I", head)
            data = _read(sock, length)
            if data is None:
                return
            code = data[:1]
            if code == b"O":  # version 6, every action, no protocol step left out
                sock.sendall(struct.pack(">IcIII", 13, b"O", 6, 0x1FF, 0))
            elif code == b"E":
                self._end(sock)
            elif code in b"CHMRTLNB":
                sock.sendall(struct.pack(">Ic", 1, b"c"))

    def _end(self, sock: socket.socket) -> None:
        mode = self.server.mode
        if mode == "silent":
            time.sleep(5)
        elif mode == "garbage":
            sock.sendall(struct.pack(">Ic", 1, b"Z"))
        elif mode == "huge":
            sock.sendall(struct.pack(">Ic", 0x7FFFFFFF, b"b"))
        elif mode == "progress":
            for _ in range(6):
                sock.sendall(struct.pack(">Ic", 1, b"p"))
                time.sleep(0.3)
            field = b"X-Slow\0done\0"
            sock.sendall(struct.pack(">Ic", len(field) + 1, b"h") + field)
            sock.sendall(struct.pack(">Ic", 1, b"c"))


def _read(sock: socket.socket, size: int) -> bytes | None:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            return None
        data += chunk
    return data


@pytest.mark.parametrize("mode", ["silent", "garbage", "huge", "progress"])
def test_a_filter_that_breaks_the_protocol_or_stalls(
    tmp_path: Path, mode: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Each failure is answered 451 4.3.0 (the default action) and logged, and nothing is
    stored; progress replies keep a slow filter's timer alive (1 s, here 1.8 s of progress)."""
    hostile = HostileFilter(mode)
    threading.Thread(target=hostile.serve_forever, daemon=True).start()
    address = f"inet:127.0.0.1:{hostile.server_address[1]}"
    try:
        with serve(tmp_path, (address,), content_timeout=1.0, command_timeout=1.0) as live:
            live.add_domain("example.org")
            live.add_account(ALICE, PASSWORD)
            if mode == "progress":
                assert send(live, "slow") == {}
                [stored] = live.mailbox_messages(ALICE, INBOX)
                assert b"\r\nX-Slow: done\r\n" in stored
                return
            with pytest.raises(smtplib.SMTPDataError) as refused:
                send(live, "x")
            assert (refused.value.smtp_code, refused.value.smtp_error) == (
                451,
                b"4.3.0 mail filter unavailable, try again later",
            )
            assert live.mailbox_messages(ALICE, INBOX) == []
        assert [r.levelname for r in caplog.records if r.getMessage() == "mail filter failed"] == [
            "WARNING"
        ]
    finally:
        hostile.shutdown()
        hostile.server_close()
