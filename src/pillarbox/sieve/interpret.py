"""Running a compiled script on one message (RFC 5228 §2.10): tests, actions, the implicit
keep and its cancellation, duplicate actions, limits and runtime errors.

Invariants:

- The implicit keep (§2.10.2) is cancelled by discard, keep, and fileinto/redirect without
  :copy (RFC 3894 §3); vacation leaves it on (RFC 5230 §4.7). It uses the current flags of
  the internal variable (RFC 5232 §5).
- Duplicates collapse (§2.10.3): one Keep, one FileInto per mailbox, one Redirect per
  address; their flags are united.
- A runtime error (§2.10.6) — more actions or redirects than the limits allow, a second
  vacation (RFC 5230 §4.7) — drops every action and leaves only the implicit keep, without
  flags: a failing script never loses the message.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from pillarbox.sieve.actions import Action, Discard, FileInto, Keep, Outcome, Redirect, Vacation
from pillarbox.sieve.errors import SieveRuntimeError
from pillarbox.sieve.match import matches_any
from pillarbox.sieve.message import SieveMessage
from pillarbox.sieve.program import Node
from pillarbox.sieve.validate import sieve_address

#: RFC 5233 §4: the separator of user and detail; the same as Pillarbox's routing uses
#: (``pillarbox.queue.routing.PLUS_DELIMITER``, held equal by a test).
SUBADDRESS_SEPARATOR = "+"
#: RFC 3501 §2.3.2 system flags a script may set (\\Recent is the server's alone).
SYSTEM_FLAGS = {f.lower(): f for f in ("\\Seen", "\\Answered", "\\Flagged", "\\Deleted", "\\Draft")}
_ATOM_SPECIALS = frozenset('(){ %*"\\]')


@dataclass(frozen=True, slots=True)
class RunLimits:
    """Execution limits (RFC 5228 §2.10.4, §2.10.7), from the ``[sieve]`` config section."""

    max_actions: int = 32
    max_redirects: int = 4


class _Stop(Exception):
    """The ``stop`` command (RFC 5228 §3.3)."""


def run(
    nodes: Sequence[Node], requires: frozenset[str], message: SieveMessage, limits: RunLimits
) -> Outcome:
    state = _Run(message, requires, limits)
    try:
        state.block(nodes)
    except _Stop:
        pass
    except SieveRuntimeError as exc:
        return Outcome((Keep(),), error=str(exc))
    return state.outcome()


def _flag_list(values: Sequence[str]) -> list[str]:
    """RFC 5232 §3: each string holds flags separated by spaces; invalid flags are dropped,
    duplicates (compared without case, RFC 3501 §2.3.2) kept once."""
    out: dict[str, str] = {}
    for value in values:
        for flag in value.split():
            if flag.startswith("\\"):
                canonical = SYSTEM_FLAGS.get(flag.lower())
                if canonical is not None:
                    out.setdefault(canonical.lower(), canonical)
            elif not any(c in _ATOM_SPECIALS or ord(c) < 0x21 or ord(c) > 0x7E for c in flag):
                out.setdefault(flag.lower(), flag)
    return list(out.values())


def _united(a: tuple[str, ...], b: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(_flag_list([*a, *b]))


class _Run:
    def __init__(self, message: SieveMessage, requires: frozenset[str], limits: RunLimits) -> None:
        self.message = message
        self.requires = requires
        self.limits = limits
        self.flags: list[str] = []
        self.actions: list[Action] = []
        self.implicit_keep = True
        self.discarded = False
        self.redirects = 0
        self.bodies: dict[tuple[str, tuple[str, ...]], tuple[str, ...]] = {}

    def outcome(self) -> Outcome:
        if self.implicit_keep:
            self.add(Keep(tuple(self.flags)))
        actions = self.actions
        if self.discarded and not any(isinstance(a, Keep | FileInto) for a in actions):
            actions = [*actions, Discard()]
        return Outcome(tuple(actions))

    # -- commands ----------------------------------------------------------------------------
    def block(self, nodes: Sequence[Node]) -> None:
        for node in nodes:
            self.command(node)

    def command(self, node: Node) -> None:
        name = node.name
        if name == "if":
            for test, block in node.branches:
                if test is None or self.test(test):
                    self.block(block)
                    return
        elif name == "stop":
            raise _Stop
        elif name == "keep":
            self.implicit_keep = False
            self.add(Keep(self.action_flags(node)))
        elif name == "discard":
            self.implicit_keep = False
            self.discarded = True
        elif name == "fileinto":
            copy = "copy" in node.tags
            self.implicit_keep = self.implicit_keep and copy
            self.add(FileInto(node.string(0), self.action_flags(node), copy))
        elif name == "redirect":
            copy = "copy" in node.tags
            self.implicit_keep = self.implicit_keep and copy
            self.add(Redirect(sieve_address(node.string(0)), copy))
        elif name == "setflag":
            self.flags = _flag_list(node.strings(0))
        elif name == "addflag":
            self.flags = _flag_list([*self.flags, *node.strings(0)])
        elif name == "removeflag":
            gone = {f.lower() for f in _flag_list(node.strings(0))}
            self.flags = [f for f in self.flags if f.lower() not in gone]
        elif name == "vacation":
            if any(isinstance(a, Vacation) for a in self.actions):
                raise SieveRuntimeError("vacation executed twice (RFC 5230 §4.7)")
            self.add(_vacation(node))
        else:  # pragma: no cover - validate admits nothing else
            raise AssertionError(name)

    def action_flags(self, node: Node) -> tuple[str, ...]:
        given = node.tag_strings("flags")
        if given is not None:
            return tuple(_flag_list(given))
        return tuple(self.flags)

    def add(self, action: Action) -> None:
        """Append ``action``, or merge it into the same earlier one (RFC 5228 §2.10.3)."""
        for index, earlier in enumerate(self.actions):
            if isinstance(action, Keep) and isinstance(earlier, Keep):
                self.actions[index] = Keep(_united(earlier.flags, action.flags))
                return
            if (
                isinstance(action, FileInto)
                and isinstance(earlier, FileInto)
                and earlier.mailbox == action.mailbox
            ):
                flags = _united(earlier.flags, action.flags)
                self.actions[index] = FileInto(action.mailbox, flags, earlier.copy and action.copy)
                return
            if (
                isinstance(action, Redirect)
                and isinstance(earlier, Redirect)
                and earlier.address == action.address
            ):
                self.actions[index] = Redirect(action.address, earlier.copy and action.copy)
                return
        if len(self.actions) >= self.limits.max_actions:
            raise SieveRuntimeError(f"more than {self.limits.max_actions} actions")
        if isinstance(action, Redirect):
            self.redirects += 1
            if self.redirects > self.limits.max_redirects:
                raise SieveRuntimeError(f"more than {self.limits.max_redirects} redirects")
        self.actions.append(action)

    # -- tests -------------------------------------------------------------------------------
    def test(self, node: Node) -> bool:
        name = node.name
        message = self.message
        if name == "true":
            return True
        if name == "false":
            return False
        if name == "not":
            return not self.test(node.tests[0])
        if name == "allof":
            return all(self.test(t) for t in node.tests)
        if name == "anyof":
            return any(self.test(t) for t in node.tests)
        if name == "exists":
            return all(message.exists(h) for h in node.strings(0))
        if name == "size":
            over = node.tag_number("over")
            if over is not None:
                return message.size > over
            under = node.tag_number("under")
            assert under is not None
            return message.size < under
        if name == "header":
            values = (v for h in node.strings(0) for v in message.header_values(h))
            return matches_any(node.match, values, node.strings(1))
        if name == "address":
            pairs = (a for h in node.strings(0) for a in message.addresses(h))
            return matches_any(node.match, _parts(node, pairs), node.strings(1))
        if name == "envelope":
            return matches_any(node.match, self.envelope_values(node), node.strings(1))
        if name == "hasflag":
            keys = [f for k in node.strings(0) for f in k.split()]
            return matches_any(node.match, self.flags, keys)
        if name == "body":
            content = node.tag_strings("content")
            transform = "raw" if "raw" in node.tags else "content" if content else "text"
            key = (transform, content or ())
            texts = self.bodies.get(key)
            if texts is None:  # decoded once per run, however many body tests read it
                texts = self.bodies[key] = tuple(message.body_texts(*key))
            return matches_any(node.match, texts, node.strings(0))
        raise AssertionError(name)  # pragma: no cover - validate admits nothing else

    def envelope_values(self, node: Node) -> Iterator[str]:
        for part in node.strings(0):
            address = (
                self.message.envelope_from if part.lower() == "from" else self.message.envelope_to
            )
            if not address:
                # RFC 5228 §5.4: the null reverse-path is "" whatever the address part.
                yield ""
                continue
            local, _, domain = address.rpartition("@")
            yield from _parts(node, iter([(local, domain)]))


def _parts(node: Node, pairs: Iterator[tuple[str, str]]) -> Iterator[str]:
    """The ADDRESS-PART of each (local, domain) pair (RFC 5228 §2.7.4, RFC 5233 §4)."""
    part = node.match.address_part
    for local, domain in pairs:
        if part == "all":
            yield f"{local}@{domain}"
        elif part == "localpart":
            yield local
        elif part == "domain":
            yield domain
        elif part == "user":
            yield local.partition(SUBADDRESS_SEPARATOR)[0]
        elif SUBADDRESS_SEPARATOR in local:  # :detail; without a separator nothing matches
            yield local.partition(SUBADDRESS_SEPARATOR)[2]


def _vacation(node: Node) -> Vacation:
    reason = node.string(0)
    subject = node.tag_strings("subject")
    sender = node.tag_strings("from")
    handle = node.tag_strings("handle")
    mime = "mime" in node.tags
    if handle is None:
        # RFC 5230 §4.2: without :handle, replies are told apart by their parameters —
        # hashed as counted strings so that one value cannot pose as another.
        digest = hashlib.sha256()
        for part in (reason, subject[0] if subject else "", sender[0] if sender else "", str(mime)):
            data = part.encode("utf-8", "surrogatepass")
            digest.update(len(data).to_bytes(8, "big") + data)
        handle_text = "auto:" + digest.hexdigest()[:32]
    else:
        handle_text = handle[0]
    return Vacation(
        reason=reason,
        handle=handle_text,
        subject=subject[0] if subject else None,
        from_=sender[0] if sender else None,
        addresses=node.tag_strings("addresses") or (),
        days=node.tag_number("days"),
        mime=mime,
    )
