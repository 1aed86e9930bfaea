"""Compile-time checks (RFC 5228 §2.10.6: a script with errors is refused before it runs) and
the translation of the syntax tree into :mod:`.program` nodes.

Checked here: unknown commands and tests, extensions used without ``require`` (§3.2),
``require`` only at the start, if/elsif/else placement (§3.1), argument types and counts,
unknown, repeated and mutually exclusive tags (§2.6.2, §2.7), unsupported comparators and
comparator/match-type pairs (§2.7.3), relational operators (RFC 5231 §5), address headers
(§5.1), envelope parts (§5.4), the addresses of redirect and vacation :from (§2.4.2.3), :regex
patterns (draft-ietf-sieve-regex-01: valid, translatable, within ``regex_limits``); with
"variables" (RFC 5229): namespaces (§3), ``set`` names (§4) and their number
(``max_variables``). A value that refers to a variable is known only when the script runs, so
the checks of values above are made then instead (by the interpreter).
"""

from __future__ import annotations

import re
from collections.abc import Collection, Sequence

from pillarbox.errors import InvalidName
from pillarbox.mail.address import parse_address
from pillarbox.sieve import dates, editheader, encoded, notify, regex, variables
from pillarbox.sieve.commands import SPECS, Arg, Spec, Tests
from pillarbox.sieve.errors import SieveError
from pillarbox.sieve.grammar import Argument, Command, Number, StringList, Tag, Test
from pillarbox.sieve.match import fold
from pillarbox.sieve.program import Match, Node, Positional, TagValue
from pillarbox.store.types import sieve_script_name

#: Capabilities this implementation supports (RFC 5228 §6.1 strings).
EXTENSIONS: tuple[str, ...] = (
    "body",
    "comparator-i;ascii-numeric",
    "copy",
    "date",
    "editheader",
    "encoded-character",
    "enotify",
    "duplicate",
    "envelope",
    "environment",
    "ereject",
    "fcc",
    "fileinto",
    "ihave",
    "imap4flags",
    "include",
    "index",
    "mailbox",
    "mboxmetadata",
    "regex",
    "reject",
    "relational",
    "servermetadata",
    "spamtest",
    "spamtestplus",
    "special-use",
    "subaddress",
    "vacation",
    "vacation-seconds",
    "variables",
)
#: RFC 5228 §2.7.3: these two are always available; requiring them is allowed.
IMPLICIT = frozenset({"comparator-i;octet", "comparator-i;ascii-casemap"})
#: What ``require`` and ``ihave`` (RFC 5463 §4) accept.
SUPPORTED = frozenset(EXTENSIONS) | IMPLICIT
#: RFC 5463 §4: ihave MUST NOT enable an extension that changes how a script's content is
#: read ("variables", "encoded-character"): an ihave naming one is false and enables nothing.
IHAVE_REFUSED = frozenset({"variables", "encoded-character"})
#: Capabilities that bring another with them: RFC 6131 §3 (as in Pigeonhole), RFC 5235 §3.2.
IMPLIES = {"vacation-seconds": "vacation", "spamtestplus": "spamtest"}
#: RFC 8579 §4 (RFC 6154 §2): a special-use attribute is "\\" and an atom (RFC 3501 §9).
SPECIAL_USE = re.compile(r"\\[^(){ %*\"\\\]\x00-\x20\x7f-\uffff]+")
COMPARATORS = {
    "i;octet": None,
    "i;ascii-casemap": None,
    "i;ascii-numeric": "comparator-i;ascii-numeric",  # RFC 4790 §9.1
}
#: RFC 4790 §9.1: i;ascii-numeric offers equality and ordering, no substring match.
NUMERIC_MATCHES = frozenset({"is", "value", "count"})
RELATIONS = frozenset({"gt", "ge", "lt", "le", "eq", "ne"})  # RFC 5231 §5
#: RFC 5228 §5.1: headers whose body is an address-list (at least From … Resent-To).
ADDRESS_HEADERS = frozenset(
    {
        "from",
        "sender",
        "to",
        "cc",
        "bcc",
        "reply-to",
        "resent-from",
        "resent-sender",
        "resent-to",
        "resent-cc",
        "resent-bcc",
        "resent-reply-to",
        "return-receipt-to",
        "disposition-notification-to",
        "errors-to",
        "delivered-to",
        "x-original-to",
    }
)
ENVELOPE_PARTS = frozenset({"from", "to"})  # RFC 5228 §5.4
#: Variables one script may ``set`` (RFC 5229 §6 lets us bound it; Pigeonhole's default).
DEFAULT_MAX_VARIABLES = 255


def compile_commands(
    commands: Sequence[Command],
    *,
    max_variables: int = DEFAULT_MAX_VARIABLES,
    regex_limits: regex.RegexLimits = regex.DEFAULT_LIMITS,
) -> tuple[frozenset[str], tuple[Node, ...]]:
    """The script's required capabilities and its compiled top-level commands."""
    requires: set[str] = set()
    rest = list(commands)
    while rest and rest[0].name == "require":
        requires |= _require(rest.pop(0))
    requires |= _implied(requires)
    compiler = _Compiler(frozenset(requires), max_variables, regex_limits)
    nodes = compiler.block(rest)
    # What an ihave block may use counts as required when the script runs (delivery hands
    # over the data those extensions read; "variables" expands), as Pigeonhole loads it.
    return frozenset(requires) | compiler.granted, nodes


def ihave(capabilities: Collection[str]) -> bool:
    """RFC 5463 §4: whether an ihave test of ``capabilities`` is true — all supported, and
    none of :data:`IHAVE_REFUSED` (the test MUST fail for those, even in a script that
    requires them, as Pigeonhole's does)."""
    return all(c in SUPPORTED and c not in IHAVE_REFUSED for c in capabilities)


def _implied(capabilities: set[str] | frozenset[str]) -> set[str]:
    return {IMPLIES[c] for c in capabilities if c in IMPLIES}


def _require(command: Command) -> set[str]:
    _check_shape(command, SPECS["require"], frozenset())
    [argument] = command.arguments
    assert isinstance(argument, StringList)
    for capability in argument.values:
        if capability not in EXTENSIONS and capability not in IMPLICIT:
            raise SieveError(command.line, f"unsupported extension {capability!r}")
    return set(argument.values)


class _Compiler:
    def __init__(
        self, requires: frozenset[str], max_variables: int, regex_limits: regex.RegexLimits
    ) -> None:
        self.requires = requires
        self.max_variables = max_variables
        self.regex_limits = regex_limits
        #: The names ``set`` gives, folded (RFC 5229 §3: names compare without case).
        self.variables: set[str] = set()
        #: Names used as local variables so far, and those declared ``global`` (RFC 6609
        #: §3.4: a name used locally cannot become global afterwards, as in Pigeonhole).
        self.locals: set[str] = set()
        self.globals: set[str] = set()
        #: The capabilities ihave blocks were compiled with (RFC 5463 §4).
        self.granted: set[str] = set()

    def block(self, commands: Sequence[Command]) -> tuple[Node, ...]:
        out: list[Node] = []
        for index, command in enumerate(commands):
            name = command.name
            if name == "require":
                raise SieveError(command.line, "require is only allowed at the start of the script")
            if name in ("elsif", "else"):
                previous = commands[index - 1].name if index else None
                if previous not in ("if", "elsif"):
                    raise SieveError(command.line, f"{name} without a preceding if")
                if_node = out.pop()
                branch = self.command(command)
                out.append(
                    Node(if_node.name, if_node.line, branches=if_node.branches + branch.branches)
                )
                continue
            out.append(self.command(command))
        return tuple(out)

    def command(self, command: Command) -> Node:
        spec = SPECS.get(command.name)
        if spec is None or spec.test:
            raise SieveError(command.line, f"unknown command {command.name!r}")
        self.check_extension(spec, command.line)
        tags, args = _check_shape(command, spec, self.requires)
        tests = tuple(self.test(t) for t in command.tests)
        self.check_tests(spec, command.tests, command.line, command.test_list)
        if spec.block and command.block is None:
            raise SieveError(command.line, f"{spec.name} needs a block")
        if not spec.block and command.block is not None:
            raise SieveError(command.line, f"{spec.name} takes no block")
        tags, args = self.decoded(command.line, tags, args)
        self.check_variables(spec, command.line, tags, args)
        node = Node(spec.name, command.line, tags, args, match=self.match(spec, tags, command.line))
        if spec.block:
            assert command.block is not None
            test = tests[0] if tests else None
            return Node(node.name, node.line, branches=((test, self.guarded(test, command.block)),))
        self.check_values(node)
        return node

    def guarded(self, test: Node | None, block: Sequence[Command]) -> tuple[Node, ...]:
        """RFC 5463 §4: a block whose test is ``ihave`` is compiled with the capabilities it
        names, when we have them all — and not at all when we do not (the test is false,
        the block never runs, so what it uses need not exist)."""
        if test is None or test.name != "ihave":
            return self.block(block)
        wanted = frozenset(test.strings(0))
        if not ihave(wanted):
            return ()
        outer = self.requires
        self.requires = outer | wanted | _implied(wanted)
        self.granted |= self.requires - outer
        try:
            return self.block(block)
        finally:
            self.requires = outer

    def test(self, test: Test) -> Node:
        spec = SPECS.get(test.name)
        if spec is None or not spec.test:
            raise SieveError(test.line, f"unknown test {test.name!r}")
        self.check_extension(spec, test.line)
        tags, args = _check_shape(test, spec, self.requires)
        self.check_tests(spec, test.tests, test.line, test.test_list)
        tags, args = self.decoded(test.line, tags, args)
        self.check_variables(spec, test.line, tags, args)
        node = Node(
            spec.name,
            test.line,
            tags,
            args,
            tests=tuple(self.test(t) for t in test.tests),
            match=self.match(spec, tags, test.line),
        )
        self.check_values(node)
        return node

    def check_extension(self, spec: Spec, line: int) -> None:
        if spec.extension is not None and spec.extension not in self.requires:
            kind = "test" if spec.test else "command"
            raise SieveError(
                line, f"{kind} {spec.name!r} needs require {spec.extension!r} (RFC 5228 §3.2)"
            )

    @staticmethod
    def check_tests(spec: Spec, tests: Sequence[Test], line: int, test_list: bool) -> None:
        if spec.tests is Tests.NONE and tests:
            raise SieveError(line, f"{spec.name} takes no test")
        if spec.tests is Tests.ONE and (len(tests) != 1 or test_list):
            raise SieveError(line, f"{spec.name} needs exactly one test")
        if spec.tests is Tests.LIST and not test_list:
            raise SieveError(line, f"{spec.name} needs a test list in parentheses")

    def decoded(
        self, line: int, tags: dict[str, TagValue], args: tuple[Positional, ...]
    ) -> tuple[dict[str, TagValue], tuple[Positional, ...]]:
        """Strings with encoded characters replaced, when the script requires it."""
        if "encoded-character" not in self.requires:
            return tags, args
        try:
            return (
                {k: _decoded_tag(v) for k, v in tags.items()},
                tuple(_decoded_arg(a) for a in args),
            )
        except encoded.EncodingError as exc:
            raise SieveError(line, str(exc)) from None

    def check_variables(
        self, spec: Spec, line: int, tags: dict[str, TagValue], args: tuple[Positional, ...]
    ) -> None:
        """RFC 5229 §3: a reference to a namespace we do not have is an error; §4: ``set``
        names an identifier; at most ``max_variables`` names per script."""
        if spec.name == "include":
            self.check_include(line, args)
        if spec.name == "ihave":
            # RFC 5463 §4: the capabilities are constant strings, as require's are (RFC 5229
            # §1): "${x}" is taken as written, names no extension, and the test is false (as
            # Pigeonhole has it); nothing in them is a variable to check.
            return
        if spec.name == "global" and "variables" not in self.requires:
            raise SieveError(line, "global needs require 'variables' (RFC 6609 §3.4)")
        if "variables" not in self.requires:
            return
        strings = [
            v for value in (*tags.values(), *args) if isinstance(value, tuple) for v in value
        ]
        global_namespace = "include" in self.requires
        for text in strings:
            for reference in variables.references(text):
                namespace, dot, rest = reference.partition(".")
                if not dot:
                    if not namespace.isdigit():
                        self.local_use(fold(namespace))
                    continue
                # RFC 6609 §3.5: "global.<name>" is the one namespace there is.
                if global_namespace and fold(namespace) == "global":
                    if variables.IDENTIFIER.fullmatch(rest) is None:
                        raise SieveError(
                            line, f"invalid global variable name {rest!r} (RFC 6609 §3.5)"
                        )
                    continue
                raise SieveError(
                    line, f"variable namespace {namespace!r} is not supported (RFC 5229 §3)"
                )
        if spec.name == "global":
            assert isinstance(args[0], tuple)
            for name in args[0]:
                if variables.IDENTIFIER.fullmatch(name) is None:
                    raise SieveError(line, f"global: invalid variable name {name!r}")
                key = fold(name)
                if key in self.locals and key not in self.globals:
                    raise SieveError(
                        line, f"global {name!r} was used as a local variable before (RFC 6609 §3.4)"
                    )
                self.globals.add(key)
            return
        if spec.name == "set":
            named: tuple[Positional, ...] = args[:1]
        elif spec.variable_first is not None and len(args) > len(spec.positional):
            named = args[:1]  # RFC 5232 §3, §4: flag variables
        else:
            return
        assert isinstance(named[0], tuple)
        for name in named[0]:
            namespace, dot, rest = name.partition(".")
            if (
                dot
                and spec.name == "set"
                and "include" in self.requires
                and fold(namespace) == "global"
            ):
                name = rest  # RFC 6609 §3.5: set "global.name"
            elif variables.IDENTIFIER.fullmatch(name) is not None:
                self.local_use(fold(name))
            if variables.IDENTIFIER.fullmatch(name) is None:
                raise SieveError(line, f"{spec.name}: invalid variable name {name!r} (RFC 5229 §4)")
            self.variables.add(fold(name))
        if len(self.variables) > self.max_variables:
            raise SieveError(line, f"more than {self.max_variables} variables")

    def local_use(self, key: str) -> None:
        if key not in self.globals:
            self.locals.add(key)

    def check_include(self, line: int, args: tuple[Positional, ...]) -> None:
        """RFC 6609 §3.2: the name is a constant (never made of variables) and a script name
        (RFC 5804 §1.6; no "/", as in Pigeonhole: names are not paths)."""
        name = args[0]
        assert isinstance(name, tuple)
        if "variables" in self.requires and variables.refers(name[0]):
            raise SieveError(line, "include needs a constant script name (RFC 6609 §3.2)")
        try:
            canonical = sieve_script_name(name[0])
        except InvalidName as exc:
            raise SieveError(line, f"include: {exc}") from None
        if "/" in canonical or canonical != name[0]:
            raise SieveError(line, f"include: invalid script name {name[0]!r}")

    def match(self, spec: Spec, tags: dict[str, TagValue], line: int) -> Match:
        kind = next((t.name for t in spec.tags if t.group == "match" and t.name in tags), "is")
        comparator_value = tags.get("comparator")
        comparator = "i;ascii-casemap"
        if isinstance(comparator_value, tuple):
            comparator = comparator_value[0]
            if comparator not in COMPARATORS:
                raise SieveError(line, f"unsupported comparator {comparator!r} (RFC 5228 §2.7.3)")
            needed = COMPARATORS[comparator]
            if needed is not None and needed not in self.requires:
                raise SieveError(line, f"comparator {comparator!r} needs require {needed!r}")
            if comparator == "i;ascii-numeric" and kind not in NUMERIC_MATCHES:
                raise SieveError(line, f"comparator {comparator!r} cannot do :{kind}")
        relation = ""
        if kind in ("value", "count"):
            value = tags[kind]
            assert isinstance(value, tuple)
            relation = value[0].lower()
            if relation not in RELATIONS:
                raise SieveError(line, f"invalid relational operator {value[0]!r} (RFC 5231 §5)")
        part = next(
            (t.name for t in spec.tags if t.group == "address-part" and t.name in tags), "all"
        )
        return Match(kind, comparator, relation, part)

    def check_values(self, node: Node) -> None:
        """Checks of argument values the grammar cannot express (values that refer to
        variables are checked when the script runs)."""
        if node.match.kind == "regex":
            self.check_patterns(node)
        if node.name in ("vacation", "notify"):
            _check_fcc(node)
        special = node.tag_strings("specialuse") if node.name == "fileinto" else None
        if special is not None:
            _check_special_use(node.line, special[0])
        if node.name == "address":
            for header in node.strings(0):
                if header.lower() not in ADDRESS_HEADERS and not variables.refers(header):
                    raise SieveError(
                        node.line, f"header {header!r} holds no addresses (RFC 5228 §5.1)"
                    )
        elif node.name == "envelope":
            for part in node.strings(0):
                if part.lower() not in ENVELOPE_PARTS and not variables.refers(part):
                    raise SieveError(node.line, f"unsupported envelope part {part!r}")
        elif node.name == "redirect":
            _check_address(node.line, node.string(0), "redirect")
        elif node.name == "vacation":
            sender = node.tag_strings("from")
            if sender is not None:
                _check_address(node.line, sender[0], "vacation :from")
        elif node.name in ("date", "currentdate"):
            _check_date(node)
        elif node.name == "notify":
            _check_notify(node)
        elif node.name == "specialuse_exists":
            for flag in node.strings(len(node.args) - 1):
                _check_special_use(node.line, flag)
        elif node.name in ("addheader", "deleteheader"):
            name = node.string(0)
            if not editheader.valid_name(name) and not variables.refers(name):
                raise SieveError(
                    node.line, f"{node.name}: invalid header field name {name!r} (RFC 5293 §4)"
                )
            if node.name == "addheader":
                return  # its :last is not index's
        elif node.name == "duplicate":
            return  # its :last is its own (RFC 7352 §3.3)
        if "last" in node.tags and "index" not in node.tags:
            raise SieveError(node.line, ":last needs :index (RFC 5260 §6)")
        index = node.tag_number("index")
        if index is not None and index < 1:
            raise SieveError(node.line, ":index counts from 1 (RFC 5260 §6)")

    def check_patterns(self, node: Node) -> None:
        """draft-ietf-sieve-regex-01: every constant key is a valid pattern we can run (as
        Pigeonhole's sievec refuses an invalid one); the keys are the last argument (absent
        from a deleteheader without value patterns)."""
        if node.name == "deleteheader" and len(node.args) < 2:
            return
        casemap = node.match.comparator == "i;ascii-casemap"
        expanding = "variables" in self.requires
        keys = node.strings(len(node.args) - 1)
        if node.name == "hasflag":  # its keys are flag lists, split as the interpreter does
            keys = tuple(flag for key in keys for flag in key.split())
        for key in keys:
            if expanding and variables.refers(key):
                continue
            try:
                regex.check(key, casemap, self.regex_limits)
            except regex.RegexError as exc:
                raise SieveError(node.line, f"invalid regular expression {key!r}: {exc}") from None


def sieve_address(text: str) -> str:
    """The addr-spec of an RFC 5228 §2.4.2.3 sieve-address (``addr`` or ``phrase <addr>``);
    :class:`~pillarbox.errors.InvalidName` if there is none."""
    text = text.strip()
    if text.endswith(">") and "<" in text:
        text = text[text.rindex("<") + 1 : -1]
    return parse_address(text).normalised


def _check_date(node: Node) -> None:
    """RFC 5260 §4.1, §4.2: a zone as +hhmm/-hhmm and a known date-part (Pigeonhole only
    warns of either; such a test could never hold, so we refuse it)."""
    given = node.tag_strings("zone")
    if given is not None and dates.zone(given[0]) is None and not variables.refers(given[0]):
        raise SieveError(node.line, f"invalid :zone {given[0]!r} (RFC 5260 §4.1: +hhmm or -hhmm)")
    date_part = node.string(1 if node.name == "date" else 0)
    if date_part.lower() not in dates.DATE_PARTS and not variables.refers(date_part):
        raise SieveError(node.line, f"unknown date-part {date_part!r} (RFC 5260 §4.2)")


def _check_notify(node: Node) -> None:
    """RFC 5435 §3.2–§3.5: a method we can send to (a valid mailto URI), a :from address
    (RFC 5436: mailto's authors are addresses), :importance "1"–"3", options as
    ``name=value`` — each when it is a constant."""
    method = node.string(0)
    if not variables.refers(method):
        try:
            notify.parse(method)
        except notify.InvalidMethod as exc:
            raise SieveError(node.line, f"notify: {exc} (RFC 5435 §3.2)") from None
    sender = node.tag_strings("from")
    if sender is not None:
        _check_address(node.line, sender[0], "notify :from")
    importance = node.tag_strings("importance")
    if (
        importance is not None
        and not variables.refers(importance[0])
        and importance[0] not in notify.IMPORTANCE
    ):
        raise SieveError(
            node.line, f"notify: :importance {importance[0]!r} is not 1, 2 or 3 (RFC 5435 §3.4)"
        )
    for option in node.tag_strings("options") or ():
        if not variables.refers(option) and not notify.valid_option(option):
            raise SieveError(
                node.line, f"notify: option {option!r} is not name=value (RFC 5435 §3.5)"
            )


def _check_special_use(line: int, flag: str) -> None:
    if not variables.refers(flag) and SPECIAL_USE.fullmatch(flag) is None:
        raise SieveError(line, f"invalid special-use attribute {flag!r} (RFC 8579 §4)")


def _check_fcc(node: Node) -> None:
    """RFC 8580 §3: :flags, :create and :specialuse say how the :fcc copy is stored, so they
    need :fcc."""
    if "fcc" not in node.tags:
        extra = next((t for t in ("flags", "create", "specialuse") if t in node.tags), None)
        if extra is not None:
            raise SieveError(node.line, f"{node.name}: :{extra} needs :fcc (RFC 8580 §3)")
        return
    special = node.tag_strings("specialuse")
    if special is not None:
        _check_special_use(node.line, special[0])


def _check_address(line: int, text: str, what: str) -> None:
    if variables.refers(text):
        return
    try:
        sieve_address(text)
    except InvalidName:
        raise SieveError(line, f"{what}: invalid address {text!r} (RFC 5228 §2.4.2.3)") from None


def _decoded_tag(value: TagValue) -> TagValue:
    return tuple(encoded.decode(v) for v in value) if isinstance(value, tuple) else value


def _decoded_arg(value: Positional) -> Positional:
    return tuple(encoded.decode(v) for v in value) if isinstance(value, tuple) else value


def _check_shape(
    node: Command | Test, spec: Spec, requires: frozenset[str]
) -> tuple[dict[str, TagValue], tuple[Positional, ...]]:
    """Tags (by name) and positional arguments of ``node``, checked against ``spec``."""
    tags: dict[str, TagValue] = {}
    groups: dict[str, str] = {}
    arguments = list(node.arguments)
    index = 0
    while index < len(arguments) and isinstance(arguments[index], Tag):
        tag = arguments[index]
        assert isinstance(tag, Tag)
        index += 1
        tag_spec = spec.tag(tag.name)
        if tag_spec is None:
            raise SieveError(tag.line, f"unknown tag ':{tag.name}' for {spec.name}")
        if tag_spec.extension is not None and tag_spec.extension not in requires:
            raise SieveError(
                tag.line, f"tag ':{tag.name}' needs require {tag_spec.extension!r} (RFC 5228 §3.2)"
            )
        if tag.name in tags:
            raise SieveError(tag.line, f"tag ':{tag.name}' given twice")
        if tag_spec.group is not None:
            other = groups.get(tag_spec.group)
            if other is not None:
                raise SieveError(
                    tag.line,
                    f"tags ':{other}' and ':{tag.name}' exclude each other (RFC 5228 §2.7)",
                )
            groups[tag_spec.group] = tag.name
        if tag_spec.arg is None:
            tags[tag.name] = True
            continue
        if index >= len(arguments):
            raise SieveError(tag.line, f"tag ':{tag.name}' needs a {tag_spec.arg.value}")
        tags[tag.name] = _value(arguments[index], tag_spec.arg, f"tag ':{tag.name}'", tag.line)
        index += 1
    if spec.required_group is not None and spec.required_group not in groups:
        options = " or ".join(f":{t.name}" for t in spec.tags if t.group == spec.required_group)
        raise SieveError(node.line, f"{spec.name} needs {options}")
    rest = arguments[index:]
    for argument in rest:
        if isinstance(argument, Tag):
            raise SieveError(
                argument.line, f"tag ':{argument.name}' after the positional arguments"
            )
    positional = spec.positional
    if (
        spec.variable_first is not None
        and "variables" in requires
        and len(rest) == len(positional) + 1
    ):
        positional = (spec.variable_first, *positional)
    if spec.optional_first is not None and len(rest) == len(positional) + 1:
        positional = (spec.optional_first, *positional)
    if spec.optional_last and len(rest) == len(positional) - 1:
        positional = positional[:-1]
    if len(rest) != len(positional):
        raise SieveError(
            node.line,
            f"{spec.name} takes {len(spec.positional)} positional argument(s), got {len(rest)}",
        )
    args = tuple(
        _value(a, kind, f"{spec.name} argument {i + 1}", node.line)
        for i, (a, kind) in enumerate(zip(rest, positional, strict=True))
    )
    return tags, args


def _value(argument: Argument, kind: Arg, what: str, line: int) -> tuple[str, ...] | int:
    if kind is Arg.NUMBER and isinstance(argument, Number):
        return argument.value
    if (
        kind is not Arg.NUMBER
        and isinstance(argument, StringList)
        and (kind is Arg.STRING_LIST or (len(argument.values) == 1 and not argument.bracketed))
    ):
        return argument.values
    found = (
        "a number"
        if isinstance(argument, Number)
        else "a string list"
        if isinstance(argument, StringList)
        else "a tag"
    )
    return _raise(line, f"{what}: expected a {kind.value}, found {found}")


def _raise(line: int, message: str) -> tuple[str, ...]:
    raise SieveError(line, message)
