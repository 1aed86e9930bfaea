"""RFC 8474 THREADID spelling (pillarbox.imap.objectid): SEARCH THREADID turns an id back into
the store's thread number only when the server could have made that id (§3: ids compare as
strings, so another spelling of the same number is another id)."""

from __future__ import annotations

import pytest

from pillarbox.imap.objectid import thread_id, thread_number


@pytest.mark.parametrize("thread", [0, 1, 17, 2**63 - 1])
def test_thread_number_inverts_thread_id(thread: int) -> None:
    assert thread_number(thread_id(thread)) == thread


@pytest.mark.parametrize(
    "object_id",
    [
        "T",
        "T017",  # a leading zero: not an id the server made
        "t17",
        "E17",
        "T17x",
        "T-1",
        "T+1",
        "T 1",
        "T١٧",  # Unicode digits (str.isdigit accepts them)
        f"T{2**63}",  # past any store's integer
        "T99999999999999999999999",
    ],
)
def test_ids_no_thread_has_are_none(object_id: str) -> None:
    assert thread_number(object_id) is None
