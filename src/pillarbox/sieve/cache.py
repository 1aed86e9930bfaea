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
    ) -> None:
        self._entries: OrderedDict[bytes, Script | SieveError] = OrderedDict()
        self._max_entries = max_entries
        self._max_size = max_size
        self._max_nesting = max_nesting
        self._max_variables = max_variables
        #: Compilations done (a test reads it to see the cache work).
        self.compiled = 0

    def script(self, text: str) -> Script:
        """The compiled ``text``; :class:`SieveError` if it does not compile."""
        key = hashlib.sha256(text.encode("utf-8", "surrogatepass")).digest()
        entry = self._entries.get(key)
        if entry is None:
            self.compiled += 1
            try:
                entry = compile_script(
                    text,
                    max_size=self._max_size,
                    max_nesting=self._max_nesting,
                    max_variables=self._max_variables,
                )
            except SieveError as exc:
                entry = exc
            self._entries[key] = entry
            if len(self._entries) > self._max_entries:
                self._entries.popitem(last=False)
        else:
            self._entries.move_to_end(key)
        if isinstance(entry, SieveError):
            raise entry
        return entry
