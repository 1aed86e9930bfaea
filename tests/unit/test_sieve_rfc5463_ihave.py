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
        'require "ihave"; if anyof (ihave "x-frob", true) { frob; }',
    ],
)
def test_compile_errors(script: str) -> None:
    with pytest.raises(SieveError):
        compile_script(script)


def test_an_ihave_block_runs_with_its_extensions() -> None:
    """Delivery reads what such an extension needs (``Script.requires``)."""
    script = compile_script(
        'require "ihave"; if ihave ["fileinto", "duplicate"] {\n'
        '  if duplicate {} fileinto "Lists"; }\n'
    )
    assert "duplicate" in script.requires
    outcome = script.run(SieveMessage.from_bytes(b"Message-ID: <a@b>\r\n\r\nbody\r\n"))
    assert outcome.actions == (FileInto("Lists"),)
    assert len(outcome.duplicates) == 1


@pytest.mark.parametrize("capability", ["variables", "encoded-character"])
@pytest.mark.parametrize("required", [False, True])
def test_ihave_of_what_changes_how_a_script_reads_is_false(capability: str, required: bool) -> None:
    """§4: ihave MUST NOT be used with extensions that change how a script's content is
    interpreted (variables, encoded-character): "The test MUST fail and the extension MUST
    NOT be enabled" — the block does not run, and the run does not expand or decode
    (``Script.requires``), whatever else the script requires (as Pigeonhole)."""
    requires = f'["ihave", "fileinto", "{capability}"]' if required else '["ihave", "fileinto"]'
    script = compile_script(
        f"require {requires};\n"
        f'if ihave "{capability}" {{ fileinto "never"; }}\n'
        'if ihave ["fileinto", "' + capability + '"] { fileinto "never"; }\n'
    )
    assert script.run(SieveMessage.from_bytes(RAW)).actions == (Keep(),)
    assert (capability in script.requires) is required


def test_ihave_takes_its_capabilities_as_written() -> None:
    """§4: they are constant strings in the sense of RFC 5229 (as require's are): "${e}" is
    not expanded, names no extension, and the test is false (Pigeonhole agrees)."""
    outcome = run(
        'require ["ihave", "variables", "fileinto"]; set "e" "fileinto";\n'
        'if ihave "${e}" { fileinto "Expanded"; } else { fileinto "Literal"; }\n'
    )
    assert outcome.actions == (FileInto("Literal"),)
