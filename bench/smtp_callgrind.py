"""Instructions the SMTP intake's server spends per message, counted by callgrind.

Wall-clock rates and CPU times of ``smtp.py`` move ±15 % on a machine other work shares; the
instruction count of the same code does not. This starts the server of ``smtp.py`` (same
configuration, models trained the same way) under ``valgrind --tool=callgrind`` with the
instrumentation off, sends ``--warm`` messages one per connection to fill its caches and clue
tables, then counts ``--count`` messages one per connection (row ``conn1``) and ``--count`` on
one connection (``reuse1``), and prints millions of instructions a message over every thread of
the server. Valgrind slows the server ~30-fold, so two timers are raised to an hour, or they
would fire per message rather than per second as in service: ``directory_ttl_ms`` (the
directory and spam-evidence caches would be re-read) and ``index_idle_ms`` (background
full-text indexing would run between messages; ``smtp.py``'s rows finish before it starts).
So is ``checkpoint_interval_ms``: a WAL checkpoint every 500 ms came every ~15 messages
under valgrind, not every few hundred as in service, and how many fell in a row depended on
the timing, so the count moved from run to run with it (docs/performance.md, "Session 20").
The rows run one message at a time: with concurrency the count moves with the timing (how many
deliveries a group commit takes), more than the effects this is for.

    python bench/smtp_callgrind.py [--no-policy] [--server-src DIR] [--warm 300] [--count 150]
                                   [--keep DIR]

``--server-src`` as in ``smtp.py`` (docs/performance.md, "Session 14: mypyc"). ``--keep DIR``
copies each row's callgrind dump there (``callgrind.out.conn1``, ``callgrind.out.reuse1``), to
read where the instructions go: ``callgrind_annotate --inclusive=yes DIR/callgrind.out.conn1``.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

from smtp import Corpus, one_per_connection, reuse, sender_dns, start_server

from pillarbox import config as cfg

AN_HOUR_MS = 3_600_000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--no-policy", action="store_true", help="policy.enabled = false")
    parser.add_argument("--server-src", metavar="DIR", help="as in smtp.py")
    parser.add_argument("--warm", type=int, default=300, help="messages before counting")
    parser.add_argument("--count", type=int, default=150, help="messages counted per row")
    parser.add_argument("--keep", metavar="DIR", type=Path, help="copy each row's dump here")
    args = parser.parse_args()
    server_args = argparse.Namespace(
        no_policy=args.no_policy,
        untrusted=False,
        store=None,
        log_level="WARNING",
        train=2000,
        server_src=args.server_src,
    )
    corpus = Corpus()
    messages = [corpus.message(4096, n) for n in range(args.warm + 2 * args.count)]
    counted = messages[args.warm :]
    with tempfile.TemporaryDirectory() as tmp, sender_dns(None) as nameserver:
        out = Path(tmp) / "callgrind.out"
        process, port = start_server(
            Path(tmp),
            server_args,
            corpus,
            nameserver,
            wrapper=(
                "valgrind",
                "--tool=callgrind",
                "--instr-atstart=no",
                f"--callgrind-out-file={out}",
                f"--log-file={Path(tmp) / 'valgrind.log'}",
            ),
            sqlite=cfg.SqliteSection(
                directory_ttl_ms=AN_HOUR_MS,
                index_idle_ms=AN_HOUR_MS,
                checkpoint_interval_ms=AN_HOUR_MS,
            ),
            start_timeout=600,
        )

        def control(*options: str) -> None:
            subprocess.run(
                ["callgrind_control", *options, str(process.pid)],
                check=True,
                capture_output=True,
            )

        try:
            asyncio.run(one_per_connection(port, 1, messages[: args.warm]))
            for row in ("conn1", "reuse1"):
                chunk, counted = counted[: args.count], counted[args.count :]
                control("--zero")
                control("--instr=on")
                if row == "conn1":
                    asyncio.run(one_per_connection(port, 1, chunk))
                else:
                    asyncio.run(reuse(port, 1, chunk))
                control("--instr=off")
                control(f"--dump={row}")
        finally:
            process.terminate()
            process.wait()
        for dump in sorted(Path(tmp).glob("callgrind.out.*")):
            text = dump.read_text()
            trigger = re.search(r"^desc: Trigger: dump (\w+)$", text, re.M)
            totals = re.search(r"^totals: (\d+)", text, re.M)
            if trigger and totals:
                millions = int(totals[1]) / args.count / 1e6
                print(f"{trigger[1]}: {millions:.3f} M instructions a message")
                if args.keep:
                    args.keep.mkdir(parents=True, exist_ok=True)
                    shutil.copyfile(dump, args.keep / f"callgrind.out.{trigger[1]}")


if __name__ == "__main__":
    main()
