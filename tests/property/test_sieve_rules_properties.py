"""Hypothesis over the rule builder's generator: every rule set that passes the checks becomes
a script that :func:`pillarbox.sieve.compile_script` accepts and that reads back as exactly the
same rules — with quotes, backslashes, wildcards, ``${``, non-ASCII and odd header names in
every string — and no hand edit of it reads back as rules."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from pillarbox.sieve import compile_script
from pillarbox.web.sieverules import (
    ADDRESS_ACTIONS,
    FOLDER_ACTIONS,
    Action,
    ActionKind,
    Condition,
    Field,
    Match,
    Rule,
    check_rule,
    rules_of,
    script_of,
)

#: Characters that need care in Sieve strings, JSON or comments, weighted up.
_TRICKY = st.sampled_from([*'"\\*?${}[]();#/ ', "\u00e9", "\u2603", "\U0001f4e7", "\u200d"])
_ANY = st.characters(blacklist_categories=("Cc", "Cs", "Zl", "Zp"))
_TEXT = st.lists(st.one_of(_TRICKY, _ANY), min_size=1, max_size=30).map("".join)
_NAME = _TEXT.map(str.strip).filter(bool)
#: A :matches pattern: literals (no backslash), wildcards, and escaped wildcards or backslashes.
_PATTERN = st.lists(
    st.one_of(
        _ANY.filter(lambda c: c != "\\"), st.sampled_from(["*", "?", "\\*", "\\?", "\\\\", '"'])
    ),
    min_size=1,
    max_size=20,
).map("".join)
_HEADER = st.from_regex(r"[!-9;-~]{1,30}", fullmatch=True)
_SIZE = st.builds(
    lambda n, unit: f"{n}{unit}", st.integers(0, 2000), st.sampled_from(["", "K", "M", "G"])
).filter(lambda s: not s.endswith("G") or int(s[:-1]) < 2)
_ADDRESS = st.from_regex(
    r"[a-z0-9]{1,12}(\.[a-z0-9+_-]{1,6})?@[a-z]{1,12}\.(org|example)", fullmatch=True
)


@st.composite
def conditions(draw: st.DrawFn) -> Condition:
    field = draw(st.sampled_from(list(Field)))
    if field is Field.SIZE:
        return Condition(field, draw(st.sampled_from([Match.OVER, Match.UNDER])), draw(_SIZE))
    match = draw(st.sampled_from([Match.CONTAINS, Match.NOT_CONTAINS, Match.IS, Match.MATCHES]))
    value = draw(_PATTERN if match is Match.MATCHES else _TEXT)
    return Condition(field, match, value, draw(_HEADER) if field is Field.HEADER else "")


@st.composite
def actions(draw: st.DrawFn) -> tuple[Action, ...]:
    kinds = draw(
        st.lists(
            st.sampled_from([k for k in ActionKind if k not in (ActionKind.STOP,)]),
            min_size=1,
            max_size=4,
        )
    )
    if ActionKind.DISCARD in kinds:
        kinds = [k for k in kinds if k not in FOLDER_ACTIONS and k not in ADDRESS_ACTIONS]
    chosen = []
    for kind in kinds:
        target = ""
        if kind in FOLDER_ACTIONS:
            target = draw(_TEXT)
        elif kind in ADDRESS_ACTIONS:
            target = draw(_ADDRESS)
        chosen.append(Action(kind, target))
    if draw(st.booleans()):
        chosen.append(Action(ActionKind.STOP))
    return tuple(chosen)


RULES = st.lists(
    st.builds(
        Rule,
        _NAME,
        st.lists(conditions(), max_size=4).map(tuple),
        actions(),
        st.booleans(),
        st.booleans(),
    ),
    max_size=5,
)


@settings(max_examples=300)
@given(RULES)
def test_generated_scripts_compile_and_round_trip(rules: list[Rule]) -> None:
    for rule in rules:
        check_rule(rule)
    script = script_of(rules)
    compile_script(script)
    assert rules_of(script) == tuple(rules)
    assert rules_of(script.replace("\n", "\r\n")) == tuple(rules)
    assert rules_of(script.rstrip("\n")) == tuple(rules)  # as sievelib gives it back


@settings(max_examples=100)
@given(RULES, st.data())
def test_any_edit_of_the_code_is_not_ours(rules: list[Rule], data: st.DataObject) -> None:
    script = script_of(rules)
    marker_end = script.index("\n", script.index("# pillarbox-rules: ")) + 1
    position = data.draw(st.integers(marker_end, len(script)))
    inserted = data.draw(st.sampled_from(["keep;\n", " ", "# note\n", "x"]))
    edited = script[:position] + inserted + script[position:]
    assert rules_of(edited) is None
