"""STYLE §1: protocol cores do no I/O. Walks the source of every core module and fails if one
imports asyncio, socket, ssl, time, threading or selectors (directly or as ``from x import``)."""

from __future__ import annotations

import ast
from pathlib import Path

import pillarbox

SRC = Path(pillarbox.__file__).parent
CORE_PACKAGES = ("smtp", "imap", "pop3", "mail", "sieve", "managesieve")
CORE_MODULES = (
    "auth/sasl.py",
    "auth/scram.py",
    "auth/saslprep.py",
    "auth/ratelimit.py",
    "queue/mtasts.py",
    "queue/dane.py",
    "queue/tlsrpt.py",
    "web/sieverules.py",
)
FORBIDDEN = {"asyncio", "socket", "ssl", "time", "threading", "selectors", "subprocess"}


def core_files() -> list[Path]:
    files = [p for pkg in CORE_PACKAGES for p in (SRC / pkg).rglob("*.py")]
    files += [SRC / m for m in CORE_MODULES if (SRC / m).exists()]
    return sorted(files)


def imported_roots(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    roots: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            roots.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            roots.add(node.module.split(".")[0])
    return roots


def test_there_are_core_files_to_check() -> None:
    names = {p.parent.name for p in core_files()}
    assert {"smtp", "mail"} <= names


def test_protocol_cores_do_no_io() -> None:
    offenders = {
        str(path.relative_to(SRC)): sorted(imported_roots(path) & FORBIDDEN)
        for path in core_files()
        if imported_roots(path) & FORBIDDEN
    }
    assert offenders == {}


def test_only_net_and_runtime_modules_import_sockets() -> None:
    allowed = {
        "net",
        "blocking.py",
        "services.py",
        "store",
        "cli",
        "web",
        "queue",
        "dns",
        "testing",
        "auth",
        "transfer",  # import/export/backup: files and a remote IMAP account, like cli
    }
    offenders = []
    for path in SRC.rglob("*.py"):
        top = path.relative_to(SRC).parts[0]
        if top in allowed:
            continue
        if imported_roots(path) & {"socket", "ssl", "selectors"}:
            offenders.append(str(path.relative_to(SRC)))
    assert offenders == []
