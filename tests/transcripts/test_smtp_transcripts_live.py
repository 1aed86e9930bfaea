"""The SMTP transcripts replayed on the live MX over loopback: the same bytes, the same replies
as on the core — so the adapter adds nothing and loses nothing.

A transcript runs live when its ``@`` directives hold for a live MX (hosted domain ``mx.test``
with its accounts, STARTTLS offered or not as the transcript says); the others configure the
core in ways a live listener is not (LMTP mode, tiny limits, scripted policy, simulated time)
and are listed with the reason. Transcripts in LMTP mode (``@ set mode=lmtp``) run against the
lmtp listener of the same server, where ``full@mx.test`` is an account over its quota; on the
STARTTLS server that listener trusts no network, so it wants STARTTLS and AUTH as alice.
"""

from __future__ import annotations

import dataclasses
import ssl
from collections.abc import Iterator
from pathlib import Path

import pytest

from pillarbox import config as cfg
from pillarbox.store.types import INBOX
from pillarbox.testing.live import LiveServer, loopback_config
from pillarbox.testing.transcript import parse_transcript, run_on_socket

FILES = sorted((Path(__file__).parent / "smtp").glob("*.txt"))
USERS = ("b", "c", "d", "x", "y", "alice", "full")

CORE_ONLY = {
    "auth": "scripted AUTH user on an MX without TLS",
    "bdat_size": "max_message_size=16",
    "error_limit": "max_errors=3",
    "lmtp_xforward": "XFORWARD offered ([lmtp] policy = full; live: tests/interop/test_lmtp_*)",
    "long_lines": "max_command_line=512 max_text_line=20",
    "mail_params": "max_message_size=1000",
    "rcpt_params": "max_recipients=3",
    "relay_paths": "scripted relay rule (the live relay rules: tests/interop/test_smtp_smtplib)",
    "requiretls_off": "requiretls=false (live: tests/interop/test_requiretls_delivery)",
    "size_excess": "max_message_size=10",
    "smuggling_normalise": "bare_linebreaks=normalise",
    "starttls_forgets_auth": "AUTH on the MX (live: test_smtp_smtplib, submission)",
    "timeout": "simulated time",
    "timeout_data": "simulated time",
}
LIVE = [p for p in FILES if p.stem not in CORE_ONLY]


def _server(tmp: Path, starttls: bool) -> LiveServer:
    config = loopback_config(tmp, only=["smtp", "lmtp"])
    # The TLS server's lmtp listener treats loopback as a front MTA on another host: STARTTLS
    # and AUTH (as alice) before MAIL.
    lmtp = (
        cfg.LmtpSection(trusted_networks=(), auth_accounts=("alice@mx.test",))
        if starttls
        else cfg.LmtpSection(starttls=False)
    )
    config = dataclasses.replace(
        config,
        smtp=dataclasses.replace(config.smtp, starttls=starttls, max_line_length=1000),
        lmtp=lmtp,
    )
    assert isinstance(config.smtp, cfg.SmtpSection)
    return LiveServer(config)


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[bool, LiveServer]]:
    plain = _server(tmp_path_factory.mktemp("plain"), starttls=False)
    tls = _server(tmp_path_factory.mktemp("tls"), starttls=True)
    with plain, tls:
        for server in (plain, tls):
            server.add_domain("mx.test")
            for user in USERS:
                # full@: a one-byte quota that no message fits (452 4.2.2 after the data).
                quota = 1 if user == "full" else None
                server.add_account(f"{user}@mx.test", "a long test password", quota_bytes=quota)
            server.add_domain("例子.广告")  # RFC 6531: an IDN domain and a UTF-8 local part
            server.add_account("用户@例子.广告", "a long test password")
        yield {False: plain, True: tls}


def last_message(server: LiveServer) -> bytes | None:
    async def go() -> bytes | None:
        newest: tuple[float, bytes] | None = None
        for user in USERS:
            account = await server.store.get_account(f"{user}@mx.test")
            assert account is not None
            box = await server.store.get_mailbox(account.id, INBOX)
            for record in await server.store.list_messages(box.id):
                stamp = record.internal_date.timestamp() * 1e6 + record.uid
                if newest is None or stamp >= newest[0]:
                    newest = (stamp, await server.store.read_blob(record.blob_id))
        return newest[1] if newest else None

    return server.call(go())


def test_core_only_transcripts_exist() -> None:
    assert set(CORE_ONLY) <= {p.stem for p in FILES}
    assert len(LIVE) >= 10


@pytest.mark.parametrize("path", LIVE, ids=[p.stem for p in LIVE])
def test_transcript_live(servers: dict[bool, LiveServer], path: Path) -> None:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    transcript = parse_transcript(path.read_text("utf-8"), path.stem)
    server = servers[transcript.settings.get("starttls") == "true"]
    listener = "lmtp" if transcript.settings.get("mode") == "lmtp" else "smtp"
    run_on_socket(
        transcript,
        "127.0.0.1",
        server.port(listener),
        tls=context,
        last_message=lambda: last_message(server),
    )
