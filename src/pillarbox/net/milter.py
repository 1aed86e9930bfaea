"""External mail filters consulted during an SMTP session (``[milter]``, docs/milter.md).

Implementation notes:

- One connection per filter per SMTP session, opened when the client connects (Postfix and
  Sendmail do the same), negotiated, and closed with ``Q`` when the session ends. The filters
  are asked in the order configured; the first that does not CONTINUE decides.
- Each stage is asked only after this server's own checks passed it: a filter sees the
  recipients we accepted, never those we refused (``SMFIP_RCPT_REJ`` is not offered).
- DATA, the header fields, end of header, the body (in chunks of 65,535 bytes) and end of
  message are sent when the message has arrived whole. Each filter sees the message as the
  filters before it left it.
- A filter that cannot be reached, times out or breaks the protocol is answered with
  ``milter.default_action`` at that stage and at every later one of the session (Postfix's
  behaviour): 451 4.3.0, 550 5.7.1, or on without it.
- ACCEPT ends a filter's part in the message (at CONNECT or HELO: in the session); DISCARD
  drops the message after a 250 (the filter's decision, logged at WARNING); a REJECT at RCPT
  refuses that recipient only. Timers: ``connect_timeout`` for connecting and negotiating,
  ``command_timeout`` per step before DATA, ``content_timeout`` per piece of the message;
  a progress reply restarts the timer.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from pillarbox.config import MilterSection
from pillarbox.milter import edits
from pillarbox.milter import protocol as p
from pillarbox.milter.address import FilterAddress, parse_filter_address
from pillarbox.milter.session import CONTINUED, MilterSession, Outcome
from pillarbox.observability.log import Log
from pillarbox.smtp import replies
from pillarbox.smtp.grammar import MailFrom, RcptTo
from pillarbox.smtp.replies import Reply

_FAILURES = (OSError, TimeoutError, p.MilterProtocolError)
_REPLY_LINE = re.compile(
    rb"([45][0-9][0-9])(?:[ -]([45]\.[0-9]{1,3}\.[0-9]{1,3})(?= |$))?[ -]?(.*)"
)
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_CONTINUE = Outcome(CONTINUED)


class _Filter:
    """One filter's connection for one SMTP session."""

    def __init__(
        self, address: FilterAddress, section: MilterSection, max_message: int, log: Log
    ) -> None:
        self.address = address
        self._section = section
        self.log = log
        # A changed message may be at most twice the largest we take: a new body, and the
        # fields and envelope a filter adds beside it.
        self.session = MilterSession(max_packet=section.max_reply_size, max_edits=2 * max_message)
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        #: Broken: every later stage gets the default action.
        self.failed = False
        #: Done with the session (ACCEPT at CONNECT or HELO).
        self.accepted_session = False
        #: Done with the current message (ACCEPT or DISCARD, or a refusal).
        self.done_with_message = False
        #: MAIL was sent and neither end of message nor ABORT since.
        self.in_message = False

    async def open(self) -> None:
        async with asyncio.timeout(self._section.connect_timeout):
            if self.address.path:
                reader, writer = await asyncio.open_unix_connection(self.address.path)
            else:
                reader, writer = await asyncio.open_connection(self.address.host, self.address.port)
            self._reader, self._writer = reader, writer
            await self._exchange(self.session.start())

    async def call(
        self,
        stage: p.Stage,
        data: bytes = b"",
        macros: Sequence[tuple[str, str]] = (),
        *,
        content: bool = False,
    ) -> Outcome:
        out = self.session.command(stage, data, macros)
        if not out:
            return _CONTINUE
        timeout = self._section.content_timeout if content else self._section.command_timeout
        async with asyncio.timeout(timeout) as timer:
            result = await self._exchange(out, timer, timeout)
        assert isinstance(result, Outcome)
        return result

    async def _exchange(
        self, out: bytes, timer: asyncio.Timeout | None = None, timeout: float = 0.0
    ) -> Outcome | p.Negotiated:
        assert self._reader is not None and self._writer is not None
        self._writer.write(out)
        await self._writer.drain()
        loop = asyncio.get_running_loop()
        while self.session.waiting:
            data = await self._reader.read(65536)
            if not data:
                raise p.MilterProtocolError("the filter closed the connection")
            for result in self.session.receive(data):
                if result is None:
                    if timer is not None:
                        timer.reschedule(loop.time() + timeout)  # progress: still working
                    continue
                return result
        return _CONTINUE

    async def send(self, out: bytes) -> None:
        """A packet that is never answered (ABORT, QUIT)."""
        if self._writer is not None and not self.failed:
            self._writer.write(out)
            async with asyncio.timeout(self._section.command_timeout):
                await self._writer.drain()

    def close(self) -> None:
        """Close the connection; not waited for (the transport flushes what is left), so a
        stuck filter cannot hold the session's end, or the server's shutdown."""
        writer, self._writer = self._writer, None
        if writer is not None:
            writer.close()


@dataclass(slots=True)
class Filtered:
    """What the filters made of a message at its end."""

    message: bytes
    #: A refusal for the whole message.
    reply: Reply | None = None
    #: Accept with 250 and drop (a filter's DISCARD).
    discard: bool = False
    #: A filter's reason to put the message in Junk (``q``).
    quarantine: str | None = None
    #: A filter's new envelope sender (``e``), without angle brackets; "" is the null sender.
    sender: str | None = None
    added: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)


def bare(address: str) -> str:
    """An address as filters write it (``<a@b>`` or ``a@b``) without the angle brackets."""
    address = address.strip()
    if address.startswith("<") and address.endswith(">"):
        return address[1:-1]
    return address


def filter_reply(final: p.Final) -> Reply:
    """The SMTP reply for a filter's REJECT, TEMPFAIL or own reply (``y``)."""
    if final.verdict is p.Verdict.REJECT:
        return replies.FILTER_REJECTED
    if final.verdict is not p.Verdict.REPLYCODE:
        return replies.FILTER_TEMPFAIL
    fallback = replies.FILTER_REJECTED if final.reply[:1] == b"5" else replies.FILTER_TEMPFAIL
    lines = final.reply.replace(b"\r\n", b"\n").rstrip(b"\n").split(b"\n")
    matches = [_REPLY_LINE.fullmatch(line) for line in lines]
    if not all(matches):
        return fallback
    first = matches[0]
    assert first is not None
    code = int(first.group(1))
    enhanced = first.group(2)
    texts = [_CONTROL.sub("", m.group(3).decode("utf-8", "replace")).strip() for m in matches if m]
    text = "\n".join(texts) if any(texts) else fallback.text
    try:
        return Reply(code, enhanced.decode() if enhanced else None, text)
    except ValueError:
        return Reply(code, None, text)  # an enhanced code whose class is not the reply's


class Filters:
    """The filters of one SMTP session, in their configured order."""

    def __init__(
        self,
        addresses: Sequence[str],
        section: MilterSection,
        listener: str,
        log: Log,
        *,
        max_message: int,
    ) -> None:
        """``max_message``: ``smtp.max_message_size``, which bounds the filters' edits."""
        self._section = section
        self._listener = listener
        self._filters = [
            _Filter(parse_filter_address(text), section, max_message, log.bind(filter=text))
            for text in addresses
        ]
        #: A filter discarded the current message.
        self._discard = False

    def _failure(self, f: _Filter, exc: BaseException) -> Reply | None:
        """Log a filter's failure, mark it, and give the default action's reply."""
        if not f.failed:
            f.log.warning("mail filter failed", error=str(exc) or type(exc).__name__)
        f.failed = True
        return self._default()

    def _default(self) -> Reply | None:
        action = self._section.default_action
        if action == "accept":
            return None
        return replies.FILTER_UNAVAILABLE if action == "tempfail" else replies.FILTER_FAILED_REJECT

    def _asked(self, *, message: bool) -> list[_Filter]:
        return [
            f
            for f in self._filters
            if not f.accepted_session and not (message and f.done_with_message)
        ]

    async def _stage(
        self,
        stage: p.Stage,
        data: bytes,
        macros: Sequence[tuple[str, str]],
        *,
        message: bool,
    ) -> Reply | None:
        """Ask every filter still in on ``stage``; the first refusal, or None."""
        for f in self._asked(message=message):
            if f.failed:
                reply = self._default()
                if reply is not None:
                    return reply
                continue
            try:
                outcome = await f.call(stage, data, macros)
            except _FAILURES as exc:
                reply = self._failure(f, exc)
                if reply is not None:
                    return reply
                continue
            reply = self._decide(f, outcome, stage)
            if reply is not None:
                return reply
        return None

    def _decide(self, f: _Filter, outcome: Outcome, stage: p.Stage) -> Reply | None:
        verdict = outcome.final.verdict
        if verdict is p.Verdict.CONTINUE:
            return None
        if verdict is p.Verdict.ACCEPT:
            if stage in (p.Stage.CONNECT, p.Stage.HELO):
                f.accepted_session = True
            else:
                f.done_with_message = True
            return None
        if verdict is p.Verdict.DISCARD:
            f.log.warning("mail filter discards the message", stage=stage.name)
            self._discard = True
            f.done_with_message = True
            return None
        if verdict in (p.Verdict.CONN_FAIL, p.Verdict.SHUTDOWN):
            f.log.warning("mail filter ended its session", verdict=verdict.name)
            f.failed = True
        reply = filter_reply(outcome.final)
        f.log.info("mail filter refused", stage=stage.name, code=reply.code)
        return reply

    async def connect(self, client_ip: str, client_port: int, hostname: str) -> Reply | None:
        """Open each filter and pass it the client: a refusal of the session, or None."""
        for f in self._filters:
            try:
                await f.open()
            except _FAILURES as exc:
                self._failure(f, exc)
        macros = [
            ("j", hostname),
            ("daemon_name", self._listener),
            ("client_addr", client_ip),
            ("client_port", str(client_port)),
            ("v", "Pillarbox"),
        ]
        name = f"[{client_ip}]"
        return await self._stage(
            p.Stage.CONNECT, p.connect_data(name, client_ip, client_port), macros, message=False
        )

    async def helo(self, name: str, tls: tuple[str, str] | None) -> Reply | None:
        macros = [] if tls is None else [("tls_version", tls[0]), ("cipher", tls[1])]
        return await self._stage(p.Stage.HELO, p.c_string(name), macros, message=False)

    async def mail(self, mail: MailFrom, authenticated: str | None) -> Reply | None:
        """A new message begins: filters still in a previous one get ABORT first."""
        for f in self._filters:
            if f.in_message:
                f.in_message = False
                try:
                    await f.send(f.session.abort())
                except _FAILURES as exc:
                    self._failure(f, exc)
            f.done_with_message = False
        self._discard = False
        args = [f"<{mail.path.mailbox or ''}>"]
        params = mail.params
        if params.size is not None:
            args.append(f"SIZE={params.size}")
        if params.body is not None:
            args.append(f"BODY={params.body.value}")
        if params.smtputf8:
            args.append("SMTPUTF8")
        if params.requiretls:
            args.append("REQUIRETLS")
        macros = [("mail_addr", str(mail.path.mailbox or ""))]
        if authenticated is not None:
            macros.append(("auth_authen", authenticated))
        for f in self._asked(message=True):
            f.in_message = not f.failed
        return await self._stage(p.Stage.MAIL, p.arguments(args), macros, message=True)

    async def rcpt(self, rcpt: RcptTo) -> Reply | None:
        address = str(rcpt.path.mailbox or "")
        return await self._stage(
            p.Stage.RCPT, p.arguments([f"<{address}>"]), [("rcpt_addr", address)], message=True
        )

    async def message(self, raw: bytes) -> Filtered:
        """Pass the message to each filter still in; what they decided and changed."""
        result = Filtered(raw)
        for f in self._asked(message=True):
            if f.failed:
                result.reply = self._default()
                if result.reply is not None:
                    return result
                continue
            try:
                outcome = await self._content(f, result.message)
            except _FAILURES as exc:
                result.reply = self._failure(f, exc)
                if result.reply is not None:
                    return result
                continue
            finally:
                f.in_message = False
            if outcome is None:
                continue  # the filter stopped before end of message: done with it
            stage, reached = outcome
            result.reply = self._decide(f, reached, stage)
            if result.reply is not None:
                return result
            if stage is p.Stage.EOM:
                try:
                    self._edit(f, reached.edits, result)
                except p.MilterProtocolError as exc:
                    result.reply = self._failure(f, exc)
                    if result.reply is not None:
                        return result
        result.discard = self._discard
        return result

    async def _content(self, f: _Filter, raw: bytes) -> tuple[p.Stage, Outcome] | None:
        """DATA to end of message for one filter: the stage that ended it and its outcome
        (None: the filter accepted or discarded before the end)."""
        fields, body = edits.split(raw)
        space = f.session.leading_space
        steps: list[tuple[p.Stage, bytes]] = [(p.Stage.DATA, b"")]
        if f.session.wants(p.Stage.HEADER):
            for header in fields:
                name, value = edits.name_value(header, space)
                steps.append((p.Stage.HEADER, p.c_string(name) + p.c_string(value)))
        steps.append((p.Stage.EOH, b""))
        for stage, data in steps:
            outcome = await f.call(stage, data, content=True)
            if outcome.final.verdict is not p.Verdict.CONTINUE:
                return stage, outcome
        if f.session.wants(p.Stage.BODY):
            for start in range(0, len(body), p.BODY_CHUNK):
                chunk = body[start : start + p.BODY_CHUNK]
                outcome = await f.call(p.Stage.BODY, chunk, content=True)
                if outcome.final.verdict is p.Verdict.SKIP:
                    break
                if outcome.final.verdict is not p.Verdict.CONTINUE:
                    return p.Stage.BODY, outcome
        return p.Stage.EOM, await f.call(p.Stage.EOM, content=True)

    @staticmethod
    def _edit(f: _Filter, changes: Sequence[p.Edit], result: Filtered) -> None:
        content = [
            e
            for e in changes
            if isinstance(e, p.AddHeader | p.InsertHeader | p.ChangeHeader | p.ReplaceBody)
        ]
        if content:
            result.message = edits.apply(result.message, content, f.session.leading_space)
        for change in changes:
            match change:
                case p.ChangeFrom(address=address):
                    result.sender = bare(address)
                case p.AddRecipient(address=address):
                    result.added.append(bare(address))
                case p.DeleteRecipient(address=address):
                    result.removed.append(bare(address))
                case p.Quarantine(reason=reason):
                    result.quarantine = reason or "quarantined by a mail filter"
        if changes:
            f.log.info("mail filter changed the message", changes=len(changes))

    async def close(self) -> None:
        """End every filter's session (ABORT first if a message was left open)."""
        for f in self._filters:
            try:
                if f.in_message:
                    await f.send(f.session.abort())
                await f.send(f.session.quit())
            except _FAILURES:
                pass  # the session is over either way
            f.close()
