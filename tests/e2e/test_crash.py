"""Kill -9 loses nothing acknowledged: ``pillarbox serve`` under concurrent real clients (SMTP
to the MX, submission to a remote smart host, IMAP APPEND, STORE/MOVE/EXPUNGE, POP3 DELE+QUIT)
is SIGKILLed three times at seeded moments and restarted on the same data; every positive reply
is checked against what the restarted server holds, and the store against its own invariants
(see :mod:`pillarbox.testing.crash`). ``bench/chaos.py`` is the longer, randomised run."""

from __future__ import annotations

from pathlib import Path

import pytest

from pillarbox.testing.crash import Chaos, KillPoint, Ledger
from pillarbox.testing.polling import wait_for
from pillarbox.testing.postgres import TestDatabase, unreachable_reason

#: Seconds of traffic before each kill, and the moment it waits for then.
KILLS = ((0.4, KillPoint.ANYWHERE), (1.7, KillPoint.AFTER_250), (1.1, KillPoint.REMOTE_250))


@pytest.fixture(params=["sqlite:", "sqlite:?blobs=files", "postgresql"])
def store_url(request: pytest.FixtureRequest) -> str:
    if request.param != "postgresql":
        return str(request.param)
    reason = unreachable_reason()
    if reason is not None:
        pytest.skip(reason)
    database: TestDatabase = request.getfixturevalue("database")
    return database.new_store_url()


def test_nothing_acknowledged_is_lost_across_kills(tmp_path: Path, store_url: str) -> None:
    with Chaos(tmp_path, store_url, seed=7) as chaos:
        # Work of every kind acknowledged before the first kill, however slow the machine (a
        # fixed half second once gave 5 MX messages under a loaded test run): each kill then
        # has acknowledged changes of each kind to lose.
        wait_for(lambda: doing_everything(chaos.ledger), "work of every kind", timeout=120)
        for kill_after, at in KILLS:
            result = chaos.round(kill_after, at)
            if at is KillPoint.REMOTE_250:  # the kill cut a queue delivery short
                assert result.interrupted["remote 250"] >= 1
            assert result.problems == [], chaos.node.log()[-3000:]
            assert result.lost == 0
        final = chaos.finish()
        assert final.problems == [], chaos.node.log()[-3000:]
    # The run did what it claims: every kind of acknowledged change happened, in numbers.
    assert doing_everything(chaos.ledger)
    assert final.found == final.acknowledged, final
    # The restart after the last kill removed the blob files that kill left without a row,
    # and the files the killed server had staged.
    assert (final.orphans, final.staged) == (0, 0)


def doing_everything(ledger: Ledger) -> bool:
    """Every kind of change the clients make acknowledged, several times over."""
    with ledger.lock:
        return (
            len(ledger.mx) > 10
            and len(ledger.appended) > 10
            and len(ledger.popped) > 5
            and len(ledger.submitted) > 5
            and any(
                entry.step == entry.step.EXPUNGED and entry.acknowledged
                for entry in ledger.moved.values()
            )
        )
