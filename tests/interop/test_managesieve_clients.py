"""Real ManageSieve clients against the live listener, as deployed for users (PLAIN only after
STARTTLS): sieve-connect (Debian's Perl client, the one sieveshell users have) and sievelib
(the Python library Roundcube-like tools use). Every flow is checked in the store too.

SCRAM-SHA-256 is driven by Pillarbox's own client mechanism (neither peer implements it).
"""

from __future__ import annotations

import base64
import dataclasses
import socket
import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pillarbox import config as cfg
from pillarbox.auth.sasl import ScramClient
from pillarbox.net.tls import tls_paths
from pillarbox.store.types import SieveScript
from pillarbox.testing.live import TEST_PASSWORD, LiveServer, loopback_config
from pillarbox.testing.peers import require, run

USER = "alice@example.org"
FILTER = (
    'require ["fileinto"];\r\n'
    'if header :contains "subject" "[list]" {\r\n  fileinto "Lists";\r\n}\r\n'
)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[LiveServer]:
    config = loopback_config(
        tmp_path / "data",
        only=("managesieve",),
        managesieve=cfg.ManageSieveSection(login_without_tls=False),
    )
    with LiveServer(config) as live:
        live.add_domain("example.org")
        live.add_account(USER, TEST_PASSWORD)
        yield live


def scripts(server: LiveServer) -> list[SieveScript]:
    async def go() -> list[SieveScript]:
        account = await server.store.get_account(USER)
        assert account is not None
        return await server.store.list_sieve_scripts(account.id)

    return server.call(go())


# -- sieve-connect ----------------------------------------------------------------------------


def sieve_connect(server: LiveServer, *args: str, ok: tuple[int, ...] = (0,)) -> str:
    program = require("sieve-connect", "sieve-connect")
    result = run(
        [
            program,
            "--server",
            "127.0.0.1",
            "--port",
            str(server.port("managesieve")),
            "--user",
            USER,
            "--passwordfd",
            "0",
            "--authmech",
            "PLAIN",
            "--noclearauth",
            "--tlscafile",
            str(tls_paths(server.config)[0]),
            "--tlshostname",
            server.config.server.hostname,
            *args,
        ],
        stdin=TEST_PASSWORD,
        ok=ok,
    )
    return result.stdout + result.stderr


def test_sieve_connect_round_trip(server: LiveServer, tmp_path: Path) -> None:
    local = tmp_path / "lists.sieve"
    local.write_bytes(FILTER.encode())
    sieve_connect(server, "--localsieve", str(local), "--remotesieve", "lists", "--upload")
    assert scripts(server) == [SieveScript("lists", FILTER, False)]
    sieve_connect(server, "--remotesieve", "lists", "--activate")
    assert "lists" in sieve_connect(server, "--list")
    assert scripts(server) == [SieveScript("lists", FILTER, True)]
    copy = tmp_path / "copy.sieve"
    sieve_connect(server, "--localsieve", str(copy), "--remotesieve", "lists", "--download")
    assert copy.read_bytes() == FILTER.encode()
    refused = sieve_connect(server, "--remotesieve", "lists", "--delete", ok=(1, 255))
    assert "active" in refused.lower()
    sieve_connect(server, "--deactivate")
    sieve_connect(server, "--remotesieve", "lists", "--delete")
    assert scripts(server) == []


def test_sieve_connect_shows_the_compile_error(server: LiveServer, tmp_path: Path) -> None:
    local = tmp_path / "bad.sieve"
    local.write_text('fileinto "Lists";\n')
    output = sieve_connect(
        server, "--localsieve", str(local), "--remotesieve", "bad", "--upload", ok=(1, 255)
    )
    assert "line 1: command 'fileinto' needs require 'fileinto'" in output
    assert scripts(server) == []


# -- sievelib ---------------------------------------------------------------------------------


@pytest.fixture
def sievelib_client(server: LiveServer, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    managesieve = pytest.importorskip("sievelib.managesieve")
    # sievelib verifies the certificate against the default CA store: make ours that.
    monkeypatch.setenv("SSL_CERT_FILE", str(tls_paths(server.config)[0]))
    client = managesieve.Client(
        "127.0.0.1", server.port("managesieve"), srvhostname=server.config.server.hostname
    )
    assert client.connect(USER, TEST_PASSWORD, starttls=True, authmech="PLAIN")
    yield client
    client.logout()


def test_sievelib_flows(server: LiveServer, sievelib_client: Any) -> None:
    client = sievelib_client
    assert client.get_implementation() == "Pillarbox"
    assert "fileinto" in client.get_sieve_capabilities()
    assert client.havespace("lists", len(FILTER))
    assert client.checkscript(FILTER)
    assert not client.checkscript('fileinto "x";')
    assert client.putscript("lists", FILTER)
    assert client.putscript("other", "keep;")
    assert client.setactive("lists")
    assert client.listscripts() == ("lists", ["other"])
    # sievelib splits what it reads into lines and joins them with LF.
    assert client.getscript("lists") == FILTER.replace("\r\n", "\n").rstrip()
    assert scripts(server)[0] == SieveScript("lists", FILTER, True)
    assert client.renamescript("lists", "Mailing lists")
    assert not client.deletescript("Mailing lists")
    assert client.errcode == b"ACTIVE"
    assert client.setactive("")
    assert client.deletescript("Mailing lists")
    assert client.listscripts() == (None, ["other"])
    assert scripts(server) == [SieveScript("other", "keep;", False)]


def test_sievelib_uploads_the_include_environment_and_editheader_extensions(
    server: LiveServer, sievelib_client: Any
) -> None:
    """The SIEVE capability lists them; PUTSCRIPT and CHECKSCRIPT accept an include of a
    script not stored (RFC 6609 §3.2: an error only when it runs, as Pigeonhole's
    ManageSieve says), and refuse a name made of variables."""
    client = sievelib_client
    assert {"include", "environment", "editheader"} <= set(client.get_sieve_capabilities())
    script = (
        'require ["include", "variables", "environment", "editheader"];\r\n'
        'global "x";\r\ninclude "not-yet";\r\ninclude :global :once "site";\r\n'
        'if environment :matches "host" "*" { addheader :last "X-Host" "${1}"; }\r\n'
        'deleteheader :index 1 "X-Spam";\r\n'
    )
    assert client.checkscript(script)
    assert client.putscript("with-include", script)
    assert not client.checkscript('require ["include", "variables"]; include "${x}";')
    # RFC 6609 §3.2: a script including itself by its own name is a loop an upload can see
    assert not client.putscript("loop", 'require "include"; include "loop";')
    assert client.putscript("loop", 'require "include"; include :global "loop";')


def test_sievelib_uploads_regex_scripts(server: LiveServer, sievelib_client: Any) -> None:
    """draft-ietf-sieve-regex: SIEVE lists "regex"; a script as Roundcube's managesieve plugin
    writes it is stored; an invalid pattern is refused at upload, with the reason."""
    client = sievelib_client
    assert "regex" in client.get_sieve_capabilities()
    roundcube = (
        'require ["fileinto","regex"];\r\n# rule:[lists]\r\n'
        'if header :regex "subject" "^\\\\[(dev|ops)\\\\]" { fileinto "Lists"; }\r\n'
    )
    assert client.putscript("roundcube", roundcube)
    assert scripts(server) == [SieveScript("roundcube", roundcube, False)]
    assert not client.checkscript('require "regex"; if header :regex "subject" "(a" { stop; }')
    assert not client.putscript(
        "backref", 'require "regex"; if header :regex "subject" "(a)\\\\1" { stop; }'
    )
    assert [s.name for s in scripts(server)] == ["roundcube"]  # "backref" was refused


def test_sievelib_quota_codes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    managesieve = pytest.importorskip("sievelib.managesieve")
    config = loopback_config(tmp_path / "data", only=("managesieve",))
    config = dataclasses.replace(
        config, sieve=dataclasses.replace(config.sieve, max_scripts=1, max_script_size=100)
    )
    with LiveServer(config) as live:
        live.add_domain("example.org")
        live.add_account(USER, TEST_PASSWORD)
        client = managesieve.Client("127.0.0.1", live.port("managesieve"))
        with pytest.warns(UserWarning, match="unencrypted"):  # login_without_tls, loopback
            assert client.connect(USER, TEST_PASSWORD, authmech="PLAIN")
        assert client.putscript("one", "keep;")
        assert not client.putscript("two", "keep;")
        assert client.errcode == b"QUOTA/MAXSCRIPTS"
        assert not client.havespace("one", 101)
        assert client.errcode == b"QUOTA/MAXSIZE"
        client.logout()


# -- SCRAM-SHA-256 with our own client mechanism ----------------------------------------------


class _Wire:
    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buffer = b""

    def line(self) -> bytes:
        while b"\r\n" not in self.buffer:
            chunk = self.sock.recv(65536)
            assert chunk, "connection closed"
            self.buffer += chunk
        line, self.buffer = self.buffer.split(b"\r\n", 1)
        return line

    def until_status(self) -> list[bytes]:
        lines = []
        while not (line := self.line()).startswith((b"OK", b"NO", b"BYE")):
            lines.append(line)
        return [*lines, line]


def test_scram_sha_256_after_starttls(server: LiveServer) -> None:
    raw = socket.create_connection(("127.0.0.1", server.port("managesieve")), timeout=10)
    wire = _Wire(raw)
    assert wire.until_status()[-1].startswith(b"OK")
    raw.sendall(b"STARTTLS\r\n")
    assert wire.line().startswith(b"OK")
    context = ssl.create_default_context(cafile=str(tls_paths(server.config)[0]))
    wire = _Wire(context.wrap_socket(raw, server_hostname=server.config.server.hostname))
    capabilities = wire.until_status()
    assert b'"SASL" "SCRAM-SHA-256 PLAIN LOGIN"' in capabilities
    mechanism = ScramClient(USER, TEST_PASSWORD)
    first = base64.b64encode(mechanism.initial_response()).decode()
    wire.sock.sendall(f'AUTHENTICATE "SCRAM-SHA-256" "{first}"\r\n'.encode())
    while (line := wire.line()).startswith(b'"'):
        challenge = base64.b64decode(line.strip(b'"'))
        answer = base64.b64encode(mechanism.respond(challenge)).decode()
        wire.sock.sendall(f'"{answer}"\r\n'.encode())
    assert line == b'OK "Logged in"'
    mechanism.finish()
    wire.sock.sendall(b'PUTSCRIPT "s" "keep;"\r\n')
    assert wire.line() == b'OK "Putscript completed"'
    assert scripts(server) == [SieveScript("s", "keep;", False)]
