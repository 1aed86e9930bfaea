"""RFC 8579 special-use: specialuse_exists over the account's attributes, fileinto
:specialuse as an action delivery resolves."""

from __future__ import annotations

import pytest

from pillarbox.sieve import Discard, FileInto, SieveError, SieveMessage, compile_script

RAW = b"Subject: hi\r\n\r\nbody\r\n"
USES = {"Junk": "\\junk", "Sent Items": "\\sent"}


def holds(test: str) -> bool:
    script = compile_script(f'require "special-use"; if {test} {{ discard; }}')
    outcome = script.run(SieveMessage.from_bytes(RAW, special_uses=USES))
    return outcome.actions == (Discard(),)


@pytest.mark.parametrize(
    ("test", "expected"),
    [
        ('specialuse_exists "\\\\Junk"', True),
        ('specialuse_exists "\\\\junk"', True),  # attributes compare without case
        ('specialuse_exists ["\\\\Junk", "\\\\Sent"]', True),
        ('specialuse_exists ["\\\\Junk", "\\\\Trash"]', False),
        ('specialuse_exists "Junk" "\\\\Junk"', True),
        ('specialuse_exists "Sent Items" "\\\\Junk"', False),
        ('specialuse_exists "Nowhere" "\\\\Junk"', False),
        ('specialuse_exists "inbox" "\\\\Junk"', False),
    ],
)
def test_specialuse_exists(test: str, expected: bool) -> None:
    assert holds(test) is expected


def test_fileinto_specialuse_names_both() -> None:
    script = compile_script(
        'require ["fileinto", "special-use", "mailbox"];'
        'fileinto :specialuse "\\\\Junk" :create "Spam";'
    )
    [action] = script.run(SieveMessage.from_bytes(RAW)).actions
    assert action == FileInto("Spam", create=True, specialuse="\\Junk")


@pytest.mark.parametrize(
    ("commands", "special"),
    [
        (
            'fileinto :specialuse "\\\\Junk" "Spam"; fileinto :specialuse "\\\\Archive" "Spam";',
            "\\Archive",
        ),
        ('fileinto :specialuse "\\\\Junk" "Spam"; fileinto "Spam";', "\\Junk"),
        ('fileinto "Spam"; fileinto :specialuse "\\\\Archive" "Spam";', "\\Archive"),
    ],
)
def test_fileintos_of_one_mailbox_keep_the_last_specialuse(commands: str, special: str) -> None:
    """RFC 5228 §2.10.3 makes them one action, and neither it nor RFC 8579 §4 says which
    attribute it keeps: the last given, as Pigeonhole's merge does (one without keeps the
    earlier one's)."""
    script = compile_script('require ["fileinto", "special-use"];' + commands)
    [action] = script.run(SieveMessage.from_bytes(RAW)).actions
    assert action == FileInto("Spam", specialuse=special)


def test_a_specialuse_made_of_variables_is_checked_when_it_runs() -> None:
    script = compile_script(
        'require ["fileinto", "special-use", "variables"]; set "u" "Junk";'
        'fileinto :specialuse "${u}" "Spam";'
    )
    assert script.run(SieveMessage.from_bytes(RAW)).error is not None


@pytest.mark.parametrize(
    "script",
    [
        'require ["fileinto", "special-use"]; fileinto :specialuse "Junk" "Spam";',
        'require ["fileinto", "special-use"]; fileinto :specialuse "\\\\J k" "Spam";',
        'require "fileinto"; fileinto :specialuse "\\\\Junk" "Spam";',
        'require "special-use"; if specialuse_exists "INBOX" "Junk" {}',
        'require "special-use"; if specialuse_exists {}',
        'if specialuse_exists "\\\\Junk" {}',
    ],
)
def test_compile_errors(script: str) -> None:
    with pytest.raises(SieveError):
        compile_script(script)
