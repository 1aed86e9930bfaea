"""Fuzz the ManageSieve command framer and grammar (pillarbox.managesieve.grammar).

Input: byte 0 chooses the read size; the rest is what the client sends. The framer frames it
under small limits; each whole command is parsed. Asserted, beyond "no exception":

* the framer raises nothing and its only events are its three kinds; a framed command stays
  within ``max_command`` and what was sent (with a CR added to each bare LF);
* the parser raises nothing but :class:`GrammarError`;
* a parsed command, written back with the server's string encoding (quoted or literal),
  frames into one command that parses to an equal command (the grammar's round trip).
"""

from __future__ import annotations

import atheris
import harness

with atheris.instrument_imports(include=["pillarbox"]):
    from pillarbox.managesieve.grammar import (
        Command,
        CommandReady,
        Fatal,
        Framer,
        FramerLimits,
        GrammarError,
        Rejected,
        parse_command,
    )
    from pillarbox.managesieve.responses import encode_string

LIMITS = FramerLimits(max_line=1024, max_literal=2048, max_command=3072, max_discard=4096)
_BIG = FramerLimits(max_line=1 << 20, max_literal=1 << 20, max_command=1 << 22, max_discard=1 << 20)


def _format(command: Command) -> bytes:
    parts = [command.name.encode("ascii")]
    for arg in command.args:
        parts.append(str(arg).encode("ascii") if isinstance(arg, int) else encode_string(arg))
    return b" ".join(parts) + b"\r\n"


def _round_trip(data: bytes) -> None:
    try:
        command = parse_command(data)
    except GrammarError:
        return
    framer = Framer(_BIG)
    framer.receive_data(_format(command))
    ready = []
    while (event := framer.next_event()) is not None:
        assert isinstance(event, CommandReady), event
        ready.append(event.data)
    assert len(ready) == 1, ready
    assert parse_command(ready[0]) == command, (data, ready[0])


def check(data: bytes) -> None:
    if not data:
        return
    step = data[0] or len(data)
    stream = data[1:]
    framer = Framer(LIMITS)
    for start in range(0, max(len(stream), 1), step):
        framer.receive_data(stream[start : start + step])
        while (event := framer.next_event()) is not None:
            assert isinstance(event, CommandReady | Rejected | Fatal)
            if isinstance(event, CommandReady):
                # A literal announced on a line ended by a bare LF is framed with CRLF (the
                # form the grammar reads): one octet more than was sent for each.
                longest = len(stream) + stream.count(b"\n")
                assert len(event.data) <= min(longest, LIMITS.max_command)
                _round_trip(event.data)


def seeds() -> list[bytes]:
    found = [bytes([i]) + t for i, t in enumerate(harness.transcript_lines("managesieve", "C: "))]
    found += [
        b'\x00PUTSCRIPT "a" {5+}\r\nkeep;\r\n',
        b'\x03HAVESPACE "a" 4294967295\r\nNOOP "q\\"\\\\"\r\n',
        b"\x00AUTHENTICATE {5}\r\nPLAIN\r\n{0+}\r\n\r\n",
    ]
    return found


if __name__ == "__main__":
    harness.main("managesieve_command", check, seeds())
