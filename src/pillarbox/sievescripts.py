"""An account's Sieve scripts as users manage them: names, quotas and compilation checked
before the store sees anything (the store checks neither, ``store.interface``).

ManageSieve (:mod:`pillarbox.managesieve`) and ``pillarbox sieve`` share these rules, so a
script refused over one is refused over the other with the same reason:

- names go through :func:`~pillarbox.store.types.sieve_script_name` (RFC 5804 §1.6);
- a script must be UTF-8, at most ``max_script_size`` octets (§2.5 QUOTA/MAXSIZE) and compile
  (:func:`pillarbox.sieve.compile_script`, §2.6: a script with errors is not stored); one
  that includes itself by its own name is refused (RFC 6609 §3.2); an include of a script
  not stored (yet) is not an error (§3.2: it is one when it runs, unless :optional; Pigeonhole's
  ManageSieve only warns "ignored during upload");
- an account holds at most ``max_scripts`` scripts (§2.6 QUOTA/MAXSCRIPTS); replacing one
  does not count as a new one;
- the active script cannot be deleted (§2.10 ACTIVE); deactivate it first.
"""

from __future__ import annotations

import enum
import os
from dataclasses import dataclass
from pathlib import Path

from pillarbox.blocking import run_blocking
from pillarbox.config import SieveSection
from pillarbox.errors import NotFound, QuotaExceeded, UserError
from pillarbox.sieve import (
    DEFAULT_MAX_NESTING,
    DEFAULT_MAX_VARIABLES,
    DEFAULT_REGEX_LIMITS,
    INLINE_COMPILE_SIZE,
    RegexLimits,
    Script,
    SieveError,
    compile_script,
)
from pillarbox.store.interface import Store
from pillarbox.store.types import SieveScript, sieve_script_name


@dataclass(frozen=True, slots=True, kw_only=True)
class ScriptLimits:
    """The ``[sieve]`` quotas, per account."""

    max_script_size: int = 65536
    max_scripts: int = 16
    #: Deepest nesting a script may have (the compiler's stack bound, ``sieve.max_nesting``).
    max_nesting: int = DEFAULT_MAX_NESTING
    #: Variables a script may set (``sieve.max_variables``, RFC 5229 §6).
    max_variables: int = DEFAULT_MAX_VARIABLES
    #: What a :regex pattern may cost (``sieve.regex_max_length``, ``regex_max_memory``).
    regex: RegexLimits = DEFAULT_REGEX_LIMITS

    @classmethod
    def of(cls, sieve: SieveSection) -> ScriptLimits:
        """The limits the ``[sieve]`` config section sets."""
        return cls(
            max_script_size=sieve.max_script_size,
            max_scripts=sieve.max_scripts,
            max_nesting=sieve.max_nesting,
            max_variables=sieve.max_variables,
            regex=RegexLimits(sieve.regex_max_length, sieve.regex_max_memory),
        )


class Quota(enum.Enum):
    """Which quota a script would break (RFC 5804 §1.3 QUOTA/MAXSIZE, QUOTA/MAXSCRIPTS)."""

    MAX_SIZE = "MAXSIZE"
    MAX_SCRIPTS = "MAXSCRIPTS"


class ScriptQuotaExceeded(QuotaExceeded):
    def __init__(self, quota: Quota, message: str) -> None:
        super().__init__(message)
        self.quota = quota


class InvalidScript(UserError):
    """The script is not UTF-8 or does not compile; ``line`` is 1-based, 0 if unknown."""

    def __init__(self, message: str, line: int = 0) -> None:
        super().__init__(f"line {line}: {message}" if line else message)
        self.line = line
        #: The reason without the line (an editor shows the line beside it).
        self.message = message


class ScriptActive(UserError):
    """The active script cannot be deleted (RFC 5804 §2.10)."""


def decode_script(data: bytes) -> str:
    """The script's text; :class:`InvalidScript` unless it is UTF-8 (RFC 5228 §2.1)."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidScript(f"script is not UTF-8 (octet {exc.start + 1})") from None


def compile_checked(text: str, limits: ScriptLimits) -> Script:
    """Compile ``text``; :class:`InvalidScript` with the compiler's line and message if not."""
    try:
        return compile_script(
            text,
            max_nesting=limits.max_nesting,
            max_variables=limits.max_variables,
            regex_limits=limits.regex,
        )
    except SieveError as exc:
        raise InvalidScript(exc.message, exc.line) from None


async def check_script(text: str, limits: ScriptLimits) -> Script:
    """:func:`compile_checked` for a server: a large script on the worker pool, so one upload
    of 64 KB does not hold every other session of the event loop for ~50 ms."""
    if len(text) <= INLINE_COMPILE_SIZE:
        return compile_checked(text, limits)
    return await run_blocking(compile_checked, text, limits)


def check_size(size: int, limits: ScriptLimits) -> None:
    if size > limits.max_script_size:
        raise ScriptQuotaExceeded(
            Quota.MAX_SIZE,
            f"script is {size} octets, more than the {limits.max_script_size} allowed",
        )


async def check_space(
    store: Store, account_id: int, name: str, size: int, limits: ScriptLimits
) -> str:
    """Whether a script of ``size`` octets could be stored as ``name`` (RFC 5804 §2.5
    HAVESPACE); returns the canonical name, raises :class:`ScriptQuotaExceeded`."""
    name = sieve_script_name(name)
    check_size(size, limits)
    if await store.get_sieve_script(account_id, name) is None:
        count = len(await store.list_sieve_scripts(account_id))
        if count >= limits.max_scripts:
            raise ScriptQuotaExceeded(
                Quota.MAX_SCRIPTS, f"{count} scripts stored, the most allowed"
            )
    return name


async def put_script(
    store: Store, account_id: int, name: str, text: str, limits: ScriptLimits
) -> str:
    """Create or replace script ``name`` (its active flag is kept); returns the canonical
    name. Checks in the order a user can act on: quota, then the script's errors."""
    name = await check_space(store, account_id, name, len(text.encode("utf-8")), limits)
    script = await check_script(text, limits)
    if ("personal", name) in script.includes:
        # RFC 6609 §3.2: a loop; the one an upload can see for certain (others are found
        # when the script runs, as the scripts they name may change meanwhile).
        raise InvalidScript(f"the script includes itself ({name!r}; RFC 6609 §3.2)")
    await store.put_sieve_script(account_id, name, text)
    return name


async def get_script(store: Store, account_id: int, name: str) -> SieveScript:
    script = await store.get_sieve_script(account_id, sieve_script_name(name))
    if script is None:
        raise NotFound(f"no script named {name!r}")
    return script


async def activate(store: Store, account_id: int, name: str | None) -> None:
    """Make ``name`` the active script, or none active for None (RFC 5804 §2.8)."""
    canonical = None if name is None else sieve_script_name(name)
    await store.set_active_sieve_script(account_id, canonical)


async def delete_script(store: Store, account_id: int, name: str) -> None:
    script = await get_script(store, account_id, name)
    if script.active:
        raise ScriptActive(f"script {script.name!r} is active; deactivate it first")
    await store.delete_sieve_script(account_id, script.name)


async def rename_script(store: Store, account_id: int, old: str, new: str) -> None:
    """NotFound, AlreadyExists (RFC 5804 §2.11); the active flag moves with the script."""
    await store.rename_sieve_script(account_id, sieve_script_name(old), sieve_script_name(new))


#: The file name suffix of a site script in ``sieve.global_dir`` (as Pigeonhole's).
GLOBAL_SUFFIX = ".sieve"


def read_global_script(directory: Path, name: str, max_size: int) -> bytes | None:
    """The site script ``name`` (RFC 6609 ``include :global``) from ``directory``, None if
    there is none; blocking. The file is found by listing the directory and comparing names,
    never opened by a path made of ``name``, so no name reaches another directory. At most
    ``max_size + 1`` octets are read (more is refused by the compiler's size check)."""
    wanted = name + GLOBAL_SUFFIX
    try:
        with os.scandir(directory) as entries:
            entry = next((e for e in entries if e.name == wanted and e.is_file()), None)
        if entry is None:
            return None
        with open(entry.path, "rb") as f:
            return f.read(max_size + 1)
    except FileNotFoundError:
        return None
