"""COMPRESS=DEFLATE streams (RFC 4978): raw DEFLATE both ways, no I/O.

Implementation notes:

- **Raw DEFLATE** (RFC 1951, no zlib header: ``wbits=-15``, RFC 4978 §4), one stream per
  direction for the rest of the connection.
- **Every write is flushed** with ``Z_SYNC_FLUSH`` (§4: the peer must be able to decode each
  response as it arrives, or a client waiting for a tagged reply would wait forever).
- **Inflation is bounded**: :meth:`Deflate.inflate` yields at most ``max_chunk`` octets at a
  time, so a small compressed "bomb" becomes many small pieces that the lexer's own limits
  (line length, literal size) judge one by one, never one huge allocation.
- A corrupt stream raises :class:`CompressionError`; the adapter closes the connection (there
  is no way to resynchronise a DEFLATE stream).
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator

from pillarbox.errors import PillarboxError

__all__ = ["CompressionError", "Deflate"]

_RAW = -15  # RFC 4978 §4: raw DEFLATE, 32 KiB window


class CompressionError(PillarboxError):
    """The peer's compressed stream is corrupt."""


class Deflate:
    """The two DEFLATE streams of one connection."""

    def __init__(self, *, level: int = 6, max_chunk: int = 256 * 1024) -> None:
        self._deflater = zlib.compressobj(level, zlib.DEFLATED, _RAW)
        self._inflater = zlib.decompressobj(_RAW)
        self._max_chunk = max_chunk

    def deflate(self, data: bytes) -> bytes:
        """Compress ``data`` and flush, so the peer can decode all of it now."""
        return self._deflater.compress(data) + self._deflater.flush(zlib.Z_SYNC_FLUSH)

    def inflate(self, data: bytes) -> Iterator[bytes]:
        """The plain octets ``data`` carries, in pieces of at most ``max_chunk``."""
        try:
            piece = self._inflater.decompress(data, self._max_chunk)
            while piece:
                yield piece
                tail = self._inflater.unconsumed_tail
                piece = self._inflater.decompress(tail, self._max_chunk) if tail else b""
        except zlib.error as exc:
            raise CompressionError(f"corrupt DEFLATE stream: {exc}") from None
