"""The classifier token cache shared by both store backends (pillarbox.store.spamcache)."""

from __future__ import annotations

from pillarbox.store.spamcache import SpamModelCache
from pillarbox.store.types import SpamCounts

V1 = (1, 10, 10)
V2 = (2, 10, 10)


def test_counts_and_absences_are_answered_until_the_version_changes() -> None:
    cache = SpamModelCache(100)
    assert cache.known(0, V1, ["a", "b"]) == ({}, ["a", "b"])
    cache.add(0, V1, ["a", "b"], {"a": SpamCounts(1, 0)})
    assert cache.known(0, V1, ["a", "b", "c"]) == ({"a": SpamCounts(1, 0)}, ["c"])
    assert cache.known(7, V1, ["a"]) == ({}, ["a"])  # models are separate
    assert cache.known(0, V2, ["a", "b"]) == ({}, ["a", "b"])  # trained since: all dropped
    assert cache.known(0, V1, ["a"]) == ({}, ["a"])


def test_a_read_filed_under_an_older_version_is_not_kept() -> None:
    cache = SpamModelCache(100)
    cache.add(0, V2, ["a"], {"a": SpamCounts(2, 0)})
    cache.add(0, V1, ["b"], {"b": SpamCounts(9, 9)})  # a slower reader of the old version
    assert cache.known(0, V2, ["a", "b"]) == ({"a": SpamCounts(2, 0)}, ["b"])


def test_the_bound_empties_the_cache_and_zero_turns_it_off() -> None:
    cache = SpamModelCache(3)
    cache.add(0, V1, ["a", "b"], {})
    cache.add(5, V1, ["c"], {})
    assert cache.known(0, V1, ["a"]) == ({}, [])
    cache.add(5, V1, ["d"], {})  # a fourth entry: everything goes, then "d" is filed
    assert cache.known(0, V1, ["a"]) == ({}, ["a"])
    assert cache.known(5, V1, ["d"]) == ({}, [])
    off = SpamModelCache(0)
    off.add(0, V1, ["a"], {"a": SpamCounts(1, 1)})
    assert off.known(0, V1, ["a"]) == ({}, ["a"])
