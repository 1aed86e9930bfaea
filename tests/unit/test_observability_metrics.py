"""The metrics' children: counted when a listener will serve them, no-ops otherwise."""

from __future__ import annotations

from pillarbox.observability.metrics import UNCOUNTED, Metrics


def test_a_counting_server_counts_messages_and_their_time() -> None:
    metrics = Metrics()
    smtp = metrics.smtp("smtp")
    smtp.message(250)
    smtp.message(452)
    smtp.data_seconds.observe(0.02)
    verdict = metrics.count(metrics.policy_verdicts, "inbox")
    verdict.inc()
    sample = metrics.registry.get_sample_value
    assert sample("pillarbox_smtp_messages_total", {"listener": "smtp", "outcome": "accepted"})
    assert (
        sample("pillarbox_smtp_messages_total", {"listener": "smtp", "outcome": "refused_4xx"}) == 1
    )
    assert sample("pillarbox_smtp_data_seconds_count", {"listener": "smtp"}) == 1
    assert sample("pillarbox_policy_verdicts_total", {"action": "inbox"}) == 1


def test_without_a_listener_the_smtp_path_updates_nothing() -> None:
    metrics = Metrics(counting=False)
    smtp = metrics.smtp("smtp")
    listener = metrics.listener("smtp", tls=True)
    children = (
        smtp.accepted,
        smtp.refused_4xx,
        smtp.refused_5xx,
        smtp.data_seconds,
        listener.sessions,
        listener.refused,
        listener.handshake_failures,
        metrics.count(metrics.policy_verdicts, "junk"),
    )
    assert all(child is UNCOUNTED for child in children)
    smtp.message(250)
    smtp.data_seconds.observe(0.02)
    listener.sessions.inc()
    metrics.count(metrics.policy_verdicts, "junk").inc()
    sample = metrics.registry.get_sample_value
    # No child was made: the labelled series do not exist, and the pre-made ones stay at 0.
    assert (
        sample("pillarbox_smtp_messages_total", {"listener": "smtp", "outcome": "accepted"}) is None
    )
    assert sample("pillarbox_smtp_data_seconds_count", {"listener": "smtp"}) is None
    assert sample("pillarbox_sessions_total", {"listener": "smtp"}) is None
    assert sample("pillarbox_policy_verdicts_total", {"action": "junk"}) == 0
