"""A mail filter on Sendmail's libmilter (through pymilter), for tests/interop/test_milter.py.

Run as ``python scripted_milter.py SOCKET RECORD``: it listens on SOCKET (``unix:/path``) and
appends one JSON line to RECORD per message (or aborted transaction) with what it was shown.
What it does is chosen by the mail it sees, so one filter serves every test:

- MAIL FROM ``tempfail@…``: 451 4.7.1 with its own text; RCPT TO ``refused@…``: 550 5.7.1.
- The Subject at end of message: ``edit`` adds, inserts and changes header fields;
  ``replace`` replaces the body; ``reroute`` deletes every recipient and adds ``bob@…``
  with a new envelope sender; ``quarantine``, ``discard``, ``reject`` (a two-line 554) do
  what they say; anything else continues unchanged.
"""

from __future__ import annotations

import json
import sys
from typing import Any

import Milter

RECORD = sys.argv[2]


class Scripted(Milter.Base):
    def __init__(self) -> None:
        self.seen: dict[str, Any] = {}

    def connect(self, hostname: str, family: int, hostaddr: Any) -> int:
        self.client = {"hostname": hostname, "address": hostaddr[0], "j": self.getsymval("j")}
        return Milter.CONTINUE

    def hello(self, name: str) -> int:
        self.helo = name
        return Milter.CONTINUE

    def envfrom(self, sender: str, *params: str) -> int:
        self.seen = {
            "client": self.client,
            "helo": self.helo,
            "from": sender,
            "params": list(params),
            "rcpt": [],
            "headers": [],
            "mail_addr": self.getsymval("{mail_addr}"),
            "auth_authen": self.getsymval("{auth_authen}"),
        }
        if sender.startswith("<tempfail@"):
            self.setreply("451", "4.7.1", "come back later, says the filter")
            return Milter.TEMPFAIL
        return Milter.CONTINUE

    def envrcpt(self, recipient: str, *params: str) -> int:
        if recipient.startswith("<refused@"):
            self.setreply("550", "5.7.1", "the filter refuses this one")
            return Milter.REJECT
        self.seen["rcpt"].append(recipient)
        return Milter.CONTINUE

    def header(self, name: str, value: str) -> int:
        self.seen["headers"].append([name, value])
        if name.lower() == "subject":
            self.subject = value
        return Milter.CONTINUE

    def eoh(self) -> int:
        self.content = b""
        return Milter.CONTINUE

    def body(self, chunk: bytes) -> int:
        self.content += chunk
        return Milter.CONTINUE

    def eom(self) -> int:
        self.seen["body"] = self.content.decode("utf-8", "replace")
        recipients = self.seen["rcpt"]
        self._record("eom")
        subject = getattr(self, "subject", "")
        if subject == "edit":
            self.addheader("X-Filtered", "yes,\n\tfolded")
            self.addheader("X-First", "on top", 0)
            self.chgheader("Subject", 1, "edited by the filter")
            self.chgheader("X-Remove-Me", 1, "")
        elif subject == "replace":
            self.replacebody(b"The filter wrote this body.\r\n")
        elif subject == "reroute":
            for recipient in recipients:
                self.delrcpt(recipient)
            self.addrcpt("<bob@example.org>")
            self.chgfrom("<rerouted@example.net>")
        elif subject == "quarantine":
            self.quarantine("looks odd to the filter")
        elif subject == "discard":
            return Milter.DISCARD
        elif subject == "reject":
            self.setreply("554", "5.7.0", "refused by the filter", "second line")
            return Milter.REJECT
        return Milter.CONTINUE

    def abort(self) -> int:
        if self.seen:
            self._record("abort")
        return Milter.CONTINUE

    def _record(self, end: str) -> None:
        with open(RECORD, "a", encoding="utf-8") as out:
            out.write(json.dumps({**self.seen, "end": end}) + "\n")
        self.seen = {}


if __name__ == "__main__":
    Milter.factory = Scripted
    Milter.set_flags(
        Milter.ADDHDRS
        | Milter.CHGHDRS
        | Milter.CHGBODY
        | Milter.ADDRCPT
        | Milter.DELRCPT
        | Milter.QUARANTINE
        | Milter.CHGFROM
    )
    Milter.runmilter("pillarbox-test", sys.argv[1], 60)
