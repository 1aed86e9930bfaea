"""The rule builder's Sieve generator and reader (:mod:`pillarbox.web.sieverules`): the exact
script for a rule, string escaping (RFC 5228 §2.4.2), the checks a rule passes before it is
written, and which scripts count as generated."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pillarbox.sieve import SieveError, compile_script
from pillarbox.web.sieverules import (
    MARKER,
    Action,
    ActionKind,
    Condition,
    Field,
    Match,
    Rule,
    RuleError,
    check_rule,
    describe,
    quoted,
    rule_from_json,
    rule_json,
    rules_of,
    script_of,
    sieve_test,
)

BOSS = Rule(
    "Boss",
    (Condition(Field.FROM, Match.CONTAINS, "boss"),),
    (Action(ActionKind.MOVE, "Work"), Action(ActionKind.FLAG)),
)


def test_the_boss_rule_as_sieve() -> None:
    script = script_of([BOSS])
    payload = json.dumps({"version": 1, "rules": [rule_json(BOSS)]}, separators=(",", ":"))
    assert script.endswith(
        f"{MARKER}{payload}\n"
        'require ["fileinto", "imap4flags"];\n'
        "\n"
        "# 1. Boss\n"
        'if header :contains "from" "boss" {\n'
        '    addflag "\\\\Flagged";\n'
        '    fileinto "Work";\n'
        "}\n"
    )
    assert script.startswith("# Mail filters made in Pillarbox's web interface")
    compile_script(script)
    assert rules_of(script) == (BOSS,)


@pytest.mark.parametrize(
    ("text", "sieve"),
    [
        ("plain", '"plain"'),
        ('say "hi"', '"say \\"hi\\""'),
        ("back\\slash", '"back\\\\slash"'),
        ("${not a variable}", '"${not a variable}"'),
        ("Grüße ✉", '"Grüße ✉"'),
    ],
)
def test_quoted_strings(text: str, sieve: str) -> None:
    assert quoted(text) == sieve


@pytest.mark.parametrize(
    ("condition", "test"),
    [
        (Condition(Field.FROM, Match.CONTAINS, "Boss"), 'header :contains "from" "Boss"'),
        (
            Condition(Field.TO_CC, Match.NOT_CONTAINS, "list"),
            'not header :contains ["to", "cc"] "list"',
        ),
        (Condition(Field.FROM, Match.IS, "a@b.example"), 'address :all :is "from" "a@b.example"'),
        (
            Condition(Field.TO_CC, Match.MATCHES, "*@b.example"),
            'address :all :matches ["to", "cc"] "*@b.example"',
        ),
        (Condition(Field.SUBJECT, Match.IS, "Hi"), 'header :is "subject" "Hi"'),
        (
            Condition(Field.SUBJECT, Match.MATCHES, "\\*\\?\\\\*"),
            'header :matches "subject" "\\\\*\\\\?\\\\\\\\*"',
        ),
        (
            Condition(Field.HEADER, Match.CONTAINS, "a*b", "List-Id"),
            'header :contains "List-Id" "a*b"',
        ),
        (Condition(Field.SIZE, Match.OVER, "5M"), "size :over 5M"),
        (Condition(Field.SIZE, Match.UNDER, "100"), "size :under 100"),
    ],
)
def test_each_condition_becomes_its_test(condition: Condition, test: str) -> None:
    assert sieve_test(condition) == test
    rule = Rule("r", (condition,), (Action(ActionKind.MARK_READ),))
    check_rule(rule)
    compile_script(script_of([rule]))


def test_actions_flags_first_stop_last_and_requirements() -> None:
    rule = Rule(
        "all of it",
        (
            Condition(Field.SUBJECT, Match.CONTAINS, "x"),
            Condition(Field.SIZE, Match.OVER, "1K"),
        ),
        (
            Action(ActionKind.COPY, "Archive"),
            Action(ActionKind.MARK_READ),
            Action(ActionKind.REDIRECT_COPY, "me@elsewhere.example"),
            Action(ActionKind.FLAG),
            Action(ActionKind.STOP),
        ),
        any_of=True,
    )
    script = script_of([rule])
    body = script.split("# 1. all of it\n", 1)[1]
    assert body == (
        'if anyof (header :contains "subject" "x", size :over 1K) {\n'
        '    addflag "\\\\Seen";\n'
        '    addflag "\\\\Flagged";\n'
        '    fileinto :copy "Archive";\n'
        '    redirect :copy "me@elsewhere.example";\n'
        "    stop;\n"
        "}\n"
    )
    assert 'require ["copy", "fileinto", "imap4flags"];' in script
    compile_script(script)


def test_a_rule_without_conditions_applies_to_every_message() -> None:
    rule = Rule("everything", (), (Action(ActionKind.DISCARD),))
    script = script_of([rule])
    assert "if true {\n    discard;\n}" in script
    assert "require" not in script.split(MARKER, 1)[1].split("\n", 1)[1]
    compile_script(script)


def test_disabled_rules_stay_in_the_comment_only() -> None:
    off = Rule("later", BOSS.conditions, (Action(ActionKind.MOVE, "Later"),), enabled=False)
    script = script_of([off, BOSS])
    assert '"Later"' not in script.split("\n", 3)[3]
    assert "# 1. (off) later\n\n# 2. Boss\n" in script
    assert rules_of(script) == (off, BOSS)
    compile_script(script)


def test_no_rules_is_an_empty_script() -> None:
    script = script_of([])
    compile_script(script)
    assert rules_of(script) == ()


@pytest.mark.parametrize(
    ("rule", "problem"),
    [
        (Rule("", (), (Action(ActionKind.FLAG),)), "name is empty"),
        (Rule(" x", (), (Action(ActionKind.FLAG),)), "starts or ends with a space"),
        (Rule("a\nb", (), (Action(ActionKind.FLAG),)), "control character"),
        (Rule("a\u2028b", (), (Action(ActionKind.FLAG),)), "control character"),
        (Rule("x" * 101, (), (Action(ActionKind.FLAG),)), "longer than 100"),
        (Rule("x", (), ()), "has no action"),
        (Rule("x", (Condition(Field.FROM, Match.CONTAINS, ""),), BOSS.actions), "is empty"),
        (
            Rule("x", (Condition(Field.FROM, Match.MATCHES, "a\\b"),), BOSS.actions),
            "may only come before",
        ),
        (
            Rule("x", (Condition(Field.FROM, Match.MATCHES, "a\\"),), BOSS.actions),
            "may only come before",
        ),
        (
            Rule("x", (Condition(Field.SUBJECT, Match.OVER, "1"),), BOSS.actions),
            "compare sizes only",
        ),
        (Rule("x", (Condition(Field.SIZE, Match.IS, "1"),), BOSS.actions), "is over"),
        (Rule("x", (Condition(Field.SIZE, Match.OVER, "1T"),), BOSS.actions), "a number"),
        (Rule("x", (Condition(Field.SIZE, Match.OVER, "2G"),), BOSS.actions), "at most"),
        (
            Rule("x", (Condition(Field.HEADER, Match.IS, "v", "X:Y"),), BOSS.actions),
            "header field name",
        ),
        (
            Rule("x", (Condition(Field.HEADER, Match.IS, "v", "X Y"),), BOSS.actions),
            "header field name",
        ),
        (
            Rule("x", (Condition(Field.SUBJECT, Match.IS, "v", "X-Y"),), BOSS.actions),
            "only a header field condition",
        ),
        (Rule("x", (), (Action(ActionKind.MOVE),)), "folder is empty"),
        (Rule("x", (), (Action(ActionKind.FLAG, "Work"),)), "takes no folder"),
        (Rule("x", (), (Action(ActionKind.REDIRECT, "nobody"),)), "not a valid forwarding"),
        (Rule("x", (), (Action(ActionKind.REDIRECT, "a@[127.0.0.1]"),)), "not a valid"),
        (Rule("x", (), (Action(ActionKind.STOP), Action(ActionKind.FLAG))), "last action"),
        (
            Rule("x", (), (Action(ActionKind.DISCARD), Action(ActionKind.MOVE, "W"))),
            "cannot also be moved",
        ),
    ],
)
def test_rules_that_are_refused(rule: Rule, problem: str) -> None:
    with pytest.raises(RuleError, match=problem):
        check_rule(rule)


def test_scripts_that_are_not_ours() -> None:
    script = script_of([BOSS])
    assert rules_of(script.replace("\n", "\r\n")) == (BOSS,)  # ManageSieve clients send CRLF
    for edited in (
        script + "keep;\n",  # a command added by hand
        script.replace('fileinto "Work"', 'fileinto "Play"'),  # the code only
        script.replace("# 1. Boss", "# 1. Chef"),  # even a comment
        script.replace(MARKER, "# other: "),
        script.replace('"version":1', '"version":2'),
        script.replace('"rules":[', '"rules":{', 1),
        'require "fileinto";\nfileinto "Work";\n',
        "",
    ):
        if edited != script:
            assert rules_of(edited) is None, edited


def test_the_rules_comment_is_checked_like_any_input() -> None:
    bad = {"version": 1, "rules": [{"name": "x", "actions": [{"action": "explode"}]}]}
    assert rules_of(f"{MARKER}{json.dumps(bad)}\n") is None
    assert rules_of(f"{MARKER}not json\n") is None


@pytest.mark.parametrize(
    ("item", "problem"),
    [
        ([], "a rule is a JSON object"),
        ({"name": "x", "enabled": "yes", "actions": []}, "enabled must be"),
        ({"name": "x", "match": "some", "actions": []}, "match must be"),
        ({"name": "x", "actions": "flag"}, "actions must be a list"),
        ({"name": "x", "actions": [{"action": "nuke"}]}, "an action must be one of"),
        ({"name": 3, "actions": [{"action": "flag"}]}, "name must be a string"),
        (
            {
                "name": "x",
                "conditions": [{"field": "body", "match": "is", "value": "v"}],
                "actions": [{"action": "flag"}],
            },
            "a condition's field must be one of",
        ),
    ],
)
def test_rules_from_json_are_checked(item: object, problem: str) -> None:
    with pytest.raises(RuleError, match=problem):
        rule_from_json(item)


def test_json_round_trip_and_description() -> None:
    assert rule_from_json(rule_json(BOSS)) == BOSS
    assert describe(BOSS) == "From contains “boss” → Move to folder Work, Flag"
    assert describe(Rule("x", (), (Action(ActionKind.DISCARD),))) == (
        "Every message → Delete (discard)"
    )


def test_a_hand_edit_that_breaks_the_script_is_a_sieve_error() -> None:
    with pytest.raises(SieveError):
        compile_script(script_of([BOSS]).replace("fileinto", "fileinot"))


def test_the_example_in_the_docs_is_what_the_builder_writes() -> None:
    docs = (Path(__file__).resolve().parents[2] / "docs" / "sieve.md").read_text("utf-8")
    section = docs.split("## Filters in the web interface", 1)[1]
    example = section.split("```sieve\n", 1)[1].split("```", 1)[0]
    rules = rules_of(example)
    assert rules is not None and [r.name for r in rules] == [
        "Boss",
        "Dev list",
        "Prizes",
        "Holiday forward",
    ]
    assert not rules[-1].enabled
    compile_script(example)
