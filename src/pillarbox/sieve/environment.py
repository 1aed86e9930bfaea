"""The "environment" extension (RFC 5183): what a script may learn of where it runs.

The core reads no host name and no socket: delivery hands the items over
(:func:`items`) and the ``environment`` test only looks them up. An item this server does
not know (``remote-ip`` for a message retried from the queue) is absent, and a test of an
absent item is false (§4).
"""

from __future__ import annotations

from pillarbox import __version__

#: RFC 5183 §4.1 "name" and "version": the product.
PRODUCT = "Pillarbox"
#: §4.1 "location": scripts run at final delivery, the mail delivery agent.
LOCATION = "MDA"
#: §4.1 "phase": while the message is being delivered.
PHASE = "during"


def items(
    *, host: str, domain: str | None = None, remote_ip: str = "", remote_host: str = ""
) -> dict[str, str]:
    """The §4.1 items for a run on ``host`` (this server's name); ``domain`` defaults to the
    host's parent domain (§4.1: "usually but not always a proper suffix of the host name");
    ``remote_ip``/``remote_host`` are the SMTP client's, when the delivery knows it."""
    if domain is None:
        parent = host.partition(".")[2]
        domain = parent if "." in parent else host
    out = {
        "domain": domain,
        "host": host,
        "location": LOCATION,
        "name": PRODUCT,
        "phase": PHASE,
        "version": __version__,
    }
    if remote_ip:
        out["remote-ip"] = remote_ip
    if remote_host:
        out["remote-host"] = remote_host
    return out
