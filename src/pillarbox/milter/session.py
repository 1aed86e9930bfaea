"""One filter connection's client state machine: what to send for each SMTP stage, and what
the filter's replies mean.

Implementation notes (libmilter's ``engine.c`` is the reference):

- ``start()`` gives the negotiation packet; the first reply must be ``O``, asking for no
  action and no protocol step that was not offered. Until then nothing else is sent.
- Each stage method gives the bytes to send (macros, then the command) and says whether a
  reply is due (:attr:`MilterSession.waiting`): a step the filter left out (``NO*``) sends
  nothing, one it will not answer (``NR_*``) sends without waiting. Both count as CONTINUE.
- A reply is due for at most one command at a time; ``p`` (progress) replies only say the
  filter is still working. Edits are accepted only before the final reply to end of message,
  and only those whose action was negotiated; anything else is a protocol error, which the
  caller answers with its configured default action.
- The clock is the caller's: timeouts are :mod:`pillarbox.net.milter`'s.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from pillarbox.milter import protocol as p

#: What a stage's reply is taken as when none is due.
CONTINUED = p.Final(p.Verdict.CONTINUE)


@dataclass(frozen=True, slots=True)
class Outcome:
    """The filter's final reply to one command, with the edits sent before it (end of message
    only)."""

    final: p.Final
    edits: tuple[p.Edit, ...] = ()


class MilterSession:
    """The client side of one connection to one filter."""

    def __init__(self, *, max_packet: int, max_edits: int | None = None) -> None:
        """``max_edits``: bytes of edits one end of message may carry (a replaced body comes
        in any number of packets); None: unbounded."""
        self._framer = p.Framer(max_packet)
        self._max_edits = max_edits
        self._edit_bytes = 0
        self.negotiated: p.Negotiated | None = None
        #: Whether a reply is due for the last command sent.
        self.waiting = False
        self._stage: p.Stage | None = None
        self._edits: list[p.Edit] = []

    def start(self) -> bytes:
        self.waiting = True
        return p.negotiation(p.OFFERED_ACTIONS, p.OFFERED_PROTOCOL)

    @property
    def leading_space(self) -> bool:
        """Header values are passed with the blank after the colon (``SMFIP_HDR_LEADSPC``)."""
        return self._has(p.ProtocolFlag.HDR_LEADSPC)

    @property
    def may_skip(self) -> bool:
        """The filter may answer a body chunk with ``s`` (``SMFIP_SKIP``)."""
        return self._has(p.ProtocolFlag.SKIP)

    def _has(self, flag: p.ProtocolFlag) -> bool:
        return self.negotiated is not None and bool(self.negotiated.protocol & flag)

    def wants(self, stage: p.Stage) -> bool:
        """Whether the filter asked for this stage's command at all."""
        return not self._has(stage.left_out)

    def command(
        self, stage: p.Stage, data: bytes = b"", macros: Sequence[tuple[str, str]] = ()
    ) -> bytes:
        """The bytes of ``stage``'s command (with its macros first); b"" for a stage the filter
        left out."""
        if self.negotiated is None or self.waiting:
            raise p.MilterProtocolError("command before the previous one was answered")
        if not self.wants(stage):
            return b""
        self._stage = stage
        self._edits = []
        self._edit_bytes = 0
        self.waiting = not self._has(stage.unanswered)
        out = p.macros(stage, macros) if macros else b""
        return out + p.packet(stage.command, data)

    def abort(self) -> bytes:
        """``A``: the message this filter saw part of is not going on (never answered)."""
        self._stage = None
        return p.packet(p.ABORT)

    def quit(self) -> bytes:
        return p.packet(p.QUIT)

    def receive(self, data: bytes) -> list[Outcome | p.Negotiated | None]:
        """Replies in ``data``: the negotiation's result, a stage's :class:`Outcome`, or None for
        each progress packet (its only meaning: the filter is alive, restart the timer)."""
        results: list[Outcome | p.Negotiated | None] = []
        for code, body in self._framer.feed(data):
            if not self.waiting:
                raise p.MilterProtocolError(f"reply {code!r} with none due")
            answer = p.decode(code, body)
            if answer is None:
                results.append(None)
            elif self.negotiated is None:
                results.append(self._negotiation(answer))
            elif isinstance(answer, p.Final):
                results.append(self._final(answer))
            elif isinstance(answer, p.Negotiated):
                raise p.MilterProtocolError("negotiation reply after negotiation")
            else:
                self._edit(code, answer)
        return results

    def _negotiation(self, answer: p.Answer) -> p.Negotiated:
        if not isinstance(answer, p.Negotiated):
            raise p.MilterProtocolError("the first reply is not the negotiation's")
        if answer.version < 2:
            raise p.MilterProtocolError(f"protocol version {answer.version}")
        # As ints: an IntFlag's ~ keeps only its named bits, and every action is offered, so
        # ~OFFERED_ACTIONS would be 0 and an unknown bit (0x200 and up) would pass.
        unoffered = int(answer.actions) & ~int(p.OFFERED_ACTIONS)
        if unoffered or int(answer.protocol) & ~int(p.OFFERED_PROTOCOL):
            raise p.MilterProtocolError(
                f"asked for what was not offered: actions {answer.actions:#x}, "
                f"protocol {answer.protocol:#x}"
            )
        self.negotiated = answer
        self.waiting = False
        return answer

    def _final(self, final: p.Final) -> Outcome:
        stage = self._stage
        verdict = final.verdict
        if verdict is p.Verdict.SKIP and not (stage is p.Stage.BODY and self.may_skip):
            raise p.MilterProtocolError("skip outside the body")
        if verdict is p.Verdict.DISCARD and stage in (p.Stage.CONNECT, p.Stage.HELO):
            raise p.MilterProtocolError("discard before a message")  # libmilter refuses it too
        if verdict is p.Verdict.REPLYCODE and final.reply[:1] not in (b"4", b"5"):
            raise p.MilterProtocolError(f"reply code {final.reply[:3]!r} is not 4xx or 5xx")
        self.waiting = False
        edits, self._edits = tuple(self._edits), []
        return Outcome(final, edits)

    def _edit(self, code: bytes, edit: p.Edit) -> None:
        assert self.negotiated is not None
        if self._stage is not p.Stage.EOM:
            raise p.MilterProtocolError(f"edit {code!r} before end of message")
        if not self.negotiated.actions & p.EDIT_ACTIONS[code]:
            raise p.MilterProtocolError(f"edit {code!r} without its action negotiated")
        self._edit_bytes += p.edit_size(edit)
        if self._max_edits is not None and self._edit_bytes > self._max_edits:
            raise p.MilterProtocolError(f"edits of over {self._max_edits} bytes")
        self._edits.append(edit)
