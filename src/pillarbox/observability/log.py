"""Structured logging: every line carries a component, a connection id where there is one, and
``key=value`` fields.

Redaction is by construction: adapters log events and fields, never raw protocol lines, unless
``logging.trace_protocol`` is on — and even then AUTH payloads are replaced before logging
(:func:`redact_line`).
"""

from __future__ import annotations

import itertools
import json
import logging
import re
import sys
import time
from collections.abc import Mapping
from typing import Any

_ids = itertools.count(1)


def new_connection_id(prefix: str) -> str:
    """A short id unique in this process (``smtp-1f``); each log line of a connection has it."""
    return f"{prefix}-{next(_ids):x}"


class _TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
        fields = getattr(record, "fields", {})
        extra = "".join(f" {k}={_text(v)}" for k, v in fields.items())
        line = f"{stamp}Z {record.levelname} {record.name} {record.getMessage()}{extra}"
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


class _JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": record.created,
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        entry.update(getattr(record, "fields", {}))
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def _text(value: Any) -> str:
    text = str(value)
    if not text or any(c in text for c in ' "=\n'):
        return json.dumps(text)
    return text


def setup(level: str = "INFO", fmt: str = "text") -> None:
    """Configure the root ``pillarbox`` logger once, writing to stderr."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_JsonFormatter() if fmt == "json" else _TextFormatter())
    root = logging.getLogger("pillarbox")
    root.handlers[:] = [handler]
    root.setLevel(level)
    root.propagate = False


class Log:
    """A logger bound to fixed fields (component, connection id, peer)."""

    __slots__ = ("_fields", "_logger")

    def __init__(self, name: str, **fields: Any) -> None:
        self._logger = logging.getLogger(f"pillarbox.{name}")
        self._fields = fields

    def bind(self, **fields: Any) -> Log:
        bound = Log.__new__(Log)
        bound._logger = self._logger
        bound._fields = {**self._fields, **fields}
        return bound

    # Each level asks the logger itself: a line of a level that is off (a session's "info"
    # lines under the usual "warning") costs that one test, not a call to reach it too.
    def _emit(self, level: int, msg: str, fields: Mapping[str, Any], exc: bool = False) -> None:
        self._logger.log(level, msg, extra={"fields": {**self._fields, **fields}}, exc_info=exc)

    def debug(self, msg: str, **fields: Any) -> None:
        if self._logger.isEnabledFor(logging.DEBUG):
            self._emit(logging.DEBUG, msg, fields)

    def info(self, msg: str, **fields: Any) -> None:
        if self._logger.isEnabledFor(logging.INFO):
            self._emit(logging.INFO, msg, fields)

    def warning(self, msg: str, **fields: Any) -> None:
        if self._logger.isEnabledFor(logging.WARNING):
            self._emit(logging.WARNING, msg, fields)

    def error(self, msg: str, **fields: Any) -> None:
        if self._logger.isEnabledFor(logging.ERROR):
            self._emit(logging.ERROR, msg, fields)

    def exception(self, msg: str, **fields: Any) -> None:
        if self._logger.isEnabledFor(logging.ERROR):
            self._emit(logging.ERROR, msg, fields, exc=True)


_SECRET_VERBS = (b"AUTH ", b"AUTHENTICATE ", b"LOGIN ", b"PASS ", b"APOP ")


def redact_line(line: bytes, in_sasl_exchange: bool = False) -> bytes:
    """A protocol line safe to log: credentials and SASL responses are replaced."""
    if in_sasl_exchange:
        return b"<redacted SASL response>"
    upper = line.upper()
    for verb in _SECRET_VERBS:
        idx = upper.find(verb)
        if idx != -1 and (idx == 0 or upper[idx - 1 : idx] == b" "):
            keep = idx + len(verb)
            mech_end = line.find(b" ", keep)
            if verb.strip() in (b"AUTH", b"AUTHENTICATE") and mech_end != -1:
                keep = mech_end
            elif verb.strip() in (b"AUTH", b"AUTHENTICATE"):
                return line
            return line[:keep].rstrip(b" ") + b" <redacted>"
    return line


#: A literal's announcement (IMAP ``{n}``/``{n+}``, RFC 9051 §4.3; ManageSieve, RFC 5804 §4)
#: and the line break after which its ``n`` octets follow.
_LITERAL = re.compile(rb"\{(\d{1,12})\+?\}\r\n")


def elide_literals(data: bytes) -> bytes:
    """``data`` with each literal (announcement and octets) replaced by ``<literal:n>``: a
    protocol trace shows the shape of a command, not the script or message it carries."""
    out = bytearray()
    pos = 0
    while (match := _LITERAL.search(data, pos)) is not None:
        out += data[pos : match.start()] + b"<literal:%d>" % int(match.group(1))
        pos = match.end() + int(match.group(1))
    out += data[pos:]
    return bytes(out)


def trace_lines(data: bytes) -> list[str]:
    """What a protocol trace logs of ``data``: its lines, literals elided, CRLFs dropped."""
    lines = elide_literals(data).split(b"\r\n")
    if lines and not lines[-1]:
        lines.pop()
    return [line.decode("utf-8", "backslashreplace") for line in lines]
