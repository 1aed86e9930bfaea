"""The Sieve syntax tree (RFC 5228 §8.2): commands with arguments, tests and blocks.

This is syntax only; :mod:`.validate` checks each command against what it may take. Nesting
(blocks and tests inside tests) is bounded while parsing, so a hostile script cannot exhaust
the stack.
"""

from __future__ import annotations

from dataclasses import dataclass

from pillarbox.sieve.errors import SieveError
from pillarbox.sieve.lexer import Kind, Token, tokenize


@dataclass(frozen=True, slots=True)
class StringList:
    values: tuple[str, ...]
    line: int
    #: Written with brackets: not a lone string, even with one member.
    bracketed: bool


@dataclass(frozen=True, slots=True)
class Number:
    value: int
    line: int


@dataclass(frozen=True, slots=True)
class Tag:
    name: str  # without the colon
    line: int


Argument = StringList | Number | Tag


@dataclass(frozen=True, slots=True)
class Test:
    name: str
    arguments: tuple[Argument, ...]
    tests: tuple[Test, ...]
    line: int
    #: Written as a parenthesised test-list (even of one test).
    test_list: bool = False


@dataclass(frozen=True, slots=True)
class Command:
    name: str
    arguments: tuple[Argument, ...]
    tests: tuple[Test, ...]
    #: The ``{ … }`` block, None when the command ended with ";".
    block: tuple[Command, ...] | None
    line: int
    test_list: bool = False


def parse(text: str, *, max_nesting: int) -> tuple[Command, ...]:
    """The commands of ``text``; :class:`SieveError` on a syntax error or deeper nesting
    than ``max_nesting`` (blocks and tests counted together)."""
    return _Parser(tokenize(text), max_nesting).script()


class _Parser:
    def __init__(self, tokens: list[Token], max_nesting: int) -> None:
        self.tokens = tokens
        self.pos = 0
        self.max_nesting = max_nesting

    def peek(self) -> Token:
        return self.tokens[self.pos]

    def take(self) -> Token:
        token = self.tokens[self.pos]
        if token.kind is not Kind.END:
            self.pos += 1
        return token

    def is_separator(self, char: str) -> bool:
        token = self.peek()
        return token.kind is Kind.SEPARATOR and token.text == char

    def expect(self, char: str, what: str) -> Token:
        token = self.take()
        if token.kind is not Kind.SEPARATOR or token.text != char:
            raise SieveError(token.line, f"expected {char!r} {what}, found {_describe(token)}")
        return token

    def script(self) -> tuple[Command, ...]:
        commands = self.commands(0)
        token = self.peek()
        if token.kind is not Kind.END:
            raise SieveError(token.line, f"unexpected {_describe(token)}")
        return commands

    def commands(self, depth: int) -> tuple[Command, ...]:
        out: list[Command] = []
        while self.peek().kind is Kind.IDENTIFIER:
            out.append(self.command(depth))
        return tuple(out)

    def command(self, depth: int) -> Command:
        name = self.take()
        arguments = self.arguments()
        tests, test_list = self.tests(depth + 1)
        token = self.peek()
        if self.is_separator(";"):
            self.take()
            return Command(name.text, arguments, tests, None, name.line, test_list)
        if self.is_separator("{"):
            if depth + 1 > self.max_nesting:
                raise SieveError(token.line, f"nested deeper than {self.max_nesting}")
            self.take()
            block = self.commands(depth + 1)
            self.expect("}", "to end the block")
            return Command(name.text, arguments, tests, block, name.line, test_list)
        raise SieveError(
            token.line, f"expected ';' or '{{' after {name.text!r}, found {_describe(token)}"
        )

    def arguments(self) -> tuple[Argument, ...]:
        out: list[Argument] = []
        while True:
            token = self.peek()
            if token.kind is Kind.STRING:
                self.take()
                out.append(StringList((token.text,), token.line, bracketed=False))
            elif token.kind is Kind.NUMBER:
                self.take()
                out.append(Number(token.number, token.line))
            elif token.kind is Kind.TAG:
                self.take()
                out.append(Tag(token.text, token.line))
            elif self.is_separator("["):
                out.append(self.string_list())
            else:
                return tuple(out)

    def string_list(self) -> StringList:
        start = self.take()
        values: list[str] = []
        while True:
            token = self.take()
            if token.kind is not Kind.STRING:
                raise SieveError(
                    token.line, f"expected a string in the list, found {_describe(token)}"
                )
            values.append(token.text)
            if self.is_separator(","):
                self.take()
                continue
            self.expect("]", "to end the string list")
            return StringList(tuple(values), start.line, bracketed=True)

    def tests(self, depth: int) -> tuple[tuple[Test, ...], bool]:
        token = self.peek()
        if token.kind is Kind.IDENTIFIER:
            return (self.test(depth),), False
        if not self.is_separator("("):
            return (), False
        self.take()
        out = [self.test(depth)]
        while self.is_separator(","):
            self.take()
            out.append(self.test(depth))
        self.expect(")", "to end the test list")
        return tuple(out), True

    def test(self, depth: int) -> Test:
        token = self.take()
        if token.kind is not Kind.IDENTIFIER:
            raise SieveError(token.line, f"expected a test, found {_describe(token)}")
        if depth > self.max_nesting:
            raise SieveError(token.line, f"nested deeper than {self.max_nesting}")
        arguments = self.arguments()
        tests, test_list = self.tests(depth + 1)
        return Test(token.text, arguments, tests, token.line, test_list)


def _describe(token: Token) -> str:
    if token.kind is Kind.END:
        return "the end of the script"
    if token.kind is Kind.STRING:
        return "a string"
    if token.kind is Kind.NUMBER:
        return f"number {token.text}"
    if token.kind is Kind.TAG:
        return f"tag ':{token.text}'"
    if token.kind is Kind.IDENTIFIER:
        return f"identifier {token.text!r}"
    return repr(token.text)
