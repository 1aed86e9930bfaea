"""When an ACME certificate is renewed: the lifetime rule (a third of the lifetime, half of a
short-lived one's, at most ``acme_renew_days``) and the CA's renewal window (RFC 9773)."""

from __future__ import annotations

import dataclasses
import datetime
import ssl

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from pillarbox import config as cfg
from pillarbox.certificates import (
    CertificateFacts,
    RenewalWindow,
    ari_identifier,
    certificate_facts,
    drawn_window,
    next_renewal_info,
    renewal_margin,
    renewal_reason,
    renewal_time,
    retry_after,
)
from pillarbox.net.acme import CertificateManager
from pillarbox.testing.arifront import certificate_ari_id

NOW = datetime.datetime(2026, 6, 1, 12, 0, tzinfo=datetime.UTC)
DAY = datetime.timedelta(days=1)
HOUR = datetime.timedelta(hours=1)
NAMES = ("mail.example.org",)


def issued(lifetime: datetime.timedelta, *, age: datetime.timedelta = DAY * 0) -> CertificateFacts:
    """A CA's certificate ``age`` old at NOW, valid for ``lifetime`` as CAs count it: notAfter
    one second short of notBefore + lifetime (RFC 5280 §4.1.2.5: both ends inclusive; Let's
    Encrypt's 90-day certificates are so)."""
    not_before = NOW - age
    return CertificateFacts(
        names=NAMES,
        addresses=(),
        serial=0x87654321,
        issuer="CN=test CA",
        not_before=not_before,
        not_after=not_before + lifetime - datetime.timedelta(seconds=1),
        ari_id="aYhba4dGQEHhs3uEe6CuLN4ByNQ.AIdlQyE",
    )


def test_the_ari_identifier_of_rfc_9773() -> None:
    # RFC 9773 §4.1's example: this keyIdentifier, serial 0x0087654321.
    key_identifier = bytes.fromhex("69885B6B87464041E1B37B847BA0AE2CDE01C8D4")
    assert ari_identifier(key_identifier, 0x87654321) == "aYhba4dGQEHhs3uEe6CuLN4ByNQ.AIdlQyE"
    # A serial whose top bit is clear needs no leading zero byte.
    assert ari_identifier(key_identifier, 0x7F).endswith(".fw")


def test_certificate_facts_carry_the_ari_identifier() -> None:
    """A CA's certificate names its issuer's key (AKI): the identifier is the one the test
    reads from the certificate itself (the AKI extension and the serial's DER octets), for a
    random serial and for serials whose top bit is set (a leading zero octet) and clear; a
    self-signed certificate has none."""
    ca_key = ec.generate_private_key(ec.SECP256R1())
    leaf_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test CA")])
    builder = (
        x509.CertificateBuilder()
        .issuer_name(ca_name)
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, NAMES[0])]))
        .public_key(leaf_key.public_key())
        .not_valid_before(NOW)
        .not_valid_after(NOW + 90 * DAY)
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(NAMES[0])]), critical=False)
    )
    for serial in (x509.random_serial_number(), 0x80, 0x7F):
        leaf = (
            builder.serial_number(serial)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
                critical=False,
            )
            .sign(ca_key, hashes.SHA256())
        )
        pem = leaf.public_bytes(serialization.Encoding.PEM)
        assert certificate_facts(pem).ari_id == certificate_ari_id(leaf)
    self_signed = builder.serial_number(1).sign(leaf_key, hashes.SHA256())
    assert certificate_facts(self_signed.public_bytes(serialization.Encoding.PEM)).ari_id == ""


@pytest.mark.parametrize(
    ("lifetime", "renew_days", "margin"),
    [
        (90 * DAY, 30, 30 * DAY),  # as before: acme_renew_days
        (90 * DAY, 10, 10 * DAY),  # fewer days configured: those
        (64 * DAY, 30, 64 * DAY / 3),
        (45 * DAY, 30, 15 * DAY),  # a third of the lifetime
        (160 * HOUR, 30, 80 * HOUR),  # Let's Encrypt's "6-day" certificates: half
        (10 * DAY, 30, 5 * DAY),  # 10 days is still short-lived (lego's bound)
        (11 * DAY, 30, 11 * DAY / 3),
        (157766400 * datetime.timedelta(seconds=1), 30, 30 * DAY),  # Pebble's five years
    ],
)
def test_the_lifetime_rule(
    lifetime: datetime.timedelta, renew_days: int, margin: datetime.timedelta
) -> None:
    facts = issued(lifetime)
    assert renewal_margin(facts, renew_days) == margin
    assert renewal_time(facts, renew_days) == facts.not_after - margin


@pytest.mark.parametrize("lifetime", [90 * DAY, 45 * DAY, 160 * HOUR])
def test_a_new_certificate_is_not_due_however_short_its_life(lifetime: datetime.timedelta) -> None:
    """A lifetime shorter than acme_renew_days used to make each new certificate due at once
    (the renewal task then ordered back to back until the CA's rate limit refused it)."""
    assert renewal_reason(issued(lifetime), NAMES, NOW, 30) == ""
    elapsed = lifetime - renewal_margin(issued(lifetime), 30)
    due = issued(lifetime, age=elapsed + datetime.timedelta(seconds=1))
    assert renewal_reason(due, NAMES, NOW, 30).startswith("expires in ")
    not_yet = issued(lifetime, age=elapsed - datetime.timedelta(seconds=2))
    assert renewal_reason(not_yet, NAMES, NOW, 30) == ""


def window_of(
    facts: CertificateFacts, start: datetime.datetime, end: datetime.datetime, draw: float = 0.5
) -> RenewalWindow:
    return drawn_window(
        None, facts.ari_id, start, end, next_fetch=NOW + 6 * HOUR, explanation="", draw=draw
    )


def test_the_moment_is_drawn_in_the_window_and_kept_while_it_stays() -> None:
    facts = issued(90 * DAY)
    start, end = NOW + 59 * DAY, NOW + 61 * DAY
    assert window_of(facts, start, end, 0.0).renew_at == start
    first = window_of(facts, start, end, 0.25)
    assert first.renew_at == start + 12 * HOUR
    again = drawn_window(
        first, facts.ari_id, start, end, next_fetch=NOW + 7 * HOUR, explanation="", draw=0.9
    )
    assert again.renew_at == first.renew_at and again.next_fetch == NOW + 7 * HOUR
    moved = drawn_window(
        first, facts.ari_id, NOW, NOW + 2 * HOUR, next_fetch=NOW, explanation="", draw=0.5
    )
    assert moved.renew_at == NOW + HOUR
    with pytest.raises(ValueError, match="before it starts"):
        window_of(facts, end, start)


def test_the_cas_window_brings_renewal_forward_or_back() -> None:
    facts = issued(90 * DAY, age=5 * DAY)  # 85 days left
    # A window in the past (ahead of a mass revocation, say): due now, whatever is left.
    now_window = window_of(facts, NOW - HOUR, NOW)
    assert renewal_time(facts, 30, now_window) <= NOW
    reason = renewal_reason(facts, NAMES, NOW, 30, now_window)
    assert reason.startswith("the CA's renewal window (RFC 9773) is ")
    # A window later than the lifetime rule is followed too ...
    later = window_of(facts, facts.not_after - 25 * DAY, facts.not_after - 23 * DAY)
    assert renewal_time(facts, 30, later) == facts.not_after - 24 * DAY
    assert renewal_reason(facts, NAMES, facts.not_after - 29 * DAY, 30, later) == ""
    # ... but never past half the lifetime rule's margin before expiry.
    past_expiry = window_of(facts, facts.not_after + DAY, facts.not_after + 2 * DAY)
    assert renewal_time(facts, 30, past_expiry) == facts.not_after - 15 * DAY
    # Another certificate's window does not count.
    other = dataclasses.replace(now_window, ari_id="other.AQ")
    assert renewal_time(facts, 30, other) == renewal_time(facts, 30)
    assert renewal_reason(facts, NAMES, NOW, 30, other) == ""


def test_renewal_information_is_asked_for_again_within_bounds() -> None:
    """RFC 9773 §4.3.2: the Retry-After, but at least an hour and at most a day."""
    assert next_renewal_info(NOW, NOW + datetime.timedelta(seconds=60)) == NOW + HOUR
    assert next_renewal_info(NOW, NOW - DAY) == NOW + HOUR
    assert next_renewal_info(NOW, NOW + 6 * HOUR) == NOW + 6 * HOUR
    assert next_renewal_info(NOW, NOW + 3 * DAY) == NOW + DAY


def test_retry_after_header() -> None:
    assert retry_after("21600", NOW) == NOW + 6 * HOUR
    assert retry_after("Mon, 01 Jun 2026 18:00:00 GMT", NOW) == NOW + 6 * HOUR
    assert retry_after("soon", NOW) is None
    assert retry_after(None, NOW) is None


def test_the_renewal_task_does_not_wake_at_once_after_a_short_lived_certificate() -> None:
    """What made the loop: right after issuing a 6-day certificate the task's next look was
    due at once (0 s) with acme_renew_days 30; now it is at half the certificate's life
    (capped by the check interval)."""
    config = cfg.Config(
        server=cfg.ServerSection(hostname=NAMES[0]),
        tls=cfg.TlsSection(acme=True, acme_directory="https://ca.test/dir"),
    )
    manager = CertificateManager(config, ssl.create_default_context(ssl.Purpose.CLIENT_AUTH), {})
    now = datetime.datetime.now(datetime.UTC)
    fresh = dataclasses.replace(
        issued(160 * HOUR),
        not_before=now,
        not_after=now + 160 * HOUR - datetime.timedelta(seconds=1),
        ari_id="",  # no renewal information to fetch: the lifetime rule alone
    )
    manager.facts = fresh
    manager._issuer_directory = config.tls.acme_directory
    assert manager._renewal_reason() == ""
    assert manager._due_in(now) == config.tls.acme_check_interval  # 12 h < 80 h
    later = now + 75 * HOUR
    assert manager._due_in(later) == pytest.approx(5 * 3600 - 1, abs=1)
