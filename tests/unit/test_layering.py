"""STYLE §1: protocol cores do no I/O. Walks the source of every core module and fails if one
imports asyncio, socket, ssl, time, threading or selectors (directly or as ``from x import``).
Also: the command line is the top of the stack, so no library module imports from it."""

from __future__ import annotations

import ast
from pathlib import Path

import pillarbox

SRC = Path(pillarbox.__file__).parent
CORE_PACKAGES = ("smtp", "imap", "pop3", "mail", "sieve", "managesieve", "milter")
CORE_MODULES = (
    "auth/sasl.py",
    "auth/scram.py",
    "auth/saslprep.py",
    "auth/ratelimit.py",
    "queue/mtasts.py",
    "queue/dane.py",
    "queue/tlsrpt.py",
    "web/sieverules.py",
    "proxyprotocol.py",
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
        "mailclient",  # blocking IMAP client and TLS settings shared by cli and transfer
    }
    offenders = []
    for path in SRC.rglob("*.py"):
        top = path.relative_to(SRC).parts[0]
        if top in allowed:
            continue
        if imported_roots(path) & {"socket", "ssl", "selectors"}:
            offenders.append(str(path.relative_to(SRC)))
    assert offenders == []


def imported_modules(source: str, package: str) -> set[str]:
    """Every module ``source`` (a module of ``package``) imports, relative imports resolved;
    ``from a import b`` counts as importing both ``a`` and ``a.b`` (b may be a submodule)."""
    parts = package.split(".")
    modules: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            modules.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = parts[: len(parts) - node.level + 1] if node.level else []
            module = ".".join([*base, *([node.module] if node.module else [])])
            modules.add(module)
            modules.update(f"{module}.{alias.name}" for alias in node.names)
    return modules


def test_imported_modules_sees_every_spelling() -> None:
    source = (
        "import pillarbox.cli.main\n"
        "from pillarbox import cli\n"
        "from ..cli.mail import commands\n"
        "def late():\n"
        "    from . import sibling\n"
    )
    found = imported_modules(source, "pillarbox.transfer")
    assert {
        "pillarbox.cli.main",
        "pillarbox.cli",
        "pillarbox.cli.mail.commands",
        "pillarbox.transfer.sibling",
    } <= found


def _module_package(path: Path) -> str:
    return ".".join(["pillarbox", *path.relative_to(SRC).parent.parts])


def _importers(package: str, allowed: set[str]) -> dict[str, list[str]]:
    """Each module of ``src/pillarbox`` outside the top-level packages ``allowed`` that imports
    from ``pillarbox.<package>``, with what it imports."""
    name = f"pillarbox.{package}"
    offenders = {}
    for path in sorted(SRC.rglob("*.py")):
        if path.relative_to(SRC).parts[0] in allowed:
            continue
        found = sorted(
            m
            for m in imported_modules(path.read_text(encoding="utf-8"), _module_package(path))
            if m == name or m.startswith(f"{name}.")
        )
        if found:
            offenders[str(path.relative_to(SRC))] = found
    return offenders


def test_nothing_outside_cli_imports_from_cli() -> None:
    """``pillarbox.cli`` uses the library, never the other way round: code two commands (or a
    command and a server part) share lives in a library package (as :mod:`pillarbox.mailclient`
    does for ``pillarbox mail`` and ``pillarbox import imap``)."""
    assert _importers("cli", {"cli"}) == {}


def test_only_the_server_and_the_cli_import_from_web() -> None:
    """``pillarbox.web`` is the HTTP side: what the address book, the imports and the stores
    share with a page lives below it (as :mod:`pillarbox.mail.people` does for the compose
    page's address check, which the address book runs for ``pillarbox import vcard`` and
    CardDAV), so that they load no web app. ``net.serve`` mounts the app; the CLI runs it."""
    assert _importers("web", {"net", "cli", "web"}) == {}
