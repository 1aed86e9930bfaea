"""The queue runner against receiving servers that misbehave as no real server can be made to:
a scripted asyncio peer on loopback that stalls, trickles, hangs up, garbles its replies, limits
recipients, breaks STARTTLS or shows a bad certificate, with real DNS (the authoritative server
on loopback, MX preferences, aliases, implicit MX) and a real store (RFC 5321 §3.1, §3.8, §4.2,
§4.5.3.1.10, §4.5.3.2, §4.5.4.1, §5.1, §6.1; RFC 7435; RFC 3464). docs/delivery.md says what
each shows."""

from __future__ import annotations

import asyncio
import contextlib
import email
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import pytest

from pillarbox.cli.queue import message_lines
from pillarbox.dns.authoritative import StaticZones, serve_zones
from pillarbox.dns.records import DnsRecord
from pillarbox.dns.resolver import DnsResolver
from pillarbox.net.smtp_client import SessionSettings, opportunistic_context, verifying_context
from pillarbox.queue.routing import Router
from pillarbox.queue.runner import QueueRunner, RunnerLimits
from pillarbox.queue.schedule import RetryPolicy
from pillarbox.smtp.client import SmtpClientSettings
from pillarbox.store.sqlite import SqliteStore
from pillarbox.store.types import NewQueueRecipient, QueuedRecipient, RecipientState
from pillarbox.testing.live import free_port
from pillarbox.testing.outbound import inbox
from pillarbox.testing.testca import make_ca

PEER = "127.0.0.4"
RAW = b"From: alice@a.test\r\nTo: x@b.test\r\nSubject: hostile\r\n\r\nHello.\r\n"
#: Every RFC 5321 §4.5.3.2 reply timeout of the client, shortened.
TIMEOUT = 0.5
#: Longest a test waits for one attempt: many times any timeout, far below the RFC's minutes.
ATTEMPT_BOUND = 8.0

#: The second MX host of c.test, on the same port.
BACKUP = "127.0.0.6"

ZONES = StaticZones.from_records(
    [
        DnsRecord("b.test", "MX", "10 mx.b.test."),
        DnsRecord("mx.b.test", "A", PEER),
        # c.test: the preferred MX misbehaves, the backup answers (RFC 5321 §5.1).
        DnsRecord("c.test", "MX", "20 backup.c.test."),
        DnsRecord("c.test", "MX", "10 mx.b.test."),
        DnsRecord("backup.c.test", "A", BACKUP),
        # An MX naming an alias (§5.1 forbids it; it is followed all the same).
        DnsRecord("alias.test", "MX", "10 mx.alias.test."),
        DnsRecord("mx.alias.test", "CNAME", "mx.b.test."),
        # A slow destination, on the backup's address.
        DnsRecord("slow.test", "MX", "10 backup.c.test."),
        # An MX naming an address instead of a host (Postfix warns and skips it).
        DnsRecord("literal.test", "MX", f"10 {PEER}."),
        # No MX: the domain's own address is the implicit MX (§5.1).
        DnsRecord("implicit.test", "A", PEER),
        # An MX whose host has no address: no implicit MX for the domain's own A.
        DnsRecord("nowhere.test", "MX", "10 gone.nowhere.test."),
        DnsRecord("nowhere.test", "A", PEER),
    ],
    origins=[
        "b.test",
        "c.test",
        "slow.test",
        "alias.test",
        "literal.test",
        "implicit.test",
        "nowhere.test",
    ],
)

Script = Callable[["Peer", asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@dataclass
class Peer:
    """What the scripted server saw: sessions, commands (upper-cased verbs) and messages."""

    sessions: int = 0
    commands: list[str] = field(default_factory=list)
    messages: list[list[str]] = field(default_factory=list)
    #: When each message was taken (the loop's clock).
    times: list[float] = field(default_factory=list)
    #: A session ran STARTTLS.
    tls: bool = False

    async def command(self, reader: asyncio.StreamReader) -> str:
        line = (await reader.readline()).decode().rstrip("\r\n")
        if not line:
            raise ConnectionResetError
        self.commands.append(line)
        return line

    async def body(self, reader: asyncio.StreamReader) -> None:
        while (await reader.readline()) not in (b".\r\n", b""):
            pass


@pytest.fixture
def port() -> int:
    return free_port(PEER, BACKUP)


@pytest.fixture
async def resolver() -> AsyncIterator[DnsResolver]:
    async with serve_zones(ZONES) as server:
        yield DnsResolver(nameserver=f"127.0.0.1:{server.port}", timeout=2.0)


@contextlib.asynccontextmanager
async def scripted(port: int, script: Script, address: str = PEER) -> AsyncIterator[Peer]:
    peer = Peer()
    tasks: set[asyncio.Task[None]] = set()

    async def session(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer.sessions += 1
        task = asyncio.current_task()
        assert task is not None
        tasks.add(task)
        with contextlib.suppress(ConnectionError, asyncio.CancelledError):
            await script(peer, reader, writer)
        writer.close()

    server = await asyncio.start_server(session, address, port)
    try:
        yield peer
    finally:
        server.close()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def runner(
    store: SqliteStore,
    resolver: DnsResolver,
    port: int,
    *,
    tls: ssl.SSLContext | None = None,
    require_tls: bool = False,
    lifetime: float = 3600.0,
    delay_warning: float = 0.0,
    skip_5xx_greeting: bool = True,
) -> QueueRunner:
    t = TIMEOUT
    return QueueRunner(
        store=store,
        router=Router(store),
        resolver=resolver,
        policy=RetryPolicy(schedule=(60.0,), lifetime=lifetime, delay_warning=delay_warning),
        hostname="mx.a.test",
        wakeup=asyncio.Event(),
        remote_port=port,
        session=SessionSettings(
            client=SmtpClientSettings(
                hostname="mx.a.test",
                greeting_timeout=t,
                mail_timeout=t,
                rcpt_timeout=t,
                data_init_timeout=t,
                data_block_timeout=t,
                data_end_timeout=t,
                command_timeout=t,
            ),
            connect_timeout=2.0,
            tls=tls,
            require_tls=require_tls,
            skip_5xx_greeting=skip_5xx_greeting,
        ),
        limits=RunnerLimits(per_domain=1),
    )


async def attempt(queue: QueueRunner) -> None:
    """One delivery attempt, which must end on its own."""
    async with asyncio.timeout(ATTEMPT_BOUND):
        await queue.claim()
        await queue.idle()


async def queued(store: SqliteStore) -> list[QueuedRecipient]:
    return [r for m in await store.list_queue() for r in m.recipients]


async def greet(writer: asyncio.StreamWriter, trickle: float) -> None:
    """The banner, a byte every ``trickle`` seconds if set."""
    banner = b"220 mx.b.test ESMTP\r\n"
    for piece in [banner[i : i + 1] for i in range(len(banner))] if trickle else [banner]:
        writer.write(piece)
        await writer.drain()
        await asyncio.sleep(trickle)


def ehlo_reply(extensions: tuple[str, ...]) -> bytes:
    lines = ["mx.b.test", *extensions]
    return b"".join(
        f"250{' ' if i == len(lines) - 1 else '-'}{line}\r\n".encode()
        for i, line in enumerate(lines)
    )


async def serve(
    peer: Peer,
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    *,
    stall_at: str = "",
    rcpt_limit: int = 0,
    mail_limit: int = 0,
    announce: bool = False,
    after_dot: bytes | None = b"250 2.0.0 queued\r\n",
    trickle: float = 0.0,
    starttls: bytes = b"",
    refuse: dict[str, bytes] | None = None,
    pause: float = 0.0,
    tls: ssl.SSLContext | None = None,
) -> None:
    """A plain SMTP server (no extensions) that goes silent when ``stall_at`` comes (a verb,
    or "." for the end of data), answers 452 beyond ``rcpt_limit`` recipients per
    transaction (negative: to every one), answers the end of data with ``after_dot`` (None:
    hangs up), trickles its banner a byte every ``trickle`` seconds, and offers STARTTLS when
    ``starttls`` is set: the reply it gives, after which (if 220) no TLS comes, only garbage;
    ``refuse`` maps recipients to their RCPT reply; each message takes ``pause`` seconds;
    with ``tls`` it offers STARTTLS and runs it (``peer.tls`` then says so). Beyond
    ``mail_limit`` transactions a session is closed with 421 (Exim's
    smtp_accept_max_per_connection); ``announce`` offers both limits with LIMITS (RFC 9422)."""
    if stall_at == "greeting":
        await asyncio.sleep(3600)
    await greet(writer, trickle)
    rcpts: list[str] = []
    secure = False
    mails = 0
    limits = [f"{name}={n}" for name, n in (("MAILMAX", mail_limit), ("RCPTMAX", rcpt_limit)) if n]
    extensions = (" ".join(("LIMITS", *limits)),) if announce else ()
    while True:
        line = await peer.command(reader)
        verb = line.split(" ", 1)[0].split(":", 1)[0].upper()
        if verb == stall_at:
            await asyncio.sleep(3600)
        match verb:
            case "EHLO":
                offer = (starttls or tls) and not secure
                writer.write(ehlo_reply((("STARTTLS",) if offer else ()) + extensions))
            case "STARTTLS" if tls is not None:
                writer.write(b"220 2.0.0 go ahead\r\n")
                await writer.drain()
                await writer.start_tls(tls)
                secure = peer.tls = True
                continue
            case "STARTTLS" if starttls:
                writer.write(starttls)
                if starttls.startswith(b"220"):
                    writer.write(b"\x15this is not TLS\r\n")
                    await writer.drain()
                    return
            case "MAIL" if mail_limit and mails >= mail_limit:
                writer.write(b"421 4.7.0 too many messages in this session\r\n")
                await writer.drain()
                return
            case "MAIL" | "RSET":
                mails += verb == "MAIL"
                rcpts = []
                writer.write(b"250 2.0.0 ok\r\n")
            case "RCPT" if rcpt_limit and len(rcpts) >= rcpt_limit:
                writer.write(b"452 4.5.3 Error: too many recipients\r\n")
            case "RCPT" if line.split(":", 1)[1].strip().strip("<>") in (refuse or {}):
                assert refuse is not None
                writer.write(refuse[line.split(":", 1)[1].strip().strip("<>")])
            case "RCPT":
                rcpts.append(line.split(":", 1)[1].strip().strip("<>"))
                writer.write(b"250 2.1.5 ok\r\n")
            case "DATA":
                writer.write(b"354 go ahead\r\n")
                await writer.drain()
                await peer.body(reader)
                if stall_at == ".":
                    await asyncio.sleep(3600)
                if after_dot is None:
                    writer.transport.abort()
                    return
                await asyncio.sleep(pause)
                peer.messages.append(rcpts)
                peer.times.append(asyncio.get_running_loop().time())
                writer.write(after_dot)
            case "QUIT":
                writer.write(b"221 2.0.0 bye\r\n")
                await writer.drain()
                return
            case _:
                writer.write(b"502 5.5.1 not here\r\n")
        await writer.drain()


@pytest.mark.parametrize(
    ("stage", "awaited"),
    [
        ("greeting", "greeting"),
        ("EHLO", "EHLO"),
        ("MAIL", "MAIL"),
        ("RCPT", "RCPT"),
        ("DATA", "DATA"),
        (".", "end of data"),
    ],
)
async def test_a_peer_that_stalls_is_deferred_naming_the_stage(
    store: SqliteStore, resolver: DnsResolver, port: int, stage: str, awaited: str
) -> None:
    await store.enqueue("alice@a.test", RAW, [NewQueueRecipient("x@b.test")])

    async def script(peer: Peer, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        await serve(peer, r, w, stall_at=stage)

    async with scripted(port, script) as peer:
        await attempt(runner(store, resolver, port))
    [recipient] = await queued(store)
    assert recipient.state is RecipientState.DEFERRED and recipient.attempts == 1
    assert recipient.last_reply is not None and "4.4.2" in recipient.last_reply
    assert f"waiting for the reply to {awaited}" in recipient.last_reply
    assert peer.sessions == 1 and peer.messages == []


async def test_a_tarpit_trickling_its_greeting_is_timed_out(
    store: SqliteStore, resolver: DnsResolver, port: int
) -> None:
    """A byte every 50 ms never lets a reply complete: the reply timeout counts from the
    command (here, the connection), not from the last byte, or the attempt never ends."""
    await store.enqueue("alice@a.test", RAW, [NewQueueRecipient("x@b.test")])

    async def script(peer: Peer, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        w.write(b"220-")
        while True:
            for byte in b"mx.b.test slowly\r\n220-":
                w.write(bytes([byte]))
                await w.drain()
                await asyncio.sleep(0.05)

    async with scripted(port, script):
        await attempt(runner(store, resolver, port))
    [recipient] = await queued(store)
    assert recipient.state is RecipientState.DEFERRED
    assert recipient.last_reply is not None and "reply to greeting" in recipient.last_reply


async def test_a_reply_finished_after_its_timeout_is_too_late(
    store: SqliteStore, resolver: DnsResolver, port: int
) -> None:
    """A banner taking 2 s in 0.1 s steps, against a 0.5 s greeting timeout."""
    await store.enqueue("alice@a.test", RAW, [NewQueueRecipient("x@b.test")])

    async def script(peer: Peer, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        await serve(peer, r, w, trickle=0.1)

    async with scripted(port, script) as peer:
        await attempt(runner(store, resolver, port))
    [recipient] = await queued(store)
    assert recipient.state is RecipientState.DEFERRED
    assert recipient.last_reply is not None and "reply to greeting" in recipient.last_reply
    assert peer.messages == []


async def test_hang_up_after_the_final_dot_is_retried_not_lost(
    store: SqliteStore, resolver: DnsResolver, port: int
) -> None:
    """RFC 5321 §6.1: without the reply the message may or may not have been taken; a
    duplicate is accepted, a loss is not."""
    await store.enqueue("alice@a.test", RAW, [NewQueueRecipient("x@b.test")])

    async def script(peer: Peer, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        await serve(peer, r, w, after_dot=None)

    async with scripted(port, script):
        await attempt(runner(store, resolver, port))
    [recipient] = await queued(store)
    assert recipient.state is RecipientState.DEFERRED
    assert recipient.last_reply is not None and "4.4.2" in recipient.last_reply


@pytest.mark.parametrize(
    "reply",
    [
        b"421 4.3.2 shutting down\r\n",
        b"250-first line\r\n451-mixed codes\r\n250 last\r\n",
        b"garbage\r\n",
    ],
    ids=["421", "mixed-codes", "garbage"],
)
async def test_a_bad_end_of_data_reply_defers(
    store: SqliteStore, resolver: DnsResolver, port: int, reply: bytes
) -> None:
    await store.enqueue("alice@a.test", RAW, [NewQueueRecipient("x@b.test")])

    async def script(peer: Peer, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        await serve(peer, r, w, after_dot=reply)

    async with scripted(port, script):
        await attempt(runner(store, resolver, port))
    [recipient] = await queued(store)
    assert recipient.state is RecipientState.DEFERRED


async def test_a_long_reply_within_limits_is_read(
    store: SqliteStore, resolver: DnsResolver, port: int
) -> None:
    """RFC 5321 §4.5.3.1.5 says 512 octets per reply line; servers send more (past 4096
    the line is cut)."""
    await store.enqueue("alice@a.test", RAW, [NewQueueRecipient("x@b.test")])

    async def script(peer: Peer, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        await serve(peer, r, w, after_dot=b"250 2.0.0 " + b"y" * 100_000 + b"\r\n")

    async with scripted(port, script):
        await attempt(runner(store, resolver, port))
    assert await store.list_queue() == []


async def test_too_many_recipients_go_in_the_next_transaction(
    store: SqliteStore, resolver: DnsResolver, port: int
) -> None:
    """RFC 5321 §4.5.3.1.10: 452 when the server's recipient limit is reached; the rest are
    sent in another transaction of the same session, not left for the next attempt."""
    addresses = [f"r{n}@b.test" for n in range(5)]
    await store.enqueue("alice@a.test", RAW, [NewQueueRecipient(a) for a in addresses])

    async def script(peer: Peer, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        await serve(peer, r, w, rcpt_limit=2)

    async with scripted(port, script) as peer:
        await attempt(runner(store, resolver, port))
    assert await store.list_queue() == []
    assert peer.sessions == 1
    assert peer.messages == [addresses[:2], addresses[2:4], addresses[4:]]


async def test_limits_split_recipients_and_sessions(
    store: SqliteStore, resolver: DnsResolver, port: int
) -> None:
    """RFC 9422: a server announcing RCPTMAX=2 gets transactions of at most 2 recipients, none
    refused (§4.2); once MAILMAX=2 transactions are made, a new connection takes the rest
    (§4.1): the peer's 421 to a third MAIL never comes."""
    addresses = [f"r{n}@b.test" for n in range(3)]
    await store.enqueue("alice@a.test", RAW, [NewQueueRecipient(a) for a in addresses])
    for n in range(3, 5):
        await store.enqueue("alice@a.test", RAW, [NewQueueRecipient(f"r{n}@b.test")])

    async def script(peer: Peer, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        await serve(peer, r, w, rcpt_limit=2, mail_limit=2, announce=True)

    async with scripted(port, script) as peer:
        await attempt(runner(store, resolver, port))
    assert await store.list_queue() == []
    assert peer.sessions == 2
    assert sorted(peer.messages) == [
        ["r0@b.test", "r1@b.test"],
        ["r2@b.test"],
        *([f"r{n}@b.test"] for n in range(3, 5)),
    ]
    assert sum(c.startswith("RCPT") for c in peer.commands) == 5  # not one refused


async def test_a_452_with_nothing_accepted_is_deferred(
    store: SqliteStore, resolver: DnsResolver, port: int
) -> None:
    """No progress in a transaction: the recipients wait for the next attempt, no loop."""
    await store.enqueue("alice@a.test", RAW, [NewQueueRecipient("x@b.test")])

    async def script(peer: Peer, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        await serve(peer, r, w, rcpt_limit=-1)

    async with scripted(port, script) as peer:
        await attempt(runner(store, resolver, port))
    [recipient] = await queued(store)
    assert recipient.state is RecipientState.DEFERRED
    assert recipient.last_reply is not None and "452 4.5.3" in recipient.last_reply
    assert peer.messages == [] and sum(c.startswith("RCPT") for c in peer.commands) == 1


@pytest.mark.parametrize(
    "starttls",
    [b"220 2.0.0 go ahead\r\n", b"454 4.7.0 TLS not available\r\n"],
    ids=["handshake", "454"],
)
async def test_a_failed_starttls_falls_back_to_plaintext(
    store: SqliteStore, resolver: DnsResolver, port: int, starttls: bytes
) -> None:
    """Opportunistic TLS (RFC 7435 §1.3; Postfix's "may"): the same address again, in
    plaintext, in the same attempt."""
    await store.enqueue("alice@a.test", RAW, [NewQueueRecipient("x@b.test")])

    async def script(peer: Peer, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        await serve(peer, r, w, starttls=starttls)

    async with scripted(port, script) as peer:
        await attempt(runner(store, resolver, port, tls=opportunistic_context()))
    assert await store.list_queue() == []
    assert peer.messages == [["x@b.test"]] and peer.sessions == 2
    assert peer.commands.count("STARTTLS") == 1


@pytest.mark.parametrize(
    ("tls", "require_tls"),
    [(opportunistic_context(), True), (verifying_context(), False)],
    ids=["required", "verified"],
)
async def test_no_plaintext_when_tls_is_demanded(
    store: SqliteStore,
    resolver: DnsResolver,
    port: int,
    tls: ssl.SSLContext,
    require_tls: bool,
) -> None:
    """TLS demanded (a policy, DANE, MTA-STS enforce, REQUIRETLS) or a certificate to verify:
    a failed handshake fails the host, and the message waits."""
    await store.enqueue("alice@a.test", RAW, [NewQueueRecipient("x@b.test")])

    async def script(peer: Peer, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        await serve(peer, r, w, starttls=b"220 2.0.0 go ahead\r\n")

    async with scripted(port, script) as peer:
        await attempt(runner(store, resolver, port, tls=tls, require_tls=require_tls))
    [recipient] = await queued(store)
    assert recipient.state is RecipientState.DEFERRED
    assert recipient.last_reply is not None and "4.7.5" in recipient.last_reply
    assert peer.messages == [] and peer.sessions == 1


@pytest.mark.parametrize("failure", ["421", "silent-close", "stall", "hang-up"])
async def test_the_next_mx_in_the_same_attempt(
    store: SqliteStore, resolver: DnsResolver, port: int, failure: str
) -> None:
    await store.enqueue("alice@a.test", RAW, [NewQueueRecipient("x@c.test")])

    async def bad(peer: Peer, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        if failure == "421":
            w.write(b"421 4.3.2 too busy\r\n")
        elif failure == "silent-close":
            pass  # closed at once, no greeting
        elif failure == "stall":
            await serve(peer, r, w, stall_at="RCPT")
        else:
            await serve(peer, r, w, after_dot=None)

    async def good(peer: Peer, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        await serve(peer, r, w)

    async with scripted(port, bad) as first, scripted(port, good, BACKUP) as backup:
        await attempt(runner(store, resolver, port))
    assert await store.list_queue() == []
    assert first.sessions == 1 and backup.messages == [["x@c.test"]]


@pytest.mark.parametrize("domain", ["alias.test", "literal.test", "implicit.test"])
async def test_mx_through_an_alias_and_the_implicit_mx(
    store: SqliteStore, resolver: DnsResolver, port: int, domain: str
) -> None:
    await store.enqueue("alice@a.test", RAW, [NewQueueRecipient(f"x@{domain}")])

    async def good(peer: Peer, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        await serve(peer, r, w)

    async with scripted(port, good) as peer:
        await attempt(runner(store, resolver, port))
    assert await store.list_queue() == [] and peer.messages == [[f"x@{domain}"]]


@pytest.mark.parametrize(
    ("domain", "state", "status"),
    [
        ("nowhere.test", RecipientState.DEFERRED, "451 4.4.4"),  # an MX exists: no A fallback
        ("unserved.test", RecipientState.DEFERRED, "451 4.4.3"),  # the lookup fails (REFUSED)
        ("missing.b.test", RecipientState.FAILED, "550 5.1.2"),  # NXDOMAIN
    ],
)
async def test_mx_lookup_outcomes(
    store: SqliteStore,
    resolver: DnsResolver,
    port: int,
    domain: str,
    state: RecipientState,
    status: str,
) -> None:
    await store.enqueue("alice@a.test", RAW, [NewQueueRecipient(f"x@{domain}")])

    async def good(peer: Peer, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        await serve(peer, r, w)

    async with scripted(port, good) as peer:
        await attempt(runner(store, resolver, port))
    assert peer.sessions == 0
    if state is RecipientState.FAILED:
        assert await store.list_queue() == []
        [bounce] = await inbox(store, "alice@a.test")
        assert b"Status: 5.1.2" in bounce
        return
    [recipient] = await queued(store)
    assert recipient.state is state
    assert recipient.last_reply is not None and status in recipient.last_reply


async def test_per_recipient_refusals_make_one_rfc_3464_report(
    store: SqliteStore, resolver: DnsResolver, port: int
) -> None:
    refuse = {
        "gone@b.test": b"550 5.1.1 no such user\r\n",
        "full@b.test": b"552 5.2.2 mailbox full\r\n",
    }
    await store.enqueue(
        "alice@a.test",
        RAW,
        [NewQueueRecipient(a) for a in ("ok@b.test", "gone@b.test", "full@b.test")],
    )

    async def script(peer: Peer, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        await serve(peer, r, w, refuse=refuse)

    async with scripted(port, script) as peer:
        await attempt(runner(store, resolver, port))
    assert peer.messages == [["ok@b.test"]] and await store.list_queue() == []
    [raw] = await inbox(store, "alice@a.test")
    report = email.message_from_bytes(raw)
    assert report.get_content_type() == "multipart/report"
    assert report.get_param("report-type") == "delivery-status"
    status = report.get_payload()[1]  # type: ignore[index]
    assert status.get_content_type() == "message/delivery-status"
    per_message, *per_recipient = status.get_payload()
    assert per_message["Reporting-MTA"] == "dns; mx.a.test"
    assert per_message["Arrival-Date"]
    fields = {
        block["Final-Recipient"]: (
            block["Action"],
            block["Status"],
            block["Remote-MTA"],
            block["Diagnostic-Code"],
        )
        for block in per_recipient
    }
    assert fields == {
        "rfc822; gone@b.test": (
            "failed",
            "5.1.1",
            "dns; mx.b.test",
            "smtp; 550 5.1.1 no such user",
        ),
        "rfc822; full@b.test": (
            "failed",
            "5.2.2",
            "dns; mx.b.test",
            "smtp; 552 5.2.2 mailbox full",
        ),
    }


async def test_a_host_that_always_stalls_bounces_at_the_end_of_the_lifetime(
    store: SqliteStore, resolver: DnsResolver, port: int
) -> None:
    """RFC 5321 §4.5.4.1: give up after the lifetime, with the last reply as the diagnostic."""
    await store.enqueue("alice@a.test", RAW, [NewQueueRecipient("x@b.test")])

    async def script(peer: Peer, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        await serve(peer, r, w, stall_at="DATA")

    queue = runner(store, resolver, port, lifetime=1.5)
    async with scripted(port, script) as peer:
        await attempt(queue)
        [recipient] = await queued(store)
        assert recipient.state is RecipientState.DEFERRED
        assert await inbox(store, "alice@a.test") == []
        await asyncio.sleep(1.5)
        await store.retry_queued(recipient.message_id, datetime.now(UTC))
        await attempt(queue)
    assert await store.list_queue() == [] and peer.sessions == 2 and peer.messages == []
    [raw] = await inbox(store, "alice@a.test")
    [block] = email.message_from_bytes(raw).get_payload()[1].get_payload()[1:]  # type: ignore[index]
    assert block["Action"] == "failed" and block["Status"] == "4.4.7"
    assert "reply to DATA" in block["Diagnostic-Code"]


async def test_a_slow_destination_does_not_hold_up_the_others(
    store: SqliteStore, resolver: DnsResolver, port: int
) -> None:
    """``per_domain`` connections to the slow one (here 1, its messages in one session,
    RFC 5321 §4.5.4.1), while the others get theirs."""
    for n in range(5):
        await store.enqueue("alice@a.test", RAW, [NewQueueRecipient(f"r{n}@slow.test")])
    await store.enqueue("alice@a.test", RAW, [NewQueueRecipient("x@b.test")])

    async def slow(peer: Peer, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        await serve(peer, r, w, pause=0.3)

    async def fast(peer: Peer, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        await serve(peer, r, w)

    async with scripted(port, fast) as quick, scripted(port, slow, BACKUP) as sluggish:
        await attempt(runner(store, resolver, port))
    assert await store.list_queue() == []
    assert sluggish.sessions == 1 and len(sluggish.messages) == 5
    assert quick.messages == [["x@b.test"]] and quick.times[0] < sluggish.times[1]


async def test_a_peer_that_stops_reading_the_message_is_timed_out(
    store: SqliteStore, resolver: DnsResolver, port: int
) -> None:
    """RFC 5321 §4.5.3.2.5: each block written must be taken within the data block timeout;
    16 MiB overflow what the loopback's socket buffers hold."""
    big = RAW + (b"y" * 998 + b"\r\n") * (16 * 1024 * 1024 // 1000)
    await store.enqueue("alice@a.test", big, [NewQueueRecipient("x@b.test")])

    async def script(peer: Peer, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        await greet(w, 0.0)
        while (await peer.command(r)).split(" ", 1)[0].upper() != "DATA":
            w.write(ehlo_reply(()) if len(peer.commands) == 1 else b"250 2.0.0 ok\r\n")
            await w.drain()
        w.write(b"354 go ahead\r\n")
        await w.drain()
        await asyncio.sleep(3600)  # and never read again

    async with scripted(port, script):
        await attempt(runner(store, resolver, port))
    [recipient] = await queued(store)
    assert recipient.state is RecipientState.DEFERRED
    assert recipient.last_reply is not None and "4.4.2" in recipient.last_reply
    assert "timed out sending: the server stopped reading" in recipient.last_reply


@pytest.mark.parametrize("verify", [False, True], ids=["opportunistic", "verified"])
async def test_an_expired_certificate_of_an_unknown_ca(
    store: SqliteStore, resolver: DnsResolver, port: int, tmp_path: Path, verify: bool
) -> None:
    """Opportunistic TLS takes any certificate (RFC 7435 §1.3; RFC 7672 §1.3 for SMTP):
    encrypted delivery. Where the certificate is verified, the host fails and nothing goes
    in plaintext."""
    server_tls = make_ca(tmp_path).server_context("mx.b.test", expired=True)
    await store.enqueue("alice@a.test", RAW, [NewQueueRecipient("x@b.test")])

    async def script(peer: Peer, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        await serve(peer, r, w, tls=server_tls)

    client_tls = verifying_context() if verify else opportunistic_context()
    async with scripted(port, script) as peer:
        await attempt(runner(store, resolver, port, tls=client_tls))
    if verify:
        [recipient] = await queued(store)
        assert recipient.last_reply is not None and "4.7.5" in recipient.last_reply
        assert peer.messages == [] and peer.sessions == 1
    else:
        assert await store.list_queue() == []
        assert peer.messages == [["x@b.test"]] and peer.tls


async def refuse_service(peer: Peer, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
    """RFC 5321 §3.1: a 554 greeting, then the wait for QUIT."""
    w.write(b"554 5.7.1 no service for you\r\n")
    await w.drain()
    await peer.command(r)
    w.write(b"221 2.0.0 bye\r\n")
    await w.drain()


#: What ``queue show`` keeps for a host that greeted with :func:`refuse_service`.
REFUSED_AT_GREETING = (
    "mx.b.test: 451 4.7.1 refused service at the greeting: 554 5.7.1 no service for you"
)


async def test_a_server_refusing_service_at_greeting_gets_quit_and_defers(
    store: SqliteStore, resolver: DnsResolver, port: int
) -> None:
    """RFC 5321 §3.1: a 554 greeting; the server waits for QUIT, and gets it. The only host
    refused service: deferred, no report (Postfix's smtp_skip_5xx_greeting = yes)."""
    await store.enqueue("alice@a.test", RAW, [NewQueueRecipient("x@b.test")])
    async with scripted(port, refuse_service) as peer:
        await attempt(runner(store, resolver, port))
    assert peer.commands == ["QUIT"]
    [recipient] = await queued(store)
    assert recipient.state is RecipientState.DEFERRED and recipient.attempts == 1
    assert recipient.last_reply == REFUSED_AT_GREETING
    assert await inbox(store, "alice@a.test") == []


async def test_every_host_refusing_service_at_greeting_defers(
    store: SqliteStore, resolver: DnsResolver, port: int
) -> None:
    """Both MX hosts of c.test greet with 554: each is skipped in turn (§5.1 order), and the
    message is deferred with the last one's greeting."""
    await store.enqueue("alice@a.test", RAW, [NewQueueRecipient("x@c.test")])
    async with (
        scripted(port, refuse_service) as first,
        scripted(port, refuse_service, BACKUP) as backup,
    ):
        await attempt(runner(store, resolver, port))
    assert first.commands == ["QUIT"] and backup.commands == ["QUIT"]
    [recipient] = await queued(store)
    assert recipient.state is RecipientState.DEFERRED
    assert recipient.last_reply == REFUSED_AT_GREETING.replace("mx.b.test", "backup.c.test")
    assert await inbox(store, "alice@a.test") == []


async def test_a_host_refusing_service_at_greeting_is_skipped_for_the_next(
    store: SqliteStore, resolver: DnsResolver, port: int
) -> None:
    await store.enqueue("alice@a.test", RAW, [NewQueueRecipient("x@c.test")])

    async def good(peer: Peer, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        await serve(peer, r, w)

    async with scripted(port, refuse_service) as first, scripted(port, good, BACKUP) as backup:
        await attempt(runner(store, resolver, port))
    assert first.commands == ["QUIT"] and backup.messages == [["x@c.test"]]
    assert await store.list_queue() == []


async def test_refused_service_at_greeting_bounces_when_the_lifetime_ends(
    store: SqliteStore, resolver: DnsResolver, port: int
) -> None:
    """The last attempt of a message past ``queue.lifetime`` bounces it: RFC 3463 X.4.7,
    with the greeting as the diagnostic."""
    await store.enqueue("alice@a.test", RAW, [NewQueueRecipient("x@b.test")])
    async with scripted(port, refuse_service):
        await attempt(runner(store, resolver, port, lifetime=0.0))
    assert await store.list_queue() == []
    [bounce] = await inbox(store, "alice@a.test")
    assert b"Status: 4.4.7" in bounce
    assert (
        b"Diagnostic-Code: smtp; 451 4.7.1 refused service at the greeting: 554 5.7.1 no"
        b" service for you" in bounce.replace(b"\r\n ", b" ")  # unfolded (RFC 5322 §2.2.3)
    )


async def test_refused_service_at_greeting_bounces_at_once_unless_skipped(
    store: SqliteStore, resolver: DnsResolver, port: int
) -> None:
    """``queue.skip_5xx_greeting = false``: the last host's 554 is the recipients' answer."""
    await store.enqueue("alice@a.test", RAW, [NewQueueRecipient("x@b.test")])
    async with scripted(port, refuse_service) as peer:
        await attempt(runner(store, resolver, port, skip_5xx_greeting=False))
    assert peer.commands == ["QUIT"]
    assert await store.list_queue() == []
    [bounce] = await inbox(store, "alice@a.test")
    assert b"Status: 5.7.1" in bounce and b"no service for you" in bounce


@pytest.mark.parametrize("quit_reply", [b"", b"221 2.0.0 bye\r\n"], ids=["silent", "221"])
async def test_a_peer_that_never_closes_after_quit(
    store: SqliteStore, resolver: DnsResolver, port: int, quit_reply: bytes
) -> None:
    """The message is delivered once; the session ends on our side all the same."""
    await store.enqueue("alice@a.test", RAW, [NewQueueRecipient("x@b.test")])

    async def script(peer: Peer, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        await serve(peer, r, w, stall_at="" if quit_reply else "QUIT")
        await asyncio.sleep(3600)  # and never closes

    async with scripted(port, script) as peer:
        await attempt(runner(store, resolver, port))
    assert await store.list_queue() == [] and peer.messages == [["x@b.test"]]


async def test_one_delay_report_while_a_host_keeps_stalling(
    store: SqliteStore, resolver: DnsResolver, port: int
) -> None:
    """RFC 3464 §2.3.3 "delayed", once (``queue.delay_warning``), with Will-Retry-Until."""
    await store.enqueue("alice@a.test", RAW, [NewQueueRecipient("x@b.test")])

    async def script(peer: Peer, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        await serve(peer, r, w, stall_at="RCPT")

    queue = runner(store, resolver, port, delay_warning=0.5)
    async with scripted(port, script):
        for _ in range(3):
            await attempt(queue)
            [recipient] = await queued(store)
            await asyncio.sleep(0.6)
            await store.retry_queued(recipient.message_id, datetime.now(UTC))
    assert recipient.state is RecipientState.DEFERRED and recipient.attempts == 3
    [raw] = await inbox(store, "alice@a.test")
    [block] = email.message_from_bytes(raw).get_payload()[1].get_payload()[1:]  # type: ignore[index]
    assert block["Action"] == "delayed" and block["Status"] == "4.4.2"
    assert block["Will-Retry-Until"] and "reply to RCPT" in block["Diagnostic-Code"]


# -- what `queue show` and the bounce say: the host once, before its reply ------------------------


async def greet_then(
    reply: bytes, peer: Peer, r: asyncio.StreamReader, w: asyncio.StreamWriter
) -> None:
    """A greeting of ``reply``; the session ends at our QUIT."""
    w.write(reply)
    await w.drain()
    await peer.command(r)
    w.write(b"221 2.0.0 bye\r\n")
    await w.drain()


async def refuse_hello(peer: Peer, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
    """EHLO and HELO refused (RFC 5321 §3.2)."""
    await greet(w, 0.0)
    while (await peer.command(r)).split(" ")[0].upper() in ("EHLO", "HELO"):
        w.write(b"550 5.7.1 not you\r\n")
        await w.drain()
    w.write(b"221 2.0.0 bye\r\n")
    await w.drain()


def serving(**options: object) -> Script:
    async def script(peer: Peer, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        await serve(peer, r, w, **options)  # type: ignore[arg-type]

    return script


#: (a failure at each stage, what ``queue show`` says of the deferred recipient); ``{port}``
#: is the peer's.
DEFERRALS: dict[str, tuple[Script | None, str]] = {
    "connection": (None, "451 4.4.1 could not connect to 127.0.0.4:{port}: Connection refused"),
    "greeting 421": (
        lambda p, r, w: greet_then(b"421 4.3.2 busy, try later\r\n", p, r, w),
        "421 4.3.2 busy, try later",
    ),
    "greeting 554": (refuse_service, REFUSED_AT_GREETING.removeprefix("mx.b.test: ")),
    "greeting timeout": (
        serving(stall_at="greeting"),
        "451 4.4.2 timed out waiting for the reply to greeting",
    ),
    "EHLO timeout": (serving(stall_at="EHLO"), "451 4.4.2 timed out waiting for the reply to EHLO"),
    "STARTTLS 454": (
        serving(starttls=b"454 4.7.0 TLS not available\r\n"),
        "454 4.7.0 TLS not available",
    ),
    "RCPT 450": (
        serving(refuse={"x@b.test": b"450 4.2.1 mailbox busy\r\n"}),
        "450 4.2.1 mailbox busy",
    ),
    "end of data 451": (
        serving(after_dot=b"451 4.3.0 queue full\r\n"),
        "451 4.3.0 queue full",
    ),
}


@pytest.mark.parametrize("stage", list(DEFERRALS))
async def test_queue_show_names_the_host_once(
    store: SqliteStore, resolver: DnsResolver, port: int, stage: str
) -> None:
    """The ``last reply`` line of ``pillarbox queue show``, byte for byte: the host that
    failed, then the reply, whatever the stage (no reply text repeats the host's name)."""
    queued_message = await store.enqueue("alice@a.test", RAW, [NewQueueRecipient("x@b.test")])
    script, expected = DEFERRALS[stage]
    # A host demanding TLS (the STARTTLS stage would otherwise go on in plaintext).
    tls = stage == "STARTTLS 454"
    queue = runner(
        store, resolver, port, tls=opportunistic_context() if tls else None, require_tls=tls
    )
    if script is None:
        await attempt(queue)
    else:
        async with scripted(port, script):
            await attempt(queue)
    message = await store.get_queued(queued_message.id)
    assert message is not None
    shown = message_lines(message, detail=True)[-1]
    assert shown == f"                  last reply: mx.b.test: {expected.format(port=port)}"
    assert shown.count("mx.b.test") == 1


#: (a permanent failure at each stage, the lines the bounce's text gives the recipient).
BOUNCES: dict[str, tuple[Script, str]] = {
    "HELO 550": (refuse_hello, "550 5.7.1 not you"),
    "RCPT 550": (
        serving(refuse={"x@b.test": b"550 5.1.1 no such user here\r\n"}),
        "550 5.1.1 no such user here",
    ),
    "end of data 554": (serving(after_dot=b"554 5.6.0 spam\r\n"), "554 5.6.0 spam"),
}


@pytest.mark.parametrize("stage", list(BOUNCES))
async def test_the_bounce_names_the_host_once(
    store: SqliteStore, resolver: DnsResolver, port: int, stage: str
) -> None:
    """The report's text gives the recipient, then ``host: reply`` as ``queue show`` does;
    Remote-MTA names the host and Diagnostic-Code gives the reply alone (RFC 3464 §2.3.5,
    §2.3.6)."""
    await store.enqueue("alice@a.test", RAW, [NewQueueRecipient("x@b.test")])
    script, expected = BOUNCES[stage]
    async with scripted(port, script):
        await attempt(runner(store, resolver, port))
    [bounce] = await inbox(store, "alice@a.test")
    assert f"\r\n\r\n<x@b.test>: failed\r\n    mx.b.test: {expected}\r\n".encode() in bounce
    assert b"\r\nRemote-MTA: dns; mx.b.test\r\n" in bounce
    assert f"\r\nDiagnostic-Code: smtp; {expected}\r\n".encode() in bounce
    assert bounce.count(b"mx.b.test") == 2
