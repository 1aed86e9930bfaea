"""RFC 5463 ihave and error."""

from __future__ import annotations

import pytest

from pillarbox.sieve import (
    Discard,
    FileInto,
    Keep,
    Outcome,
    SieveError,
    SieveMessage,
    compile_script,
)

RAW = b"Subject: hi\r\n\r\nbody\r\n"


def run(script: str) -> Outcome:
    return compile_script(script).run(SieveMessage.from_bytes(RAW))


def test_ihave_answers_for_what_we_have() -> None:
    assert run('require "ihave"; if ihave ["fileinto", "copy"] { discard; }').actions == (
        Discard(),
    )
    assert run('require "ihave"; if ihave ["fileinto", "x-frob"] { discard; }').actions == (Keep(),)


def test_a_block_for_an_extension_we_lack_need_not_compile() -> None:
    """§4: the test is false, so the block never runs; its elsif still does."""
    outcome = run(
        'require "ihave";\n'
        'if ihave "x-frob" { frob :wibble "x"; fileinto "never"; }\n'
        'elsif ihave "fileinto" { fileinto "Known"; }\n'
    )
    assert outcome.actions == (FileInto("Known"),)


def test_ihave_makes_the_extension_usable_in_its_block_only() -> None:
    compile_script('require "ihave"; if ihave "fileinto" { fileinto "x"; }')
    with pytest.raises(SieveError, match="fileinto"):
        compile_script('require "ihave"; if ihave "fileinto" { } fileinto "x";')


def test_error_is_a_runtime_error_with_its_message() -> None:
    outcome = run('require ["ihave", "fileinto"]; fileinto "x"; error "no such luck";')
    assert outcome.actions == (Keep(),)
    assert outcome.error is not None and "no such luck" in outcome.error


@pytest.mark.parametrize(
    "script",
    [
        'if ihave "fileinto" {}',
        'error "x";',
        'require "ihave"; if ihave {} {}',
        'require "ihave"; error;',
        'require ["ihave", "variables"]; set "e" "fileinto"; if ihave "${e}" {}',
        'require "ihave"; if anyof (ihave "x-frob", true) { frob; }',
    ],
)
def test_compile_errors(script: str) -> None:
    with pytest.raises(SieveError):
        compile_script(script)


def test_an_ihave_block_runs_with_its_extensions() -> None:
    """The capabilities are the run's too: variables expand in the block, and delivery
    reads what such an extension needs (``Script.requires``)."""
    script = compile_script(
        'require "ihave"; if ihave ["variables", "fileinto", "duplicate"] {\n'
        '  set "box" "Lists"; if duplicate {} fileinto "${box}"; }\n'
    )
    assert {"variables", "duplicate"} <= script.requires
    outcome = script.run(SieveMessage.from_bytes(b"Message-ID: <a@b>\r\n\r\nbody\r\n"))
    assert outcome.actions == (FileInto("Lists"),)
    assert len(outcome.duplicates) == 1
