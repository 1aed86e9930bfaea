"""ACME tls-alpn-01 (RFC 8737) without a network: the validation certificate, the challenge
as the acme library parses it, and the ClientHello reader that decides which handshakes are
validations (fed the bytes a real ``ssl`` client writes)."""

from __future__ import annotations

import base64
import datetime
import hashlib
import ssl
from pathlib import Path

import josepy
import pytest
from acme import challenges
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from pillarbox.net.clienthello import MAX_RECEIVED, ClientHello, parse_client_hello
from pillarbox.net.tls import ACME_TLS_1
from pillarbox.net.tlsalpn import (
    ID_PE_ACME_IDENTIFIER,
    TLSALPN01,
    TLSALPN01Response,
    TlsAlpnAnswers,
    validation_certificate,
    validation_context,
)
from pillarbox.store.sqlite import SqliteStore
from pillarbox.store.types import ACME_TLS_ALPN01 as KIND
from pillarbox.store.types import AcmeAnswer

NAME = "mail.example.org"
KEY_AUTHORIZATION = (
    "evaGxfADs6pSRb2LAv9IZf17Dt3juxGJ-PCt92wr-oA.9jg46WB3rR_AHD-EBXdN7cBkH1WOu0tA3M9fm21mqTI"
)


def test_validation_certificate_carries_the_digest_critically_for_the_name() -> None:
    cert_pem, key_pem = validation_certificate(NAME, KEY_AUTHORIZATION)
    cert = x509.load_pem_x509_certificate(cert_pem)
    extension = cert.extensions.get_extension_for_oid(ID_PE_ACME_IDENTIFIER)
    assert ID_PE_ACME_IDENTIFIER.dotted_string == "1.3.6.1.5.5.7.1.31"  # RFC 8737 §6.1
    assert extension.critical  # RFC 8737 §3
    assert isinstance(extension.value, x509.UnrecognizedExtension)
    # RFC 8737 §3: DER of OCTET STRING (SIZE (32)) holding SHA-256 of the key authorization.
    digest = hashlib.sha256(KEY_AUTHORIZATION.encode()).digest()
    assert extension.value.value == b"\x04\x20" + digest
    # One dNSName SAN, the name validated, nothing else.
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert list(san) == [x509.DNSName(NAME)]
    cert.verify_directly_issued_by(cert)  # self-signed
    assert b"PRIVATE KEY" in key_pem
    # A fresh key per certificate: two challenges never share one.
    other = x509.load_pem_x509_certificate(validation_certificate(NAME, KEY_AUTHORIZATION)[0])
    assert other.public_key() != cert.public_key()


def test_validation_context_offers_only_acme_tls_1() -> None:
    """The context's certificate is the validation one (a TLS client over memory buffers)."""
    server = validation_context(NAME, KEY_AUTHORIZATION)
    client = ssl.create_default_context()
    client.check_hostname = False
    client.verify_mode = ssl.CERT_NONE
    client.set_alpn_protocols(["h2", ACME_TLS_1])
    agreed, der = _handshake(client, server, NAME)
    assert agreed == ACME_TLS_1
    cert = x509.load_der_x509_certificate(der)
    assert cert.extensions.get_extension_for_oid(ID_PE_ACME_IDENTIFIER).critical


def _handshake(
    client: ssl.SSLContext, server: ssl.SSLContext, name: str
) -> tuple[str | None, bytes]:
    """Run a handshake over memory buffers: the ALPN agreed and the server's certificate."""
    c_in, c_out, s_in, s_out = (ssl.MemoryBIO() for _ in range(4))
    c = client.wrap_bio(c_in, c_out, server_hostname=name)
    s = server.wrap_bio(s_in, s_out, server_side=True)
    done: set[str] = set()
    for _ in range(10):
        for side, obj in (("c", c), ("s", s)):
            if side not in done:
                try:
                    obj.do_handshake()
                    done.add(side)
                except ssl.SSLWantReadError:
                    pass
        s_in.write(c_out.read())
        c_in.write(s_out.read())
        if done == {"c", "s"}:
            break
    der = c.getpeercert(binary_form=True)
    assert der is not None
    return c.selected_alpn_protocol(), der


def test_the_acme_library_parses_the_challenge_and_posts_an_empty_answer() -> None:
    token = josepy.encode_b64jose(b"t" * 32)
    chall = challenges.Challenge.from_json({"type": "tls-alpn-01", "token": token})
    assert isinstance(chall, TLSALPN01)
    key = josepy.JWKEC(key=ec.generate_private_key(ec.SECP256R1()))
    response, digest = chall.response_and_validation(key)
    assert isinstance(response, TLSALPN01Response)
    assert response.to_partial_json() == {}  # RFC 8555 §7.5.1
    assert digest == hashlib.sha256(chall.key_authorization(key).encode()).digest()


def hello(server_name: str | None, alpn: list[str] | None) -> bytes:
    """The first flight of a real ``ssl`` client: its ClientHello record(s)."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    if alpn:
        context.set_alpn_protocols(alpn)
    outgoing = ssl.MemoryBIO()
    client = context.wrap_bio(ssl.MemoryBIO(), outgoing, server_hostname=server_name)
    with pytest.raises(ssl.SSLWantReadError):
        client.do_handshake()
    return outgoing.read()


@pytest.mark.parametrize(
    ("server_name", "alpn", "offer"),
    [
        (NAME, [ACME_TLS_1], ClientHello(NAME, (ACME_TLS_1,))),
        ("MAIL.Example.org", ["h2", "http/1.1"], ClientHello(NAME, ("h2", "http/1.1"))),
        (NAME, None, ClientHello(NAME, ())),
        (None, [ACME_TLS_1], ClientHello("", (ACME_TLS_1,))),
    ],
)
def test_client_hello_offer(
    server_name: str | None, alpn: list[str] | None, offer: ClientHello
) -> None:
    data = hello(server_name, alpn)
    assert parse_client_hello(data) == offer
    # Every shorter prefix is "not yet": the handshake waits for the rest.
    for end in range(len(data)):
        assert parse_client_hello(data[:end]) is None, end


def test_client_hello_split_across_records() -> None:
    """RFC 8446 §5.1: a handshake message may span records; they are joined."""
    data = hello(NAME, [ACME_TLS_1])
    header, body = data[:5], data[5:]
    cut = len(body) // 3

    def record(chunk: bytes) -> bytes:
        return header[:3] + len(chunk).to_bytes(2, "big") + chunk

    split = record(body[:cut]) + record(body[cut:])
    assert parse_client_hello(split) == ClientHello(NAME, (ACME_TLS_1,))
    assert parse_client_hello(split[: len(split) - 1]) is None


@pytest.mark.parametrize(
    "data",
    [
        b"GET / HTTP/1.1\r\n",  # not TLS
        b"\x17\x03\x03\x00\x01x",  # application data first
        b"\x16\x03\x01\x00\x04\x02\x00\x00\x00",  # a ServerHello
        # An empty ALPN name (RFC 7301 §3.1), found by fuzz/tls_client_hello.py.
        base64.b64decode(
            "FgMBAC4BAABYAwMAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAhMBAQAAFgMBAC4tAAAAGAAW"
            "AAATbWFpbC5waWxsYXJib3gudGVzdAAQAA0AAQAAAAAAAG1scy8x"
        ),
        # A ClientHello whose session id runs past its end.
        b"\x16\x03\x01\x00\x2b\x01\x00\x00\x27\x03\x03" + bytes(32) + b"\xff" + bytes(4),
    ],
)
def test_client_hello_rejects_what_is_not_one(data: bytes) -> None:
    with pytest.raises(ValueError, match=r"not a|past its end|empty ALPN"):
        parse_client_hello(data)


def test_client_hello_length_is_bounded() -> None:
    """A hello announcing more than MAX_HELLO is not waited for."""
    huge = b"\x16\x03\x01\x40\x00\x01\xff\xff\xff"
    with pytest.raises(ValueError, match="too long"):
        parse_client_hello(huge)
    # Nor one cut into so many tiny records that their headers outweigh the bound.
    announced = b"\x01\x00\x30\x00"  # a 12 KiB ClientHello: within MAX_HELLO
    records = b"".join(b"\x16\x03\x01\x00\x01" + bytes([octet]) for octet in announced)
    records += b"\x16\x03\x01\x00\x01\x00" * (MAX_RECEIVED // 6)
    assert parse_client_hello(records[: MAX_RECEIVED // 2]) is None
    with pytest.raises(ValueError, match="too long"):
        parse_client_hello(records)


async def test_answers_copy_the_stores_pending_names(tmp_path: Path) -> None:
    """Another node's pending answers become contexts here (the same context while its key
    authorization is unchanged, a new one when it changes), capped, and go when withdrawn or
    expired; this node's own entry is answered whatever the store holds."""
    store = SqliteStore(tmp_path / "db.sqlite3")
    await store.open()
    try:
        answers = TlsAlpnAnswers()
        now = datetime.datetime.now(datetime.UTC)
        hour = datetime.timedelta(hours=1)
        first = AcmeAnswer(KIND, "a.example", "ka-1", now + hour)
        await store.add_acme_answer(first, 10)
        await store.add_acme_answer(AcmeAnswer(KIND, "b.example", "kb", now + hour), 10)
        await store.add_acme_answer(AcmeAnswer(KIND, "gone.example", "kg", now), 10)
        await answers.refresh(store, 10)
        assert len(answers) == 2 and answers.context_for("gone.example") is None
        context = answers.context_for("a.example")
        assert context is not None and answers.context_for("b.example") is not None
        await answers.refresh(store, 10)
        assert answers.context_for("a.example") is context  # not rebuilt
        await store.remove_acme_answer(KIND, "a.example", "ka-1")
        await store.add_acme_answer(AcmeAnswer(KIND, "a.example", "ka-2", now + hour), 10)
        await answers.refresh(store, 10)
        assert answers.context_for("a.example") not in (None, context)
        await answers.refresh(store, 1)  # the cap: only the first name by order
        assert len(answers) == 1 and answers.context_for("b.example") is None
        await store.remove_acme_answer(KIND, "a.example", "ka-2")
        own = validation_context("own.example", "ko")
        answers.add("own.example", own)
        await store.add_acme_answer(AcmeAnswer(KIND, "own.example", "ko", now + hour), 10)
        await answers.refresh(store, 10)
        assert answers.context_for("a.example") is None
        assert answers.context_for("own.example") is own and len(answers) == 2  # and b
    finally:
        await store.close()
