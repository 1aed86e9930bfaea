"""Compiled scripts by content, so a delivery does not parse the script again.

Keyed by the SHA-256 of the text: a replaced script is a new key, an unchanged one found
again whichever account or node stored it. Scripts that do not compile are remembered too
(as their error), so a broken script costs one parse, not one per message. Least recently
used entries go first past ``max_entries``.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict

from pillarbox.sieve import (
    DEFAULT_MAX_NESTING,
    DEFAULT_MAX_VARIABLES,
    DEFAULT_REGEX_LIMITS,
    RegexLimits,
    Script,
    SieveError,
    compile_script,
)


class ScriptCache:
    def __init__(
        self,
        *,
        max_entries: int = 256,
        max_size: int | None = None,
        max_nesting: int = DEFAULT_MAX_NESTING,
        max_variables: int = DEFAULT_MAX_VARIABLES,
        regex_limits: RegexLimits = DEFAULT_REGEX_LIMITS,
    ) -> None:
        self._entries: OrderedDict[bytes, Script | SieveError] = OrderedDict()
        self._max_entries = max_entries
        self._max_size = max_size
        self._max_nesting = max_nesting
        self._max_variables = max_variables
        self._regex_limits = regex_limits
        #: Compilations done (a test reads it to see the cache work).
        self.compiled = 0

    def script(self, text: str) -> Script:
        """The compiled ``text``; :class:`SieveError` if it does not compile. Compiles on the
        caller's thread when it is not cached (see :meth:`lookup` for the loop's way)."""
        entry = self.lookup(text)
        if entry is None:
            entry = self.remember(text, self.compile(text))
        return unwrap(entry)

    def lookup(self, text: str) -> Script | SieveError | None:
        """The cached result for ``text`` (a script or its error), None if not compiled yet."""
        key = _key(text)
        entry = self._entries.get(key)
        if entry is not None:
            self._entries.move_to_end(key)
        return entry

    def compile(self, text: str) -> Script | SieveError:
        """Compile ``text`` under the cache's limits without touching the cache: safe on a
        worker thread, with :meth:`remember` back on the owner's."""
        try:
            return compile_script(
                text,
                max_size=self._max_size,
                max_nesting=self._max_nesting,
                max_variables=self._max_variables,
                regex_limits=self._regex_limits,
            )
        except SieveError as exc:
            return exc

    def remember(self, text: str, entry: Script | SieveError) -> Script | SieveError:
        """Keep ``entry`` (what :meth:`compile` made of ``text``); returns it."""
        self.compiled += 1
        self._entries[_key(text)] = entry
        if len(self._entries) > self._max_entries:
            self._entries.popitem(last=False)
        return entry


def _key(text: str) -> bytes:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).digest()


def unwrap(entry: Script | SieveError) -> Script:
    """The script, or its compile error raised."""
    if isinstance(entry, SieveError):
        raise entry
    return entry
