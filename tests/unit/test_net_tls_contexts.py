"""The outbound delivery's TLS contexts (:mod:`pillarbox.net.smtp_client`): what each checks,
that the system-roots ones are made once per process, and that moving the system's roots
(``SSL_CERT_FILE``) gives a new one rather than the stale one."""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest

from pillarbox.net.smtp_client import (
    chain_verifying_context,
    opportunistic_context,
    verifying_context,
)
from pillarbox.testing.testca import make_ca


def test_the_opportunistic_context_checks_nothing_and_is_otherwise_the_default() -> None:
    context = opportunistic_context()
    default = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    assert context.verify_mode == ssl.CERT_NONE and not context.check_hostname
    assert context.get_ca_certs() == []  # no roots read: nothing is checked against them
    assert context.options == default.options
    assert context.minimum_version == default.minimum_version
    assert context.protocol == default.protocol


def test_system_roots_contexts_are_made_once_and_differ_in_the_name_check() -> None:
    verifying, chain = verifying_context(), chain_verifying_context()
    assert verifying is verifying_context() and chain is chain_verifying_context()
    assert verifying.verify_mode == chain.verify_mode == ssl.CERT_REQUIRED
    assert verifying.check_hostname and not chain.check_hostname


def test_moved_system_roots_give_a_context_that_trusts_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = verifying_context()
    ca = make_ca(tmp_path)
    monkeypatch.setenv("SSL_CERT_FILE", ca.bundle)
    moved = verifying_context()
    assert moved is not before and moved is verifying_context()
    subjects = [dict(pair[0] for pair in cert["subject"]) for cert in moved.get_ca_certs()]
    assert {"commonName": "Pillarbox test CA"} in subjects
    given = chain_verifying_context(ca.bundle)
    assert given is not chain_verifying_context(ca.bundle)  # a cafile's: never kept
