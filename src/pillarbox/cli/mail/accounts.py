"""The client's accounts: a TOML file of server settings, and passwords kept apart from it.

Where things live: everything under ``$PILLARBOX_MAIL_HOME`` when set (tests, portable
set-ups); otherwise the config under ``$XDG_CONFIG_HOME/pillarbox-mail`` (``~/.config``) and the
state (POP3 UIDLs) under ``$XDG_STATE_HOME/pillarbox-mail`` (``~/.local/state``).

Passwords never enter ``accounts.toml``. They go to the OS keyring when the optional ``keyring``
package is importable and has a real backend; otherwise to ``secrets/NAME`` beside the config,
created 0600 in a 0700 directory. Each account records which of the two holds its password, so
a keyring appearing or disappearing later does not lose it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from pillarbox.atomicfile import write_atomically
from pillarbox.errors import AlreadyExists, ConfigError, NotFound, UserError
from pillarbox.mailclient.transport import Endpoint, TlsMode

ACCOUNTS_FILE = "accounts.toml"
KEYRING_SERVICE = "pillarbox-mail"
PROTOCOLS = ("imap", "pop3", "smtp")

#: Well-known ports: RFC 8314 §7 (implicit TLS), RFC 6409 §8 (submission), RFC 9051, RFC 1939.
DEFAULT_PORTS: dict[tuple[str, TlsMode], int] = {
    ("imap", TlsMode.IMPLICIT): 993,
    ("imap", TlsMode.STARTTLS): 143,
    ("imap", TlsMode.NONE): 143,
    ("pop3", TlsMode.IMPLICIT): 995,
    ("pop3", TlsMode.STARTTLS): 110,
    ("pop3", TlsMode.NONE): 110,
    ("smtp", TlsMode.IMPLICIT): 465,
    ("smtp", TlsMode.STARTTLS): 587,
    ("smtp", TlsMode.NONE): 587,
}

# Account names become file names (secrets/NAME, state/NAME): keep them to a safe alphabet.
_ACCOUNT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@+-]{0,63}")


@dataclass(frozen=True, slots=True)
class ClientPaths:
    config_dir: Path
    state_dir: Path

    @property
    def accounts_file(self) -> Path:
        return self.config_dir / ACCOUNTS_FILE

    @property
    def secrets_dir(self) -> Path:
        return self.config_dir / "secrets"

    def account_state(self, name: str) -> Path:
        return self.state_dir / name


def client_paths(environ: Mapping[str, str] | None = None) -> ClientPaths:
    """The directories of this user's client, from the environment (the only place read)."""
    env = os.environ if environ is None else environ
    if env.get("PILLARBOX_MAIL_HOME"):
        home = Path(env["PILLARBOX_MAIL_HOME"])
        return ClientPaths(home, home / "state")
    user_home = Path(env.get("HOME") or Path.home())
    config = Path(env.get("XDG_CONFIG_HOME") or user_home / ".config")
    state = Path(env.get("XDG_STATE_HOME") or user_home / ".local" / "state")
    return ClientPaths(config / "pillarbox-mail", state / "pillarbox-mail")


@dataclass(frozen=True, slots=True, kw_only=True)
class MailAccount:
    """One configured account; an endpoint is None when the account does not use it."""

    name: str
    address: str
    username: str
    display_name: str = ""
    imap: Endpoint | None = None
    pop3: Endpoint | None = None
    smtp: Endpoint | None = None
    secret_store: str = "file"
    #: A CA or self-signed certificate (PEM, absolute path) trusted for this account's servers,
    #: from ``account add --cafile``; a command's own ``--cafile`` wins.
    cafile: str = ""

    def endpoint(self, protocol: str) -> Endpoint:
        endpoint: Endpoint | None = getattr(self, protocol)
        if endpoint is None:
            raise ConfigError(
                f"accounts.{self.name}.{protocol}",
                f"no {protocol.upper()} server configured for this account "
                f"(pillarbox mail account add {self.name} --{protocol}-host …)",
            )
        return endpoint

    def as_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "name": self.name,
            "address": self.address,
            "username": self.username,
            "display_name": self.display_name,
            "secret_store": self.secret_store,
        }
        if self.cafile:
            data["cafile"] = self.cafile
        for protocol in PROTOCOLS:
            endpoint: Endpoint | None = getattr(self, protocol)
            if endpoint is not None:
                data[protocol] = {
                    "host": endpoint.host,
                    "port": endpoint.port,
                    "tls": endpoint.tls.value,
                }
        return data


def check_account_name(name: str) -> str:
    if not _ACCOUNT_NAME.fullmatch(name):
        raise ConfigError("name", f"account name {name!r} must be 1–64 of A-Z a-z 0-9 . _ @ + -")
    return name


# -- accounts.toml ------------------------------------------------------------------------------


def load_accounts(paths: ClientPaths) -> list[MailAccount]:
    """Every account, in the order they were added (the first is the default)."""
    try:
        raw = paths.accounts_file.read_bytes()
    except FileNotFoundError:
        return []
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(str(paths.accounts_file), f"not valid TOML: {exc}") from exc
    table = data.get("accounts", {})
    if not isinstance(table, dict):
        raise ConfigError("accounts", "must be a table")
    return [_account_from_table(name, value) for name, value in table.items()]


def _account_from_table(name: str, table: Any) -> MailAccount:
    key = f"accounts.{name}"
    if not isinstance(table, dict):
        raise ConfigError(key, "must be a table")
    try:
        endpoints = {
            protocol: Endpoint(
                str(table[protocol]["host"]),
                int(table[protocol]["port"]),
                TlsMode(table[protocol]["tls"]),
            )
            for protocol in PROTOCOLS
            if protocol in table
        }
        return MailAccount(
            name=check_account_name(name),
            address=str(table["address"]),
            username=str(table["username"]),
            display_name=str(table.get("display_name", "")),
            secret_store=str(table.get("secret_store", "file")),
            cafile=str(table.get("cafile", "")),
            **endpoints,
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise ConfigError(key, f"incomplete or invalid account: {exc}") from exc


def save_accounts(paths: ClientPaths, accounts: list[MailAccount]) -> None:
    """Rewrite accounts.toml atomically (write, fsync, rename)."""
    paths.config_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    lines = ["# pillarbox mail accounts; passwords are kept in the keyring or secrets/", ""]
    for account in accounts:
        data = account.as_dict()
        name = data.pop("name")
        lines.append(f"[accounts.{_toml_key(name)}]")
        nested = {p: data.pop(p) for p in PROTOCOLS if p in data}
        lines += [f"{k} = {_toml_value(v)}" for k, v in data.items()]
        lines.append("")
        for protocol, fields in nested.items():
            lines.append(f"[accounts.{_toml_key(name)}.{protocol}]")
            lines += [f"{k} = {_toml_value(v)}" for k, v in fields.items()]
            lines.append("")
    write_atomically(paths.accounts_file, "\n".join(lines).encode("utf-8"), 0o600)


def _toml_key(name: str) -> str:
    return json.dumps(name, ensure_ascii=False)


def _toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    # JSON string escapes (\" \\ \n \uXXXX) are all valid TOML basic-string escapes.
    return json.dumps(str(value), ensure_ascii=False)


def find_account(accounts: list[MailAccount], name: str | None) -> MailAccount:
    """The account called ``name``, or the first one when no name is given."""
    if not accounts:
        raise ConfigError(
            "account", "no account configured; add one with: pillarbox mail account add NAME …"
        )
    if name is None:
        return accounts[0]
    for account in accounts:
        if account.name == name:
            return account
    known = ", ".join(a.name for a in accounts)
    raise ConfigError("--account", f"no account named {name!r} (configured: {known})")


# -- secrets ------------------------------------------------------------------------------------


class SecretStore(Protocol):
    """Where passwords live; ``name`` is what accounts.toml records."""

    name: str

    def get(self, account: str) -> str | None: ...

    def set(self, account: str, secret: str) -> None: ...

    def delete(self, account: str) -> None: ...


class FileSecrets:
    """One file per account, 0600 in a 0700 directory; refused if others can read it."""

    name = "file"

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def _path(self, account: str) -> Path:
        return self.directory / check_account_name(account)

    def get(self, account: str) -> str | None:
        path = self._path(account)
        try:
            mode = path.stat().st_mode
        except FileNotFoundError:
            return None
        if mode & 0o077:
            raise UserError(f"{path} is readable by others; run: chmod 600 {path}")
        return path.read_text(encoding="utf-8")

    def set(self, account: str, secret: str) -> None:
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.chmod(self.directory, 0o700)
        write_atomically(self._path(account), secret.encode("utf-8"), 0o600)

    def delete(self, account: str) -> None:
        self._path(account).unlink(missing_ok=True)


class KeyringSecrets:
    """The OS keyring through the optional ``keyring`` package."""

    name = "keyring"

    def __init__(self, module: Any) -> None:
        self._keyring = module

    def get(self, account: str) -> str | None:
        value = self._keyring.get_password(KEYRING_SERVICE, account)
        return None if value is None else str(value)

    def set(self, account: str, secret: str) -> None:
        self._keyring.set_password(KEYRING_SERVICE, account, secret)

    def delete(self, account: str) -> None:
        with contextlib.suppress(self._keyring.errors.PasswordDeleteError):
            self._keyring.delete_password(KEYRING_SERVICE, account)


def os_keyring() -> KeyringSecrets | None:
    """The OS keyring if ``keyring`` is installed with a backend that can store (not the
    ``fail``/``null`` backends it falls back to on headless machines)."""
    try:
        import keyring  # type: ignore[import-not-found,unused-ignore]
    except ImportError:
        return None
    backend = keyring.get_keyring()
    if getattr(backend, "priority", 0) <= 0 or type(backend).__module__.startswith(
        ("keyring.backends.fail", "keyring.backends.null")
    ):
        return None
    return KeyringSecrets(keyring)


def secret_stores(paths: ClientPaths) -> dict[str, SecretStore]:
    stores: dict[str, SecretStore] = {"file": FileSecrets(paths.secrets_dir)}
    keyring = os_keyring()
    if keyring is not None:
        stores["keyring"] = keyring
    return stores


def preferred_secret_store(paths: ClientPaths) -> SecretStore:
    stores = secret_stores(paths)
    return stores.get("keyring", stores["file"])


def password_for(paths: ClientPaths, account: MailAccount) -> str:
    store = secret_stores(paths).get(account.secret_store)
    if store is None:
        raise ConfigError(
            f"accounts.{account.name}.secret_store",
            f"password is in the {account.secret_store!r} store, which is not available here",
        )
    secret = store.get(account.name)
    if secret is None:
        raise ConfigError(
            f"accounts.{account.name}",
            "no password stored; add the account again with --password-stdin",
        )
    return secret


# -- adding and removing ------------------------------------------------------------------------


def add_account(
    paths: ClientPaths, account: MailAccount, password: str, *, replace: bool = False
) -> MailAccount:
    """Store the password, then the settings (so a config entry never lacks its password)."""
    accounts = load_accounts(paths)
    existing = [a for a in accounts if a.name == account.name]
    if existing and not replace:
        raise AlreadyExists(f"account {account.name!r} exists (use --replace to change it)")
    store = preferred_secret_store(paths)
    store.set(account.name, password)
    stored = dataclasses.replace(account, secret_store=store.name)
    if existing:
        accounts = [stored if a.name == account.name else a for a in accounts]
    else:
        accounts.append(stored)
    save_accounts(paths, accounts)
    return stored


def remove_account(paths: ClientPaths, name: str) -> MailAccount:
    accounts = load_accounts(paths)
    for account in accounts:
        if account.name == name:
            save_accounts(paths, [a for a in accounts if a.name != name])
            store = secret_stores(paths).get(account.secret_store)
            if store is not None:
                store.delete(name)
            return account
    raise NotFound(f"no account named {name!r}")
