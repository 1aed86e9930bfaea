"""Sieve benchmark: what the language core costs, and what a script costs a delivery.

Usage: ``python bench/sieve.py [--messages N]``

Core (in-process, best of 5): compiling a typical filter script; a cache hit (what a delivery
pays once the script was compiled); running it on a small message; a :matches test on a 1 MB
body; :regex (draft-ietf-sieve-regex): compiling a script with a new pattern (translation to
RE2 and RE2's compile), a header test, a search through a 1 MB body, and a pattern that makes a
backtracking matcher take exponential time. Delivery: N messages over SMTP (smtplib, one
connection per message, as MX peers do) to a live server on loopback with no script, then with
the script active — the difference is the script's cost per delivery (reading the active script
from the store included) — and with the script behind a ``duplicate`` test (RFC 7352: each
delivery reads the account's tracked ids and records its own; every Message-ID new). Prints a
table; not a timed test.
"""

from __future__ import annotations

import argparse
import smtplib
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from pillarbox.sieve import SieveMessage, compile_script
from pillarbox.sieve.cache import ScriptCache
from pillarbox.testing.live import TEST_PASSWORD, LiveServer, loopback_config

SCRIPT = """require ["fileinto", "imap4flags", "envelope", "subaddress", "relational",
                 "comparator-i;ascii-numeric", "copy", "body"];
if header :value "ge" :comparator "i;ascii-numeric" "x-spam-score" "10" {
    fileinto :flags "$Junk" "Spam"; stop;
}
if address :domain :is ["from", "sender"] ["example.com", "example.net"] {
    addflag "\\\\Flagged"; fileinto :copy "Boss";
}
if envelope :detail "to" "lists" { fileinto "Lists"; stop; }
if anyof (header :contains "list-id" ["dev.example.org", "announce.example.org"],
          header :matches "subject" ["[dev]*", "*weekly digest*"]) {
    fileinto "Lists";
} elsif address :count "ge" :comparator "i;ascii-numeric" ["to", "cc"] "10" {
    fileinto "Crowd";
} elsif header :contains "subject" ["invoice", "receipt", "order"] {
    fileinto "Receipts";
}
"""

#: The filter behind a duplicate test: what tracking adds to a delivery.
DUPLICATE_SCRIPT = SCRIPT.replace('require ["', 'require ["duplicate", "', 1).replace(
    "if header :value", "if duplicate { discard; stop; }\nif header :value", 1
)

MESSAGE = (
    b"From: Friend <friend@example.org>\r\nTo: me@bench.test\r\nCc: a@x.test, b@x.test\r\n"
    b"Subject: =?utf-8?q?Lunch_on_Friday?=\r\nDate: Sun, 1 Jun 2025 10:00:00 +0000\r\n"
    b"Message-ID: <1@example.org>\r\n\r\nShall we?\r\n"
)


def best(fn: Callable[[], object], repeat: int) -> float:
    """Best of 5 of ``repeat`` calls, seconds per call."""
    times = []
    for _ in range(5):
        start = time.perf_counter()
        for _ in range(repeat):
            fn()
        times.append((time.perf_counter() - start) / repeat)
    return min(times)


def core() -> list[tuple[str, str]]:
    script = compile_script(SCRIPT)
    message = SieveMessage.from_bytes(
        MESSAGE, envelope_from="a@b.test", envelope_to="me@bench.test"
    )
    cache = ScriptCache()
    cache.script(SCRIPT)
    big = SieveMessage.from_bytes(MESSAGE + b"lorem ipsum dolor sit amet\r\n" * 37_000)
    matches = compile_script('require "body"; if body :matches "*ipsum*zzz*" { discard; }')
    return [
        (
            "compile the filter script (22 lines)",
            f"{best(lambda: compile_script(SCRIPT), 200) * 1e6:.0f} µs",
        ),
        (
            "cache hit (SHA-256 of the text)",
            f"{best(lambda: cache.script(SCRIPT), 2000) * 1e6:.1f} µs",
        ),
        ("run it on a small message", f"{best(lambda: script.run(message), 2000) * 1e6:.0f} µs"),
        ("body :matches on a 1 MB body", f"{best(lambda: matches.run(big), 5) * 1e3:.1f} ms"),
        *regex_costs(message, big),
    ]


def regex_costs(message: SieveMessage, big: SieveMessage) -> list[tuple[str, str]]:
    fresh = iter(range(10**9))

    def compile_new_pattern() -> object:
        # A pattern never seen: the translation and RE2's compile are not cached.
        return compile_script(
            f'require "regex"; if header :regex "subject" "^x{next(fresh)}(re|fwd): +[a-z]+" {{}}'
        )

    header = compile_script(
        'require ["regex", "variables", "fileinto"];\n'
        'if header :regex "subject" ["^\\\\[(dev|ops)\\\\]", "^(lunch|dinner) on ([a-z]+)"] '
        '{ fileinto "${2}"; }'
    )
    body = compile_script('require ["regex", "body"]; if body :regex "ipsum.*zzz" { discard; }')
    redos = SieveMessage.from_bytes(b"Subject: " + b"a" * 30_000 + b"b\r\n\r\n")
    evil = compile_script('require "regex"; if header :regex "subject" "(a+)+$" { discard; }')
    return [
        (
            "compile a script with a new :regex pattern",
            f"{best(compile_new_pattern, 200) * 1e6:.0f} µs",
        ),
        (
            "run a :regex header test (2 keys, captures)",
            f"{best(lambda: header.run(message), 2000) * 1e6:.0f} µs",
        ),
        ("body :regex on a 1 MB body", f"{best(lambda: body.run(big), 5) * 1e3:.1f} ms"),
        (
            '"(a+)+$" on a 30 000-character header',
            f"{best(lambda: evil.run(redos), 20) * 1e6:.0f} µs",
        ),
    ]


def deliveries(count: int, script: str | None) -> float:
    """Messages per second delivered over SMTP to a live server, each with its own
    Message-ID, through ``script`` if given."""
    with tempfile.TemporaryDirectory() as tmp:
        config = loopback_config(Path(tmp) / "data", only=("smtp",))
        with LiveServer(config) as live:
            live.add_domain("bench.test")
            account = live.add_account("me@bench.test", TEST_PASSWORD)
            if script is not None:
                for name in ("Spam", "Boss", "Lists", "Crowd", "Receipts"):
                    live.call(live.store.create_mailbox(account.id, name))
                live.call(live.store.put_sieve_script(account.id, "main", script))
                live.call(live.store.set_active_sieve_script(account.id, "main"))
            start = time.perf_counter()
            for n in range(count):
                raw = MESSAGE.replace(b"<1@example.org>", f"<{n}@example.org>".encode())
                with smtplib.SMTP("127.0.0.1", live.port("smtp")) as client:
                    client.sendmail("friend@example.org", ["me@bench.test"], raw)
            return count / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--messages", type=int, default=300)
    args = parser.parse_args()
    rows = core()
    plain = deliveries(args.messages, None)
    filtered = deliveries(args.messages, SCRIPT)
    tracked = deliveries(args.messages, DUPLICATE_SCRIPT)
    rows += [
        (f"SMTP deliveries, no script ({args.messages})", f"{plain:.0f} msg/s"),
        (f"SMTP deliveries, script active ({args.messages})", f"{filtered:.0f} msg/s"),
        (f"SMTP deliveries, script with duplicate ({args.messages})", f"{tracked:.0f} msg/s"),
    ]
    width = max(len(r[0]) for r in rows)
    print(f"{'measure':<{width}}  value")
    for label, value in rows:
        print(f"{label:<{width}}  {value}")


if __name__ == "__main__":
    main()
