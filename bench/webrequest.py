"""Web figures: what one logged-in request costs the server, the page's own work aside from
the per-request overheads (session checks, request clock, ASGI stack) that every request pays.

Usage: ``python bench/webrequest.py [--seconds N] [--connections N] [--store postgresql://…]``

The server is the real one (``LiveServer``: uvicorn on the server's loop behind the web
listeners' connection guard) with a 20-message inbox; wrk (Debian's ``wrk``) sends kept-alive
requests with a logged-in session's cookie for ``--seconds`` to each path, one after the
other. Reported per path: requests a second, and server CPU a request (the process's CPU time
over the run, less the idle process's share measured before, divided by the requests wrk
counted): the figure contention on a shared machine disturbs least.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from pillarbox import config as cfg
from pillarbox.testing.live import TEST_PASSWORD, LiveServer, loopback_config
from pillarbox.testing.webclient import WebSession, deliver, mailbox_id, simple_message

ADDRESS = "alice@example.org"
_REQUESTS = re.compile(r"(\d+) requests in")


def run_wrk(url: str, cookie: str, seconds: int, connections: int) -> int:
    """Requests wrk completed (all must have answered 2xx)."""
    out = subprocess.run(
        [
            "wrk",
            f"-t{min(connections, 2)}",
            f"-c{connections}",
            f"-d{seconds}s",
            "-H",
            f"Cookie: {cookie}",
            url,
        ],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    assert "Non-2xx" not in out, out
    match = _REQUESTS.search(out)
    assert match is not None, out
    return int(match.group(1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=4)
    parser.add_argument("--store", help="a postgresql:// URL (default: SQLite in the data dir)")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed (apt-get install wrk)")
    with tempfile.TemporaryDirectory() as tmp:
        store = {"store": cfg.StoreSection(url=args.store)} if args.store else {}
        config = loopback_config(Path(tmp) / "data", only=["http"], **store)
        with LiveServer(config) as live:
            live.add_domain("example.org")
            live.add_account(ADDRESS, TEST_PASSWORD)
            for serial in range(20):
                deliver(live, ADDRESS, simple_message(subject=f"message {serial}"))
            box = mailbox_id(live, ADDRESS)
            web = WebSession(live)
            assert web.login(ADDRESS).status_code == 303
            cookie = "; ".join(f"{name}={value}" for name, value in web.client.cookies.items())
            cases = [
                ("mailbox page (20 messages)", f"/mail/{box}"),
                ("JSON API GET (mailboxes)", "/api/v1/mailboxes"),
            ]
            for _, path in cases:
                assert web.get(path).status_code == 200, path
            start = time.process_time()
            time.sleep(1)
            idle = time.process_time() - start
            print(f"store: {'PostgreSQL' if args.store else 'SQLite'}; wrk -c{args.connections}")
            print(f"(load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs at the start)")
            print(f"{'request':<30} {'req/s':>8} {'server CPU ms/req':>18}")
            for label, path in cases:
                start = time.process_time()
                done = run_wrk(web.base + path, cookie, args.seconds, args.connections)
                cpu = time.process_time() - start - idle * args.seconds
                print(f"{label:<30} {done / args.seconds:>8.0f} {cpu * 1000 / done:>18.3f}")
            web.close()


if __name__ == "__main__":
    main()
