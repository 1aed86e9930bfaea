"""Plays every ``tests/transcripts/managesieve/*.txt`` on the ManageSieve session core (with a
real SQLite store and the real authenticator) and on the live server over a loopback socket:
the wire output must be the same, byte for byte.

Transcript format, one item per line (blank lines and ``#`` comments ignored):

``C: text``              a client line, CRLF appended; consecutive C lines go in one write
                         (pipelined); a literal's octets are simply the next C lines
``C> text``              raw client bytes with Python escapes, nothing appended
``S: text``              an expected server line; ``*`` matches any run of characters
``S! closed``            the server closes the connection here
``S! starttls``          the client performs the TLS handshake here (after STARTTLS's OK)
``T: seconds``           that much silence passes (core only: the live timer is 30 minutes)
``@ core-only``          the transcript needs a clock (T:) and only runs on the core
``@ set key=value``      a ``[managesieve]`` setting, or ``max_scripts`` / ``max_script_size``
                         of ``[sieve]``

``$USER`` and ``$PASS`` stand for a fresh account made for each transcript and its password,
``$PLAIN`` for their SASL PLAIN response in base64 (RFC 4616), ``$PLAIN_LENGTH`` for its
length (to send it as a literal); ``$USER64`` and ``$PASS64`` (and ``$PASS64_LENGTH``) for
the name and password in base64 (the LOGIN mechanism's responses).
"""

from __future__ import annotations

import base64
import dataclasses
import socket
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from pillarbox import config as cfg
from pillarbox import provisioning
from pillarbox.managesieve import Action, ManageSieveSession
from pillarbox.net.managesieve import session_settings
from pillarbox.observability.log import Log
from pillarbox.store.open import open_store
from pillarbox.testing.live import TEST_AUTH, TEST_PASSWORD, LiveServerPool, loopback_config
from pillarbox.testing.transcript import (
    CollectedOutput,
    LineReader,
    compare_lines,
    unverified_client_tls,
)

TRANSCRIPTS = sorted((Path(__file__).parent / "managesieve").glob("*.txt"))
#: Failed logins of every transcript come from 127.0.0.1 to one live server: throttling
#: (tested on its own) must not leak from one transcript into the next.
AUTH = dataclasses.replace(TEST_AUTH, free_failures=1000, lockout_failures=2000)
SIEVE_KEYS = {"max_scripts", "max_script_size"}


@dataclass
class Step:
    send: bytes = b""
    expect: list[str] = field(default_factory=list)
    close: bool = False
    starttls: bool = False
    wait: float = 0.0


@dataclass
class Transcript:
    name: str
    steps: list[Step] = field(default_factory=list)
    settings: dict[str, str] = field(default_factory=dict)
    core_only: bool = False


def load(path: Path, user: str) -> Transcript:
    plain = base64.b64encode(f"\0{user}\0{TEST_PASSWORD}".encode()).decode()
    user64 = base64.b64encode(user.encode()).decode()
    pass64 = base64.b64encode(TEST_PASSWORD.encode()).decode()
    transcript = Transcript(path.stem)
    step = Step()
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = (
            raw.replace("$USER64", user64)
            .replace("$PASS64_LENGTH", str(len(pass64)))
            .replace("$PASS64", pass64)
            .replace("$USER", user)
            .replace("$PASS", TEST_PASSWORD)
            .replace("$PLAIN_LENGTH", str(len(plain)))
            .replace("$PLAIN", plain)
        )
        if not line.strip() or line.startswith("#"):
            continue
        tag, rest = line[:2], line[3:]
        if tag in ("C:", "C>"):
            if step.expect or step.close:
                transcript.steps.append(step)
                step = Step()
            step.send += (
                (rest + "\r\n").encode()
                if tag == "C:"
                else rest.encode("latin-1").decode("unicode_escape").encode("latin-1")
            )
        elif tag == "S:":
            step.expect.append(rest)
        elif line == "S! closed":
            step.close = True
        elif line == "S! starttls":
            step.starttls = True
            transcript.steps.append(step)
            step = Step()
        elif tag == "T:":
            transcript.steps.append(step)
            transcript.steps.append(Step(wait=float(rest)))
            step = Step()
        elif line == "@ core-only":
            transcript.core_only = True
        elif line.startswith("@ set "):
            key, _, value = line[6:].partition("=")
            transcript.settings[key] = value
        else:
            raise ValueError(f"{path.name}: cannot parse {line!r}")
    transcript.steps.append(step)
    return transcript


def _config(tmp: Path, transcript: Transcript) -> cfg.Config:
    base = loopback_config(tmp, only=("managesieve",), auth=AUTH)
    sieve: dict[str, object] = {}
    section: dict[str, object] = {}
    for key, value in transcript.settings.items():
        target = sieve if key in SIEVE_KEYS else section
        kind = type(getattr(base.sieve if key in SIEVE_KEYS else base.managesieve, key))
        target[key] = value == "true" if kind is bool else kind(value)
    return dataclasses.replace(
        base,
        sieve=dataclasses.replace(base.sieve, **sieve),  # type: ignore[arg-type]
        managesieve=dataclasses.replace(base.managesieve, **section),  # type: ignore[arg-type]
    )


# -- the core ---------------------------------------------------------------------------------


async def run_on_core(transcript: Transcript, tmp: Path, user: str, *, bytewise: bool) -> None:
    """Replay on the core, the client's writes fed whole or one octet at a time (the output
    must not depend on how the input is cut)."""
    config = _config(tmp, transcript)
    store = open_store("sqlite:", tmp)
    await store.open()
    try:
        await provisioning.add_domain(store, "example.org")
        await provisioning.add_account(store, config, user, TEST_PASSWORD)
        now = 0.0
        session = ManageSieveSession(
            session_settings(config),
            store,
            provisioning.authenticator(store, config),
            remote_ip="127.0.0.1",
            tls_active=False,
            starttls_available=True,
            now=now,
            log=Log("managesieve-test"),
        )
        out = CollectedOutput()
        out.data += session.greeting()
        pending: list[str] = []
        closed = False
        for step in transcript.steps:
            if step.wait:
                now += step.wait
                bye = session.handle_timeout(now)
                if bye is not None:
                    out.data += bye
                    closed = True
            if step.send:
                assert not closed, f"{transcript.name}: sending after close"
                pieces = [step.send[i : i + 1] for i in range(len(step.send))]
                for piece in pieces if bytewise else [step.send]:
                    action = await session.receive_data(piece, out, now)
                    if action is Action.START_TLS:
                        # The rest of this write went out in the clear before the handshake:
                        # the channel drops it (RFC 5804 §2.2), as it drops what was buffered.
                        out.data += session.tls_started()
                        break
                    if action is Action.CLOSE:
                        closed = True
                        break
            pending += out.data.decode("utf-8", "replace").split("\r\n")[:-1]
            out.data.clear()
            compare_lines(transcript.name, pending, step.expect)
            if step.close:
                assert closed, f"{transcript.name}: expected the server to close"
        assert not pending, f"{transcript.name}: unexpected output {pending!r}"
    finally:
        await store.close()


@pytest.mark.parametrize("bytewise", [False, True], ids=["whole", "bytewise"])
@pytest.mark.parametrize("path", TRANSCRIPTS, ids=[p.stem for p in TRANSCRIPTS])
async def test_transcript_on_core(path: Path, tmp_path: Path, bytewise: bool) -> None:
    user = f"{path.stem.replace('_', '-')}@example.org"
    await run_on_core(load(path, user), tmp_path, user, bytewise=bytewise)


# -- the live server ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def servers() -> Iterator[LiveServerPool]:
    pool = LiveServerPool()
    yield pool
    pool.close()


LIVE = [p for p in TRANSCRIPTS if "@ core-only" not in p.read_text(encoding="utf-8")]


@pytest.mark.parametrize("path", LIVE, ids=[p.stem for p in LIVE])
def test_transcript_live(path: Path, servers: LiveServerPool, tmp_path: Path) -> None:
    user = f"{path.stem.replace('_', '-')}@example.org"
    transcript = load(path, user)
    server = servers.get(transcript.settings, lambda: _config(tmp_path / "live", transcript))
    server.add_account(user, TEST_PASSWORD)
    sock = socket.create_connection(("127.0.0.1", server.port("managesieve")), timeout=10)
    reader = LineReader(sock)
    pending: list[str] = []
    try:
        for step in transcript.steps:
            if step.send:
                sock.sendall(step.send)
            pending += reader.lines(max(0, len(step.expect) - len(pending)))
            compare_lines(transcript.name, pending, step.expect)
            if step.starttls:
                sock = unverified_client_tls().wrap_socket(sock)
                reader = LineReader(sock)
            if step.close:
                assert reader.closed(), f"{transcript.name}: expected the server to close"
        assert not pending and not reader.buffer, f"{transcript.name}: unexpected {pending!r}"
    finally:
        sock.close()


def test_there_are_transcripts() -> None:
    assert len(TRANSCRIPTS) >= 10
