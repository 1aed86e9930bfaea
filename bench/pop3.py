"""POP3 benchmark: RETR throughput on a 10,000-message maildrop, and a full
download-and-delete cycle.

The maildrop is filled through the store (parsed and indexed as SMTP delivery would), then
``pillarbox serve`` runs as its own process and Python's poplib downloads everything over
loopback. Prints a table; not a timed test.

    python bench/pop3.py [--messages 10000] [--size 4096]
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import poplib
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from smtp import free_port, message

from pillarbox import config as cfg
from pillarbox import provisioning
from pillarbox.mail.parse import parse_message
from pillarbox.store.open import open_store
from pillarbox.store.types import DeliveryTarget

ADDRESS = "pop@bench.test"
PASSWORD = "bench password 123"


async def fill(config: cfg.Config, count: int, size: int) -> None:
    store = open_store(config.store.url, config.data_dir)
    await store.open()
    try:
        await provisioning.add_domain(store, "bench.test")
        account = await provisioning.add_account(store, config, ADDRESS, PASSWORD)
        target = [DeliveryTarget(account.id)]
        batch = 200
        for start in range(0, count, batch):
            raws = [message(size, n) for n in range(start, min(count, start + batch))]
            await asyncio.gather(*(store.deliver(r, parse_message(r), target) for r in raws))
    finally:
        await store.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=10_000)
    parser.add_argument("--size", type=int, default=4096)
    args = parser.parse_args()
    import subprocess

    with tempfile.TemporaryDirectory() as tmp:
        port = free_port()
        config = cfg.dev_config(tmp)
        config = dataclasses.replace(
            config,
            listeners=cfg.Listeners(
                **{
                    name: cfg.Listener(port=port if name == "pop3" else 0, enabled=name == "pop3")
                    for name in cfg.LISTENER_DOCS
                }
            ),
            auth=cfg.AuthSection(argon2_memory_cost=1024),
            logging=cfg.LoggingSection(level="WARNING"),
        )
        path = Path(tmp) / "pillarbox.toml"
        path.write_text(cfg.render_toml(config))
        config = cfg.load(path)
        started = time.perf_counter()
        asyncio.run(fill(config, args.messages, args.size))
        fill_seconds = time.perf_counter() - started
        process = subprocess.Popen(
            [sys.executable, "-m", "pillarbox.cli", "--config", str(path), "serve"],
            stdout=subprocess.DEVNULL,
        )
        try:
            for _ in range(300):
                try:
                    pop = poplib.POP3("127.0.0.1", port, timeout=60)
                    break
                except OSError:
                    time.sleep(0.1)
            else:
                raise RuntimeError("server did not start")
            t0 = time.perf_counter()
            pop.user(ADDRESS)
            pop.pass_(PASSWORD)
            login = time.perf_counter() - t0
            count, _ = pop.stat()
            t0 = time.perf_counter()
            octets = 0
            for n in range(1, count + 1):
                octets += pop.retr(n)[2]
            retr = time.perf_counter() - t0
            pop.quit()
            # Full cycle: a new session downloads and deletes everything, then QUIT applies it.
            pop = poplib.POP3("127.0.0.1", port, timeout=300)
            t0 = time.perf_counter()
            pop.user(ADDRESS)
            pop.pass_(PASSWORD)
            for n in range(1, count + 1):
                pop.retr(n)
                pop.dele(n)
            pop.quit()
            cycle = time.perf_counter() - t0
            pop = poplib.POP3("127.0.0.1", port, timeout=60)
            pop.user(ADDRESS)
            pop.pass_(PASSWORD)
            left = pop.stat()[0]
            pop.quit()
        finally:
            process.terminate()
            process.wait(timeout=30)
    print(f"POP3, {count} messages of {args.size} B (filled in {fill_seconds:.1f} s)")
    print(f"{'measure':<34} {'value':>12}")
    print(f"{'login + maildrop listing (ms)':<34} {login * 1000:>12.1f}")
    print(f"{'RETR all: messages/s':<34} {count / retr:>12.0f}")
    print(f"{'RETR all: MB/s':<34} {octets / retr / 1e6:>12.1f}")
    print(f"{'download+delete cycle (s)':<34} {cycle:>12.2f}")
    print(f"{'download+delete: messages/s':<34} {count / cycle:>12.0f}")
    print(f"{'messages left after the cycle':<34} {left:>12}")


if __name__ == "__main__":
    main()
