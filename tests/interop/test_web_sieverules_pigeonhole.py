"""The rule builder's scripts mean what the rules say, in two Sieve implementations: for each
message, ours (:mod:`pillarbox.sieve`) and Dovecot Pigeonhole's ``sieve-test`` take exactly the
actions written down here — the folders with their flags, the redirects. ``sievec`` accepts the
generated script as well. Runs with the helpers of ``test_sieve_pigeonhole``."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from test_sieve_pigeonhole import Decision, _ours, _pigeonhole, workdir  # noqa: F401

from pillarbox.testing.peers import require
from pillarbox.web.sieverules import Action, ActionKind, Condition, Field, Match, Rule, script_of

pytestmark = pytest.mark.skipif(
    shutil.which("sievec") is None or shutil.which("sieve-test") is None,
    reason="Pigeonhole not installed (apt-get install dovecot-sieve)",
)

RULES = [
    Rule(
        "Boss",
        (Condition(Field.FROM, Match.CONTAINS, "boss"),),
        (Action(ActionKind.MOVE, "Work"), Action(ActionKind.FLAG)),
    ),
    Rule(
        "Dev list",
        (
            Condition(Field.HEADER, Match.CONTAINS, "dev.lists.example", "List-Id"),
            Condition(Field.SUBJECT, Match.MATCHES, '[dev] "release" \\*now\\**'),
        ),
        (
            Action(ActionKind.COPY, "Lists/dev"),
            Action(ActionKind.MARK_READ),
            Action(ActionKind.STOP),
        ),
    ),
    Rule(
        "Big",
        (Condition(Field.SIZE, Match.OVER, "2K"),),
        (Action(ActionKind.REDIRECT_COPY, "archive@elsewhere.example"),),
    ),
    Rule(
        "Mine",
        (
            Condition(Field.TO_CC, Match.IS, "me+sieve@example.org"),
            Condition(Field.SUBJECT, Match.NOT_CONTAINS, "review"),
        ),
        (Action(ActionKind.FLAG),),
    ),
    Rule("Off", (), (Action(ActionKind.DISCARD),), enabled=False),
    Rule(
        "Nuisance",
        (
            Condition(Field.FROM, Match.MATCHES, "*@prize.example"),
            Condition(Field.SUBJECT, Match.IS, "WIN"),
        ),
        (Action(ActionKind.DISCARD), Action(ActionKind.STOP)),
        any_of=True,
    ),
]
SEEN, FLAGGED = frozenset({"\\seen"}), frozenset({"\\flagged"})
#: message → (raw, what both must do)
CASES = {
    "boss": (
        b"From: The Boss <BOSS@example.com>\r\nTo: me+sieve@example.org\r\n"
        b"Subject: Quarterly review\r\n\r\nNumbers.\r\n",
        Decision(frozenset({("Work", FLAGGED)}), frozenset(), False),
    ),
    "list": (
        b"From: someone@example.net\r\nTo: dev@lists.example\r\nCc: me+sieve@example.org\r\n"
        b'List-Id: <dev.lists.example>\r\nSubject: [dev] "release" *now* (2.0)\r\n\r\nHi.\r\n',
        Decision(frozenset({("Lists/dev", SEEN), ("INBOX", SEEN)}), frozenset(), False),
    ),
    "list, no literal stars": (
        b"From: someone@example.net\r\nTo: dev@lists.example\r\nCc: me+sieve@example.org\r\n"
        b'List-Id: <dev.lists.example>\r\nSubject: [dev] "release" now\r\n\r\nHi.\r\n',
        Decision(frozenset({("INBOX", FLAGGED)}), frozenset(), False),
    ),
    "big": (
        b"From: carol@example.net\r\nTo: Me <me+sieve@example.org>\r\nSubject: photos\r\n\r\n"
        + b"x" * 3000
        + b"\r\n",
        Decision(frozenset({("INBOX", FLAGGED)}), frozenset({"archive@elsewhere.example"}), False),
    ),
    "nuisance": (
        b"From: luck@prize.example\r\nTo: me+sieve@example.org\r\nSubject: hello\r\n\r\nx\r\n",
        Decision(frozenset(), frozenset(), False),
    ),
    "neither": (
        b"From: friend@example.org\r\nTo: other@example.org\r\nSubject: lunch?\r\n\r\nNoon?\r\n",
        Decision(frozenset({("INBOX", frozenset())}), frozenset(), False),
    ),
}


def test_sievec_accepts_the_generated_script(workdir: Path) -> None:  # noqa: F811
    require("sievec", "dovecot-sieve")
    source = workdir / "rules.sieve"
    source.write_text(script_of(RULES), encoding="utf-8")
    result = subprocess.run(
        ["sievec", str(source), str(workdir / "rules.svbin")],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("case", sorted(CASES))
def test_both_implementations_do_what_the_rules_say(case: str, workdir: Path) -> None:  # noqa: F811
    require("sieve-test", "dovecot-sieve")
    raw, expected = CASES[case]
    script = script_of(RULES)
    assert _ours(script, raw) == expected
    assert _pigeonhole(script, raw, workdir) == expected
