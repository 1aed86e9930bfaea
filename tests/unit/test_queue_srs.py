"""The Sender Rewriting Scheme: round trips, a second forwarder (SRS1), the checks that keep
SRS addresses from being an open relay (hash, age), and case changes on the way back."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest

from pillarbox import config as cfg
from pillarbox.queue import srs
from pillarbox.queue.forwarding import srs_settings

KEY = srs.SrsSettings(secret=b"test key", max_age_days=21)
OTHER = srs.SrsSettings(secret=b"another forwarder's key")
DAY = 20_000


def local(address: str) -> str:
    return address.rpartition("@")[0]


def test_srs0_round_trip() -> None:
    rewritten = srs.forward(KEY, "Jane.Doe@Example.COM", "fwd.test", DAY)
    assert re.fullmatch(r"SRS0=[A-Z2-7]{4}=[A-Z2-7]{2}=Example\.COM=Jane\.Doe@fwd\.test", rewritten)
    assert srs.reverse(KEY, local(rewritten), DAY) == "Jane.Doe@Example.COM"


def test_case_changed_on_the_way_back_still_reverses() -> None:
    rewritten = srs.forward(KEY, "jane@example.com", "fwd.test", DAY)
    assert srs.reverse(KEY, local(rewritten).lower(), DAY) == "jane@example.com"
    assert srs.reverse(KEY, local(rewritten).upper(), DAY).lower() == "jane@example.com"


@pytest.mark.parametrize("age", [0, 1, 21])
def test_accepted_within_max_age(age: int) -> None:
    rewritten = srs.forward(KEY, "jane@example.com", "fwd.test", DAY)
    assert srs.reverse(KEY, local(rewritten), DAY + age) == "jane@example.com"


def test_expired_and_wrapped_timestamps() -> None:
    rewritten = srs.forward(KEY, "jane@example.com", "fwd.test", DAY)
    with pytest.raises(srs.SrsError, match="expired"):
        srs.reverse(KEY, local(rewritten), DAY + 22)
    # The day counter wraps at 1024: an address from just before the wrap is still young.
    old = srs.forward(KEY, "jane@example.com", "fwd.test", 1023)
    assert srs.reverse(KEY, local(old), 1024 + 3) == "jane@example.com"


@pytest.mark.parametrize(
    "text",
    [
        "SRS0=AAAA=AA=example.com=jane",  # wrong hash
        "SRS0=broken",
        "SRS0==AA=example.com=jane",
        "SRS1=AAAA=fwd.test",
        "jane",
    ],
)
def test_forged_or_malformed_addresses_are_refused(text: str) -> None:
    with pytest.raises(srs.SrsError):
        srs.reverse(KEY, text, DAY)


def test_another_key_does_not_verify() -> None:
    rewritten = srs.forward(OTHER, "jane@example.com", "fwd.test", DAY)
    with pytest.raises(srs.SrsError, match="hash"):
        srs.reverse(KEY, local(rewritten), DAY)


def test_second_forwarder_writes_srs1_and_reverses_to_the_first() -> None:
    first = srs.forward(OTHER, "jane@example.com", "first.test", DAY)
    second = srs.forward(KEY, first, "second.test", DAY)
    assert second.startswith("SRS1=") and "=first.test==" in second
    assert second.endswith("@second.test")
    assert srs.reverse(KEY, local(second), DAY) == first
    # A third forwarder keeps the first one's domain: the address does not keep growing.
    third = srs.forward(OTHER, second, "third.test", DAY)
    assert "=first.test==" in third and len(third) - len(second) < len("second.test") + 2
    assert srs.reverse(OTHER, local(third), DAY) == first
    assert srs.reverse(OTHER, local(first), DAY) == "jane@example.com"


def test_is_srs() -> None:
    assert srs.is_srs("SRS0=abcd=AA=x=y") and srs.is_srs("srs1+xx") and srs.is_srs("SRS0-x=y")
    assert not srs.is_srs("srs") and not srs.is_srs("srs0") and not srs.is_srs("srs0x=")


def test_key_kept_in_the_data_directory(tmp_path: Path) -> None:
    config = cfg.Config(server=cfg.ServerSection(data_dir=str(tmp_path / "data")))
    first, second = srs_settings(config), srs_settings(config)
    assert first.secret == second.secret and len(first.secret) == 64
    assert (tmp_path / "data" / "srs.key").stat().st_mode & 0o777 == 0o600
    section = cfg.ForwardingSection(srs_secret="shared by the cluster", srs_max_age_days=5)
    configured = srs_settings(dataclasses.replace(config, forwarding=section))
    assert configured == srs.SrsSettings(secret=b"shared by the cluster", max_age_days=5)
