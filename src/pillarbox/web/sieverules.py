"""Mail filter rules as the web interface builds them, and the Sieve script (RFC 5228) they
become — and back, for scripts this module wrote.

Implementation notes:

- **Pure**: rules → script text (:func:`script_of`) and script text → rules
  (:func:`rules_of`); no store, no I/O. The web pages and the JSON API share it.
- **The rule model travels in the script.** The generated script carries the rules as one JSON
  comment line (``# pillarbox-rules: {...}``), so reading them back is exact — no guessing
  rules from Sieve. A script is "ours" only when it is byte for byte what :func:`script_of`
  makes of the rules in that comment (line endings and final newlines aside: ManageSieve
  clients may store CRLF, or drop the last newline).
  Anything else — written by hand, or ours edited over ManageSieve — is not ours, and the web
  interface shows it in the raw editor instead of replacing it.
- **Strings** are Sieve quoted strings (RFC 5228 §2.4.2): only ``"`` and ``\\`` are escaped.
  No extension that gives strings more meaning ("variables", "encoded-character") is required,
  so ``${`` stays literal. In ``:matches`` (§2.7.1) the user's ``*`` and ``?`` are wildcards and
  ``\\`` escapes one of ``*``, ``?``, ``\\``; a pattern with another backslash is refused
  rather than guessed at. ``:contains`` and ``:is`` have no wildcards.
- **Flags first.** Within a rule, ``addflag`` (RFC 5232 §4) comes before ``fileinto``,
  ``redirect`` and ``stop``: flags apply to the copies filed after them (and to the implicit
  keep), so "move to Work and flag" files a flagged message. ``stop`` always comes last.
- Addresses: "is" and "matches" on From and To/Cc test the address alone (``address :all``,
  RFC 5228 §5.1), which is what people type; "contains" tests the whole header field (display
  name too), decoded (§2.7.2).
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, TypeVar

from pillarbox.errors import InvalidName, UserError
from pillarbox.mail.address import parse_address

#: The name of the script the rule builder stores and activates.
SCRIPT_NAME = "pillarbox"
#: The comment line that carries the rules (the JSON follows it on the same line).
MARKER = "# pillarbox-rules: "
FORMAT_VERSION = 1
_E = TypeVar("_E", bound=StrEnum)
MAX_NAME = 100
MAX_VALUE = 1000
MAX_HEADER_NAME = 76  # RFC 5322 §2.1.1: a line of 78 with ": " left for the field body
#: The largest size a Sieve implementation must handle (RFC 5228 §2.4.1: 31 bits at least).
MAX_SIZE = 2**31 - 1
_QUANTIFIERS = {"": 1, "K": 1024, "M": 1024**2, "G": 1024**3}  # RFC 5228 §2.4.1
_SIZE = re.compile(r"([0-9]{1,10})([KMG]?)")
#: RFC 5322 §3.6.8: ftext, printable US-ASCII except ":".
_FIELD_NAME = re.compile(r"[\x21-\x39\x3b-\x7e]+")
#: Characters no rule text may hold: controls (line breaks would end a comment line, NUL is
#: no Sieve character), lone surrogates (not UTF-8), and the Unicode line/paragraph separators.
_FORBIDDEN_CATEGORIES = frozenset({"Cc", "Cs", "Zl", "Zp"})
HEADER_PREAMBLE = (
    "# Mail filters made in Pillarbox's web interface (Settings, Filters).\n"
    "# Change them there: a script edited anywhere else is kept as written, not as rules.\n"
)


class RuleError(UserError):
    """A rule that cannot be turned into a script; the message says which part and why."""


class Field(StrEnum):
    FROM = "from"
    TO_CC = "to-cc"
    SUBJECT = "subject"
    HEADER = "header"
    SIZE = "size"


class Match(StrEnum):
    CONTAINS = "contains"
    NOT_CONTAINS = "not-contains"
    IS = "is"
    MATCHES = "matches"
    OVER = "over"
    UNDER = "under"


class ActionKind(StrEnum):
    MOVE = "move"
    COPY = "copy"
    MARK_READ = "mark-read"
    FLAG = "flag"
    REDIRECT = "redirect"
    REDIRECT_COPY = "redirect-copy"
    DISCARD = "discard"
    STOP = "stop"


FIELD_LABELS: Mapping[Field, str] = {
    Field.FROM: "From",
    Field.TO_CC: "To or Cc",
    Field.SUBJECT: "Subject",
    Field.HEADER: "Header field",
    Field.SIZE: "Size",
}
MATCH_LABELS: Mapping[Match, str] = {
    Match.CONTAINS: "contains",
    Match.NOT_CONTAINS: "does not contain",
    Match.IS: "is",
    Match.MATCHES: "matches (* and ?)",
    Match.OVER: "is over (size)",
    Match.UNDER: "is under (size)",
}
ACTION_LABELS: Mapping[ActionKind, str] = {
    ActionKind.MOVE: "Move to folder",
    ActionKind.COPY: "Copy to folder",
    ActionKind.MARK_READ: "Mark as read",
    ActionKind.FLAG: "Flag",
    ActionKind.REDIRECT: "Forward to (no copy kept)",
    ActionKind.REDIRECT_COPY: "Forward a copy to",
    ActionKind.DISCARD: "Delete (discard)",
    ActionKind.STOP: "Stop processing more rules",
}
#: Actions that name a folder, and those that name an address.
FOLDER_ACTIONS = frozenset({ActionKind.MOVE, ActionKind.COPY})
ADDRESS_ACTIONS = frozenset({ActionKind.REDIRECT, ActionKind.REDIRECT_COPY})
_FLAG_ACTIONS = {ActionKind.MARK_READ: "\\Seen", ActionKind.FLAG: "\\Flagged"}  # RFC 3501 §2.3.2
_SIZE_MATCHES = frozenset({Match.OVER, Match.UNDER})
#: Header fields each field tests, lowercase as RFC 5228 §2.4.2.2 compares them without case.
_FIELD_HEADERS: Mapping[Field, tuple[str, ...]] = {
    Field.FROM: ("from",),
    Field.TO_CC: ("to", "cc"),
    Field.SUBJECT: ("subject",),
}


@dataclass(frozen=True, slots=True)
class Condition:
    field: Field
    match: Match
    value: str
    #: The header field's name, for ``Field.HEADER`` only.
    header: str = ""


@dataclass(frozen=True, slots=True)
class Action:
    kind: ActionKind
    #: The folder (move, copy) or the address (forward); empty for the others.
    target: str = ""


@dataclass(frozen=True, slots=True)
class Rule:
    name: str
    conditions: tuple[Condition, ...]
    actions: tuple[Action, ...]
    #: True: any one condition suffices (anyof); False: all must hold (allof).
    any_of: bool = False
    enabled: bool = True


# -- validation ----------------------------------------------------------------------------------


def check_text(text: str, what: str, limit: int) -> None:
    """Refuse text a rule cannot carry: empty, too long, or with a forbidden character."""
    if not text:
        raise RuleError(f"{what} is empty")
    if len(text) > limit:
        raise RuleError(f"{what} is longer than {limit} characters")
    if any(unicodedata.category(c) in _FORBIDDEN_CATEGORIES for c in text):
        raise RuleError(f"{what} contains a control character or line break")


def size_bytes(value: str) -> int | None:
    """The byte count of a Sieve number such as ``100K`` (RFC 5228 §2.4.1), or None."""
    match = _SIZE.fullmatch(value)
    if match is None:
        return None
    return int(match.group(1)) * _QUANTIFIERS[match.group(2)]


def _check_pattern(pattern: str) -> None:
    # RFC 5228 §2.7.1: "\" escapes the next character; only the wildcards and itself need it.
    index = 0
    while index < len(pattern):
        if pattern[index] == "\\":
            if index + 1 == len(pattern) or pattern[index + 1] not in "*?\\":
                raise RuleError(
                    'in a "matches" pattern, \\ may only come before *, ? or \\ '
                    "(to match them literally)"
                )
            index += 1
        index += 1


def check_condition(condition: Condition) -> None:
    if condition.field is Field.SIZE:
        if condition.match not in _SIZE_MATCHES:
            raise RuleError('a size is compared with "is over" or "is under"')
        size = size_bytes(condition.value)
        if size is None:
            raise RuleError("a size is a number, optionally followed by K, M or G")
        if size > MAX_SIZE:
            raise RuleError(f"a size must be at most {MAX_SIZE} bytes")
    else:
        if condition.match in _SIZE_MATCHES:
            raise RuleError('"is over" and "is under" compare sizes only')
        check_text(condition.value, "the text to look for", MAX_VALUE)
        if condition.match is Match.MATCHES:
            _check_pattern(condition.value)
    if condition.field is Field.HEADER:
        if not _FIELD_NAME.fullmatch(condition.header) or len(condition.header) > MAX_HEADER_NAME:
            raise RuleError(
                "a header field name is letters, digits and punctuation other than a colon "
                f"(at most {MAX_HEADER_NAME})"
            )
    elif condition.header:
        raise RuleError("only a header field condition names a header")


def check_address(address: str) -> None:
    """A forwarding address as the forwarding settings take it: a mailbox at a DNS domain."""
    try:
        parsed = parse_address(address)
    except InvalidName:
        raise RuleError(f"not a valid forwarding address: {address}") from None
    if parsed.is_literal or "." not in parsed.domain or parsed.normalised != address:
        raise RuleError(f"not a valid forwarding address: {address}")


def check_action(action: Action) -> None:
    if action.kind in FOLDER_ACTIONS:
        check_text(action.target, "the folder", MAX_VALUE)
    elif action.kind in ADDRESS_ACTIONS:
        check_text(action.target, "the forwarding address", MAX_VALUE)
        check_address(action.target)
    elif action.target:
        raise RuleError(f"{ACTION_LABELS[action.kind]} takes no folder or address")


def check_rule(rule: Rule) -> None:
    """Raise :class:`RuleError` unless the rule can be written as Sieve and read back."""
    check_text(rule.name, "the rule's name", MAX_NAME)
    if rule.name != rule.name.strip():
        raise RuleError("the rule's name starts or ends with a space")
    for condition in rule.conditions:
        check_condition(condition)
    if not rule.actions:
        raise RuleError(f"rule “{rule.name}” has no action")
    for action in rule.actions:
        check_action(action)
    kinds = [a.kind for a in rule.actions]
    if ActionKind.STOP in kinds[:-1]:
        raise RuleError("“Stop processing more rules” must be the rule's last action")
    if ActionKind.DISCARD in kinds and any(
        k in FOLDER_ACTIONS or k in ADDRESS_ACTIONS for k in kinds
    ):
        raise RuleError("a deleted message cannot also be moved, copied or forwarded")


# -- Sieve text ----------------------------------------------------------------------------------


def quoted(text: str) -> str:
    """``text`` as a Sieve quoted string (RFC 5228 §2.4.2: ``\\"`` and ``\\\\`` only)."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _string_list(items: Sequence[str]) -> str:
    # RFC 5228 §2.4.2.1: a one-element list may be written as the string itself.
    if len(items) == 1:
        return quoted(items[0])
    return "[" + ", ".join(quoted(item) for item in items) + "]"


def sieve_test(condition: Condition) -> str:
    """The Sieve test for one condition."""
    if condition.field is Field.SIZE:
        return f"size :{condition.match.value} {condition.value}"  # RFC 5228 §5.9
    headers = _FIELD_HEADERS.get(condition.field, (condition.header,))
    value = quoted(condition.value)
    names = _string_list(headers)
    match condition.match:
        case Match.CONTAINS:
            return f"header :contains {names} {value}"
        case Match.NOT_CONTAINS:
            return f"not header :contains {names} {value}"
        case Match.IS | Match.MATCHES if condition.field in (Field.FROM, Field.TO_CC):
            return f"address :all :{condition.match.value} {names} {value}"
        case _:
            return f"header :{condition.match.value} {names} {value}"


def _commands_of(actions: Sequence[Action]) -> list[str]:
    flags = [a for a in actions if a.kind in _FLAG_ACTIONS]
    stop = [a for a in actions if a.kind is ActionKind.STOP]
    rest = [a for a in actions if a not in flags and a not in stop]
    commands: list[str] = []
    for action in (*flags, *rest, *stop):
        match action.kind:
            case ActionKind.MARK_READ | ActionKind.FLAG:
                commands.append(f"addflag {quoted(_FLAG_ACTIONS[action.kind])};")
            case ActionKind.MOVE:
                commands.append(f"fileinto {quoted(action.target)};")
            case ActionKind.COPY:
                commands.append(f"fileinto :copy {quoted(action.target)};")  # RFC 3894 §3
            case ActionKind.REDIRECT:
                commands.append(f"redirect {quoted(action.target)};")
            case ActionKind.REDIRECT_COPY:
                commands.append(f"redirect :copy {quoted(action.target)};")
            case ActionKind.DISCARD:
                commands.append("discard;")
            case ActionKind.STOP:
                commands.append("stop;")
    return commands


def _requirements(rules: Iterable[Rule]) -> list[str]:
    needed: set[str] = set()
    for rule in rules:
        if not rule.enabled:
            continue
        for action in rule.actions:
            if action.kind in FOLDER_ACTIONS:
                needed.add("fileinto")  # RFC 5228 §4.1
            if action.kind in (ActionKind.COPY, ActionKind.REDIRECT_COPY):
                needed.add("copy")  # RFC 3894
            if action.kind in _FLAG_ACTIONS:
                needed.add("imap4flags")  # RFC 5232
    return sorted(needed)


def _condition_of(tests: Sequence[str], any_of: bool) -> str:
    if not tests:
        return "true"
    if len(tests) == 1:
        return tests[0]
    return ("anyof" if any_of else "allof") + " (" + ", ".join(tests) + ")"


def script_of(rules: Sequence[Rule]) -> str:
    """The Sieve script for ``rules`` (each must pass :func:`check_rule`), in order; disabled
    rules are kept in the rules comment only."""
    payload = {"version": FORMAT_VERSION, "rules": [rule_json(r) for r in rules]}
    lines = [HEADER_PREAMBLE + MARKER + json.dumps(payload, separators=(",", ":"))]
    requirements = _requirements(rules)
    if requirements:
        lines.append(f"require {_string_list(requirements)};")  # RFC 5228 §3.2
    for number, rule in enumerate(rules, start=1):
        if not rule.enabled:
            lines.append(f"\n# {number}. (off) {rule.name}")
            continue
        lines.append(f"\n# {number}. {rule.name}")
        tests = [sieve_test(c) for c in rule.conditions]
        lines.append(f"if {_condition_of(tests, rule.any_of)} {{")
        lines += [f"    {command}" for command in _commands_of(rule.actions)]
        lines.append("}")
    return "\n".join(lines) + "\n"


def rules_of(script: str) -> tuple[Rule, ...] | None:
    """The rules of a script :func:`script_of` wrote, or None for any other script.

    Line endings and newlines at the end do not count as edits: ManageSieve clients store
    CRLF, and some (sievelib) give the script back without its last newline."""
    text = script.replace("\r\n", "\n").rstrip("\n")
    for line in text.split("\n"):
        if line.startswith(MARKER):
            try:
                payload = json.loads(line[len(MARKER) :])
                if not isinstance(payload, dict) or payload.get("version") != FORMAT_VERSION:
                    return None
                items = payload.get("rules")
                if not isinstance(items, list):
                    return None
                rules = tuple(rule_from_json(item) for item in items)
            except (ValueError, RuleError):
                return None
            return rules if script_of(rules).rstrip("\n") == text else None
    return None


# -- JSON (the comment's and the API's shape) ----------------------------------------------------


def rule_json(rule: Rule) -> dict[str, Any]:
    return {
        "name": rule.name,
        "enabled": rule.enabled,
        "match": "any" if rule.any_of else "all",
        "conditions": [
            {
                "field": c.field.value,
                "match": c.match.value,
                "value": c.value,
                **({"header": c.header} if c.field is Field.HEADER else {}),
            }
            for c in rule.conditions
        ],
        "actions": [
            {"action": a.kind.value, **({"target": a.target} if a.target else {})}
            for a in rule.actions
        ],
    }


def _text(item: Mapping[str, Any], key: str, default: str | None = None) -> str:
    value = item.get(key, default)
    if not isinstance(value, str):
        raise RuleError(f"{key} must be a string")
    return value


def choice(kind: type[_E], value: object, what: str) -> _E:
    """``value`` as a member of ``kind``, or :class:`RuleError` naming the choices."""
    if isinstance(value, str):
        try:
            return kind(value)
        except ValueError:
            pass
    choices = ", ".join(member.value for member in kind)
    raise RuleError(f"{what} must be one of: {choices}")


def _list_of(item: Mapping[str, Any], key: str) -> list[Mapping[str, Any]]:
    value = item.get(key, [])
    if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
        raise RuleError(f"{key} must be a list of objects")
    return value


def rule_from_json(item: object) -> Rule:
    """A rule from its JSON shape, checked (:class:`RuleError` says what is wrong)."""
    if not isinstance(item, dict):
        raise RuleError("a rule is a JSON object")
    enabled = item.get("enabled", True)
    if not isinstance(enabled, bool):
        raise RuleError("enabled must be true or false")
    match = _text(item, "match", "all")
    if match not in ("all", "any"):
        raise RuleError('match must be "all" or "any"')
    conditions = tuple(
        Condition(
            choice(Field, c.get("field"), "a condition's field"),
            choice(Match, c.get("match"), "a condition's match"),
            _text(c, "value"),
            _text(c, "header", ""),
        )
        for c in _list_of(item, "conditions")
    )
    actions = tuple(
        Action(choice(ActionKind, a.get("action"), "an action"), _text(a, "target", ""))
        for a in _list_of(item, "actions")
    )
    rule = Rule(_text(item, "name"), conditions, actions, match == "any", enabled)
    check_rule(rule)
    return rule


def describe(rule: Rule) -> str:
    """One line for the rule list: "From contains “boss” → Move to folder Work, Flag"."""
    joiner = " or " if rule.any_of else " and "
    when = joiner.join(
        f"{c.header if c.field is Field.HEADER else FIELD_LABELS[c.field]} "
        f"{MATCH_LABELS[c.match].removesuffix(' (size)').removesuffix(' (* and ?)')} "
        f"“{c.value}”"
        for c in rule.conditions
    )
    then = ", ".join(
        ACTION_LABELS[a.kind] + (f" {a.target}" if a.target else "") for a in rule.actions
    )
    return f"{when or 'Every message'} → {then}"
