"""The Sieve "include" extension (RFC 6609): include (:personal/:global, :once, :optional),
return, global variables and the ``global.`` namespace, loops and limits as runtime errors,
and the compile-time checks."""

from __future__ import annotations

import pytest

from pillarbox.sieve import (
    EXTENSIONS,
    FileInto,
    Keep,
    Outcome,
    RunLimits,
    Script,
    SieveError,
    SieveMessage,
    compile_script,
)

RAW = b"From: boss@example.com\r\nSubject: Quarterly report\r\n\r\nNumbers.\r\n"
HEAD = 'require ["include", "variables", "fileinto"];\n'


def scripts(**texts: str) -> dict[tuple[str, str], Script | SieveError | None]:
    """Personal scripts by name; a name starting "global_" is a :global one."""
    out: dict[tuple[str, str], Script | SieveError | None] = {}
    for name, text in texts.items():
        location = "global" if name.startswith("global_") else "personal"
        out[(location, name.removeprefix("global_"))] = compile_script(text)
    return out


def run(
    main: str,
    includes: dict[tuple[str, str], Script | SieveError | None],
    limits: RunLimits | None = None,
) -> Outcome:
    message = SieveMessage.from_bytes(RAW)
    return compile_script(main).run(message, limits, includes=includes, name="main")


def filed(outcome: Outcome) -> list[str]:
    assert outcome.error is None, outcome.error
    return [a.mailbox for a in outcome.actions if isinstance(a, FileInto)]


def test_include_is_advertised() -> None:
    assert "include" in EXTENSIONS


def test_targets_are_known_after_compiling() -> None:
    script = compile_script(
        'require "include"; include "a"; if true { include :global :optional "b"; }'
    )
    assert script.includes == {("personal", "a"), ("global", "b")}


def test_included_actions_join_the_run() -> None:
    included = scripts(
        lists=HEAD + 'if header :contains "subject" "report" { fileinto "Reports"; }',
        global_spam='require "fileinto"; fileinto "Shared";',
    )
    main = HEAD + 'include "lists"; include :global "spam"; fileinto "Last";'
    assert filed(run(main, included)) == ["Reports", "Shared", "Last"]


def test_global_variables_cross_scripts_and_locals_do_not() -> None:
    """RFC 6609 §3.4, §3.5 (the run Pigeonhole's sieve-test gives for the same scripts)."""
    sub = (
        HEAD
        + 'global ["x", "y"]; set "y" "Y"; fileinto "sub-${x}-${global.g}-${loc}";'
        + 'if true { return; } fileinto "never";'
    )
    main = (
        HEAD
        + 'set "global.g" "G"; global "x"; set "x" "X"; set "loc" "L";'
        + 'include "sub"; include "sub"; include :once "sub";'
        + 'fileinto "main-${x}-${global.y}-${y}"; return; fileinto "never";'
    )
    assert filed(run(main, scripts(sub=sub))) == ["sub-X-G-", "main-X-Y-"]


def test_once_skips_a_script_already_included() -> None:
    counter = HEAD + 'global "n"; set "n" "${n}+"; fileinto "n${n}";'
    main = HEAD + 'global "n"; include "c"; include :once "c"; include "c";'
    assert filed(run(main, scripts(c=counter))) == ["n+", "n++"]


def test_match_variables_are_each_scripts_own() -> None:
    sub = HEAD + 'fileinto "sub${1}"; if header :matches "subject" "* *" { fileinto "s-${1}"; }'
    main = HEAD + 'if header :matches "from" "*@*" { include "sub"; fileinto "m-${2}"; }'
    assert filed(run(main, scripts(sub=sub))) == ["sub", "s-Quarterly", "m-example.com"]


def test_stop_in_an_included_script_ends_the_run() -> None:
    main = HEAD + 'include "s"; fileinto "never";'
    assert filed(run(main, scripts(s='require "fileinto"; fileinto "a"; stop;'))) == ["a"]


def test_optional_missing_script_is_skipped() -> None:
    main = HEAD + 'include :optional "gone"; include :global :optional "gone"; fileinto "a";'
    includes: dict[tuple[str, str], Script | SieveError | None] = {
        ("personal", "gone"): None,
        ("global", "gone"): None,
    }
    assert filed(run(main, includes)) == ["a"]


@pytest.mark.parametrize(
    ("main", "includes", "error"),
    [
        ('include "gone";', {("personal", "gone"): None}, "does not exist"),
        ('include :global "gone";', {("global", "gone"): None}, "global script 'gone'"),
        (
            'include "bad";',
            {("personal", "bad"): SieveError(3, "unknown command 'frob'")},
            "does not compile: line 3",
        ),
        ('include "main";', "self", "includes itself"),
        ('include "a";', "cycle", "includes itself"),
        ('include "a";', {}, "more than 255 included scripts"),
    ],
)
def test_runtime_errors_keep(main: str, includes: object, error: str) -> None:
    if includes == "self":
        includes = {("personal", "main"): compile_script(HEAD + main)}
    elif includes == "cycle":
        includes = scripts(a=HEAD + 'include "b";', b=HEAD + 'fileinto "x"; include "a";')
    assert isinstance(includes, dict)
    outcome = run(HEAD + 'fileinto "first";' + main, includes)
    assert outcome.actions == (Keep(),)
    assert outcome.error is not None and error in outcome.error


def test_depth_and_count_limits() -> None:
    chain = {
        ("personal", f"s{i}"): compile_script(f'require "include"; include "s{i + 1}";')
        for i in range(5)
    }
    chain[("personal", "s5")] = compile_script('require "fileinto"; fileinto "deep";')
    main = 'require "include"; include "s0";'
    assert filed(run(main, chain, RunLimits(max_include_depth=6))) == ["deep"]
    deep = run(main, chain, RunLimits(max_include_depth=5))
    assert deep.error is not None and "deeper than 5" in deep.error
    many = run(main, chain, RunLimits(max_includes=5))
    assert many.error is not None and "more than 5 included scripts" in many.error


def test_return_at_the_top_is_stop() -> None:
    assert filed(run(HEAD + 'fileinto "a"; return; fileinto "b";', {})) == ["a"]


def test_a_branch_not_taken_needs_nothing() -> None:
    main = HEAD + 'if false { include "gone"; } fileinto "a";'
    assert filed(run(main, {("personal", "gone"): None})) == ["a"]


@pytest.mark.parametrize(
    ("script", "part"),
    [
        ('include "a";', "needs require 'include'"),
        ('require "include"; include "${a}" ;', None),  # no variables: a plain name
        ('require ["include", "variables"]; include "${a}";', "constant script name"),
        ('require "include"; include "a/b";', "invalid script name"),
        ('require "include"; include "";', "1 to"),
        ('require "include"; include :personal :global "a";', "exclude each other"),
        ('require "include"; include :once :optional :global "a";', None),
        ('require "include"; global "a";', "needs require 'variables'"),
        ('require ["include", "variables"]; set "a" "b"; global "a";', "local variable before"),
        ('require ["include", "variables"]; global "a"; set "a" "b"; global "a";', None),
        ('require ["include", "variables"]; if true { global "a"; }', None),
        ('require ["include", "variables"]; global "a.b";', "invalid variable name"),
        ('require ["include", "variables"]; set "global.a" "b";', None),
        ('require ["include", "variables"]; set "global.a.b" "c";', "invalid variable name"),
        ('require "variables"; set "global.a" "b";', "invalid variable name"),
        ('require ["include", "variables"]; set "x" "${global.a}";', None),
        ('require ["include", "variables"]; set "x" "${global.a.b}";', "global variable name"),
        ('require ["include", "variables"]; set "x" "${other.a}";', "namespace 'other'"),
        ('require "variables"; set "x" "${global.a}";', "namespace 'global'"),
        ('require "include"; return 1;', "positional"),
    ],
)
def test_compile_checks(script: str, part: str | None) -> None:
    if part is None:
        compile_script(script)
        return
    with pytest.raises(SieveError, match=part):
        compile_script(script)


def test_flags_are_each_scripts_own() -> None:
    """As in Pigeonhole (compared by tests/interop/test_sieve_pigeonhole.py)."""
    sub = 'require ["imap4flags", "fileinto"]; addflag "$Sub"; fileinto "S";'
    main = 'require ["include", "imap4flags", "fileinto"]; addflag "$Main"; include "sub"; keep;'
    outcome = run(main, scripts(sub=sub))
    assert outcome.actions == (FileInto("S", ("$Sub",)), Keep(("$Main",)))
