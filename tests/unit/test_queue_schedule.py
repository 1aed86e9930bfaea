"""Retry times, expiry, reply classification and the choice of report, with explicit times."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from pillarbox.mail.dsn import Action
from pillarbox.queue.schedule import (
    EXPIRED_STATUS,
    Attempt,
    Notify,
    RetryPolicy,
    classify,
    decide,
    reply_text,
    status_code,
    wants,
)
from pillarbox.smtp.replies import Reply
from pillarbox.store.types import RecipientState

T0 = datetime(2025, 6, 1, tzinfo=UTC)
POLICY = RetryPolicy(schedule=(60.0, 600.0), lifetime=3600.0, delay_warning=300.0)
OK = Reply(250, "2.0.0", "ok")
SOFT = Reply(451, "4.3.0", "try later")
HARD = Reply(550, "5.1.1", "no such user")


def attempt(reply: Reply, **changes: object) -> Attempt:
    values: dict[str, object] = {
        "reply": reply,
        "host": "mx.b.test",
        "attempts_before": 0,
        "queued_at": T0,
        "notify": frozenset(),
        "delay_notified": False,
        "null_sender": False,
    }
    values.update(changes)
    return Attempt(**values)  # type: ignore[arg-type]


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


@pytest.mark.parametrize(
    ("attempts", "now", "expected"),
    [
        (1, 0, 60),  # first failure: first interval
        (2, 60, 660),  # second: second interval
        (5, 1000, 1600),  # the last interval repeats
        (5, 3500, 3600),  # the last chance is moved to the moment of expiry
        (6, 3600, None),  # the lifetime is over: bounce
    ],
)
def test_next_attempt(attempts: int, now: float, expected: float | None) -> None:
    result = POLICY.next_attempt(queued_at=T0, attempts=attempts, now=at(now))
    assert result == (None if expected is None else at(expected))


def test_policy_needs_positive_intervals() -> None:
    with pytest.raises(ValueError, match="positive"):
        RetryPolicy(schedule=(), lifetime=1)
    with pytest.raises(ValueError, match="positive"):
        RetryPolicy(schedule=(0.0,), lifetime=1)


@pytest.mark.parametrize(
    ("code", "state"),
    [
        (250, RecipientState.DELIVERED),
        (251, RecipientState.DELIVERED),
        (354, RecipientState.DEFERRED),  # no 3xx ends a transaction: never "delivered"
        (421, RecipientState.DEFERRED),
        (452, RecipientState.DEFERRED),
        (550, RecipientState.FAILED),
        (554, RecipientState.FAILED),
    ],
)
def test_classify(code: int, state: RecipientState) -> None:
    assert classify(Reply(code, None, "x")) is state


def test_status_code_and_text() -> None:
    assert status_code(HARD) == "5.1.1"
    assert status_code(Reply(550, None, "x")) == "5.0.0"
    assert status_code(Reply(421, None, "x")) == "4.0.0"
    assert reply_text(Reply(550, "5.1.1", "no\nsuch user")) == "550 5.1.1 no such user"


@pytest.mark.parametrize(
    ("notify", "kind", "expected"),
    [
        (frozenset(), Notify.FAILURE, True),
        (frozenset(), Notify.DELAY, True),
        (frozenset(), Notify.SUCCESS, False),
        (frozenset({"NEVER"}), Notify.FAILURE, False),
        (frozenset({"SUCCESS"}), Notify.FAILURE, False),
        (frozenset({"SUCCESS", "DELAY"}), Notify.DELAY, True),
    ],
)
def test_notify(notify: frozenset[str], kind: Notify, expected: bool) -> None:
    assert wants(notify, kind) is expected


def test_delivered_reports_only_when_asked() -> None:
    assert decide(attempt(OK), POLICY, at(1)).report is None
    success = attempt(OK, notify=frozenset({"SUCCESS"}))
    assert decide(success, POLICY, at(1)).report is Action.DELIVERED
    relayed = attempt(OK, notify=frozenset({"SUCCESS"}), relayed=True)
    assert decide(relayed, POLICY, at(1)).report is Action.RELAYED


def test_permanent_failure_bounces_unless_never_or_null_sender() -> None:
    verdict = decide(attempt(HARD), POLICY, at(1))
    assert verdict.state is RecipientState.FAILED
    assert verdict.report is Action.FAILED and verdict.status == "5.1.1"
    assert decide(attempt(HARD, notify=frozenset({"NEVER"})), POLICY, at(1)).report is None
    # RFC 5321 §4.5.5: nothing ever answers a report.
    assert decide(attempt(HARD, null_sender=True), POLICY, at(1)).report is None


def test_transient_failure_is_retried_then_expires() -> None:
    verdict = decide(attempt(SOFT), POLICY, at(10))
    assert verdict.state is RecipientState.DEFERRED
    assert verdict.next_attempt == at(70) and verdict.report is None
    expired = decide(attempt(SOFT, attempts_before=9), POLICY, at(3600))
    assert expired.state is RecipientState.FAILED
    assert expired.report is Action.FAILED and expired.status == EXPIRED_STATUS
    assert expired.reply == SOFT  # the last error is the diagnostic


def test_one_delay_warning_after_the_configured_time() -> None:
    early = decide(attempt(SOFT), POLICY, at(100))
    assert early.report is None and not early.delay_notified
    due = decide(attempt(SOFT, attempts_before=2), POLICY, at(400))
    assert due.report is Action.DELAYED and due.delay_notified
    again = decide(attempt(SOFT, attempts_before=3, delay_notified=True), POLICY, at(900))
    assert again.report is None
    off = RetryPolicy(schedule=(60.0,), lifetime=3600.0, delay_warning=0.0)
    assert decide(attempt(SOFT), off, at(3000)).report is None


def test_a_report_ends_at_the_bounce_lifetime_others_at_the_lifetime() -> None:
    """Postfix's bounce_queue_lifetime: a message with the null reverse-path (a report) is given
    up sooner, silently (RFC 3461 §6.1: nothing reports on a report); 0 is one attempt."""
    policy = RetryPolicy(schedule=(60.0,), lifetime=3600.0, bounce_lifetime=600.0)
    report = attempt(SOFT, null_sender=True, attempts_before=3)
    assert decide(report, policy, at(500)).next_attempt == at(560)
    assert decide(report, policy, at(590)).next_attempt == at(600)  # its last chance
    expired = decide(report, policy, at(600))
    assert expired.state is RecipientState.FAILED and expired.status == EXPIRED_STATUS
    assert expired.report is None
    assert decide(attempt(SOFT, attempts_before=3), policy, at(600)).next_attempt == at(660)
    once = RetryPolicy(schedule=(60.0,), lifetime=3600.0, bounce_lifetime=0.0)
    assert decide(attempt(SOFT, null_sender=True), once, at(0)).state is RecipientState.FAILED
    # Longer than the lifetime: the lifetime ends it.
    longer = RetryPolicy(schedule=(60.0,), lifetime=3600.0, bounce_lifetime=7200.0)
    assert decide(report, longer, at(3600)).state is RecipientState.FAILED
