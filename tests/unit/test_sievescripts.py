"""The upload checks every path shares (ManageSieve, the web, the CLI): a large script is
compiled on the worker pool and refused with the same line and message as a small one."""

import pytest

from pillarbox.sieve import INLINE_COMPILE_SIZE
from pillarbox.sievescripts import InvalidScript, ScriptLimits, check_script, compile_checked

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
