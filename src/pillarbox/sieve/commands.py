"""What each command and test may take (RFC 5228 §3–§5 and the extensions' "Syntax" lines):
tags with their argument and mutually exclusive group, positional arguments, tests, block.

One table, read by :mod:`.validate`; adding a command is adding a row.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class Arg(enum.Enum):
    STRING = "string"
    STRING_LIST = "string list"
    NUMBER = "number"


class Tests(enum.Enum):
    NONE = 0
    ONE = 1
    LIST = 2


@dataclass(frozen=True, slots=True)
class TagSpec:
    name: str
    arg: Arg | None = None
    #: Tags of one group exclude each other (RFC 5228 §2.7: one match type, one comparator…).
    group: str | None = None
    #: The capability a script must ``require`` to use the tag.
    extension: str | None = None


@dataclass(frozen=True, slots=True)
class Spec:
    name: str
    test: bool = False
    extension: str | None = None
    tags: tuple[TagSpec, ...] = ()
    positional: tuple[Arg, ...] = ()
    tests: Tests = Tests.NONE
    block: bool = False
    #: A group one of whose tags must be given (``size`` needs :over or :under).
    required_group: str | None = None
    #: With "variables", a first positional argument naming variables may come before the
    #: others (RFC 5232 §3, §4: ``setflag "var" "flags"``, ``hasflag ["v"] "flag"``).
    variable_first: Arg | None = None
    #: The last positional argument may be left out (RFC 5293 §5 deleteheader's patterns).
    optional_last: bool = False
    #: A first positional argument that may be left out (RFC 8579 §3 specialuse_exists's
    #: mailbox).
    optional_first: Arg | None = None

    def tag(self, name: str) -> TagSpec | None:
        return next((t for t in self.tags if t.name == name), None)


S, L, N = Arg.STRING, Arg.STRING_LIST, Arg.NUMBER

COMPARATOR = (TagSpec("comparator", S, "comparator"),)  # RFC 5228 §2.7.3
MATCH_TYPE = (
    TagSpec("is", group="match"),  # RFC 5228 §2.7.1
    TagSpec("contains", group="match"),
    TagSpec("matches", group="match"),
    TagSpec("value", S, "match", "relational"),  # RFC 5231 §4.1
    TagSpec("count", S, "match", "relational"),  # RFC 5231 §4.2
    TagSpec("regex", group="match", extension="regex"),  # draft-ietf-sieve-regex-01
)
ADDRESS_PART = (
    TagSpec("all", group="address-part"),  # RFC 5228 §2.7.4
    TagSpec("localpart", group="address-part"),
    TagSpec("domain", group="address-part"),
    TagSpec("user", group="address-part", extension="subaddress"),  # RFC 5233 §4
    TagSpec("detail", group="address-part", extension="subaddress"),
)
FLAGS = TagSpec("flags", L, extension="imap4flags")  # RFC 5232 §5
INDEX = (  # RFC 5260 §6
    TagSpec("index", N, extension="index"),
    TagSpec("last", extension="index"),
)
ZONE = TagSpec("zone", S, "zone")  # RFC 5260 §4.1
COPY = TagSpec("copy", extension="copy")  # RFC 3894 §3
SPECIALUSE = TagSpec("specialuse", S, extension="special-use")  # RFC 8579 §4
CREATE = TagSpec("create", extension="mailbox")  # RFC 5490 §3.2
#: RFC 8580 §3: where an auto-reply's or notification's copy is stored; the other three
#: qualify :fcc (refused without it, in .validate).
FCC = (TagSpec("fcc", S, extension="fcc"), FLAGS, CREATE, SPECIALUSE)

SPECS: dict[str, Spec] = {
    s.name: s
    for s in (
        # RFC 5228 §3: control
        Spec("require", positional=(L,)),
        Spec("if", tests=Tests.ONE, block=True),
        Spec("elsif", tests=Tests.ONE, block=True),
        Spec("else", block=True),
        Spec("stop"),
        # RFC 5228 §4: actions
        Spec("keep", tags=(FLAGS,)),
        Spec("discard"),
        Spec("redirect", tags=(COPY,), positional=(S,)),
        Spec(
            "fileinto",
            extension="fileinto",
            tags=(FLAGS, COPY, CREATE, SPECIALUSE),
            positional=(S,),
        ),
        # RFC 5429 §2.1, §2.2
        Spec("reject", extension="reject", positional=(S,)),
        Spec("ereject", extension="ereject", positional=(S,)),
        # RFC 5232 §3 (without "variables": only the internal variable)
        Spec("setflag", extension="imap4flags", positional=(L,), variable_first=S),
        Spec("addflag", extension="imap4flags", positional=(L,), variable_first=S),
        Spec("removeflag", extension="imap4flags", positional=(L,), variable_first=S),
        # RFC 5230 §4
        Spec(
            "vacation",
            extension="vacation",
            tags=(
                TagSpec("days", N, "period"),
                TagSpec("seconds", N, "period", "vacation-seconds"),  # RFC 6131 §2
                TagSpec("subject", S),
                TagSpec("from", S),
                TagSpec("addresses", L),
                TagSpec("mime"),
                TagSpec("handle", S),
                *FCC,
            ),
            positional=(S,),
        ),
        # RFC 5435 §3.1
        Spec(
            "notify",
            extension="enotify",
            tags=(
                TagSpec("from", S),
                TagSpec("importance", S),
                TagSpec("options", L),
                TagSpec("message", S),
                *FCC,
            ),
            positional=(S,),
        ),
        # RFC 5293 §4, §5 (:index/:last are deleteheader's own, without "index")
        Spec("addheader", extension="editheader", tags=(TagSpec("last"),), positional=(S, S)),
        Spec(
            "deleteheader",
            extension="editheader",
            tags=(TagSpec("index", N), TagSpec("last"), *COMPARATOR, *MATCH_TYPE),
            positional=(S, L),
            optional_last=True,
        ),
        # RFC 6609 §3.2–§3.4
        Spec(
            "include",
            extension="include",
            tags=(
                TagSpec("personal", group="location"),
                TagSpec("global", group="location"),
                TagSpec("once"),
                TagSpec("optional"),
            ),
            positional=(S,),
        ),
        Spec("return", extension="include"),
        # RFC 5463 §5
        Spec("error", extension="ihave", positional=(S,)),
        Spec("global", extension="include", positional=(L,)),
        # RFC 5229 §4: modifiers of one precedence are one group
        Spec(
            "set",
            extension="variables",
            tags=(
                TagSpec("lower", group="case"),
                TagSpec("upper", group="case"),
                TagSpec("lowerfirst", group="casefirst"),
                TagSpec("upperfirst", group="casefirst"),
                TagSpec("quotewildcard", group="quote"),
                # draft-ietf-sieve-regex-01: :quoteregex has precedence 20, as :quotewildcard
                TagSpec("quoteregex", group="quote", extension="regex"),
                TagSpec("encodeurl", extension="enotify"),  # RFC 5435 §6
                TagSpec("length"),
            ),
            positional=(S, S),
        ),
        # RFC 5228 §5: tests
        Spec(
            "address",
            True,
            tags=COMPARATOR + ADDRESS_PART + MATCH_TYPE + INDEX,
            positional=(L, L),
        ),
        Spec("allof", True, tests=Tests.LIST),
        Spec("anyof", True, tests=Tests.LIST),
        Spec(
            "envelope",
            True,
            extension="envelope",
            tags=COMPARATOR + ADDRESS_PART + MATCH_TYPE,
            positional=(L, L),
        ),
        Spec("exists", True, positional=(L,)),
        Spec("false", True),
        Spec("header", True, tags=COMPARATOR + MATCH_TYPE + INDEX, positional=(L, L)),
        Spec("not", True, tests=Tests.ONE),
        Spec(
            "size",
            True,
            tags=(TagSpec("over", N, "size"), TagSpec("under", N, "size")),
            required_group="size",
        ),
        Spec("true", True),
        # RFC 5260 §4, §5
        Spec(
            "date",
            True,
            extension="date",
            tags=COMPARATOR + MATCH_TYPE + INDEX + (ZONE, TagSpec("originalzone", group="zone")),
            positional=(S, S, L),
        ),
        Spec(
            "currentdate",
            True,
            extension="date",
            tags=COMPARATOR + MATCH_TYPE + (ZONE,),
            positional=(S, L),
        ),
        # RFC 5183 §4
        Spec(
            "environment",
            True,
            extension="environment",
            tags=COMPARATOR + MATCH_TYPE,
            positional=(S, L),
        ),
        # RFC 5490 §3.1
        Spec("mailboxexists", True, extension="mailbox", positional=(L,)),
        # RFC 5490 §3.3–§3.6
        Spec(
            "metadata",
            True,
            extension="mboxmetadata",
            tags=COMPARATOR + MATCH_TYPE,
            positional=(S, S, L),
        ),
        Spec("metadataexists", True, extension="mboxmetadata", positional=(S, L)),
        Spec(
            "servermetadata",
            True,
            extension="servermetadata",
            tags=COMPARATOR + MATCH_TYPE,
            positional=(S, L),
        ),
        Spec("servermetadataexists", True, extension="servermetadata", positional=(L,)),
        # RFC 5435 §4, §5
        Spec("valid_notify_method", True, extension="enotify", positional=(L,)),
        Spec(
            "notify_method_capability",
            True,
            extension="enotify",
            tags=COMPARATOR + MATCH_TYPE,
            positional=(S, S, L),
        ),
        # RFC 5229 §5
        Spec(
            "string", True, extension="variables", tags=COMPARATOR + MATCH_TYPE, positional=(L, L)
        ),
        # RFC 5232 §4
        Spec(
            "hasflag",
            True,
            extension="imap4flags",
            tags=COMPARATOR + MATCH_TYPE,
            positional=(L,),
            variable_first=L,
        ),
        # RFC 5463 §4
        Spec("ihave", True, extension="ihave", positional=(L,)),
        # RFC 5235 §3.1, §3.2 (it obsoletes RFC 3685): :percent needs "spamtestplus"
        Spec(
            "spamtest",
            True,
            extension="spamtest",
            tags=(*COMPARATOR, *MATCH_TYPE, TagSpec("percent", extension="spamtestplus")),
            positional=(S,),
        ),
        # RFC 7352 §3
        Spec(
            "duplicate",
            True,
            extension="duplicate",
            tags=(
                TagSpec("handle", S),
                TagSpec("header", S, "id"),
                TagSpec("uniqueid", S, "id"),
                TagSpec("seconds", N),
                TagSpec("last"),
            ),
        ),
        # RFC 8579 §3
        Spec("specialuse_exists", True, extension="special-use", positional=(L,), optional_first=S),
        # RFC 5173 §5
        Spec(
            "body",
            True,
            extension="body",
            tags=COMPARATOR
            + MATCH_TYPE
            + (
                TagSpec("raw", group="transform"),
                TagSpec("content", L, "transform"),
                TagSpec("text", group="transform"),
            ),
            positional=(L,),
        ),
    )
}
