"""The upload checks every path shares (ManageSieve, the web, the CLI): a large script is
compiled on the worker pool and refused with the same line and message as a small one."""

from pathlib import Path

import pytest

from pillarbox.sieve import INLINE_COMPILE_SIZE
from pillarbox.sievescripts import (
    InvalidScript,
    ScriptLimits,
    check_script,
    compile_checked,
    read_global_script,
)

FILLER = "".join(f'if header :is "subject" "rule {n}" {{ discard; }}\n' for n in range(200))


@pytest.mark.parametrize("filler", ["", FILLER], ids=["inline", "worker-pool"])
async def test_errors_name_their_line_on_either_path(filler: str) -> None:
    script = f"{filler}frobnicate;\n"
    assert (len(script) > INLINE_COMPILE_SIZE) == bool(filler)
    with pytest.raises(InvalidScript) as raised:
        await check_script(script, ScriptLimits())
    assert raised.value.line == filler.count("\n") + 1
    with pytest.raises(InvalidScript) as direct:
        compile_checked(script, ScriptLimits())
    assert (direct.value.line, str(direct.value)) == (raised.value.line, str(raised.value))


async def test_a_large_valid_script_passes() -> None:
    script = f'require "fileinto";\n{FILLER}fileinto "Done";\n'
    assert len(script) > INLINE_COMPILE_SIZE
    await check_script(script, ScriptLimits())


def test_global_scripts_are_found_by_listing_never_by_a_path(tmp_path: Path) -> None:
    """RFC 6609 :global: NAME.sieve in the directory; a name naming another place finds
    nothing, a directory is not a script, an absent directory holds none."""
    site = tmp_path / "global"
    site.mkdir()
    (site / "spam.sieve").write_text("keep;")
    (site / "dir.sieve").mkdir()
    (tmp_path / "secret.sieve").write_text("discard;")
    assert read_global_script(site, "spam", 100) == b"keep;"
    assert read_global_script(site, "../secret", 100) is None
    assert read_global_script(site, str(tmp_path / "secret"), 100) is None
    assert read_global_script(site, "dir", 100) is None
    assert read_global_script(site, "spam.sieve", 100) is None
    assert read_global_script(tmp_path / "none", "spam", 100) is None
    assert read_global_script(site, "spam", 2) == b"kee"  # max_size + 1: the compiler refuses
