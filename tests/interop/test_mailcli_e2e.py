"""pillarbox mail end to end, against servers on loopback, with certificate checks on.

Each test runs against two worlds:

- ``pillarbox``: our own server (IMAP and submission with STARTTLS, POP3 with STLS);
- ``dovecot``: Dovecot from Debian (IMAP over implicit TLS, POP3 with STLS) as an unprivileged
  instance with a passwd-file userdb and Maildir storage, and aiosmtpd (STARTTLS + AUTH) as the
  submission server, which delivers what it accepts into Dovecot by IMAP APPEND.

A test that needs a protocol a world lacks (a Pillarbox listener not built yet, Dovecot not
installed) is skipped with the reason. CI installs Dovecot with
``apt-get install -y dovecot-imapd dovecot-pop3d``.
"""

from __future__ import annotations

import asyncio
import email
import json
import os
import shutil
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from email import policy
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session
from click.testing import CliRunner, Result
from imapclient import IMAPClient

from pillarbox.cli.main import cli
from pillarbox.mail.parse import parse_message
from pillarbox.mailclient.transport import Endpoint, TlsMode
from pillarbox.net.serve import SERVICES
from pillarbox.net.tls import tls_paths
from pillarbox.store.types import DeliveryTarget
from pillarbox.testing.dovecot import DOVECOT, Dovecot, start_dovecot, stop_dovecot
from pillarbox.testing.live import TEST_PASSWORD, LiveServer, free_port

pytestmark = pytest.mark.listeners("imap", "submission", "pop3")

USERS = ("alice@example.org", "bob@example.org", "carol@example.org")
#: Dovecot's Sent folder, named otherwise than "Sent": only its \Sent attribute finds it.
DOVECOT_SENT = "Sent Messages"


@dataclass
class World:
    """Servers for one run, and how to put a message straight into someone's INBOX."""

    name: str
    cafile: Path
    imap: Endpoint | None
    pop3: Endpoint | None
    smtp: Endpoint | None
    password: str
    deliver_raw: Any
    envelopes: list[tuple[str, list[str], bytes]] = field(default_factory=list)
    #: The folder LIST marks \Sent (RFC 6154), where ``mail send`` keeps its copies.
    sent_folder: str = "Sent"

    def require(self, *protocols: str) -> None:
        for protocol in protocols:
            if getattr(self, protocol) is None:
                pytest.skip(f"{self.name}: no {protocol.upper()} server in this build/machine")

    def deliver(self, address: str, raw: bytes) -> None:
        self.deliver_raw(address, raw)


# -- the Pillarbox world ------------------------------------------------------------------------


def pillarbox_world(live: LiveServer) -> World:
    live.add_account("carol@example.org", TEST_PASSWORD)

    def endpoint(listener: str) -> Endpoint | None:
        if listener not in SERVICES or listener not in live.server.listeners:
            return None
        return Endpoint("127.0.0.1", live.port(listener), TlsMode.STARTTLS)

    def deliver(address: str, raw: bytes) -> None:
        async def go() -> None:
            account = await live.store.get_account(address)
            assert account is not None
            [result] = await live.store.deliver(
                raw, parse_message(raw), [DeliveryTarget(account.id)]
            )
            assert result.record is not None

        live.call(go())

    return World(
        name="pillarbox",
        cafile=tls_paths(live.config)[0],
        imap=endpoint("imap"),
        pop3=endpoint("pop3"),
        smtp=endpoint("submission"),
        password=TEST_PASSWORD,
        deliver_raw=deliver,
    )


# -- the Dovecot + aiosmtpd world ---------------------------------------------------------------


def append_to_dovecot(dovecot: Dovecot, address: str, password: str, raw: bytes) -> None:
    context = ssl.create_default_context(cafile=str(dovecot.directory / "cert.pem"))
    client = IMAPClient("127.0.0.1", port=dovecot.imaps_port, ssl_context=context, timeout=10)
    try:
        client.login(address, password)
        client.append("INBOX", raw)
    finally:
        client.logout()


class RelayIntoDovecot:
    """aiosmtpd handler: each accepted message is APPENDed to each local recipient's INBOX."""

    def __init__(self, dovecot: Dovecot, password: str, log: list[tuple[str, list[str], bytes]]):
        self.dovecot = dovecot
        self.password = password
        self.log = log

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        if address.lower() not in USERS:
            return "550 5.1.1 no such user here"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        raw = envelope.original_content or b""
        self.log.append((envelope.mail_from or "", list(envelope.rcpt_tos), raw))
        loop = asyncio.get_running_loop()
        for rcpt in envelope.rcpt_tos:
            await loop.run_in_executor(
                None, append_to_dovecot, self.dovecot, rcpt.lower(), self.password, raw
            )
        return "250 2.0.0 delivered"


def password_checker(password: str) -> Any:
    def check(
        server: SMTP, session: Session, envelope: Envelope, mechanism: str, auth_data: Any
    ) -> AuthResult:
        ok = (
            isinstance(auth_data, LoginPassword)
            and auth_data.login.decode() in USERS
            and auth_data.password.decode() == password
        )
        return AuthResult(success=ok, handled=False)

    return check


def server_tls(directory: Path) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(directory / "cert.pem", directory / "key.pem")
    return context


@pytest.fixture(scope="module")
def dovecot() -> Iterator[Dovecot]:
    if DOVECOT is None:
        pytest.skip("dovecot not installed (apt-get install -y dovecot-imapd dovecot-pop3d)")
    if os.geteuid() == 0 and shutil.which("setpriv") is None:
        pytest.skip("running as root without setpriv to drop privileges for dovecot")
    sent = f'mailbox "{DOVECOT_SENT}" {{\n  auto = create\n  special_use = \\Sent\n}}\n'
    instance = start_dovecot(TEST_PASSWORD, USERS, mailboxes=sent)
    yield instance
    stop_dovecot(instance)


def clear_dovecot(dovecot: Dovecot) -> None:
    """Empty every user's folders, so each test starts from nothing (module-wide Dovecot)."""
    context = ssl.create_default_context(cafile=str(dovecot.directory / "cert.pem"))
    for address in USERS:
        client = IMAPClient("127.0.0.1", port=dovecot.imaps_port, ssl_context=context, timeout=10)
        try:
            client.login(address, TEST_PASSWORD)
            for _, _, name in client.list_folders():
                client.select_folder(name)
                uids = client.search(["ALL"])
                if uids:
                    client.delete_messages(uids)
                    client.expunge()
        finally:
            client.logout()


@pytest.fixture(params=["pillarbox", "dovecot"])
def world(request: pytest.FixtureRequest) -> Iterator[World]:
    if request.param == "pillarbox":
        yield pillarbox_world(request.getfixturevalue("live"))
        return
    instance: Dovecot = request.getfixturevalue("dovecot")
    clear_dovecot(instance)
    log: list[tuple[str, list[str], bytes]] = []
    controller = Controller(
        RelayIntoDovecot(instance, TEST_PASSWORD, log),
        hostname="127.0.0.1",
        port=free_port("127.0.0.1"),
        tls_context=server_tls(instance.directory),
        require_starttls=True,
        authenticator=password_checker(TEST_PASSWORD),
        auth_required=True,
    )
    controller.start()
    try:
        yield World(
            name="dovecot",
            cafile=instance.directory / "cert.pem",
            imap=Endpoint("127.0.0.1", instance.imaps_port, TlsMode.IMPLICIT),
            pop3=Endpoint("127.0.0.1", instance.pop3_port, TlsMode.STARTTLS),
            smtp=Endpoint("127.0.0.1", controller.port, TlsMode.STARTTLS),
            password=TEST_PASSWORD,
            deliver_raw=lambda address, raw: append_to_dovecot(
                instance, address, TEST_PASSWORD, raw
            ),
            envelopes=log,
            sent_folder=DOVECOT_SENT,
        )
    finally:
        controller.stop()


# -- driving the client -------------------------------------------------------------------------


class User:
    """One person's client: its own PILLARBOX_MAIL_HOME with one account."""

    def __init__(self, world: World, address: str, home: Path, password: str | None = None):
        self.world = world
        self.address = address
        self.home = home
        flags = ["--address", address, "--display-name", address.split("@", maxsplit=1)[0].title()]
        for protocol in ("imap", "pop3", "smtp"):
            endpoint: Endpoint | None = getattr(world, protocol)
            if endpoint is not None:
                flags += [
                    f"--{protocol}-host", endpoint.host,
                    f"--{protocol}-port", str(endpoint.port),
                    f"--{protocol}-tls", endpoint.tls.value,
                ]  # fmt: skip
        result = self.run("account", "add", "main", *flags, "--password-stdin",
                          stdin=(password or world.password) + "\n", check=False)  # fmt: skip
        assert result.exit_code == 0, result.output

    def env(self) -> dict[str, str]:
        return {"PILLARBOX_MAIL_HOME": str(self.home)}

    def run(self, *args: str, stdin: str = "", check: bool = True) -> Result:
        trust = [] if args[0] == "account" else ["--cafile", str(self.world.cafile)]
        result = CliRunner().invoke(cli, ["mail", *trust, *args], input=stdin, env=self.env())
        if check:
            assert result.exit_code == 0, (args, result.output, result.exception)
        return result

    def json(self, *args: str, stdin: str = "") -> Any:
        return json.loads(self.run(*args, "--json", stdin=stdin).stdout)

    def wait_for(self, query: str, count: int = 1, folder: str = "INBOX") -> list[dict[str, Any]]:
        deadline = time.monotonic() + 10
        while True:
            found: list[dict[str, Any]] = self.json("search", query, "--folder", folder)
            if len(found) >= count or time.monotonic() > deadline:
                assert len(found) == count, found
                return found
            time.sleep(0.1)


def folder_contents(world: World, address: str, folder: str) -> list[tuple[bytes, set[bytes]]]:
    """Each message's bytes and flags in ``folder``, read with imapclient (not our client)."""
    assert world.imap is not None
    context = ssl.create_default_context(cafile=str(world.cafile))
    implicit = world.imap.tls is TlsMode.IMPLICIT
    client = IMAPClient(
        world.imap.host, port=world.imap.port, ssl=implicit, ssl_context=context, timeout=10
    )
    try:
        if not implicit:
            client.starttls(context)
        client.login(address, world.password)
        client.select_folder(folder, readonly=True)
        fetched = client.fetch(client.search(["ALL"]), ["BODY.PEEK[]", "FLAGS"])
        return [(data[b"BODY[]"], set(data[b"FLAGS"])) for data in fetched.values()]
    finally:
        client.logout()


def people(world: World, tmp_path: Path) -> tuple[User, User, User]:
    alice, bob, carol = (User(world, a, tmp_path / a.split("@")[0]) for a in USERS)
    return alice, bob, carol


def message(subject: str, body: str = "hello", sender: str = "zed@example.net") -> bytes:
    return (
        f"From: Zed <{sender}>\r\nTo: bob@example.org\r\nSubject: {subject}\r\n"
        f"Date: Mon, 03 Jun 2024 10:00:00 +0000\r\nMessage-ID: <{subject}@example.net>\r\n\r\n"
        f"{body}\r\n"
    ).encode()


# -- the tests ----------------------------------------------------------------------------------


def test_send_read_reply(world: World, tmp_path: Path) -> None:
    world.require("smtp", "imap")
    alice, bob, carol = people(world, tmp_path)
    attachment = tmp_path / "plan ü.txt"
    attachment.write_text("the plan\n", encoding="utf-8")
    sent = alice.json(
        "send", "--to", "Bob <bob@example.org>", "--bcc", "carol@example.org",
        "--subject", "Café meeting ☕", "--attach", str(attachment),
        stdin="Shall we meet at ten?\nAlice\n",
    )  # fmt: skip
    assert sorted(sent["accepted"]) == ["bob@example.org", "carol@example.org"]
    # A copy of exactly what was submitted, read, in the folder marked \Sent (RFC 6154).
    assert sent["sent_copy"] == world.sent_folder
    [(copy, flags)] = folder_contents(world, "alice@example.org", world.sent_folder)
    assert b"\\Seen" in flags
    assert b"Subject: =?utf-8?" in copy and b"carol@example.org" not in copy  # no Bcc
    if world.envelopes:
        assert copy == world.envelopes[-1][2]  # the bytes the submission server received

    [listed] = bob.wait_for("subject:meeting")
    [(delivered, _)] = folder_contents(world, "bob@example.org", "INBOX")
    assert delivered.endswith(copy)  # what Bob got is the copy below trace fields
    assert listed["subject"] == "Café meeting ☕"
    assert listed["from"] == "Alice"
    assert "\\Seen" not in listed["flags"]
    table = bob.run("ls").stdout
    assert "Café meeting ☕" in table and table.splitlines()[0].startswith("UID")

    uid = str(listed["uid"])
    bob.run("read", uid, "--peek")
    assert len(bob.json("ls", "--unread")) == 1
    shown = bob.json("read", uid)
    assert bob.json("ls", "--unread") == []
    assert shown["text"] == "Shall we meet at ten?\nAlice"
    assert shown["headers"]["Subject"] == "Café meeting ☕"
    assert "Bcc" not in shown["headers"]
    assert [a["filename"] for a in shown["attachments"]] == ["plan ü.txt"]
    raw = bob.run("read", uid, "--raw").stdout
    assert "carol@example.org" not in raw  # the blind copy left no trace in Bob's copy
    assert carol.wait_for("subject:meeting")  # …but Carol has it

    target = tmp_path / "saved"
    assert "saved" in bob.run("save-attachments", uid, str(target)).stdout
    assert (target / "plan ü.txt").read_text(encoding="utf-8") == "the plan\n"
    again = bob.run("save-attachments", uid, str(target), check=False)
    assert again.exit_code == 1 and "--force" in again.output
    bob.run("save-attachments", uid, str(target), "--force")

    # --insecure (besides --cafile) warns once, though reply uses IMAP and SMTP.
    replied = bob.run("--insecure", "reply", uid, "--json", stdin="Ten is fine.\n")
    assert replied.stderr.count("warning: --insecure") == 1
    assert json.loads(replied.stdout)["accepted"] == ["alice@example.org"]
    [answered] = bob.json("search", "answered")
    assert answered["uid"] == listed["uid"]

    [got] = alice.wait_for("subject:Re")
    assert got["subject"] == "Re: Café meeting ☕"
    text = alice.json("read", str(got["uid"]))["text"]
    assert text.startswith("Ten is fine.\n\nOn ")
    assert "Alice wrote:\n> Shall we meet at ten?\n> Alice" in text
    original_id = email.message_from_string(raw, policy=policy.default)["Message-ID"]
    reply_raw = alice.run("read", str(got["uid"]), "--raw").stdout
    parsed = email.message_from_string(reply_raw, policy=policy.default)
    assert parsed["In-Reply-To"] == original_id
    assert parsed["References"] == original_id

    if world.envelopes:  # aiosmtpd saw the envelope: Bcc only there
        _, rcpts, data = world.envelopes[0]
        assert sorted(rcpts) == ["bob@example.org", "carol@example.org"]
        assert b"carol@example.org" not in data


def test_reply_all_and_forward(world: World, tmp_path: Path) -> None:
    world.require("smtp", "imap")
    alice, bob, carol = people(world, tmp_path)
    world.deliver(
        "bob@example.org",
        b"From: Zed <zed@example.net>\r\nTo: bob@example.org, alice@example.org\r\n"
        b"Cc: carol@example.org\r\nSubject: group\r\nMessage-ID: <g1@example.net>\r\n\r\nall\r\n",
    )
    [original] = bob.wait_for("subject:group")
    uid = str(original["uid"])
    dry = bob.run("reply", uid, "--all", "--dry-run", stdin="me too\n").stdout
    head = dry.split("\n\n", 1)[0]
    assert "To: Zed <zed@example.net>, alice@example.org" in head
    assert "Cc: carol@example.org" in head and "bob@example.org" not in head.split("From:")[0]
    assert "In-Reply-To: <g1@example.net>" in head

    bob.run("forward", uid, "--to", "alice@example.org", stdin="FYI\n")
    bob.run("forward", uid, "--to", "carol@example.org", "--inline", stdin="see below\n")
    [attached] = alice.wait_for("subject:Fwd")
    shown = alice.json("read", str(attached["uid"]))
    assert shown["text"] == "FYI"
    assert [a["content_type"] for a in shown["attachments"]] == ["message/rfc822"]
    [inline] = carol.wait_for("subject:Fwd")
    text = carol.json("read", str(inline["uid"]))["text"]
    assert text.startswith("see below\n\n---------- Forwarded message ----------")
    assert text.rstrip().endswith("all")
    assert "$Forwarded" in bob.json("search", "subject:group")[0]["flags"]


def test_flags_search_move_delete(world: World, tmp_path: Path) -> None:
    world.require("imap")
    _, bob, _ = people(world, tmp_path)
    for subject in ("one", "two", "three"):
        world.deliver("bob@example.org", message(subject, body=f"body of {subject}"))
    uids = [m["uid"] for m in bob.wait_for("from:zed", count=3)]
    first, second, third = map(str, uids)
    assert len(bob.json("ls", "--unread")) == 3
    assert [m["uid"] for m in bob.json("ls", "--limit", "2")] == uids[1:]

    bob.run("mark-read", first, second)
    bob.run("flag", second)
    assert [m["uid"] for m in bob.json("ls", "--unread")] == uids[2:]
    assert [m["uid"] for m in bob.json("search", "flagged")] == [uids[1]]
    bob.run("unflag", second)
    bob.run("mark-unread", first)
    assert bob.json("search", "flagged") == []
    assert [m["uid"] for m in bob.json("search", "body of two")] == [uids[1]]
    assert [m["uid"] for m in bob.json("search", "since:2000-01-01 unread")] == [
        uids[0],
        uids[2],
    ]
    assert bob.json("search", "before:2000-01-01") == []

    bob.run("move", first, "--to", "Trash")
    assert [m["subject"] for m in bob.json("ls", "Trash")] == ["one"]
    missing = bob.run("move", first, "--to", "Trash", check=False)
    assert missing.exit_code == 1 and f"no message with UID {first}" in missing.output
    nowhere = bob.run("move", second, "--to", "No Such Folder", check=False)
    assert nowhere.exit_code == 1
    bob.run("delete", third)
    assert [m["subject"] for m in bob.json("ls")] == ["two"]
    folders = {f["name"]: f for f in bob.json("list")}
    assert folders["INBOX"]["messages"] == 1 and folders["Trash"]["messages"] == 1
    assert "INBOX" in bob.run("list").stdout


def test_pop3_fetch_keep_then_delete(world: World, tmp_path: Path) -> None:
    world.require("pop3")
    _, bob, _ = people(world, tmp_path)
    world.deliver("bob@example.org", message("first", body=".dot line\r\nFrom the start"))
    world.deliver("bob@example.org", message("second"))
    maildir = tmp_path / "Maildir"
    assert bob.json("fetch", "--pop3", "--keep", "--to-maildir", str(maildir)) == {
        "fetched": 2,
        "already_had": 0,
        "deleted": 0,
    }
    again = bob.json("fetch", "--pop3", "--keep", "--to-maildir", str(maildir))
    assert again == {"fetched": 0, "already_had": 2, "deleted": 0}
    world.deliver("bob@example.org", message("third"))
    mbox = tmp_path / "mail.mbox"
    result = bob.json("fetch", "--pop3", "--to-mbox", str(mbox))
    assert result == {"fetched": 1, "already_had": 2, "deleted": 3}
    assert len(list((maildir / "new").iterdir())) == 2
    stored = sorted(p.read_bytes() for p in (maildir / "new").iterdir())
    assert any(b"\r\n.dot line\r\nFrom the start\r\n" in s for s in stored)
    assert b"Subject: third" in mbox.read_bytes()
    empty = bob.json("fetch", "--pop3", "--to-mbox", str(mbox))
    assert empty == {"fetched": 0, "already_had": 0, "deleted": 0}
    assert not list((bob.home / "state" / "main").glob("*.tmp"))


def test_watch_reports_new_mail(world: World, tmp_path: Path) -> None:
    world.require("imap")
    _, bob, _ = people(world, tmp_path)
    process = subprocess.Popen(
        [sys.executable, "-m", "pillarbox.cli", "mail", "--cafile", str(world.cafile),
         "watch", "--count", "1", "--timeout", "30", "--json"],
        env={**os.environ, **bob.env()},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        assert process.stderr is not None
        ready = process.stderr.readline().decode()
        assert ready.startswith("watching INBOX"), ready
        world.deliver("bob@example.org", message("arrived"))
        out, err = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 0, err
    import json

    assert json.loads(out)["subject"] == "arrived"


def test_watch_stops_at_timeout(world: World, tmp_path: Path) -> None:
    world.require("imap")
    _, bob, _ = people(world, tmp_path)
    started = time.monotonic()
    result = bob.run("watch", "--timeout", "1")
    assert result.stdout == ""
    assert 0.9 < time.monotonic() - started < 10


def test_wrong_password_is_refused(world: World, tmp_path: Path) -> None:
    wrong = User(world, "bob@example.org", tmp_path / "wrong", password="not the password")
    for protocol, args in (
        ("imap", ["list"]),
        ("pop3", ["fetch", "--pop3", "--to-mbox", str(tmp_path / "x.mbox")]),
        ("smtp", ["send", "--to", "alice@example.org"]),
    ):
        if getattr(world, protocol) is None:
            continue
        result = wrong.run(*args, stdin="x\n", check=False)
        assert result.exit_code == 1, (protocol, result.output)
        assert "said" in result.output


def test_untrusted_certificate_exits_3(world: World, tmp_path: Path) -> None:
    bob = User(world, "bob@example.org", tmp_path / "bob")
    protocol = next(p for p in ("imap", "pop3", "smtp") if getattr(world, p) is not None)
    args = {
        "imap": ["list"],
        "pop3": ["fetch", "--pop3", "--keep", "--to-mbox", str(tmp_path / "x.mbox")],
        "smtp": ["send", "--to", "alice@example.org"],
    }[protocol]
    result = CliRunner().invoke(cli, ["mail", *args], input="x\n", env=bob.env())
    assert result.exit_code == 3, result.output
    assert "certificate not trusted" in result.output and "--cafile" in result.output
    insecure = CliRunner().invoke(cli, ["mail", "--insecure", *args], input="x\n", env=bob.env())
    assert insecure.exit_code == 0, insecure.output
    assert insecure.output.count("warning: --insecure") == 1


def test_sent_copy_turned_off_or_failed_leaves_the_send_a_success(
    world: World, tmp_path: Path
) -> None:
    """``--no-sent-copy`` keeps none; an APPEND the server refuses (no Sent folder any more)
    is a warning after the send, which stays a success: the mail has left."""
    world.require("smtp", "imap")
    alice, bob, _ = people(world, tmp_path)
    off = alice.json("send", "--to", "bob@example.org", "--subject", "no copy", "--no-sent-copy")
    assert off["sent_copy"] is None
    assert folder_contents(world, "alice@example.org", world.sent_folder) == []
    if world.name != "pillarbox":
        return  # Dovecot creates its Sent folder again at each login (auto = create)
    context = ssl.create_default_context(cafile=str(world.cafile))
    assert world.imap is not None
    with IMAPClient(world.imap.host, port=world.imap.port, ssl=False, timeout=10) as client:
        client.starttls(context)
        client.login("alice@example.org", world.password)
        client.delete_folder("Sent")
    failed = alice.run("send", "--to", "bob@example.org", "--subject", "copy refused", "--json")
    assert json.loads(failed.stdout)["sent_copy"] is None
    assert "warning: sent, but no copy kept in Sent: IMAP server" in failed.stderr
    assert "TRYCREATE" in failed.stderr  # RFC 9051 §6.3.12: the APPEND's NO names the cause
    assert bob.wait_for("subject:refused")  # …and the mail went
