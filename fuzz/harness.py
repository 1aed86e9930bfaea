"""What every fuzz target shares: seeding its corpus, a time bound per input, and the call
into libFuzzer (through atheris).

A target is ``python fuzz/<name>.py [corpus dir] [more seed dirs] [libFuzzer flags]``. With no
corpus directory, one under the system's temporary directory is used. The target's own seeds
(drawn from the tests' data) are written into the corpus directory before the run, so a fresh
run starts from real protocol traffic rather than from nothing.
"""

from __future__ import annotations

import hashlib
import os
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from pathlib import Path

import atheris

#: Seconds one input may take (instrumented, so several times slower than plain Python)
#: before it is reported as a hang or a super-linear blow-up. FUZZ_SLOW overrides it.
SLOW_SECONDS = float(os.environ.get("FUZZ_SLOW", "2.0"))


class SlowInput(Exception):
    """One input took longer than :data:`SLOW_SECONDS`: a finding like a crash."""


def timed(check: Callable[[bytes], None]) -> Callable[[bytes], None]:
    """``check`` with the time bound: an input over :data:`SLOW_SECONDS` raises SlowInput."""

    def one(data: bytes) -> None:
        start = time.perf_counter()
        check(data)
        elapsed = time.perf_counter() - start
        if elapsed > SLOW_SECONDS:
            raise SlowInput(f"{len(data)} bytes took {elapsed:.2f} s")

    return one


def repo_root() -> Path:
    return Path(__file__).resolve().parent.parent


def transcript_lines(protocol: str, prefix: str) -> Iterable[bytes]:
    """The lines one side (``C: `` or ``S: ``) writes in the tests' transcripts of
    ``protocol``, one transcript at a time, CRLF-terminated: the seeds of a protocol core."""
    for path in sorted((repo_root() / "tests" / "transcripts" / protocol).glob("*.txt")):
        lines = [
            line[len(prefix) :].encode("utf-8", "surrogateescape") + b"\r\n"
            for line in path.read_text("utf-8", "surrogateescape").splitlines()
            if line.startswith(prefix)
        ]
        if lines:
            yield b"".join(lines)


def main(
    name: str, check: Callable[[bytes], None], seeds: Iterable[bytes], *, max_len: int = 4096
) -> None:
    """Run libFuzzer on ``check`` (wrapped in the time bound), seeding the corpus first.
    ``max_len`` is the default longest input (libFuzzer's ``-max_len`` overrides it): long
    enough for super-linear work in the parser to show against the time bound."""
    argv = list(sys.argv)
    dirs = [a for a in argv[1:] if not a.startswith("-")]
    if not dirs:
        default = Path(tempfile.gettempdir()) / "pillarbox-fuzz" / name
        argv.insert(1, str(default))
        dirs = [str(default)]
    corpus = Path(dirs[0])
    if not corpus.is_file():  # a file is one input to run again (a finding): nothing to seed
        corpus.mkdir(parents=True, exist_ok=True)
        for seed in seeds:
            (corpus / ("seed-" + hashlib.sha1(seed).hexdigest())).write_bytes(seed)
    flags = {a.split("=", 1)[0] for a in argv if a.startswith("-")}
    if "-timeout" not in flags:
        argv.append("-timeout=20")  # libFuzzer's own hang detector, beyond SlowInput
    if "-max_len" not in flags:
        argv.append(f"-max_len={max_len}")
    if "-artifact_prefix" not in flags:
        argv.append(f"-artifact_prefix={corpus.parent / (name + '-')}")
    atheris.Setup(argv, timed(check))
    atheris.Fuzz()
