"""Sieve mail filtering (RFC 5228) with the extensions in :data:`EXTENSIONS`: a sans-I/O
language core. :func:`compile_script` checks a script once (for ManageSieve, the web UI and
delivery's cache); :meth:`Script.run` decides what happens to one message and returns action
values — storing, sending and replying are delivery's (``pillarbox.queue.filtering``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from pillarbox.sieve.actions import (
    Action,
    Discard,
    Fcc,
    FileInto,
    Keep,
    Notify,
    Outcome,
    Redirect,
    Reject,
    Vacation,
)
from pillarbox.sieve.duplicate import Tracked
from pillarbox.sieve.errors import SieveError
from pillarbox.sieve.grammar import parse
from pillarbox.sieve.interpret import Includes, RunLimits, run
from pillarbox.sieve.message import SieveMessage
from pillarbox.sieve.program import (
    IncludeKey,
    MetadataKey,
    Node,
    include_targets,
    metadata_targets,
)
from pillarbox.sieve.regex import DEFAULT_LIMITS as DEFAULT_REGEX_LIMITS
from pillarbox.sieve.regex import RegexLimits
from pillarbox.sieve.spamtest import SpamStatus
from pillarbox.sieve.validate import DEFAULT_MAX_VARIABLES, EXTENSIONS, compile_commands

__all__ = [
    "DEFAULT_MAX_VARIABLES",
    "DEFAULT_REGEX_LIMITS",
    "EXTENSIONS",
    "INLINE_COMPILE_SIZE",
    "Action",
    "Discard",
    "Fcc",
    "FileInto",
    "IncludeKey",
    "Includes",
    "Keep",
    "MetadataKey",
    "Notify",
    "Outcome",
    "Redirect",
    "RegexLimits",
    "Reject",
    "RunLimits",
    "Script",
    "SieveError",
    "SieveMessage",
    "SpamStatus",
    "Tracked",
    "Vacation",
    "compile_script",
]

#: Blocks and tests nested deeper than this are refused at compile time (a stack bound).
DEFAULT_MAX_NESTING = 32
#: Scripts up to this many characters are compiled where they are asked for; larger ones
#: belong off the event loop (compiling costs about 0.75 ms per KB: a 64 KB script, the
#: default ``sieve.max_script_size``, took 48 ms on the development VM).
INLINE_COMPILE_SIZE = 8 * 1024


@dataclass(frozen=True, slots=True)
class Script:
    """A compiled script: run it on any number of messages."""

    requires: frozenset[str]
    commands: tuple[Node, ...]
    #: The scripts its ``include`` commands name (RFC 6609), for delivery to fetch.
    includes: frozenset[IncludeKey] = frozenset()
    #: The METADATA entries its tests name (RFC 5490), for delivery to read; None when a
    #: name is made of variables (any entry may be read).
    metadata: frozenset[MetadataKey] | None = frozenset()

    def run(
        self,
        message: SieveMessage,
        limits: RunLimits | None = None,
        *,
        now: datetime | None = None,
        includes: Includes | None = None,
        name: str | None = None,
    ) -> Outcome:
        """The actions for ``message``; never raises for anything the message holds. ``now``
        (an aware datetime, in the server's local zone) is the time of the run: the core never
        reads the clock (RFC 5260 currentdate and the local zone of date come from it).
        ``includes`` maps each script an include may reach to its compiled form (None: it
        does not exist), ``name`` is this script's own (personal) name, to catch a loop."""
        return run(
            self.commands, self.requires, message, limits or RunLimits(), now, includes, name
        )


def compile_script(
    text: str,
    *,
    max_size: int | None = None,
    max_nesting: int = DEFAULT_MAX_NESTING,
    max_variables: int = DEFAULT_MAX_VARIABLES,
    regex_limits: RegexLimits = DEFAULT_REGEX_LIMITS,
) -> Script:
    """Compile ``text``; :class:`SieveError` (with the line) if it is not a valid script.
    ``max_size`` bounds its UTF-8 size in bytes (``sieve.max_script_size``),
    ``max_variables`` the variables it may ``set`` (``sieve.max_variables``),
    ``regex_limits`` its :regex patterns (``sieve.regex_max_length``, ``regex_max_memory``)."""
    if max_size is not None and len(text.encode("utf-8", "surrogatepass")) > max_size:
        raise SieveError(1, f"script larger than {max_size} bytes")
    requires, commands = compile_commands(
        parse(text, max_nesting=max_nesting),
        max_variables=max_variables,
        regex_limits=regex_limits,
    )
    return Script(requires, commands, include_targets(commands), metadata_targets(commands))
