"""Addresses on the SMTP path: what ``parse_address`` costs per address (MAIL FROM and each
RCPT TO go through it), by the shape of the domain.

Usage: ``python bench/address.py [--calls N]``

Measured: µs per ``parse_address`` call (the best of 5 runs of N calls, 20,000 by default), for
an ASCII domain (a regex, no IDNA work), and for domains that go through IDNA 2008
(``mail.address``: UTS #46 mapping, the RFC 5892 rules, the RFC 5893 Bidi rule): a U-label, an
A-label (decoded and checked to round-trip), a right-to-left name (Bidi rule on every label)
and a label with ZWNJ (CONTEXTJ). No cache: a Unicode domain costs tens of µs, against a
message's ~1 ms of server CPU (``bench/smtp.py``).
"""

from __future__ import annotations

import argparse
import timeit

from pillarbox.mail.address import parse_address

ADDRESSES = {
    "ASCII": "user@mail.example.com",
    "U-label": "jörg@bücher.example",
    "A-label": "user@xn--bcher-kva.example",
    "right-to-left": "user@mail.\u0627\u0644\u0639\u0631\u0628\u064a\u0629.example",
    "ZWNJ (CONTEXTJ)": "user@\u0645\u06cc\u200c\u062e\u0648\u0627\u0647\u0645.example",
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=20_000)
    calls = parser.parse_args().calls
    print(f"{'domain':<18} {'µs per address':>15}")
    for shape, address in ADDRESSES.items():
        best = min(timeit.repeat(lambda a=address: parse_address(a), number=calls, repeat=5))
        print(f"{shape:<18} {best / calls * 1e6:>15.1f}")


if __name__ == "__main__":
    main()
