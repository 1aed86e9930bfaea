"""ManageSieve (RFC 5804): the protocol mail apps use to upload and activate Sieve filters.

:mod:`.grammar` frames and parses commands, :mod:`.responses` holds every reply,
:mod:`.session` is the state machine; the asyncio adapter is ``pillarbox.net.managesieve``.
"""

from pillarbox.managesieve.grammar import FramerLimits
from pillarbox.managesieve.session import (
    Action,
    ManageSieveSession,
    SessionSettings,
    State,
)

__all__ = ["Action", "FramerLimits", "ManageSieveSession", "SessionSettings", "State"]
