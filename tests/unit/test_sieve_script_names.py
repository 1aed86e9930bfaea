"""Sieve script names (RFC 5804 §1.6): what ManageSieve, the web and the CLI store under."""

import pytest

from pillarbox.errors import InvalidName
from pillarbox.store.types import MAX_SIEVE_SCRIPT_NAME, sieve_script_name


@pytest.mark.parametrize(
    ("given", "kept"),
    [
        ("vacation", "vacation"),
        ("my rules", "my rules"),  # spaces are allowed
        ("e\u0301t\u00e9", "\u00e9t\u00e9"),  # Net-Unicode: NFC
        ("x" * MAX_SIEVE_SCRIPT_NAME, "x" * MAX_SIEVE_SCRIPT_NAME),  # 128 must be allowed
        ("名前", "名前"),
    ],
)
def test_names_kept_in_normal_form(given: str, kept: str) -> None:
    assert sieve_script_name(given) == kept


@pytest.mark.parametrize(
    "name",
    [
        "",  # means "no script" to SETACTIVE (§2.8)
        "x" * (MAX_SIEVE_SCRIPT_NAME + 1),  # never truncated (§1.6)
        "a\x00b",
        "tab\there",
        "del\x7f",
        "c1\x85",
        "line\u2028sep",
        "para\u2029sep",
    ],
)
def test_prohibited_names_refused(name: str) -> None:
    with pytest.raises(InvalidName):
        sieve_script_name(name)
