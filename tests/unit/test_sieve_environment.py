"""The Sieve "environment" extension (RFC 5183): the items delivery hands to the run, the test
on them, and the items an absent value leaves out."""

from __future__ import annotations

import pytest

from pillarbox import __version__
from pillarbox.sieve import FileInto, Keep, SieveError, SieveMessage, compile_script
from pillarbox.sieve.environment import items

RAW = b"From: a@example.org\r\nSubject: hi\r\n\r\nbody\r\n"
ITEMS = items(host="mx1.example.net", remote_ip="192.0.2.7", remote_host="client.example.com")


def filed(script: str, environment: dict[str, str] | None = ITEMS) -> list[str]:
    message = SieveMessage.from_bytes(RAW, environment=environment)
    outcome = compile_script(script).run(message)
    assert outcome.error is None
    return [a.mailbox for a in outcome.actions if isinstance(a, FileInto)]


def test_standard_items() -> None:
    assert {
        "domain": "example.net",
        "host": "mx1.example.net",
        "location": "MDA",
        "name": "Pillarbox",
        "phase": "during",
        "version": __version__,
        "remote-ip": "192.0.2.7",
        "remote-host": "client.example.com",
    } == ITEMS


def test_domain_of_a_short_host_name_is_the_host() -> None:
    assert items(host="example.net")["domain"] == "example.net"
    assert items(host="localhost")["domain"] == "localhost"
    assert items(host="a.b.example", domain="example")["domain"] == "example"


def test_unknown_remote_is_absent() -> None:
    assert "remote-ip" not in items(host="h.example") and "remote-host" not in items(host="h")


@pytest.mark.parametrize(
    ("test", "expected"),
    [
        ('environment :is "location" "MDA"', True),
        ('environment :is "location" "mda"', True),  # i;ascii-casemap, as every test
        ('environment :comparator "i;octet" :is "location" "mda"', False),
        ('environment :is "phase" ["pre", "during"]', True),
        ('environment :contains "host" "example.net"', True),
        ('environment :matches "remote-ip" "192.0.2.*"', True),
        ('environment :is "name" "Pillarbox"', True),
        ('environment :matches "no-such-item" "*"', False),  # §4: an unknown item fails
        ('environment :matches "HOST" "*"', False),  # names are exact, as in Pigeonhole
    ],
)
def test_environment_test(test: str, expected: bool) -> None:
    assert filed(f'require ["environment", "fileinto"]; if {test} {{ fileinto "x"; }}') == (
        ["x"] if expected else []
    )


def test_items_the_delivery_does_not_know_fail() -> None:
    script = (
        'require ["environment", "fileinto"];'
        'if environment :matches "remote-ip" "*" { fileinto "x"; }'
    )
    assert filed(script, items(host="h.example")) == []
    assert filed(script, None) == []


def test_with_variables() -> None:
    script = (
        'require ["environment", "fileinto", "variables"]; set "i" "location";'
        'if environment :matches "${i}" "*" { fileinto "at-${1}"; }'
    )
    assert filed(script) == ["at-MDA"]


@pytest.mark.parametrize(
    ("script", "part"),
    [
        ('if environment "host" "x" {}', "needs require 'environment'"),
        ('require "environment"; if environment "host" {}', "positional"),
        ('require "environment"; if environment :over "host" "x" {}', "unknown tag"),
    ],
)
def test_compile_errors(script: str, part: str) -> None:
    with pytest.raises(SieveError, match=part):
        compile_script(script)


def test_without_the_test_nothing_changes() -> None:
    message = SieveMessage.from_bytes(RAW, environment=ITEMS)
    assert compile_script('require "environment";').run(message).actions == (Keep(),)
