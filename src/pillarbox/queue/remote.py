"""Remote delivery decisions — where a domain's mail goes, what each transaction sends, and which
recipients are still open as hosts are tried — as pure functions and values. The sockets are in
:mod:`pillarbox.net.smtp_client`; the orchestration in :mod:`pillarbox.queue.runner`.

Implementation notes:

- **Route** (RFC 5321 §5.1, RFC 7505): MX hosts in preference order (the resolver shuffles equal
  preferences); no MX → the domain itself (implicit MX); null MX → 556 5.1.10 at once; NXDOMAIN
  → 550 5.1.2 at once; a temporary DNS failure → 451 4.4.3, retried. If our own name is among
  the MX hosts, only the hosts preferred over us are used, and none left is a loop (554 5.4.6,
  §5.1 "the SMTP client MUST ... discard"). A smart host replaces the MX lookup altogether.
- **Host fallback** (RFC 5321 §4.5.4.1, §5.1): a host that cannot be reached, greets with
  anything but 220, times out, closes with 421 or drops the connection leaves its recipients
  open for the next address and the next host. A reply to RCPT or to the message (2xx, 4xx or
  5xx) is the answer for this attempt: a 4xx there is the destination's decision, not the host's.
  Recipients still open after the last host are deferred with the last failure seen. A 5xx
  greeting (§3.1) is such a failure, made transient (:func:`skipped_greeting`, Postfix's
  ``smtp_skip_5xx_greeting``): the message bounces only when its lifetime ends (§4.5.4.1).
- **Recipient limits** (RFC 5321 §4.5.3.1.10): a 452 "too many recipients" after the server
  accepted others in the same transaction leaves those recipients open, for the next
  transaction of the same session; in a transaction where none was accepted it is their
  answer for this attempt (so every further transaction makes progress, and none loops). A
  server announcing LIMITS RCPTMAX (RFC 9422 §4.2) gets no more RCPTs than that in one
  transaction: the rest wait for the next, without a 452.
- **Envelope** per transaction, from what the server offered (RFC 5321 §4.1.1.11: never a
  parameter it did not offer): SIZE and BODY=8BITMIME when offered; the DSN parameters
  (RET, ENVID, NOTIFY, ORCPT, RFC 3461 §5.2.1) only to a server offering DSN — otherwise the
  queue issues "relayed" reports itself (§5.2.2). SMTPUTF8 only when the message needs it; a
  server that does not offer it gets nothing and the recipient fails with 553 5.6.7 (RFC 6531
  §3.2: no downgrade is attempted). A message larger than the server's declared SIZE fails
  with 552 5.3.4 without being sent (RFC 1870 §6). REQUIRETLS (RFC 8689 §4.2.1) goes on MAIL
  for a tagged message whenever the server offers it; a tagged message with a reverse-path is
  never given to a server that does not (550 5.7.30; the runner has already moved on from
  such a host), a tagged report (null reverse-path) still is (§5).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field, replace

from pillarbox.dns.resolver import MxResult, MxStatus
from pillarbox.errors import ConfigError, InvalidName
from pillarbox.mail.address import parse_address
from pillarbox.mail.headers import scan_header
from pillarbox.smtp import replies as R
from pillarbox.smtp.client import CLIENT_TIMEOUTS, MALFORMED_REPLY, SEND_TIMEOUT
from pillarbox.smtp.extensions import Capabilities, Extension
from pillarbox.smtp.grammar import (
    Body,
    MailFrom,
    MailParams,
    Notify,
    OriginalRecipient,
    Path,
    RcptParams,
    RcptTo,
    Ret,
)
from pillarbox.smtp.replies import Reply

# -- replies the queue synthesises (no server sent them) ------------------------------------------
#: RFC 7505 §4.2.
NULL_MX = Reply(556, "5.1.10", "recipient domain does not accept mail (null MX)")
#: RFC 3463 X.1.2 bad destination system address.
NO_SUCH_DOMAIN = Reply(550, "5.1.2", "recipient domain does not exist")
#: RFC 3463 X.4.3 directory (routing) server failure.
DNS_FAILURE = Reply(451, "4.4.3", "DNS lookup of the recipient domain failed")
#: RFC 3463 X.4.4 unable to route.
NO_ADDRESS = Reply(451, "4.4.4", "no address found for the mail exchanger")
#: RFC 3463 X.4.6 routing loop (RFC 5321 §5.1).
MX_LOOP = Reply(554, "5.4.6", "mail for the domain loops back to myself")
#: RFC 3463 X.4.1 no answer from host.
CONNECT_FAILED = Reply(451, "4.4.1", "could not connect to the host")
#: RFC 6531 §3.2, RFC 3463 X.6.7.
SMTPUTF8_UNSUPPORTED = Reply(
    553, "5.6.7", "the message needs SMTPUTF8, which the receiving server does not offer"
)
#: RFC 1870 §6.
TOO_BIG = Reply(552, "5.3.4", "message exceeds the receiving server's fixed size limit")
#: RFC 3463 X.7.5 cryptographic failure.
TLS_FAILED = Reply(451, "4.7.5", "TLS handshake with the host failed")
#: RFC 3463 X.7.10 encryption needed (RFC 5248): the smart host must offer STARTTLS.
TLS_UNAVAILABLE = Reply(451, "4.7.10", "TLS is required for this host but not offered")
#: The smart host refused our credentials; retried, since an operator can fix it.
RELAY_AUTH_FAILED = Reply(451, "4.7.8", "the smart host refused our credentials")
#: A recipient address that no longer parses (RFC 3463 X.1.3).
BAD_ADDRESS = Reply(553, "5.1.3", "recipient address is not valid")
#: RFC 8689 §4.2.1, §7: the host (after verified TLS) does not offer REQUIRETLS. Permanent:
#: a server's extensions are its software's, not a passing state.
REQUIRETLS_UNSUPPORTED = Reply(550, "5.7.30", "REQUIRETLS support required")
#: RFC 8689 §4.2.1 steps 2 and 4, 5.7.10 "Encryption needed": no DNSSEC-signed MX answer and no
#: MTA-STS "enforce" policy listing the host (nor a verifying ``[queue.tls_policy]`` entry),
#: so the host cannot be authenticated. Permanent: the domain publishes no such means.
REQUIRETLS_UNAUTHENTICATED = Reply(
    550, "5.7.10", "REQUIRETLS: the host is not authenticated by DNSSEC, DANE or MTA-STS"
)
#: As above, but the domain's MTA-STS policy could not be fetched this time: retried.
REQUIRETLS_POLICY_UNAVAILABLE = Reply(
    451, "4.7.10", "REQUIRETLS: the MTA-STS policy that would authenticate the host is unavailable"
)

#: RFC 5321 §3.1 "554 ... no SMTP service here": a host that refuses service at its greeting,
#: skipped as Postfix's ``smtp_skip_5xx_greeting = yes`` does (``queue.skip_5xx_greeting``).
#: Transient: a 554 banner is as often an overloaded or greylisting front as a refusal, and
#: §4.5.4.1 wants the message kept and retried; the lifetime still ends it (§4.5.4.1 "give up").
GREETING_REFUSED = Reply(451, "4.0.0", "refused service at the greeting")


def skipped_greeting(reply: Reply) -> Reply:
    """The 5xx greeting ``reply`` (RFC 5321 §4.2: 5yz, permanent) as the transient failure of
    one host: the server's words kept after ours, its enhanced code's class turned to 4 (as
    Postfix turns it), X.0.0 when it gave none (RFC 3463 §3.1)."""
    enhanced = "4" + reply.enhanced[1:] if reply.enhanced else GREETING_REFUSED.enhanced
    words = " ".join(reply.lines)
    said = f"{reply.code} {reply.enhanced} {words}" if reply.enhanced else f"{reply.code} {words}"
    return Reply(GREETING_REFUSED.code, enhanced, f"{GREETING_REFUSED.text}: {said}")


#: Replies that end the session rather than answer a recipient: try the next host.
_SESSION_FAILURES = frozenset(
    {R.CONNECTION_LOST, MALFORMED_REPLY, SEND_TIMEOUT, *CLIENT_TIMEOUTS.values()}
)
#: RFC 5321 §4.5.3.1.8: servers must take at least 100 recipients per transaction.
MAX_RECIPIENTS = 100


_TLS_FAILURES = frozenset({TLS_FAILED.enhanced, TLS_UNAVAILABLE.enhanced})


def is_tls_failure(reply: Reply) -> bool:
    """Opening a session failed at STARTTLS: not offered, refused (RFC 3207 §4: 454), or the
    handshake failed (a certificate that does not verify, when one must)."""
    return reply.code == 454 or reply.enhanced in _TLS_FAILURES


def is_over_recipient_limit(reply: Reply) -> bool:
    """RFC 5321 §4.5.3.1.10: the server's limit of recipients per transaction is reached (452,
    RFC 3463 X.5.3 "too many recipients" or no enhanced code); not a verdict on the recipient."""
    return reply.code == 452 and reply.enhanced in (None, "4.5.3")


def is_session_failure(reply: Reply) -> bool:
    """The host failed, not the recipient: 421, a timeout, a lost or garbled connection."""
    return reply.code == 421 or reply in _SESSION_FAILURES


# -- routes ---------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Route:
    """Where one domain's mail goes in this attempt: hosts in order, or why nowhere."""

    domain: str
    hosts: tuple[str, ...]
    port: int
    #: Set when nothing can be tried now: 5xx fails the recipients, 4xx defers them.
    failure: Reply | None = None
    #: The hosts came from a DNSSEC-authenticated MX answer (RFC 7672 §2.2.1 "secure"); never
    #: for a smart host or an address literal (§2.2: DANE does not apply to them).
    secure: bool = False


def mx_route(result: MxResult, *, port: int, myself: str) -> Route:
    """The route an MX lookup gives (see the module notes)."""
    domain = result.domain
    match result.status:
        case MxStatus.NULL_MX:
            return Route(domain, (), port, NULL_MX)
        case MxStatus.NO_DOMAIN:
            return Route(domain, (), port, NO_SUCH_DOMAIN.with_text(f"{domain}: {result.reason}"))
        case MxStatus.TEMPORARY:
            return Route(domain, (), port, DNS_FAILURE.with_text(f"{domain}: {result.reason}"))
    myself = myself.lower().rstrip(".")
    if result.status is MxStatus.FOUND:
        ours = [h.preference for h in result.hosts if h.host == myself]
        hosts = tuple(h.host for h in result.hosts if not ours or h.preference < min(ours))
    else:
        hosts = () if domain == myself else result.targets
    if not hosts:
        return Route(domain, (), port, MX_LOOP.with_text(f"mail for {domain} loops back to me"))
    return Route(domain, hosts, port, secure=result.authentic)


def parse_hostport(
    spec: str, default_port: int, *, key: str = "queue.smarthost"
) -> tuple[str, int]:
    """``host``, ``host:port``, ``[v6]`` or ``[v6]:port``."""
    text = spec.strip()
    host, port_text = text, ""
    if text.startswith("["):
        host, sep, rest = text[1:].partition("]")
        if not sep or (rest and not rest.startswith(":")):
            raise ConfigError(key, f"malformed address {spec!r}")
        port_text = rest[1:]
    elif text.count(":") == 1:
        host, _, port_text = text.partition(":")
    if not host:
        raise ConfigError(key, f"no host in {spec!r}")
    if not port_text:
        return host.lower(), default_port
    if not (port_text.isascii() and port_text.isdigit() and len(port_text) <= 5) or not (
        0 < int(port_text) < 65536
    ):
        raise ConfigError(key, f"bad port in {spec!r}")
    return host.lower(), int(port_text)


def smarthost_route(domain: str, host: str, port: int) -> Route:
    """Everything goes to the relay: no MX lookup, no loop check (the relay routes)."""
    return Route(domain, (host,), port)


# -- jobs and envelopes ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RemoteRecipient:
    id: int
    address: str
    notify: frozenset[str] = frozenset()
    #: ``addr-type;address`` as received in ORCPT, decoded.
    orcpt: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Job:
    """One transaction's worth: one message, some of its recipients at one destination."""

    message_id: int
    #: The reverse-path; ``""`` is the null sender of reports.
    sender: str
    recipients: tuple[RemoteRecipient, ...]
    size: int
    ret: str | None = None
    envid: str | None = None
    #: The header holds UTF-8 (RFC 6532) or an address is non-ASCII: SMTPUTF8 is needed.
    utf8: bool = False
    #: The message has octets above 127 (BODY=8BITMIME when offered, RFC 6152).
    eight_bit: bool = False
    #: The message is tagged REQUIRETLS (RFC 8689 §4.1): the parameter goes on MAIL.
    requiretls: bool = False


def content_flags(raw: bytes) -> tuple[bool, bool]:
    """(the header is non-ASCII, the message is non-ASCII)."""
    if raw.isascii():
        return False, False
    block = scan_header(raw, 0, len(raw))
    return not raw[: block.body_start].isascii(), True


def split_jobs(job: Job, limit: int = MAX_RECIPIENTS) -> Iterator[Job]:
    """The job as transactions of at most ``limit`` recipients each."""
    step = max(1, limit)
    for start in range(0, len(job.recipients), step):
        yield replace(job, recipients=job.recipients[start : start + step])


@dataclass(frozen=True, slots=True)
class Envelope:
    mail: MailFrom
    #: In the order of the job's recipients.
    rcpts: tuple[RcptTo, ...]
    #: The server takes the DSN parameters, and so reports success itself (RFC 3461 §5.2.1).
    dsn: bool


def _orcpt(value: str | None) -> OriginalRecipient | None:
    if value is None:
        return None
    kind, sep, address = value.partition(";")
    return OriginalRecipient(kind.strip(), address.strip()) if sep else None


def envelope(job: Job, offered: Capabilities) -> Envelope | Reply:
    """MAIL and RCPT commands for ``job`` given the server's offer, or the reply failing it."""
    try:
        sender = parse_address(job.sender) if job.sender else None
        addresses = [parse_address(r.address) for r in job.recipients]
    except InvalidName:
        return BAD_ADDRESS
    utf8 = job.utf8 or any(a.needs_smtputf8 for a in addresses)
    utf8 = utf8 or bool(sender and sender.needs_smtputf8)
    if utf8 and Extension.SMTPUTF8 not in offered:
        return SMTPUTF8_UNSUPPORTED
    if Extension.SIZE in offered and offered.size and job.size > offered.size:
        return TOO_BIG
    dsn = Extension.DSN in offered
    requiretls = job.requiretls and Extension.REQUIRETLS in offered
    if job.requiretls and job.sender and not requiretls:
        return REQUIRETLS_UNSUPPORTED  # RFC 8689 §4.2.1 step 5 (the runner checks it first)
    params = MailParams(
        size=job.size if Extension.SIZE in offered else None,
        body=Body.EIGHT_BIT_MIME if job.eight_bit and Extension.EIGHTBITMIME in offered else None,
        smtputf8=utf8,
        ret=Ret(job.ret) if dsn and job.ret in ("FULL", "HDRS") else None,
        envid=job.envid if dsn else None,
        requiretls=requiretls,  # RFC 8689 §4.2.1 last step; §5 for tagged reports
    )
    rcpts = []
    for recipient, address in zip(job.recipients, addresses, strict=True):
        rcpt_params = RcptParams()
        if dsn:
            notify = frozenset(Notify(n) for n in recipient.notify if n in Notify.__members__)
            rcpt_params = RcptParams(notify=notify or None, orcpt=_orcpt(recipient.orcpt))
        rcpts.append(RcptTo(Path(address), rcpt_params))
    return Envelope(MailFrom(Path(sender), params), tuple(rcpts), dsn)


# -- per-attempt bookkeeping ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Answer:
    """The reply that settled one recipient for this attempt, and who gave it."""

    reply: Reply
    #: The host that answered; None when no host did (DNS, no address, refused connections).
    host: str | None
    #: The answering server did not take DSN parameters (a "relayed" report is ours to send).
    relayed: bool = False


@dataclass(slots=True)
class Part:
    """A job being delivered: its recipients' answers so far, host after host."""

    job: Job
    answers: dict[int, Answer] = field(default_factory=dict)
    #: The last session failure (shown for recipients no host answered).
    last_failure: Answer | None = None

    @property
    def open(self) -> tuple[RemoteRecipient, ...]:
        return tuple(r for r in self.job.recipients if r.id not in self.answers)

    @property
    def complete(self) -> bool:
        return not self.open

    def open_job(self) -> Job:
        """The job restricted to the recipients still open."""
        return replace(self.job, recipients=self.open)

    def record(self, recipient_id: int, reply: Reply, host: str | None, *, dsn: bool) -> None:
        """A recipient's reply from ``host``; session failures leave it open."""
        if is_session_failure(reply):
            self.last_failure = Answer(reply, host)
        elif recipient_id not in self.answers:
            self.answers[recipient_id] = Answer(reply, host, relayed=not dsn)

    def fail_session(self, reply: Reply, host: str | None) -> None:
        """The open recipients stay open because of ``reply``: the host could not be used at
        all (connection, greeting, TLS, AUTH), or took no more recipients in a transaction."""
        self.last_failure = Answer(reply, host)

    def settle(self, reply: Reply, host: str | None = None) -> None:
        """Every open recipient gets ``reply`` (a route failure, an envelope refusal)."""
        for recipient in self.open:
            self.answers[recipient.id] = Answer(reply, host)

    def give_up(self) -> None:
        """No host is left: open recipients keep the last failure seen."""
        last = self.last_failure or Answer(NO_ADDRESS, None)
        for recipient in self.open:
            self.answers[recipient.id] = last
