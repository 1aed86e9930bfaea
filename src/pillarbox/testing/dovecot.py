"""Dovecot from Debian as a loopback peer: an IMAP (implicit TLS) and POP3 (STLS) server with a
passwd-file userdb and Maildir storage, run unprivileged in a fresh directory. Used by the mail
client's interop tests (a foreign server to talk to) and by ``pillarbox import imap``'s tests (a
foreign account to copy). Tests skip when it is absent: :data:`DOVECOT` is None
(``apt-get install -y dovecot-imapd dovecot-pop3d``).
"""

from __future__ import annotations

import grp
import os
import pwd
import shutil
import ssl
import subprocess
import tempfile
import textwrap
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from imapclient import IMAPClient  # type: ignore[import-untyped]

from pillarbox.net.tls import ensure_self_signed
from pillarbox.testing.live import free_port
from pillarbox.testing.peers import wait_for_port

DOVECOT = shutil.which("dovecot") or (
    "/usr/sbin/dovecot" if os.path.exists("/usr/sbin/dovecot") else None
)


@dataclass
class Dovecot:
    directory: Path
    imaps_port: int
    pop3_port: int
    process: subprocess.Popen[bytes]


def start_dovecot(
    password: str,
    users: Sequence[str],
    *,
    separator: str = ".",
    prefix: str = "",
    mailboxes: str = "",
    mail_location: str = "maildir:~/Maildir",
) -> Dovecot:
    """An unprivileged Dovecot with ``users`` (all with ``password``), Maildir storage: as
    root, everything runs as ``nobody`` (setpriv), otherwise as the current user; all files in
    a fresh directory others may traverse. ``separator`` is the INBOX namespace's hierarchy
    separator, ``prefix`` its prefix (``INBOX.`` as Courier and Cyrus have it); ``mailboxes``
    adds ``mailbox NAME { … }`` blocks to it (auto-created folders with their special use),
    beside the default Trash; ``mail_location`` is Dovecot's (``mbox:~/mail:INBOX=~/mail/inbox``
    for mbox storage)."""
    assert DOVECOT is not None
    directory = Path(tempfile.mkdtemp(prefix="pbmail-dovecot-"))
    directory.chmod(0o755)
    as_root = os.geteuid() == 0
    user = pwd.getpwnam("nobody") if as_root else pwd.getpwuid(os.geteuid())
    group_name = _group_name(user.pw_gid)
    ensure_self_signed(directory / "cert.pem", directory / "key.pem", "localhost")
    (directory / "passwd").write_text(
        "".join(
            f"{u}:{{PLAIN}}{password}:{user.pw_uid}:{user.pw_gid}::{directory}/home/{u}\n"
            for u in users
        ),
        encoding="utf-8",
    )
    imaps_port, pop3_port = free_port("127.0.0.1"), free_port("127.0.0.1")
    config = textwrap.dedent(
        f"""\
        base_dir = {directory}/run
        state_dir = {directory}/state
        log_path = {directory}/dovecot.log
        protocols = imap pop3
        listen = 127.0.0.1
        ssl = yes
        ssl_cert = <{directory}/cert.pem
        ssl_key = <{directory}/key.pem
        ssl_min_protocol = TLSv1.2
        disable_plaintext_auth = yes
        auth_mechanisms = plain login
        auth_failure_delay = 0
        default_internal_user = {user.pw_name}
        default_internal_group = {group_name}
        default_login_user = {user.pw_name}
        first_valid_uid = {min(user.pw_uid, 1) if user.pw_uid else 0}
        mail_location = {mail_location}
        pop3_uidl_format = %08Xu%08Xv
        namespace inbox {{
          inbox = yes
          separator = {separator}
          prefix = {prefix}
          {textwrap.indent(mailboxes, "          ").strip()}
          mailbox Trash {{
            auto = create
            special_use = \\Trash
          }}
        }}
        passdb {{
          driver = passwd-file
          args = scheme=PLAIN username_format=%u {directory}/passwd
        }}
        userdb {{
          driver = passwd-file
          args = username_format=%u {directory}/passwd
        }}
        service imap-login {{
          chroot =
          inet_listener imap {{
            port = 0
          }}
          inet_listener imaps {{
            port = {imaps_port}
            ssl = yes
          }}
        }}
        service pop3-login {{
          chroot =
          inet_listener pop3 {{
            port = {pop3_port}
          }}
          inet_listener pop3s {{
            port = 0
          }}
        }}
        service anvil {{
          chroot =
          unix_listener anvil-auth-penalty {{
            mode = 0
          }}
        }}
        """
    )
    (directory / "dovecot.conf").write_text(config, encoding="utf-8")
    command = [DOVECOT, "-F", "-c", str(directory / "dovecot.conf")]
    if as_root:
        shutil.chown(directory, user.pw_uid, user.pw_gid)
        for path in directory.iterdir():
            shutil.chown(path, user.pw_uid, user.pw_gid)
        command = [
            "setpriv",
            f"--reuid={user.pw_uid}",
            f"--regid={user.pw_gid}",
            "--clear-groups",
            *command,
        ]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for_port(imaps_port, process, directory / "dovecot.log")
    wait_for_port(pop3_port, process, directory / "dovecot.log")
    return Dovecot(directory, imaps_port, pop3_port, process)


def _group_name(gid: int) -> str:
    return grp.getgrgid(gid).gr_name


def stop_dovecot(dovecot: Dovecot) -> None:
    dovecot.process.terminate()
    try:
        dovecot.process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        dovecot.process.kill()
        dovecot.process.wait()
    shutil.rmtree(dovecot.directory, ignore_errors=True)


#: What a mailbox holds, as a test compares it: each message's bytes, flags and internal date.
Contents = dict[str, list[tuple[bytes, frozenset[str], datetime]]]


def imap_client(dovecot: Dovecot, user: str, password: str) -> IMAPClient:
    """``user`` logged in to ``dovecot`` over IMAPS, trusting its own certificate; internal
    dates as the server gives them (with their zone)."""
    context = ssl.create_default_context(cafile=str(dovecot.directory / "cert.pem"))
    client = IMAPClient("127.0.0.1", port=dovecot.imaps_port, ssl_context=context, timeout=10)
    client.login(user, password)
    client.normalise_times = False
    return client


def served_contents(dovecot: Dovecot, user: str, password: str) -> Contents:
    """Every non-empty folder of ``user`` as Dovecot serves it (\\Recent left out)."""
    client = imap_client(dovecot, user, password)
    out: Contents = {}
    try:
        for _, _, name in client.list_folders():
            client.select_folder(name, readonly=True)
            uids = client.search(["ALL"])
            fetched = client.fetch(uids, ["BODY.PEEK[]", "FLAGS", "INTERNALDATE"]) if uids else {}
            out[name] = [
                (
                    data[b"BODY[]"],
                    frozenset(f.decode() for f in data[b"FLAGS"]) - {"\\Recent"},
                    data[b"INTERNALDATE"].astimezone(UTC),
                )
                for _, data in sorted(fetched.items())
            ]
    finally:
        client.logout()
    return {name: messages for name, messages in out.items() if messages}
