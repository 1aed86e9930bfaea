"""Running a compiled script on one message (RFC 5228 §2.10): tests, actions, the implicit
keep and its cancellation, duplicate actions, limits and runtime errors.

Invariants:

- The implicit keep (§2.10.2) is cancelled by discard, keep, and fileinto/redirect without
  :copy (RFC 3894 §3); vacation leaves it on (RFC 5230 §4.7). It uses the current flags of
  the internal variable (RFC 5232 §5).
- Duplicates collapse (§2.10.3): one Keep, one FileInto per mailbox, one Redirect per
  address; their flags are united.
- A runtime error (§2.10.6) — more actions or redirects than the limits allow, a second
  vacation (RFC 5230 §4.7), an invalid address made of variables, a second reject or a reject
  with an action that delivers or answers the message (RFC 5429 §2.1: with vacation MUST be
  refused, with keep/fileinto/redirect NOT RECOMMENDED; Pigeonhole refuses both) — drops
  every action and leaves only the implicit keep, without flags: a failing script never
  loses the message.
- With "variables" (RFC 5229) every string a command or test reads goes through
  :meth:`_Run.text` — except ``set``'s name, comparator names and relational operators, which
  stay as compiled. Match variables change only when a :matches or :regex test succeeds
  (§3.2, draft-ietf-sieve-regex-01); ``body`` sets none (as in Pigeonhole). A :regex
  pattern made of variables that is not a valid one is a runtime error.
- ``notify`` (RFC 5435) never touches the implicit keep and goes with every action, reject
  included (§7); each address is notified once per run (a later notify skips it); a method,
  :importance, option or :from made of variables that is not valid is a runtime error
  (§3.2), as are more recipients than ``max_notify_recipients`` in one notify or
  ``max_notifications`` in the run (§8). The metadata tests (RFC 5490 §3.3–§3.6) read only
  what delivery put in the message view.
- ``include`` (RFC 6609) runs another compiled script in place, with its own local variables,
  match variables and imap4flags internal variable (as Pigeonhole: an included script's
  ``addflag`` does not flag its includer's keep); the variables it declares ``global`` (or
  names ``global.x``) are one store for every script of the run; actions and the implicit
  keep are the run's.
  The core fetches nothing: delivery resolves the targets beforehand (``includes``: None for
  a script that does not exist, a :class:`SieveError` for one that does not compile, absent
  past ``max_includes``). Missing (without :optional), broken, looping (§3.2), too deep or
  too many includes are runtime errors when the include runs. ``return`` ends the included
  script (at the top, the run, §3.3); ``stop`` ends the run.
- ``duplicate`` (RFC 7352) answers from the keys delivery read (``SieveMessage.duplicates``);
  a test of a key seen earlier in the same run gets that test's answer. The keys to record
  (new ones, and seen ones under :last, §3.3) are the outcome's only when the run finishes
  (§3.1): a failed run records none. A :header the message lacks is false and records
  nothing (§3.1).
- ``error`` (RFC 5463 §5) is a runtime error with the script's message; ``ihave`` (§4) is
  true when every capability named is one we have.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timezone
from typing import TypeVar

from pillarbox.errors import InvalidName
from pillarbox.mail.headers import HeaderField
from pillarbox.sieve import dates, duplicate, editheader, notify, spamtest, variables
from pillarbox.sieve.actions import (
    Action,
    Discard,
    Fcc,
    FileInto,
    Keep,
    Notify,
    Outcome,
    Redirect,
    Reject,
    Vacation,
)
from pillarbox.sieve.errors import SieveError, SieveRuntimeError
from pillarbox.sieve.match import first_captures, fold, matches_any
from pillarbox.sieve.message import MAX_FIELDS, SieveMessage, field_value
from pillarbox.sieve.program import Compiled, IncludeKey, Node
from pillarbox.sieve.regex import DEFAULT_LIMITS as DEFAULT_REGEX_LIMITS
from pillarbox.sieve.regex import RegexLimits
from pillarbox.sieve.validate import ENVELOPE_PARTS, SPECIAL_USE, ihave, sieve_address

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
    #: Octets of UTF-8 a variable (or an expanded string) holds at most (RFC 5229 §6).
    max_variable_size: int = 4096
    #: Includes nested deeper than this, and more distinct included scripts than
    #: ``max_includes``, are runtime errors (RFC 6609 §3.2; Pigeonhole's defaults).
    max_include_depth: int = 10
    max_includes: int = 255
    #: Octets an ``addheader`` field may take (RFC 5293; Pigeonhole's default).
    max_header_size: int = 2048
    #: Recipients one ``notify`` may name, and all notifies of a run may reach (RFC 5435
    #: §8: an administrator MUST be able to limit notify); more is a runtime error.
    max_notify_recipients: int = 8
    max_notifications: int = 16
    #: What one :regex pattern may cost (draft-ietf-sieve-regex-01; the compile-time check
    #: covers constant patterns, this one those made of variables).
    regex: RegexLimits = DEFAULT_REGEX_LIMITS


#: What delivery found for each include target: the script, its compile error, or None.
Includes = Mapping[IncludeKey, "Compiled | SieveError | None"]


class _Stop(Exception):
    """The ``stop`` command (RFC 5228 §3.3)."""


class _Return(Exception):
    """The ``return`` command (RFC 6609 §3.3)."""


class _Scope(Mapping[str, str]):
    """One script's variables (RFC 5229 §3, names folded): its own, and the run's global ones
    for the names it declared ``global`` and for ``global.name`` (RFC 6609 §3.4, §3.5)."""

    __slots__ = ("declared", "globals", "locals")

    def __init__(self, globals_: dict[str, str]) -> None:
        self.locals: dict[str, str] = {}
        self.globals = globals_
        self.declared: set[str] = set()

    def _where(self, key: str) -> tuple[dict[str, str], str]:
        if key.startswith("global."):
            return self.globals, key[7:]
        return (self.globals if key in self.declared else self.locals), key

    def __getitem__(self, key: str) -> str:
        where, name = self._where(key)
        return where[name]

    def __setitem__(self, key: str, value: str) -> None:
        where, name = self._where(key)
        where[name] = value

    def __iter__(self) -> Iterator[str]:
        return iter(self.locals)

    def __len__(self) -> int:
        return len(self.locals)


def run(
    nodes: Sequence[Node],
    requires: frozenset[str],
    message: SieveMessage,
    limits: RunLimits,
    now: datetime | None = None,
    includes: Includes | None = None,
    name: str | None = None,
) -> Outcome:
    """``now`` (aware) is the time ``currentdate`` sees and its zone the local one ``date``
    converts to (RFC 5260 §4.1); without it, currentdate holds for nothing and dates are
    shown in UTC. ``includes`` are the scripts ``include`` may run (module notes), ``name``
    the personal name of this one (an include of it is a loop)."""
    state = _Run(message, requires, limits, now, includes or {})
    state.stack.append(("personal", name) if name is not None else ("", ""))
    try:
        state.block(nodes)
    except (_Stop, _Return):
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
    def __init__(
        self,
        message: SieveMessage,
        requires: frozenset[str],
        limits: RunLimits,
        now: datetime | None,
        includes: Includes,
    ) -> None:
        self.message = message
        #: The fields as scanned, and whether addheader/deleteheader changed them (RFC 5293).
        self.original_fields = message.fields
        self.edited = False
        self.now = now
        offset = None if now is None else now.utcoffset()
        self.local_zone = UTC if offset is None else timezone(offset)
        self.requires = requires
        self.limits = limits
        self.flags: list[str] = []
        self.actions: list[Action] = []
        self.implicit_keep = True
        self.discarded = False
        self.redirects = 0
        #: The addresses notified so far (a later notify skips them, RFC 5435 §7).
        self.notified: set[str] = set()
        self.bodies: dict[tuple[str, tuple[str, ...]], tuple[str, ...]] = {}
        self.expanding = "variables" in requires
        self.includes = includes
        every = [requires]
        every += [s.requires for s in includes.values() if s and not isinstance(s, SieveError)]
        self.rejecting = any("reject" in r or "ereject" in r for r in every)
        self.globals: dict[str, str] = {}
        self.variables = _Scope(self.globals)
        #: The scripts being run (the main one first, when named) and all included so far.
        self.stack: list[IncludeKey] = []
        self.included: set[IncludeKey] = set()
        #: ${0}, ${1}, … of the last :matches that succeeded (RFC 5229 §3.2).
        self.matched: tuple[str, ...] = ()
        #: RFC 7352: each key tested in this run, with its answer, and those to record.
        self.seen: dict[str, bool] = {}
        self.tracked: dict[str, duplicate.Tracked] = {}

    # -- strings (RFC 5229 §3) ---------------------------------------------------------------
    def text(self, value: str) -> str:
        if not self.expanding:
            return value
        return variables.expand(value, self.variables, self.matched, self.limits.max_variable_size)

    def strings(self, node: Node, index: int) -> tuple[str, ...]:
        values = node.strings(index)
        return tuple(self.text(v) for v in values) if self.expanding else values

    def string(self, node: Node, index: int) -> str:
        return self.text(node.string(index))

    def tag_strings(self, node: Node, name: str) -> tuple[str, ...] | None:
        values = node.tag_strings(name)
        if values is None or not self.expanding:
            return values
        return tuple(self.text(v) for v in values)

    def address(self, text: str, what: str) -> str:
        try:
            return sieve_address(text)
        except InvalidName:
            # Only a string made of variables gets here: constants are checked at compile time.
            raise SieveRuntimeError(f"{what}: invalid address {text!r}") from None

    def outcome(self) -> Outcome:
        if self.implicit_keep:
            self.add(Keep(tuple(self.flags)))
        actions = self.actions
        if self.discarded and not any(isinstance(a, Keep | FileInto | Reject) for a in actions):
            actions = [*actions, Discard()]
        tracked = tuple(self.tracked.values())
        if not self.edited:
            return Outcome(tuple(actions), duplicates=tracked)
        edited = editheader.rebuild(self.message.raw, self.original_fields, self.message.fields)
        return Outcome(tuple(actions), message=edited, duplicates=tracked)

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
            create = "create" in node.tags
            special = self.tag_strings(node, "specialuse")
            self.add(
                FileInto(
                    self.string(node, 0),
                    self.action_flags(node),
                    copy,
                    create,
                    self.special_use(special[0], "fileinto") if special else None,
                )
            )
        elif name == "redirect":
            copy = "copy" in node.tags
            self.implicit_keep = self.implicit_keep and copy
            self.add(Redirect(self.address(self.string(node, 0), "redirect"), copy))
        elif name in ("setflag", "addflag", "removeflag"):
            self.change_flags(node)
        elif name == "set":
            value = variables.modified(self.string(node, 1), list(node.tags))
            self.variables[fold(node.string(0))] = variables.truncated(
                value, self.limits.max_variable_size
            )
        elif name in ("reject", "ereject"):
            self.implicit_keep = False
            self.add(Reject(self.string(node, 0), extended=name == "ereject"))
        elif name == "addheader":
            self.add_header(node)
        elif name == "deleteheader":
            self.delete_header(node)
        elif name == "notify":
            action = self.notify(node)
            if action is not None:
                self.add(action)
        elif name == "vacation":
            if any(isinstance(a, Vacation) for a in self.actions):
                raise SieveRuntimeError("vacation executed twice (RFC 5230 §4.7)")
            self.add(self.vacation(node))
        elif name == "include":
            location = "global" if "global" in node.tags else "personal"
            self.include(node, (location, node.string(0)))
        elif name == "return":
            raise _Return
        elif name == "error":
            raise SieveRuntimeError(f"error: {self.string(node, 0)} (RFC 5463 §5)")
        elif name == "global":
            self.variables.declared.update(fold(n) for n in node.strings(0))
        else:  # pragma: no cover - validate admits nothing else
            raise AssertionError(name)

    def field_name(self, node: Node) -> str:
        name = self.string(node, 0)
        if not editheader.valid_name(name):  # made of variables: constants are checked before
            raise SieveRuntimeError(f"{node.name}: invalid header field name {name!r}")
        return name

    def add_header(self, node: Node) -> None:
        """RFC 5293 §4: at the top, or at the end with :last."""
        name = self.field_name(node)
        if name.lower() in editheader.NOT_ADDED:
            return  # silently, as Pigeonhole refuses its own fields (module notes of .editheader)
        try:
            field = editheader.new_field(name, self.string(node, 1), self.limits.max_header_size)
        except editheader.HeaderTooLarge as exc:
            raise SieveRuntimeError(f"addheader: {exc}") from None
        fields = self.message.fields
        if len(fields) >= MAX_FIELDS:
            raise SieveRuntimeError("addheader: the message has too many header fields")
        top = self.message.delivery_fields
        last = "last" in node.tags
        fields = (*fields, field) if last else (*fields[:top], field, *fields[top:])
        self.replace_fields(fields, editheader.size(field))

    def delete_header(self, node: Node) -> None:
        """RFC 5293 §5: every field of the name, or the :index'th (from the end with :last),
        if its value matches one of the patterns when there are any; never a protected one."""
        name = self.field_name(node)
        key = name.lower()
        if key in editheader.PROTECTED:
            return  # silently, as Pigeonhole (module notes of .editheader)
        named = [i for i, f in enumerate(self.message.fields) if f.key == key]
        index = node.tag_number("index")
        if index is not None:
            if index > len(named):
                return
            named = [named[-index] if "last" in node.tags else named[index - 1]]
        if len(node.args) == 2:
            patterns = self.strings(node, 1)
            fields = self.message.fields
            named = [
                i
                for i in named
                if matches_any(node.match, [field_value(fields[i])], patterns, self.limits.regex)
            ]
        gone = {i for i in named if i >= self.message.delivery_fields}
        if not gone:
            return
        fields = self.message.fields
        removed = sum(editheader.size(fields[i]) for i in gone)
        self.replace_fields(tuple(f for i, f in enumerate(fields) if i not in gone), -removed)

    def replace_fields(self, fields: tuple[HeaderField, ...], growth: int) -> None:
        self.message = dataclasses.replace(
            self.message, fields=fields, size=self.message.size + growth
        )
        self.edited = True

    def include(self, node: Node, key: IncludeKey) -> None:
        """RFC 6609 §3.2 (module notes)."""
        if "once" in node.tags and key in self.included:
            return
        what = f"included {key[0]} script {key[1]!r}"
        if key in self.stack:
            raise SieveRuntimeError(f"{what} includes itself (RFC 6609 §3.2)")
        if len(self.stack) > self.limits.max_include_depth:
            raise SieveRuntimeError(f"includes nested deeper than {self.limits.max_include_depth}")
        if key not in self.includes:
            raise SieveRuntimeError(f"more than {self.limits.max_includes} included scripts")
        target = self.includes[key]
        if target is None:
            if "optional" in node.tags:
                return
            raise SieveRuntimeError(f"{what} does not exist (RFC 6609 §3.2)")
        if isinstance(target, SieveError):
            raise SieveRuntimeError(f"{what} does not compile: {target}")
        self.included.add(key)
        if len(self.included) > self.limits.max_includes:
            raise SieveRuntimeError(f"more than {self.limits.max_includes} included scripts")
        saved = self.variables, self.matched, self.expanding, self.flags
        self.variables = _Scope(self.globals)
        self.matched = ()
        self.flags = []
        self.expanding = "variables" in target.requires
        self.stack.append(key)
        try:
            self.block(target.commands)
        except _Return:
            pass
        finally:
            self.stack.pop()
            self.variables, self.matched, self.expanding, self.flags = saved

    def change_flags(self, node: Node) -> None:
        """setflag, addflag, removeflag (RFC 5232 §3) on the internal variable or, given a
        first argument, on the named variable (a space-separated list; not expanded, as
        ``set``'s name is not)."""
        given = self.strings(node, len(node.args) - 1)
        target = fold(node.string(0)) if len(node.args) == 2 else None
        current = self.flags if target is None else _flag_list([self.variables.get(target, "")])
        if node.name == "setflag":
            flags = _flag_list(given)
        elif node.name == "addflag":
            flags = _flag_list([*current, *given])
        else:
            gone = {f.lower() for f in _flag_list(given)}
            flags = [f for f in current if f.lower() not in gone]
        if target is None:
            self.flags = flags
        else:
            self.variables[target] = variables.truncated(
                " ".join(flags), self.limits.max_variable_size
            )

    def check_reject(self, action: Action) -> None:
        """RFC 5429 §2.1: one reject per run, and none beside an action that delivers the
        message or answers its sender."""
        if isinstance(action, Discard | Notify):
            return  # RFC 5435 §7: notify goes with every action
        rejected = any(isinstance(a, Reject) for a in self.actions)
        if isinstance(action, Reject):
            if rejected:
                raise SieveRuntimeError("reject executed twice (RFC 5429 §2.1)")
            other = next((a for a in self.actions if not isinstance(a, Discard | Notify)), None)
            if other is not None:
                raise SieveRuntimeError(
                    f"reject with {type(other).__name__.lower()} (RFC 5429 §2.1)"
                )
        elif rejected:
            raise SieveRuntimeError(f"{type(action).__name__.lower()} after reject (RFC 5429 §2.1)")

    def action_flags(self, node: Node) -> tuple[str, ...]:
        given = self.tag_strings(node, "flags")
        if given is not None:
            return tuple(_flag_list(given))
        return tuple(self.flags)

    def add(self, action: Action) -> None:
        """Append ``action``, or merge it into the same earlier one (RFC 5228 §2.10.3)."""
        if self.rejecting:
            self.check_reject(action)
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
                copy = earlier.copy and action.copy
                create = earlier.create or action.create
                # RFC 8579 §4 and RFC 5228 §2.10.3 do not say which :specialuse the one
                # action keeps: the last given, as Pigeonhole's merge does.
                special = action.specialuse or earlier.specialuse
                self.actions[index] = FileInto(action.mailbox, flags, copy, create, special)
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
            return all(message.exists(h) for h in self.strings(node, 0))
        if name == "mailboxexists":
            return all(message.mailbox_exists(n) for n in self.strings(node, 0))
        if name in ("metadata", "servermetadata"):
            mailbox = self.string(node, 0) if name == "metadata" else None
            value = message.metadata_value(mailbox, self.string(node, len(node.args) - 2))
            values = [] if value is None else [value]
            return self.compared(node, values, self.strings(node, len(node.args) - 1))
        if name in ("metadataexists", "servermetadataexists"):
            mailbox = self.string(node, 0) if name == "metadataexists" else None
            names = self.strings(node, len(node.args) - 1)
            return all(message.metadata_value(mailbox, n) is not None for n in names)
        if name == "valid_notify_method":
            return all(notify.valid(uri) for uri in self.strings(node, 0))
        if name == "notify_method_capability":
            # RFC 5435 §5: false, never an error, for a URI or capability we do not know.
            value = notify.capability(self.string(node, 0), self.string(node, 1))
            values = [] if value is None else [value]
            return self.compared(node, values, self.strings(node, 2))
        if name == "size":
            over = node.tag_number("over")
            if over is not None:
                return message.size > over
            under = node.tag_number("under")
            assert under is not None
            return message.size < under
        if name == "header":
            values = [v for h in self.strings(node, 0) for v in message.header_values(h)]
            return self.compared(node, _indexed(node, values), self.strings(node, 1))
        if name == "address":
            fields = [f for h in self.strings(node, 0) for f in message.address_fields(h)]
            pairs = (a for field in _indexed(node, fields) for a in field)
            return self.compared(node, list(_parts(node, pairs)), self.strings(node, 1))
        if name == "date":
            header = self.string(node, 0)
            values = list(message.header_values(header))
            # RFC 5260 §4.1 reads one field: the first, or the one :index names (§6).
            chosen = _indexed(node, values) if "index" in node.tags else values[:1]
            moments = (dates.header_date(header, v) for v in chosen)
            parts = [self.date_part(node, m, 1) for m in moments if m is not None]
            return self.compared(node, [p for p in parts if p is not None], self.strings(node, 2))
        if name == "currentdate":
            if self.now is None:
                return False
            text = self.date_part(node, self.now, 0)
            return self.compared(node, [] if text is None else [text], self.strings(node, 1))
        if name == "envelope":
            return self.compared(node, list(self.envelope_values(node)), self.strings(node, 1))
        if name == "hasflag":
            keys = [f for k in self.strings(node, len(node.args) - 1) for f in k.split()]
            flags = self.flags
            if len(node.args) == 2:  # RFC 5232 §4: the flags held in the named variables
                names = node.strings(0)
                flags = [f for n in names for f in self.variables.get(fold(n), "").split()]
            return self.compared(node, flags, keys)
        if name == "string":
            sources = self.strings(node, 0)
            if node.match.kind == "count":
                # RFC 5229 §5: the empty string counts 0, any other 1.
                sources = tuple(s for s in sources if s)
            return self.compared(node, list(sources), self.strings(node, 1))
        if name == "body":
            content = self.tag_strings(node, "content")
            transform = "raw" if "raw" in node.tags else "content" if content else "text"
            key = (transform, content or ())
            texts = self.bodies.get(key)
            if texts is None:  # decoded once per run, however many body tests read it
                texts = self.bodies[key] = tuple(message.body_texts(*key))
            return matches_any(node.match, texts, self.strings(node, 0), self.limits.regex)
        if name == "ihave":
            return ihave(node.strings(0))  # RFC 5463 §4
        if name == "spamtest":
            status = message.spam
            value = spamtest.percent(status) if "percent" in node.tags else spamtest.level(status)
            return self.compared(node, [value], self.strings(node, 0))
        if name == "duplicate":
            return self.duplicate(node)
        if name == "specialuse_exists":
            mailbox = self.string(node, 0) if len(node.args) == 2 else None
            return message.special_use_exists(mailbox, self.strings(node, len(node.args) - 1))
        if name == "environment":
            # RFC 5183 §4: an item the server does not know fails the test.
            value = message.environment.get(self.string(node, 0))  # names as Pigeonhole: exact
            if value is None:
                return False
            return self.compared(node, [value], self.strings(node, 1))
        raise AssertionError(name)  # pragma: no cover - validate admits nothing else

    def date_part(self, node: Node, moment: datetime, index: int) -> str | None:
        """The date-part (positional ``index``) of ``moment`` in the zone the test asks for
        (RFC 5260 §4.1): :zone's, the field's own (:originalzone), else the local one. None
        for a zone or date-part made of variables that is not one."""
        if "originalzone" not in node.tags:
            given = self.tag_strings(node, "zone")
            zone = self.local_zone if given is None else dates.zone(given[0])
            if zone is None:
                return None
            moment = moment.astimezone(zone)
        return dates.part(moment, self.string(node, index))

    def compared(self, node: Node, values: Sequence[str], keys: Sequence[str]) -> bool:
        """:func:`matches_any`, keeping the match variables of a :matches or :regex that
        succeeds."""
        limits = self.limits.regex
        if not (self.expanding and node.match.kind in ("matches", "regex")):
            return matches_any(node.match, values, keys, limits)
        found = first_captures(node.match, values, keys, limits)
        if found is None:
            return False
        limit = self.limits.max_variable_size
        self.matched = tuple(variables.truncated(v, limit) for v in found)
        return True

    def duplicate(self, node: Node) -> bool:
        """RFC 7352 §3 (module notes)."""
        unique = self.tag_strings(node, "uniqueid")
        if unique is not None:
            value = unique[0]
        else:
            header = self.tag_strings(node, "header")
            name = header[0] if header is not None else "message-id"
            first = next(self.message.header_values(name), None)
            if first is None:
                return False  # §3.1: no such field, nothing to track
            value = first
        handle = self.tag_strings(node, "handle")
        key = duplicate.key(handle[0] if handle else "", value)
        found = self.seen.get(key)
        if found is None:
            found = self.seen[key] = key in self.message.duplicates
        if not found or "last" in node.tags:
            self.tracked[key] = duplicate.Tracked(key, node.tag_number("seconds"))
        return found

    def special_use(self, flag: str, what: str) -> str:
        if SPECIAL_USE.fullmatch(flag) is None:  # made of variables: constants checked before
            raise SieveRuntimeError(f"{what}: invalid special-use attribute {flag!r}")
        return flag

    def fcc(self, node: Node) -> Fcc | None:
        """RFC 8580 §3: where the copy of what ``node`` sends is stored, if anywhere."""
        mailbox = self.tag_strings(node, "fcc")
        if mailbox is None:
            return None
        special = self.tag_strings(node, "specialuse")
        flags = self.tag_strings(node, "flags")
        return Fcc(
            mailbox[0],
            tuple(_flag_list(flags)) if flags is not None else (),
            "create" in node.tags,
            self.special_use(special[0], node.name) if special else None,
        )

    def notify(self, node: Node) -> Notify | None:
        """RFC 5435 §3: the notification, checked as at compile time for the values made of
        variables (an invalid one is a runtime error, §3.2); None when every recipient was
        notified earlier in the run."""
        method = self.string(node, 0)
        try:
            mailto = notify.parse(method)
        except notify.InvalidMethod as exc:
            raise SieveRuntimeError(f"notify: {exc} (RFC 5435 §3.2)") from None
        importance = self.tag_strings(node, "importance")
        if importance is not None and importance[0] not in notify.IMPORTANCE:
            raise SieveRuntimeError(f"notify: invalid :importance {importance[0]!r}")
        for option in self.tag_strings(node, "options") or ():
            if not notify.valid_option(option):
                raise SieveRuntimeError(f"notify: invalid option {option!r} (RFC 5435 §3.5)")
        sender = self.tag_strings(node, "from")
        if sender is not None:
            self.address(sender[0], "notify :from")
        for field_name, value in mailto.fields:  # written as addheader writes (RFC 5293)
            try:
                editheader.new_field(field_name, value, self.limits.max_header_size)
            except editheader.HeaderTooLarge as exc:
                raise SieveRuntimeError(f"notify: {exc}") from None
        if len(mailto.recipients) > self.limits.max_notify_recipients:
            raise SieveRuntimeError(
                f"notify: more than {self.limits.max_notify_recipients} recipients"
            )
        fresh = tuple(r for r in mailto.recipients if r not in self.notified)
        if not fresh:
            return None
        self.notified.update(fresh)
        if len(self.notified) > self.limits.max_notifications:
            raise SieveRuntimeError(
                f"more than {self.limits.max_notifications} notification recipients"
            )
        message = self.tag_strings(node, "message")
        return Notify(
            method,
            mailto,
            fresh,
            importance=int(importance[0]) if importance else 2,
            from_=sender[0] if sender else None,
            message=message[0] if message else None,
            fcc=self.fcc(node),
        )

    def vacation(self, node: Node) -> Vacation:
        sender = self.tag_strings(node, "from")
        if sender is not None:
            self.address(sender[0], "vacation :from")
        reply = _vacation(
            node,
            self.string(node, 0),
            self.tag_strings(node, "subject"),
            sender,
            self.tag_strings(node, "handle"),
            self.tag_strings(node, "addresses") or (),
        )
        fcc = self.fcc(node)
        return reply if fcc is None else dataclasses.replace(reply, fcc=fcc)

    def envelope_values(self, node: Node) -> Iterator[str]:
        for part in self.strings(node, 0):
            if part.lower() not in ENVELOPE_PARTS:
                continue  # made of variables (RFC 5228 §5.4 knows no other part)
            address = (
                self.message.envelope_from if part.lower() == "from" else self.message.envelope_to
            )
            if not address:
                # RFC 5228 §5.4: the null reverse-path is "" whatever the address part.
                yield ""
                continue
            local, _, domain = address.rpartition("@")
            yield from _parts(node, iter([(local, domain)]))


_T = TypeVar("_T")


def _indexed(node: Node, items: list[_T]) -> list[_T]:
    """RFC 5260 §6: only the :index'th item (counted from 1, from the end with :last) — of
    the fields of every name given, in the order given, as Pigeonhole counts them."""
    index = node.tag_number("index")
    if index is None:
        return items
    if index > len(items):
        return []
    return [items[-index] if "last" in node.tags else items[index - 1]]


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


def _vacation(
    node: Node,
    reason: str,
    subject: tuple[str, ...] | None,
    sender: tuple[str, ...] | None,
    handle: tuple[str, ...] | None,
    addresses: tuple[str, ...],
) -> Vacation:
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
        addresses=addresses,
        days=node.tag_number("days"),
        mime=mime,
        seconds=node.tag_number("seconds"),
    )
