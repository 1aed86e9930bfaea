"""``pillarbox sieve …`` run as an operator runs it: one subprocess per command against a
site made by ``pillarbox init``; the same rules as ManageSieve (compile, quotas, ACTIVE)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pillarbox.testing.command import init_site, run_pillarbox

USER = "alice@example.org"
FILTER = (
    'require "fileinto";\r\nif header :contains "subject" "[list]" {\r\n'
    '  fileinto "Lists";\r\n}\r\n'
)


@pytest.fixture
def site(tmp_path: Path) -> Path:
    init_site(tmp_path, USER, "correct horse battery")
    return tmp_path


def _ok(site: Path, *args: str, stdin: str | None = None) -> str:
    result = run_pillarbox(site, "sieve", *args, stdin=stdin)
    assert result.returncode == 0, result.stderr
    return result.stdout


def _refused(site: Path, *args: str, stdin: str | None = None) -> str:
    result = run_pillarbox(site, "sieve", *args, stdin=stdin)
    assert result.returncode == 1, (result.stdout, result.stderr)
    return result.stderr


def test_script_lifecycle(site: Path) -> None:
    (site / "lists.sieve").write_text(FILTER, encoding="utf-8", newline="")
    assert _ok(site, "list", USER) == "(no scripts)\n"
    assert _ok(site, "put", USER, "lists", "lists.sieve") == "stored script lists\n"
    assert _ok(site, "put", USER, "other", "-", stdin="keep;\n") == "stored script other\n"
    assert _ok(site, "activate", USER, "lists") == "activated script lists\n"
    assert _ok(site, "list", USER) == "lists (active)\nother\n"
    assert _ok(site, "get", USER, "lists") == FILTER.replace("\r\n", "\n")
    assert "active" in _refused(site, "delete", USER, "lists")
    assert _ok(site, "rename", USER, "lists", "Mailing lists") == (
        "renamed script lists to Mailing lists\n"
    )
    listed = json.loads(_ok(site, "list", USER, "--json"))
    assert listed == [
        {"name": "Mailing lists", "active": True, "size": len(FILTER.encode())},
        {"name": "other", "active": False, "size": 6},
    ]
    assert _ok(site, "deactivate", USER) == f"no active script for {USER}\n"
    assert _ok(site, "delete", USER, "Mailing lists") == "deleted script Mailing lists\n"
    assert _ok(site, "list", USER) == "other\n"


def test_refusals(site: Path) -> None:
    (site / "bad.sieve").write_text('fileinto "x";\n', encoding="utf-8")
    message = _refused(site, "put", USER, "bad", "bad.sieve")
    assert message == (
        "pillarbox: line 1: command 'fileinto' needs require 'fileinto' (RFC 5228 §3.2)\n"
    )
    assert _ok(site, "list", USER) == "(no scripts)\n"
    assert "no account" in _refused(site, "list", "nobody@example.org")
    assert "no script" in _refused(site, "get", USER, "missing")
    (site / "latin1.sieve").write_bytes(b"keep; # caf\xe9\n")
    assert "not UTF-8" in _refused(site, "put", USER, "x", "latin1.sieve")
    assert "1 to 128" in _refused(site, "put", USER, "", "-", stdin="keep;")
    assert "cannot read" in _refused(site, "put", USER, "x", "missing.sieve")


def test_quotas_from_config(site: Path) -> None:
    quotas = {"PILLARBOX__SIEVE__MAX_SCRIPTS": "1", "PILLARBOX__SIEVE__MAX_SCRIPT_SIZE": "10"}

    def put(name: str, text: str) -> tuple[int, str]:
        result = run_pillarbox(site, "sieve", "put", USER, name, "-", stdin=text, env_extra=quotas)
        return result.returncode, result.stdout + result.stderr

    assert put("one", "keep;") == (0, "stored script one\n")
    assert put("two", "keep;") == (1, "pillarbox: 1 scripts stored, the most allowed\n")
    assert put("one", "keep; keep; keep;") == (
        1,
        "pillarbox: script is 17 octets, more than the 10 allowed\n",
    )
    assert put("one", "discard;") == (0, "stored script one\n")  # replacing is not a new one
    assert _ok(site, "get", USER, "one") == "discard;"


def test_check_needs_no_config(tmp_path: Path) -> None:
    (tmp_path / "ok.sieve").write_text("keep;\n", encoding="utf-8")
    result = run_pillarbox(tmp_path, "sieve", "check", "ok.sieve", config=False)
    assert (result.returncode, result.stdout) == (0, "script is valid\n")
    result = run_pillarbox(tmp_path, "sieve", "check", "-", stdin="if true {", config=False)
    assert result.returncode == 1
    assert result.stderr.startswith("pillarbox: line 1: ")
