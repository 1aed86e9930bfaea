"""Hypothesis properties of the ManageSieve session over a real SQLite store: any sequence of
commands, garbage and literals never escapes as an exception, every line written is a
well-formed RFC 5804 §4 response line, and the session stops at its BYE."""

from __future__ import annotations

import asyncio
import re
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pillarbox import provisioning
from pillarbox.managesieve import Action, ManageSieveSession
from pillarbox.net.managesieve import session_settings
from pillarbox.observability.log import Log
from pillarbox.store.open import open_store
from pillarbox.testing.live import TEST_PASSWORD, loopback_config

USER = "prop@example.org"
PLAIN = b"AHByb3BAZXhhbXBsZS5vcmcAYSBsb25nIHRlc3QgcGFzc3dvcmQ="
COMMANDS = [
    b'AUTHENTICATE "PLAIN" "' + PLAIN + b'"\r\n',
    b'AUTHENTICATE "PLAIN"\r\n',
    b'"' + PLAIN + b'"\r\n',
    b'"*"\r\n',
    b'AUTHENTICATE "SCRAM-SHA-256" "biwsbj1wcm9wQGV4YW1wbGUub3JnLHI9YWJj"\r\n',
    b"STARTTLS\r\n",
    b"CAPABILITY\r\n",
    b'NOOP "t"\r\n',
    b"LOGOUT\r\n",
    b"UNAUTHENTICATE\r\n",
    b'PUTSCRIPT "a" {5+}\r\nkeep;\r\n',
    b'PUTSCRIPT "b" "fileinto \\"x\\";"\r\n',
    b'PUTSCRIPT "a" {3}\r\nif \r\n',
    b'CHECKSCRIPT "keep;"\r\n',
    b'HAVESPACE "a" 100\r\n',
    b"LISTSCRIPTS\r\n",
    b'SETACTIVE "a"\r\n',
    b'SETACTIVE ""\r\n',
    b'GETSCRIPT "a"\r\n',
    b'DELETESCRIPT "a"\r\n',
    b'RENAMESCRIPT "a" "c"\r\n',
    b"{4+}\r\n",
]
# §4: a status line, a capability or LISTSCRIPTS line (strings, ACTIVE), a literal's
# announcement, or a SASL challenge (a string).
_STRING = rb'(?:"(?:[^"\\\r\n]|\\["\\])*"|\{\d+\})'
_LINE = re.compile(
    rb"(?:(?:OK|NO|BYE)(?: \([A-Z/\-]+(?: " + _STRING + rb")?\))?(?: " + _STRING + rb")?"
    rb"|" + _STRING + rb"(?: " + _STRING + rb"| ACTIVE)?)"
)

#: Non-empty pieces: an empty read is the client's end of stream, which closes without BYE.
inputs = st.lists(
    st.one_of(st.sampled_from(COMMANDS), st.binary(min_size=1, max_size=40)),
    min_size=1,
    max_size=25,
)


def _check_output(output: bytes) -> None:
    """Every line is a response line; a literal's octets are skipped by their count."""
    position = 0
    while position < len(output):
        end = output.index(b"\r\n", position)
        line = output[position:end]
        assert _LINE.fullmatch(line), line
        position = end + 2
        literal = re.fullmatch(rb"(?:.* )?\{(\d+)\}", line)
        if literal:
            position += int(literal.group(1))


class _Collect:
    def __init__(self, data: bytes) -> None:
        self.data = bytearray(data)

    async def write(self, data: bytes) -> None:
        self.data += data


async def _play(pieces: list[bytes], directory: Path) -> None:
    config = loopback_config(directory, only=("managesieve",))
    store = open_store("sqlite:", directory)
    await store.open()
    try:
        await provisioning.add_domain(store, "example.org")
        await provisioning.add_account(store, config, USER, TEST_PASSWORD)
        session = ManageSieveSession(
            session_settings(config),
            store,
            provisioning.authenticator(store, config),
            remote_ip="127.0.0.1",
            tls_active=False,
            starttls_available=True,
            now=0.0,
            log=Log("managesieve-property"),
        )

        out = _Collect(session.greeting())
        closed = False
        for piece in pieces:
            action = await session.receive_data(piece, out, 1.0)
            if action is Action.START_TLS:
                out.data += session.tls_started()
            if action is Action.CLOSE:
                closed = True
                break
        _check_output(bytes(out.data))
        assert closed == (b"BYE" in out.data or b'OK "Logout complete"' in out.data)
    finally:
        await store.close()


@settings(max_examples=60, suppress_health_check=[HealthCheck.too_slow])
@given(inputs)
def test_any_input_gets_well_formed_responses(pieces: list[bytes]) -> None:
    with tempfile.TemporaryDirectory() as directory:
        asyncio.run(_play(pieces, Path(directory)))
