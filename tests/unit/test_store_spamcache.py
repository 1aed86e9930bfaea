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


def test_counted_answers_only_a_fully_kept_version_and_drops_nothing() -> None:
    cache = SpamModelCache(100)
    cache.add(0, V2, ["a", "b"], {"a": SpamCounts(1, 0)})
    assert cache.counted(0, V2, ["a", "b"]) == (SpamCounts(10, 10), {"a": SpamCounts(1, 0)})
    assert cache.counted(0, V2, ["a", "c"]) is None  # "c" never read
    assert cache.counted(0, V1, ["a"]) is None  # an older version: nothing, and…
    assert cache.known(0, V2, ["a"]) == ({"a": SpamCounts(1, 0)}, [])  # …V2 is still kept
    assert cache.counted(0, None, ["a"]) == (SpamCounts(), {})  # never trained
    assert cache.counted(3, V1, []) == (SpamCounts(10, 10), {})  # nothing asked


def test_a_small_model_kept_whole_knows_every_absence() -> None:
    cache = SpamModelCache(40)  # models of up to 20 tokens are read whole
    assert cache.claim_whole(0, V1) == 20
    assert cache.claim_whole(0, V1) == 0  # one reader reads it; the others token by token
    assert cache.known(0, V1, ["a"]) == ({}, ["a"])
    cache.add_whole(0, V1, {"a": SpamCounts(1, 0)})
    assert cache.known(0, V1, ["a", "new"]) == ({"a": SpamCounts(1, 0)}, [])
    assert cache.counted(0, V1, ["new"]) == (SpamCounts(10, 10), {})
    # Trained since: dropped, and read whole again.
    assert cache.known(0, V2, ["a"]) == ({}, ["a"])
    assert cache.claim_whole(0, V2) == 20
    # Found too big at V2 (nothing filed): token by token until the version changes.
    assert cache.claim_whole(0, V2) == 0
    cache.add(0, V2, ["a"], {})
    assert cache.known(0, V2, ["a", "new"]) == ({}, ["new"])
    assert cache.counted(0, V2, ["new"]) is None
    # A slower reader's whole model of another version is not filed.
    cache.add_whole(0, V1, {"a": SpamCounts(1, 0)})
    assert cache.counted(0, V1, ["a"]) is None
    assert SpamModelCache(0).claim_whole(0, V1) == 0  # the cache off: never read whole


def test_a_whole_model_takes_only_the_room_left() -> None:
    cache = SpamModelCache(40)
    cache.add(5, V1, [str(n) for n in range(35)], {})
    assert cache.claim_whole(0, V1) == 5  # evicts nothing
    cache.add(6, V1, ["x", "y"], {})  # filled meanwhile: 3 left
    cache.add_whole(0, V1, dict.fromkeys("abcd", SpamCounts(1, 1)))
    assert cache.counted(0, V1, ["a"]) is None  # not filed
    assert cache.claim_whole(0, V1) == 0  # nor tried again at V1
    assert cache.known(5, V1, ["0"]) == ({}, [])  # the other models are still kept
