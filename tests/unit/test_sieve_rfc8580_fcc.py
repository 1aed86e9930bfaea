"""RFC 8580 fcc on vacation and notify: the copy's mailbox, flags, special use and :create
on the action; the qualifiers need :fcc."""

from __future__ import annotations

import pytest

from pillarbox.sieve import Action, Fcc, Notify, SieveError, SieveMessage, Vacation, compile_script

RAW = b"From: a@example.net\r\nSubject: hi\r\n\r\nbody\r\n"


def actions(script: str) -> tuple[Action, ...]:
    return compile_script(script).run(SieveMessage.from_bytes(RAW)).actions


def test_vacation_fcc_with_its_qualifiers() -> None:
    [vacation, _] = actions(
        'require ["vacation", "fcc", "imap4flags", "mailbox", "special-use"];'
        'vacation :fcc "Sent" :flags ["\\\\Seen", "$Auto"] :create :specialuse "\\\\Sent" "away";'
    )
    assert isinstance(vacation, Vacation)
    assert vacation.fcc == Fcc("Sent", ("\\Seen", "$Auto"), True, "\\Sent")
    [plain, _] = actions('require "vacation"; vacation "away";')
    assert isinstance(plain, Vacation) and plain.fcc is None


def test_notify_fcc() -> None:
    [notify, _] = actions('require ["enotify", "fcc"]; notify :fcc "Sent" "mailto:b@example.org";')
    assert isinstance(notify, Notify) and notify.fcc == Fcc("Sent")


def test_an_empty_fcc_mailbox_compiles_as_fileintos_does() -> None:
    """RFC 8580 §3 gives :fcc fileinto's mailbox argument, and RFC 5228 §4.1 leaves an invalid
    name to delivery: ``:fcc ""`` compiles, as ``fileinto ""`` does here and in Pigeonhole's
    sievec (tests/interop/test_sieve_pigeonhole.py); delivery keeps no copy."""
    [vacation, _] = actions('require ["vacation", "fcc", "mailbox"]; vacation :fcc "" :create "a";')
    assert isinstance(vacation, Vacation) and vacation.fcc == Fcc("", (), True)
    [notify, _] = actions('require ["enotify", "fcc"]; notify :fcc "" "mailto:b@example.org";')
    assert isinstance(notify, Notify) and notify.fcc == Fcc("")


@pytest.mark.parametrize(
    "script",
    [
        'require "vacation"; vacation :fcc "Sent" "away";',
        'require ["vacation", "fcc", "imap4flags"]; vacation :flags "\\\\Seen" "away";',
        'require ["vacation", "fcc", "mailbox"]; vacation :create "away";',
        'require ["vacation", "fcc"]; vacation :fcc "Sent" :create "away";',
        'require ["vacation", "fcc", "special-use"]; vacation :fcc "S" :specialuse "Sent" "a";',
        'require ["enotify", "fcc", "mailbox"]; notify :create "mailto:b@example.org";',
    ],
)
def test_compile_errors(script: str) -> None:
    with pytest.raises(SieveError):
        compile_script(script)
