"""COMPRESS=DEFLATE (RFC 4978) with Python's imaplib over a raw-DEFLATE layer, against the live
server, in plain text and under TLS (§3: compressed first, then encrypted): every response
must be decodable as it arrives (the server's sync flush), a large FETCH too."""

from __future__ import annotations

import imaplib
import ssl
import zlib

import pytest

from pillarbox.mail.parse import parse_message
from pillarbox.store.types import DeliveryTarget
from pillarbox.testing.live import TEST_PASSWORD as PASSWORD
from pillarbox.testing.live import LiveServer

pytestmark = pytest.mark.listeners("imap", "imaps")
imaplib.Commands.setdefault("COMPRESS", ("AUTH", "SELECTED"))  # RFC 4978; imaplib lacks it


class _Deflating:
    """imaplib's reading and sending, through raw DEFLATE once COMPRESS succeeded."""

    sock: ssl.SSLSocket

    def start_deflate(self) -> None:
        self._deflater = zlib.compressobj(6, zlib.DEFLATED, -15)
        self._inflater = zlib.decompressobj(-15)
        self._plain = bytearray()
        self._on = True

    def send(self, data: bytes) -> None:
        if getattr(self, "_on", False):
            data = self._deflater.compress(data) + self._deflater.flush(zlib.Z_SYNC_FLUSH)
        self.sock.sendall(data)

    def _fill(self) -> None:
        chunk = self.sock.recv(65536)
        if not chunk:
            raise imaplib.IMAP4.abort("closed")
        self._plain += self._inflater.decompress(chunk)

    def read(self, size: int) -> bytes:
        if not getattr(self, "_on", False):
            return super().read(size)  # type: ignore[misc, no-any-return]
        while len(self._plain) < size:
            self._fill()
        data = bytes(self._plain[:size])
        del self._plain[:size]
        return data

    def readline(self) -> bytes:
        if not getattr(self, "_on", False):
            return super().readline()  # type: ignore[misc, no-any-return]
        while b"\n" not in self._plain:
            self._fill()
        end = self._plain.index(b"\n") + 1
        line = bytes(self._plain[:end])
        del self._plain[:end]
        return line


class DeflatingIMAP4(_Deflating, imaplib.IMAP4):
    pass


class DeflatingIMAP4_SSL(_Deflating, imaplib.IMAP4_SSL):
    pass


def _compress(imap: imaplib.IMAP4) -> None:
    assert "COMPRESS=DEFLATE" in imap.capabilities
    typ, data = imap._simple_command("COMPRESS", "DEFLATE")
    assert (typ, data) == ("OK", [b"DEFLATE active"])
    assert isinstance(imap, _Deflating)
    imap.start_deflate()


def _deliver(live: LiveServer, raw: bytes) -> None:
    async def go() -> None:
        account = await live.store.get_account("alice@example.org")
        assert account is not None
        await live.store.deliver(raw, parse_message(raw), [DeliveryTarget(account.id)])

    live.call(go())


def _session(imap: imaplib.IMAP4, body: bytes) -> None:
    imap.login("alice@example.org", PASSWORD)
    imap.capabilities = tuple(imap.capability()[1][0].decode().upper().split())
    _compress(imap)
    typ, data = imap.select("INBOX")
    assert (typ, data) == ("OK", [b"1"])
    typ, fetched = imap.fetch("1", "(BODY.PEEK[TEXT])")
    assert typ == "OK" and isinstance(fetched[0], tuple) and fetched[0][1] == body
    typ, data = imap._simple_command("COMPRESS", "DEFLATE")  # RFC 4978 §3: not twice
    assert (typ, data) == ("NO", [b"[COMPRESSIONACTIVE] DEFLATE active via COMPRESS"])
    typ, data = imap.noop()
    assert typ == "OK"
    assert imap.logout()[0] == "BYE"


@pytest.mark.parametrize("tls", [False, True], ids=["plain", "tls"])
def test_compress_deflate(live: LiveServer, tls: bool) -> None:
    body = b"".join(b"line %d of a long and repetitive body\r\n" % n for n in range(5000))
    _deliver(live, b"Subject: big\r\n\r\n" + body)
    if tls:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        imap: imaplib.IMAP4 = DeflatingIMAP4_SSL(
            "127.0.0.1", live.port("imaps"), ssl_context=context, timeout=10
        )
    else:
        imap = DeflatingIMAP4("127.0.0.1", live.port("imap"), timeout=10)
    _session(imap, body)
