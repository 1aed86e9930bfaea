"""The one error a Sieve script that does not compile raises (RFC 5228 §2.10.6: errors found
before execution reject the script), and the internal one a running script stops on."""

from __future__ import annotations


class SieveError(Exception):
    """A script that does not compile: ``line`` (1-based) and ``message`` say where and why;
    ``str(err)`` is ``"line N: message"`` (what ManageSieve and the web UI show the user)."""

    def __init__(self, line: int, message: str) -> None:
        super().__init__(f"line {line}: {message}")
        self.line = line
        self.message = message


class SieveRuntimeError(Exception):
    """A script that failed while running (a limit, an invalid address built at run time):
    RFC 5228 §2.10.6 — its actions are dropped and the message gets the implicit keep."""
