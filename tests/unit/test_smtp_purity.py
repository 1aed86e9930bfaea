"""The SMTP core and the mail primitives it uses do no I/O (STYLE convention 1)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import pillarbox

ROOT = Path(pillarbox.__file__).parent
FORBIDDEN = {"asyncio", "socket", "ssl", "time", "threading", "selectors"}
MODULES = [
    *sorted((ROOT / "smtp").glob("*.py")),
    ROOT / "mail" / "address.py",
    ROOT / "mail" / "dotstuff.py",
]


@pytest.mark.parametrize("path", MODULES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_no_io_imports(path: Path) -> None:
    tree = ast.parse(path.read_text("utf-8"))
    imported: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            imported.add(node.module.split(".")[0])
    assert not imported & FORBIDDEN
