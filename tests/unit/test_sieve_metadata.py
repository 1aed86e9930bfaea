"""Sieve "mboxmetadata" and "servermetadata" (RFC 5490 §3.3–§3.6): the metadata,
metadataexists, servermetadata and servermetadataexists tests over the METADATA entries
(RFC 5464) delivery hands the run, and the entries a script names (what delivery reads)."""

from __future__ import annotations

import pytest

from pillarbox.sieve import Discard, FileInto, SieveError, SieveMessage, compile_script

MESSAGE = b"From: a@example.net\r\nSubject: hi\r\n\r\nbody\r\n"
ENTRIES = {
    ("INBOX", "/private/comment"): "Urgent only",
    ("INBOX", "/shared/comment"): "team inbox",
    ("Lists/dev", "/private/vendor/x/notify"): "yes",
    (None, "/shared/admin"): "mailto:postmaster@example.org",
    (None, "/private/vendor/x/mode"): "away",
}
REQUIRES = '["mboxmetadata", "servermetadata", "variables", "fileinto", "relational"]'


def holds(test: str) -> bool:
    script = compile_script(f"require {REQUIRES}; if {test} {{ discard; }}")
    outcome = script.run(SieveMessage.from_bytes(MESSAGE, metadata=ENTRIES))
    assert outcome.error is None
    return outcome.actions == (Discard(),)


@pytest.mark.parametrize(
    ("test", "expected"),
    [
        ('metadata "INBOX" "/private/comment" "urgent only"', True),  # i;ascii-casemap
        ('metadata :comparator "i;octet" "INBOX" "/private/comment" "urgent only"', False),
        ('metadata :contains "INBOX" "/private/comment" "Urgent"', True),
        ('metadata "inbox" "/PRIVATE/Comment" "Urgent only"', True),  # names without case
        ('metadata "INBOX" "/shared/comment" "team inbox"', True),  # /shared is its own
        ('metadata "INBOX" "/shared/comment" "Urgent only"', False),
        ('metadata "INBOX" "/private/other" ""', False),  # no entry: false, even for ""
        ('metadata "Nowhere" "/private/comment" "Urgent only"', False),
        ('metadata "INBOX" "private/comment" "Urgent only"', False),  # not an entry name
        ('metadata "Lists/dev" "/private/vendor/x/notify" "yes"', True),
        ('metadata :count "eq" "INBOX" "/private/comment" "1"', True),
        ('metadata :count "eq" "INBOX" "/private/none" "0"', True),
        ('metadataexists "INBOX" "/private/comment"', True),
        ('metadataexists "INBOX" ["/private/comment", "/shared/comment"]', True),
        ('metadataexists "INBOX" ["/private/comment", "/private/none"]', False),  # all of them
        ('metadataexists "Lists/dev" "/private/comment"', False),
        ('metadataexists "Nowhere" "/private/comment"', False),
        ('servermetadata "/shared/admin" "mailto:postmaster@example.org"', True),
        ('servermetadata :matches "/private/vendor/x/mode" "a*"', True),
        ('servermetadata "/private/comment" "Urgent only"', False),  # a mailbox's, not ours
        ('servermetadataexists ["/shared/admin", "/private/vendor/x/mode"]', True),
        ('servermetadataexists "/shared/none"', False),
    ],
)
def test_metadata_tests(test: str, expected: bool) -> None:
    assert holds(test) is expected


def test_match_variables_and_names_made_of_variables() -> None:
    script = compile_script(
        f"require {REQUIRES};\n"
        'set "box" "Lists/dev";\n'
        'if metadata :matches "${box}" "/private/vendor/x/${k}notify" "y*" { fileinto "M-${1}"; }\n'
    )
    assert script.metadata is None  # a name made of variables: any entry may be read
    outcome = script.run(SieveMessage.from_bytes(MESSAGE, metadata=ENTRIES))
    assert outcome.actions == (FileInto("M-es"),)


def test_without_entries_every_test_is_false() -> None:
    script = compile_script(
        f'require {REQUIRES}; if anyof (metadataexists "INBOX" "/private/comment", '
        'servermetadataexists "/shared/admin") { discard; }'
    )
    assert script.run(SieveMessage.from_bytes(MESSAGE)).actions != (Discard(),)


def test_the_entries_a_script_names() -> None:
    """Delivery reads only these (program.metadata_targets): tests anywhere, nested too."""
    script = compile_script(
        'require ["mboxmetadata", "servermetadata"];\n'
        'if not anyof (metadata "INBOX" "/private/a" "x",\n'
        '              allof (metadataexists "Work" ["/shared/b", "/private/c"])) {\n'
        '    if servermetadataexists "/shared/admin" { keep; }\n'
        '} elsif servermetadata "/private/d" "y" { discard; }\n'
    )
    assert script.metadata == {
        ("INBOX", "/private/a"),
        ("Work", "/shared/b"),
        ("Work", "/private/c"),
        (None, "/shared/admin"),
        (None, "/private/d"),
    }
    assert compile_script("keep;").metadata == frozenset()


@pytest.mark.parametrize(
    ("script", "message_part"),
    [
        ('if metadata "INBOX" "/private/a" "x" {}', "needs require 'mboxmetadata'"),
        ('if metadataexists "INBOX" "/private/a" {}', "needs require 'mboxmetadata'"),
        ('if servermetadata "/private/a" "x" {}', "needs require 'servermetadata'"),
        ('if servermetadataexists "/private/a" {}', "needs require 'servermetadata'"),
        (
            'require "servermetadata"; if metadata "INBOX" "/private/a" "x" {}',
            "needs require 'mboxmetadata'",
        ),
        ('require "mboxmetadata"; if metadata "/private/a" "x" {}', "got 2"),
        ('require "mboxmetadata"; if metadataexists "INBOX" {}', "got 1"),
        ('require "servermetadata"; if servermetadata :index 1 "/a" "x" {}', "unknown tag"),
        ('require "servermetadata"; if servermetadataexists ["/a"] "x" {}', "got 2"),
    ],
)
def test_compile_errors(script: str, message_part: str) -> None:
    with pytest.raises(SieveError) as caught:
        compile_script(script)
    assert message_part in str(caught.value)
