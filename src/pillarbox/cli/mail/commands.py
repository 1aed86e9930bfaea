"""``pillarbox mail …``: a command-line mail client for any standard SMTP/IMAP/POP3 server.

Conventions scripts rely on: ``--account NAME`` on every command (default: the first account),
``--json`` for machine-readable output, and exit codes 0 ok, 1 the server said no (its message
is printed), 2 usage or configuration error, 3 no usable connection (refused, timed out, TLS or
certificate failure, with the reason). Certificates are verified unless ``--insecure`` is
given, which prints a warning; ``--cafile`` trusts one specific CA or self-signed certificate.
Messages are addressed by IMAP UID within ``--folder`` (default INBOX).
"""

from __future__ import annotations

import ssl
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import click

from pillarbox.cli.mail import accounts as acct
from pillarbox.cli.mail import compose, render
from pillarbox.cli.mail.reading import ReadableMessage, attachment_targets, readable
from pillarbox.errors import ConfigError, UserError
from pillarbox.mailclient.imap import (
    ANSWERED,
    FLAGGED,
    FORWARDED,
    SEEN,
    ImapSession,
    Summary,
    open_imap,
)
from pillarbox.mailclient.transport import ConnectionFailed, Endpoint, TlsMode, TlsPolicy

F = TypeVar("F", bound=Callable[..., Any])

EXIT_REFUSED = 1
EXIT_USAGE = 2
EXIT_CONNECTION = 3
DEFAULT_TIMEOUT = 30.0
DEFAULT_LIMIT = 50
_OPTIONS_KEY = "pillarbox.mail.options"


class MailGroup(click.Group):
    """Maps the error tree onto the client's exit codes (click itself exits 2 on bad usage)."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except ConnectionFailed as exc:
            click.echo(f"pillarbox mail: {exc}", err=True)
            ctx.exit(EXIT_CONNECTION)
        except ConfigError as exc:
            click.echo(f"pillarbox mail: {exc}", err=True)
            ctx.exit(EXIT_USAGE)
        except UserError as exc:
            click.echo(f"pillarbox mail: {exc}", err=True)
            ctx.exit(EXIT_REFUSED)


# -- options every command takes ----------------------------------------------------------------


@dataclass
class ClientOptions:
    account: str | None = None
    as_json: bool = False
    cafile: Path | None = None
    insecure: bool = False
    timeout: float = DEFAULT_TIMEOUT


def _options(ctx: click.Context) -> ClientOptions:
    options = ctx.meta.get(_OPTIONS_KEY)
    if options is None:
        options = ctx.meta[_OPTIONS_KEY] = ClientOptions()
    assert isinstance(options, ClientOptions)
    return options


def _setter(name: str) -> Callable[[click.Context, click.Parameter, Any], Any]:
    def store(ctx: click.Context, _param: click.Parameter, value: Any) -> Any:
        if value is not None and value is not False:  # a later, unset option keeps the earlier
            setattr(_options(ctx), name, value)
        return value

    return store


def client_options(command: F) -> F:
    """``--account --json --cafile --insecure --io-timeout``, accepted on the group and on every
    command (``pillarbox mail --account work ls`` and ``pillarbox mail ls --account work``)."""
    for decorator in (
        click.option("--io-timeout", type=click.FloatRange(min=0.1), default=None,
                     expose_value=False, callback=_setter("timeout"),
                     help="Network timeout in seconds (30)."),
        click.option("--insecure", is_flag=True, default=False, expose_value=False,
                     callback=_setter("insecure"),
                     help="Do not verify server certificates (prints a warning)."),
        click.option("--cafile", type=click.Path(dir_okay=False, path_type=Path), default=None,
                     expose_value=False, callback=_setter("cafile"),
                     help="Trust this CA or self-signed certificate (PEM); account add keeps "
                     "it for the account."),
        click.option("--json", is_flag=True, default=False, expose_value=False,
                     callback=_setter("as_json"), help="Machine-readable output."),
        click.option("--account", default=None, expose_value=False,
                     callback=_setter("account"), help="Account to use (default: the first)."),
    ):  # fmt: skip
        command = decorator(command)
    return command


@dataclass
class Client:
    """What a command works with: the chosen account, its password, the TLS policy."""

    options: ClientOptions
    paths: acct.ClientPaths
    account: acct.MailAccount
    #: The --insecure warning was printed (once per command, which may use IMAP and SMTP).
    warned: bool = False

    def tls(self) -> ssl.SSLContext:
        cafile = self.options.cafile or (Path(self.account.cafile) if self.account.cafile else None)
        policy = TlsPolicy(cafile=cafile, insecure=self.options.insecure)
        if policy.insecure and not self.warned:
            self.warned = True
            click.echo(
                "pillarbox mail: warning: --insecure: server certificates are NOT verified; "
                "anyone on the network path can read your password and mail",
                err=True,
            )
        return policy.context()

    def password(self) -> str:
        return acct.password_for(self.paths, self.account)

    @contextmanager
    def imap(self) -> Iterator[ImapSession]:
        endpoint = self.account.endpoint("imap")
        with open_imap(
            endpoint,
            self.account.username,
            self.password(),
            context=self.tls(),
            timeout=self.options.timeout,
        ) as session:
            yield session

    def submit(
        self, outgoing: compose.Outgoing, *, require_tls: bool = False
    ) -> dict[str, tuple[int, bytes]]:
        from pillarbox.cli.mail.smtp import submit

        return submit(
            self.account.endpoint("smtp"),
            self.account.username,
            self.password(),
            outgoing,
            context=self.tls(),
            timeout=self.options.timeout,
            require_tls=require_tls,
        )

    def emit(self, data: Any, text: str) -> None:
        click.echo(render.as_json(data) if self.options.as_json else text)


def current_client() -> Client:
    ctx = click.get_current_context()
    options = _options(ctx)
    paths = acct.client_paths()
    account = acct.find_account(acct.load_accounts(paths), options.account)
    return Client(options, paths, account)


# -- the group ----------------------------------------------------------------------------------


@click.group(cls=MailGroup)
@client_options
def mail() -> None:
    """Send, read, search and fetch mail on any SMTP/IMAP/POP3 server.

    Exit codes: 0 ok, 1 the server refused, 2 usage error, 3 connection or TLS failure.
    """


# -- accounts -----------------------------------------------------------------------------------


@mail.group("account", cls=MailGroup)
def account_group() -> None:
    """Configured accounts (settings in accounts.toml; passwords in the keyring or a 0600 file)."""


_TLS_CHOICE = click.Choice([m.value for m in TlsMode])


@account_group.command("add")
@click.argument("name")
@click.option("--address", default=None, help="The email address (From of sent mail).")
@click.option("--username", default=None, help="Login name (default: the address).")
@click.option("--display-name", default="", help="Name shown in From.")
@click.option(
    "--autoconfig",
    "autoconfig_address",
    default=None,
    metavar="ADDRESS",
    help="Discover servers from ADDRESS's domain (autoconfig XML, RFC 6186 SRV).",
)
@click.option("--autoconfig-url", "autoconfig_urls", multiple=True, hidden=True)
@click.option("--imap-host")
@click.option("--imap-port", type=click.IntRange(1, 65535))
@click.option("--imap-tls", type=_TLS_CHOICE)
@click.option("--pop3-host")
@click.option("--pop3-port", type=click.IntRange(1, 65535))
@click.option("--pop3-tls", type=_TLS_CHOICE)
@click.option("--smtp-host")
@click.option("--smtp-port", type=click.IntRange(1, 65535))
@click.option("--smtp-tls", type=_TLS_CHOICE)
@click.option(
    "--tls",
    type=_TLS_CHOICE,
    default=None,
    help="TLS for every server given by flags (default: implicit).",
)
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input.")
@click.option("--replace", is_flag=True, help="Replace an existing account of this name.")
@client_options
def account_add(
    name: str,
    address: str | None,
    username: str | None,
    display_name: str,
    autoconfig_address: str | None,
    autoconfig_urls: tuple[str, ...],
    tls: str | None,
    password_stdin: bool,
    replace: bool,
    **servers: Any,
) -> None:
    """Add account NAME: servers from flags, or discovered with --autoconfig."""
    acct.check_account_name(name)
    address = address or autoconfig_address
    if not address:
        raise click.UsageError("give --address (or --autoconfig ADDRESS)")
    endpoints: dict[str, Endpoint] = {}
    if autoconfig_address:
        from pillarbox.cli.mail import autoconfig

        templates = autoconfig_urls or autoconfig.DEFAULT_URL_TEMPLATES
        found = autoconfig.discover(autoconfig_address, url_templates=templates)
        click.echo(f"discovered from {found.source}", err=True)
        endpoints.update(found.endpoints)
        username = username or found.username
    for protocol in acct.PROTOCOLS:
        host, port = servers[f"{protocol}_host"], servers[f"{protocol}_port"]
        mode_name = servers[f"{protocol}_tls"] or tls
        if host is None:
            if port is not None or servers[f"{protocol}_tls"] is not None:
                raise click.UsageError(f"--{protocol}-port/--{protocol}-tls need --{protocol}-host")
            continue
        mode = TlsMode(mode_name or TlsMode.IMPLICIT.value)
        endpoints[protocol] = Endpoint(host, port or acct.DEFAULT_PORTS[(protocol, mode)], mode)
    if not endpoints:
        raise click.UsageError("no server given: use --imap-host/--pop3-host/--smtp-host")
    for protocol, endpoint in endpoints.items():
        if endpoint.tls is TlsMode.NONE:
            click.echo(
                f"pillarbox mail: warning: {protocol.upper()} without TLS: the password and mail "
                "cross the network in clear (only for loopback tests and old servers)",
                err=True,
            )
    password = _read_password(password_stdin)
    cafile = _options(click.get_current_context()).cafile
    account = acct.MailAccount(
        name=name,
        address=address,
        username=username or address,
        display_name=display_name,
        imap=endpoints.get("imap"),
        pop3=endpoints.get("pop3"),
        smtp=endpoints.get("smtp"),
        cafile=str(cafile.resolve()) if cafile else "",
    )
    stored = acct.add_account(acct.client_paths(), account, password, replace=replace)
    click.echo(f"added account {name} ({address}); password kept in {stored.secret_store}")


def _read_password(from_stdin: bool) -> str:
    if from_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    elif sys.stdin.isatty():
        password = click.prompt("Password", hide_input=True)
    else:
        raise click.UsageError("no terminal to ask for the password: use --password-stdin")
    if not password:
        raise click.UsageError("empty password")
    return password


@account_group.command("list")
@client_options
def account_list() -> None:
    """List accounts; the first is the default."""
    options = _options(click.get_current_context())
    accounts = acct.load_accounts(acct.client_paths())
    if options.as_json:
        click.echo(render.as_json([a.as_dict() for a in accounts]))
        return
    if not accounts:
        click.echo("(no accounts)")
        return
    rows = [
        [
            a.name + (" *" if i == 0 else ""),
            a.address,
            *(str(getattr(a, p)) if getattr(a, p) else "-" for p in acct.PROTOCOLS),
        ]
        for i, a in enumerate(accounts)
    ]
    click.echo(render.table(["NAME", "ADDRESS", "IMAP", "POP3", "SMTP"], rows, [0] * 5))


@account_group.command("remove")
@click.argument("name")
@client_options
def account_remove(name: str) -> None:
    """Forget account NAME and its stored password."""
    acct.remove_account(acct.client_paths(), name)
    click.echo(f"removed account {name}")


# -- sending ------------------------------------------------------------------------------------


def _body(body_file: Path | None, template: str = "") -> str:
    """The message text: ``--body-file``, else standard input, else $EDITOR on a terminal."""
    if body_file is not None:
        try:
            return body_file.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise UserError(f"cannot read {body_file}: {exc}") from exc
    if not sys.stdin.isatty():
        return sys.stdin.read()
    edited = click.edit(template, extension=".txt", require_save=True)
    if edited is None or not edited.strip():
        raise UserError("empty message; nothing sent")
    return edited


def _keep_sent_copy(client: Client, raw: bytes) -> str | None:
    """APPEND the submitted bytes, read (\\Seen), to the account's Sent folder, as mail apps
    do (mutt's ``record``); the folder, or None without IMAP. The mail has left already, so a
    failure is a warning on standard error, never the command's failure."""
    if client.account.imap is None:
        return None
    try:
        with client.imap() as session:
            folder = session.sent_folder()
            session.append(folder, raw, [SEEN])
    except (UserError, ConnectionFailed, ConfigError) as exc:
        click.echo(f"pillarbox mail: warning: sent, but no copy kept in Sent: {exc}", err=True)
        return None
    return folder


def _deliver(
    client: Client,
    outgoing: compose.Outgoing,
    dry_run: bool,
    *,
    sent_copy: bool,
    require_tls: bool = False,
) -> bool:
    """Send (or print, for --dry-run), then keep a copy in Sent when ``sent_copy``; True if
    every recipient was accepted. ``require_tls``: given with REQUIRETLS (RFC 8689)."""
    message_id = str(outgoing.message["Message-ID"])
    if dry_run:
        if client.options.as_json:
            click.echo(
                render.as_json(
                    {
                        "message_id": message_id,
                        "sender": outgoing.sender,
                        "recipients": list(outgoing.recipients),
                        "message": outgoing.raw.decode("utf-8", "replace"),
                    }
                )
            )
        else:
            click.echo(outgoing.raw.decode("utf-8", "replace").replace("\r\n", "\n"))
            if outgoing.bcc:
                click.echo(f"(Bcc, envelope only: {', '.join(outgoing.bcc)})", err=True)
        return True
    refused = client.submit(outgoing, require_tls=require_tls)
    accepted = [r for r in outgoing.recipients if r not in refused]
    kept = _keep_sent_copy(client, outgoing.raw) if sent_copy else None
    client.emit(
        {
            "message_id": message_id,
            "accepted": accepted,
            "refused": {r: f"{c} {t.decode('utf-8', 'replace')}" for r, (c, t) in refused.items()},
            "sent_copy": kept,
        },
        f"sent {message_id} to {', '.join(accepted)}"
        + "".join(
            f"\nrefused {r}: {c} {t.decode('utf-8', 'replace')}" for r, (c, t) in refused.items()
        )
        + (f"\ncopy kept in {kept}" if kept else ""),
    )
    return not refused


_sent_copy_option = click.option(
    "--sent-copy/--no-sent-copy",
    default=True,
    show_default=True,
    help="After sending, keep a copy in the account's Sent folder over IMAP (if it has IMAP).",
)


def _finish(all_accepted: bool) -> None:
    if not all_accepted:
        click.get_current_context().exit(EXIT_REFUSED)


@mail.command()
@click.option("--to", "to", multiple=True, help="Recipient (repeatable; commas allowed).")
@click.option("--cc", multiple=True)
@click.option("--bcc", multiple=True, help="Blind copy: an envelope recipient, never a header.")
@click.option("--subject", default="")
@click.option(
    "--attach",
    "attach",
    multiple=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
)
@click.option(
    "--body-file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Body text (UTF-8); default: standard input, or $EDITOR on a terminal.",
)
@click.option("--dry-run", is_flag=True, help="Print the message instead of sending it.")
@click.option(
    "--require-tls",
    is_flag=True,
    help="REQUIRETLS (RFC 8689): the message travels only over authenticated TLS, or comes"
    " back; refused here if the server does not offer it.",
)
@_sent_copy_option
@client_options
def send(
    to: tuple[str, ...],
    cc: tuple[str, ...],
    bcc: tuple[str, ...],
    subject: str,
    attach: tuple[Path, ...],
    body_file: Path | None,
    dry_run: bool,
    require_tls: bool,
    sent_copy: bool,
) -> None:
    """Compose a message and submit it over SMTP."""
    if not (to or cc or bcc):
        raise click.UsageError("give at least one of --to, --cc, --bcc")
    client = current_client()
    draft = compose.Draft(
        from_address=client.account.address,
        from_name=client.account.display_name,
        to=to,
        cc=cc,
        bcc=bcc,
        subject=subject,
        body=_body(body_file),
        attachments=[compose.file_attachment(p) for p in attach],
    )
    outgoing = compose.build(draft)
    _finish(_deliver(client, outgoing, dry_run, sent_copy=sent_copy, require_tls=require_tls))


# -- reading ------------------------------------------------------------------------------------

_folder_option = click.option("--folder", default="INBOX", show_default=True)
_uids_argument = click.argument("uids", metavar="UID...", nargs=-1, required=True,
                                type=click.IntRange(1, 2**32 - 1))  # fmt: skip


@mail.command("list")
@client_options
def list_folders() -> None:
    """Folders with their message and unread counts."""
    client = current_client()
    with client.imap() as session:
        folders = session.folders()
    client.emit([render.folder_json(f) for f in folders], render.folder_table(folders))


def _show_summaries(client: Client, session: ImapSession, folder: str, uids: list[int]) -> None:
    summaries = session.summaries(folder, uids)
    client.emit(
        [render.summary_json(s) for s in summaries],
        render.summary_table(summaries) if summaries else "(no messages)",
    )


@mail.command("ls")
@click.argument("folder", default="INBOX")
@click.option("--unread", is_flag=True, help="Only unread messages.")
@click.option(
    "--limit",
    type=click.IntRange(min=1),
    default=DEFAULT_LIMIT,
    show_default=True,
    help="Show the newest N.",
)
@client_options
def ls(folder: str, unread: bool, limit: int) -> None:
    """Messages in FOLDER: UID, date, from, subject, flags (N new, F flagged, A answered)."""
    client = current_client()
    with client.imap() as session:
        uids = session.search(folder, ["UNSEEN"] if unread else ["ALL"])[-limit:]
        _show_summaries(client, session, folder, uids)


@mail.command("search")
@click.argument("query", nargs=-1, required=True)
@_folder_option
@click.option("--limit", type=click.IntRange(min=1), default=DEFAULT_LIMIT, show_default=True)
@client_options
def search(query: tuple[str, ...], folder: str, limit: int) -> None:
    """Search FOLDER. Words match anywhere; also from:X to:X cc:X subject:X body:X
    since:YYYY-MM-DD before:YYYY-MM-DD on:YYYY-MM-DD unread read flagged unflagged answered."""
    from pillarbox.cli.mail.search import search_criteria

    criteria = search_criteria(" ".join(query))
    client = current_client()
    with client.imap() as session:
        uids = session.search(folder, criteria)[-limit:]
        _show_summaries(client, session, folder, uids)


def _fetch_readable(client: Client, folder: str, uid: int) -> ReadableMessage:
    with client.imap() as session:
        return readable(session.raw_message(folder, uid))


@mail.command("read")
@click.argument("uid", type=click.IntRange(1, 2**32 - 1))
@_folder_option
@click.option("--raw", is_flag=True, help="Print the message exactly as stored.")
@click.option("--peek", is_flag=True, help="Do not mark the message read.")
@client_options
def read(uid: int, folder: str, raw: bool, peek: bool) -> None:
    """Show a message: headers, text (HTML as text) and its attachments; marks it read."""
    client = current_client()
    with client.imap() as session:
        message = readable(session.raw_message(folder, uid))
        if not peek:
            session.set_flags(folder, [uid], [SEEN], on=True)
    if raw:
        click.echo(message.raw.decode("utf-8", "replace"), nl=False)
        return
    client.emit(render.message_json(uid, message), render.message_text(message))


@mail.command("save-attachments")
@click.argument("uid", type=click.IntRange(1, 2**32 - 1))
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
@_folder_option
@click.option("--force", is_flag=True, help="Overwrite files that exist.")
@client_options
def save_attachments(uid: int, directory: Path, folder: str, force: bool) -> None:
    """Save a message's attachments into DIRECTORY (names sanitised, no overwriting)."""
    client = current_client()
    message = _fetch_readable(client, folder, uid)
    targets = attachment_targets(message.attachments, directory)
    existing = [str(path) for _, path in targets if path.exists()]
    if existing and not force:
        raise UserError(f"would overwrite {', '.join(existing)} (use --force)")
    directory.mkdir(parents=True, exist_ok=True)
    saved = []
    for attachment, path in targets:
        path.write_bytes(message.attachment_bytes(attachment))
        saved.append({"filename": attachment.filename, "path": str(path)})
    client.emit(saved, "\n".join(f"saved {s['path']}" for s in saved) or "(no attachments)")


# -- changing -----------------------------------------------------------------------------------


def _flag_command(name: str, flag: str, on: bool, doc: str) -> None:
    @mail.command(name, help=doc)
    @_uids_argument
    @_folder_option
    @client_options
    def change(uids: tuple[int, ...], folder: str) -> None:
        client = current_client()
        with client.imap() as session:
            session.set_flags(folder, uids, [flag], on=on)
        client.emit({"uids": list(uids), name: True}, f"{name}: {' '.join(map(str, uids))}")


_flag_command("flag", FLAGGED, True, "Flag messages (\\Flagged).")
_flag_command("unflag", FLAGGED, False, "Remove the \\Flagged flag.")
_flag_command("mark-read", SEEN, True, "Mark messages read (\\Seen).")
_flag_command("mark-unread", SEEN, False, "Mark messages unread.")


@mail.command()
@_uids_argument
@_folder_option
@click.option("--to", "destination", required=True, help="Destination folder.")
@client_options
def move(uids: tuple[int, ...], folder: str, destination: str) -> None:
    """Move messages to another folder (MOVE, else COPY + expunge)."""
    client = current_client()
    with client.imap() as session:
        session.move(folder, uids, destination)
    client.emit({"uids": list(uids), "to": destination}, f"moved to {destination}")


@mail.command()
@_uids_argument
@_folder_option
@client_options
def delete(uids: tuple[int, ...], folder: str) -> None:
    """Delete messages (\\Deleted, then UID EXPUNGE of exactly these where UIDPLUS allows)."""
    client = current_client()
    with client.imap() as session:
        session.delete(folder, uids)
    client.emit({"uids": list(uids), "deleted": True}, f"deleted {' '.join(map(str, uids))}")


# -- replying and forwarding --------------------------------------------------------------------


def _mark(client: Client, folder: str, uid: int, flag: str) -> None:
    """Best effort after sending: the mail went; a flag we could not set is only a warning."""
    try:
        with client.imap() as session:
            session.set_flags(folder, [uid], [flag], on=True)
    except (UserError, ConnectionFailed) as exc:
        click.echo(f"pillarbox mail: warning: sent, but could not set {flag}: {exc}", err=True)


@mail.command()
@click.argument("uid", type=click.IntRange(1, 2**32 - 1))
@_folder_option
@click.option("--all", "reply_all", is_flag=True, help="Reply to all recipients too.")
@click.option("--body-file", type=click.Path(dir_okay=False, path_type=Path), default=None)
@click.option("--dry-run", is_flag=True, help="Print the reply instead of sending it.")
@_sent_copy_option
@client_options
def reply(
    uid: int,
    folder: str,
    reply_all: bool,
    body_file: Path | None,
    dry_run: bool,
    sent_copy: bool,
) -> None:
    """Reply to a message (text from --body-file, standard input or $EDITOR), quoting it."""
    client = current_client()
    original = _fetch_readable(client, folder, uid)
    quote = compose.quoted(original)
    text = _body(body_file, template="\n\n" + quote)
    if body_file is not None or not sys.stdin.isatty():
        text = text.rstrip("\n") + "\n\n" + quote  # the editor template already holds it
    to, cc = compose.reply_recipients(original, client.account.address, reply_all=reply_all)
    in_reply_to, references = compose.reply_references(original)
    draft = compose.Draft(
        from_address=client.account.address,
        from_name=client.account.display_name,
        to=to,
        cc=cc,
        subject=compose.reply_subject(original.info.subject),
        body=text,
        in_reply_to=in_reply_to,
        references=references,
    )
    accepted = _deliver(client, compose.build(draft), dry_run, sent_copy=sent_copy)
    if not dry_run:
        _mark(client, folder, uid, ANSWERED)
    _finish(accepted)


@mail.command()
@click.argument("uid", type=click.IntRange(1, 2**32 - 1))
@_folder_option
@click.option("--to", "to", multiple=True, required=True)
@click.option("--cc", multiple=True)
@click.option("--bcc", multiple=True)
@click.option(
    "--inline",
    is_flag=True,
    help="Put the original's text in the body (and re-attach its attachments) instead "
    "of attaching it as a message/rfc822.",
)
@click.option("--body-file", type=click.Path(dir_okay=False, path_type=Path), default=None)
@click.option("--dry-run", is_flag=True)
@_sent_copy_option
@client_options
def forward(
    uid: int,
    folder: str,
    to: tuple[str, ...],
    cc: tuple[str, ...],
    bcc: tuple[str, ...],
    inline: bool,
    body_file: Path | None,
    dry_run: bool,
    sent_copy: bool,
) -> None:
    """Forward a message, attached (default) or inline, with an optional note."""
    client = current_client()
    original = _fetch_readable(client, folder, uid)
    inlined = compose.forwarded_inline(original) if inline else ""
    note = _body(body_file, template="\n\n" + inlined)
    if inline and (body_file is not None or not sys.stdin.isatty()):
        note = (note.rstrip("\n") + "\n\n" if note.strip() else "") + inlined
    draft = compose.Draft(
        from_address=client.account.address,
        from_name=client.account.display_name,
        to=to,
        cc=cc,
        bcc=bcc,
        subject=compose.forward_subject(original.info.subject),
        body=note,
        attachments=_original_attachments(original) if inline else (),
        attached_messages=() if inline else (original.raw,),
    )
    accepted = _deliver(client, compose.build(draft), dry_run, sent_copy=sent_copy)
    if not dry_run:
        _mark(client, folder, uid, FORWARDED)
    _finish(accepted)


def _original_attachments(original: ReadableMessage) -> list[compose.AttachedFile]:
    return [
        compose.AttachedFile(
            path.name, attachment.content_type, original.attachment_bytes(attachment)
        )
        for attachment, path in attachment_targets(original.attachments, Path("."))
    ]


# -- watching -----------------------------------------------------------------------------------


@mail.command()
@click.argument("folder", default="INBOX")
@click.option("--count", type=click.IntRange(min=1), default=None, help="Stop after N messages.")
@click.option(
    "--timeout",
    "duration",
    type=click.FloatRange(min=0),
    default=None,
    metavar="SECONDS",
    help="Stop after this many seconds.",
)
@client_options
def watch(folder: str, count: int | None, duration: float | None) -> None:
    """Print new mail in FOLDER as it arrives (IMAP IDLE; polling if the server lacks it)."""
    client = current_client()

    def show(summary: Summary) -> None:
        if client.options.as_json:
            click.echo(render.as_json(render.summary_json(summary)).replace("\n", ""))
        else:
            click.echo(
                render.clean(
                    f"{summary.uid}  {render.short_date(summary.date)}  {summary.sender}  "
                    f"{summary.subject}"
                )
            )
        sys.stdout.flush()

    with client.imap() as session:
        session.watch(
            folder,
            show,
            count=count,
            timeout=duration,
            on_ready=lambda idle: click.echo(
                f"watching {folder} ({'IDLE' if idle else 'polling'})", err=True
            ),
        )


# -- fetching -----------------------------------------------------------------------------------


@mail.command()
@click.option("--pop3", is_flag=True, required=True, help="Fetch over POP3 (the one protocol).")
@click.option("--keep", is_flag=True, help="Leave messages on the server (never fetched twice).")
@click.option("--to-maildir", type=click.Path(file_okay=False, path_type=Path), default=None)
@click.option("--to-mbox", type=click.Path(dir_okay=False, path_type=Path), default=None)
@client_options
def fetch(pop3: bool, keep: bool, to_maildir: Path | None, to_mbox: Path | None) -> None:
    """Download mail into a Maildir or an mbox file; deleted from the server once safely
    written, unless --keep."""
    from pillarbox.cli.mail import pop3 as pop3_client
    from pillarbox.cli.mail.localmail import Destination, Maildir, Mbox

    if not pop3:
        raise click.UsageError("fetch needs --pop3")
    if to_maildir is not None and to_mbox is not None:
        raise click.UsageError("give only one of --to-maildir, --to-mbox")
    destination: Destination
    if to_maildir is not None:
        destination = Maildir(to_maildir)
    elif to_mbox is not None:
        destination = Mbox(to_mbox)
    else:
        raise click.UsageError("give exactly one of --to-maildir DIR, --to-mbox FILE")
    client = current_client()
    result = pop3_client.fetch(
        client.account.endpoint("pop3"),
        client.account.username,
        client.password(),
        destination,
        pop3_client.UidlState(client.paths.account_state(client.account.name)),
        keep=keep,
        context=client.tls(),
        timeout=client.options.timeout,
    )
    client.emit(
        {"fetched": result.fetched, "already_had": result.already_had, "deleted": result.deleted},
        f"fetched {result.fetched} new, {result.already_had} already here, "
        f"{result.deleted} deleted from the server",
    )
