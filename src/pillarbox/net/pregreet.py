"""The MX's pregreet test (Postfix postscreen's, sendmail's ``greet_pause``): the greeting
waits ``smtp.greet_pause`` seconds, and a client that sends anything in that time has shown it
does not wait for the 220 as RFC 5321 §3.1 and §4.3.1 require of every client (a real MTA
waits up to 5 minutes for it, §4.5.3.2.1). Spam software that fires its commands at once is
caught before it sends anything that costs us work.

Implementation notes:

- The session's adapter (:mod:`pillarbox.net.smtp`) waits; this module decides whom it makes
  wait and remembers who did. A client that talked first is greeted with 554 (RFC 5321
  §3.1: no service, but QUIT is still answered), through the SMTP core, which is then fed
  the early bytes and answers them as the refused state does: nothing but QUIT.
- A client that waited is not made to wait again for ``greet_pass_ttl`` (postscreen's
  ``postscreen_greet_ttl``: a day), by address; at most ``greet_pass_clients`` are remembered,
  and past that the memory starts empty (the cost is one more pause for each, not a refusal).
  Per process: nodes behind a load balancer each make a client wait once.
- Never for ``policy.trusted_networks`` (local injection), nor on submission or LMTP, whose
  clients are ours or a front MTA.
- The clock is an argument (``now``, the loop's time).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

from pillarbox.observability.metrics import GREET_OUTCOMES, Metrics
from pillarbox.policy.pipeline import in_networks

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class GreetPause:
    """One MX listener's pause before the greeting, shared by its sessions."""

    def __init__(
        self,
        seconds: float,
        pass_ttl: float,
        max_clients: int,
        exempt: Sequence[Network],
        metrics: Metrics,
    ) -> None:
        """``exempt``: the trusted networks, as the MX's handler parsed them."""
        self.seconds = seconds
        self._counted = {o: metrics.greet_pauses.labels(o) for o in GREET_OUTCOMES}
        self._pass_ttl = pass_ttl
        self._max_clients = max_clients
        self._exempt = exempt
        #: Client address → until when it is not made to wait (loop time).
        self._passed: dict[str, float] = {}

    def applies(self, client_ip: str, now: float) -> bool:
        """Whether this client waits before its greeting."""
        if in_networks(client_ip, self._exempt):
            return False
        until = self._passed.get(client_ip)
        if until is None:
            return True
        if until > now:
            return False
        del self._passed[client_ip]
        return True

    def waited(self, client_ip: str, now: float) -> None:
        """The client waited for the greeting: spare it the pause for ``pass_ttl``."""
        if len(self._passed) >= self._max_clients:
            self._passed.clear()
        self._passed[client_ip] = now + self._pass_ttl

    def count(self, outcome: str) -> None:
        """One pause ended so (:data:`~pillarbox.observability.metrics.GREET_OUTCOMES`)."""
        self._counted[outcome].inc()
