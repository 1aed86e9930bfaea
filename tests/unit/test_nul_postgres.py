"""NUL in untrusted input never reaches a PostgreSQL ``text`` column, which refuses it (the
statement fails, and with it whatever the server was doing): each boundary that lets a NUL
through its grammar refuses or replaces it, as its protocol calls for. Run on PostgreSQL, where
each of these tests failed before its boundary was fixed; skipped when no server is reachable.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest

from pillarbox.policy import dmarc
from pillarbox.policy.authresults import AuthSummary
from pillarbox.policy.dkim import DkimResult, SignatureResult
from pillarbox.policy.dmarcreport import observation
from pillarbox.policy.learning import TrainingBatch, observe
from pillarbox.policy.receivedreports import Intake, Limits
from pillarbox.store.postgres import PostgresStore
from pillarbox.testing import reports
from pillarbox.testing.postgres import TestDatabase, needs_postgres

pytestmark = needs_postgres()

DOMAIN = "example.org"


@pytest.fixture
async def store(database: TestDatabase) -> AsyncIterator[PostgresStore]:
    opened = PostgresStore(database.new_store_url())
    await opened.open()
    await opened.add_domain(DOMAIN)
    yield opened
    await opened.close()


async def test_a_tls_report_holding_nul_is_refused_and_the_rest_kept(
    store: PostgresStore,
) -> None:
    """RFC 8460 reports are JSON, which writes NUL as ``\\u0000``."""
    rcpt = f"tls-reports@{DOMAIN}"
    intake = Intake(store, local_parts=frozenset({"tls-reports"}), limits=Limits())
    bad = reports.tls_json(report_id="r-1").replace(b"Company-X", b"Company\\u0000X")
    raw = reports.report_message(rcpt, bad, "application/tlsrpt+json", "bad.json")
    assert await intake.take(rcpt, raw) == []
    good = reports.report_message(
        rcpt, reports.tls_json(report_id="r-2"), "application/tlsrpt+json", "good.json"
    )
    assert [r.report_id for r in await intake.take(rcpt, good)] == ["r-2"]
    kept = await store.received_reports(datetime(2026, 1, 1, tzinfo=UTC))
    assert [r.report_id for r in kept] == ["r-2"]


async def test_spam_tokens_of_a_header_holding_nul_are_stored_with_u_fffd(
    store: PostgresStore,
) -> None:
    """The message's text is stored with U+FFFD for NUL (mail.parse); its header's tokens,
    read from the raw bytes, are written the same way."""
    raw = b"From: a@example.net\r\nX-Mailer: Mail\x00er 1.0\r\nSubject: hi\r\n\r\nHello.\r\n"
    observed = observe(raw, "mx.test")
    batch = TrainingBatch()
    batch.add(observed, spam=True)
    await batch.commit(store, None)
    _, counts = await store.spam_model(None, sorted(observed.tokens))
    assert counts["x-mailer:mail\ufffder"].spam == 1


async def test_a_dmarc_observation_of_nul_bearing_names_is_kept_with_u_fffd(
    store: PostgresStore,
) -> None:
    """A From domain under one with a DMARC record, a DKIM signature's d= and s=, and the
    record's own tags may each hold NUL; the message is counted all the same."""
    record = dmarc.parse_record("v=DMARC1; p=quarantine; rf=af\x00rf; rua=mailto:a@sender.example")
    assert record is not None
    outcome = dmarc.DmarcOutcome(
        dmarc.DmarcResult.FAIL,
        dmarc.Disposition.QUARANTINE,
        "a\x00b.sender.example",
        record,
        policy_domain="sender.example",
    )
    signature = SignatureResult(DkimResult.PERMERROR, "s\x00.example", "k\x001", "", "")
    kept = observation(
        outcome,
        AuthSummary(dkim=(signature,)),
        source_ip="192.0.2.9",
        mail_from="",
        received=datetime(2026, 4, 1, tzinfo=UTC),
    )
    assert kept is not None
    await store.record_dmarc_observation(kept)
    [stored] = await store.dmarc_observations(datetime(2026, 4, 2, tzinfo=UTC))
    assert stored.header_from == "a\ufffdb.sender.example"
    assert stored.dkim == (("s\ufffd.example", "k\ufffd1", "permerror"),)
    assert "rf=af\ufffdrf" in stored.policy_record
