"""pillarbox mail: accounts, secret storage, autoconfig discovery and exit codes."""

from __future__ import annotations

import http.server
import threading
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from pillarbox.cli.mail import accounts as acct
from pillarbox.cli.mail import autoconfig
from pillarbox.cli.main import cli
from pillarbox.errors import UserError
from pillarbox.mailclient.transport import Endpoint, TlsMode


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("PILLARBOX_MAIL_HOME", str(tmp_path / "client"))
    return tmp_path / "client"


def run(*args: str, stdin: str = "") -> Result:
    return CliRunner().invoke(cli, ["mail", *args], input=stdin)


def add(name: str, *extra: str) -> Result:
    return run(
        "account", "add", name, "--address", f"{name}@example.org",
        "--imap-host", "imap.example.org", "--smtp-host", "smtp.example.org",
        "--smtp-tls", "starttls", "--password-stdin", *extra,
        stdin="pa55 \"word\"\n",
    )  # fmt: skip


def test_add_list_remove(home: Path) -> None:
    result = add("work", "--display-name", 'Al "Quote" Ünï')
    assert result.exit_code == 0, result.output
    assert "password kept in file" in result.output
    assert add("home").exit_code == 0
    config = (home / "accounts.toml").read_text(encoding="utf-8")
    assert "pa55" not in config
    data = tomllib.loads(config)["accounts"]
    assert list(data) == ["work", "home"]
    assert data["work"]["display_name"] == 'Al "Quote" Ünï'
    assert data["work"]["imap"] == {"host": "imap.example.org", "port": 993, "tls": "implicit"}
    assert data["work"]["smtp"] == {"host": "smtp.example.org", "port": 587, "tls": "starttls"}
    secret = home / "secrets" / "work"
    assert secret.read_text(encoding="utf-8") == 'pa55 "word"'
    assert secret.stat().st_mode & 0o777 == 0o600
    assert (home / "secrets").stat().st_mode & 0o777 == 0o700

    listing = run("account", "list")
    assert listing.exit_code == 0
    assert listing.output.splitlines()[1].startswith("work *")
    assert "imap.example.org:993 (implicit)" in listing.output
    as_json = run("account", "list", "--json")
    assert '"name": "home"' in as_json.output

    assert run("account", "remove", "work").exit_code == 0
    assert not secret.exists()
    assert [a.name for a in acct.load_accounts(acct.client_paths())] == ["home"]
    assert run("account", "remove", "work").exit_code == 1


def test_cafile_given_to_account_add_is_kept_absolute(
    home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A self-signed server is trusted once, at ``account add``, not at every command."""
    (tmp_path / "server.pem").write_text("a certificate")
    monkeypatch.chdir(tmp_path)
    assert add("selfhosted", "--cafile", "server.pem").exit_code == 0
    data = tomllib.loads((home / "accounts.toml").read_text())["accounts"]["selfhosted"]
    assert data["cafile"] == str(tmp_path / "server.pem")
    [account] = acct.load_accounts(acct.client_paths())
    assert account.cafile == str(tmp_path / "server.pem")


def test_duplicate_and_replace(home: Path) -> None:
    assert add("work").exit_code == 0
    again = add("work")
    assert again.exit_code == 1 and "exists" in again.output
    assert add("work", "--replace").exit_code == 0


def test_usage_errors_exit_2(home: Path) -> None:
    assert run("account", "add", "x", "--password-stdin").exit_code == 2  # no address
    no_server = run("account", "add", "x", "--address", "x@example.org", "--password-stdin")
    assert no_server.exit_code == 2 and "no server" in no_server.output
    port_only = run(
        "account", "add", "x", "--address", "x@e.org", "--imap-port", "1", "--password-stdin"
    )
    assert port_only.exit_code == 2
    bad_name = run(
        "account", "add", "../x", "--address", "x@e.org", "--imap-host", "h", "--password-stdin"
    )
    assert bad_name.exit_code == 2
    assert run("ls").exit_code == 2  # no account configured
    assert add("work").exit_code == 0
    unknown = run("ls", "--account", "nope")
    assert unknown.exit_code == 2 and "no account named 'nope'" in unknown.output
    missing_ca = run("list", "--cafile", "/nonexistent/ca.pem")
    assert missing_ca.exit_code == 2 and "--cafile" in missing_ca.output
    assert run("fetch", "--pop3").exit_code == 2  # no destination
    assert run("send", "--subject", "x").exit_code == 2  # no recipient


def test_tls_none_warns(home: Path) -> None:
    result = run(
        "account", "add", "old", "--address", "o@example.org", "--pop3-host", "127.0.0.1",
        "--tls", "none", "--password-stdin", stdin="pw\n",
    )  # fmt: skip
    assert result.exit_code == 0
    assert "warning: POP3 without TLS" in result.output
    [account] = acct.load_accounts(acct.client_paths())
    assert account.pop3 == Endpoint("127.0.0.1", 110, TlsMode.NONE)


def test_secret_readable_by_others_is_refused(home: Path) -> None:
    assert add("work").exit_code == 0
    (home / "secrets" / "work").chmod(0o644)
    paths = acct.client_paths()
    with pytest.raises(UserError, match="readable by others"):
        acct.password_for(paths, acct.load_accounts(paths)[0])


def test_damaged_config_is_a_usage_error(home: Path) -> None:
    home.mkdir(parents=True)
    (home / "accounts.toml").write_text("[accounts.x\n", encoding="utf-8")
    result = run("account", "list")
    assert result.exit_code == 2 and "not valid TOML" in result.output


def test_dry_run_send_prints_message_without_bcc(home: Path, tmp_path: Path) -> None:
    assert add("work", "--display-name", "Wörk").exit_code == 0
    attachment = tmp_path / "report.csv"
    attachment.write_text("a,b\n", encoding="utf-8")
    result = run(
        "send", "--to", "bob@example.org", "--bcc", "secret@example.net", "--subject", "Hi",
        "--attach", str(attachment), "--dry-run", stdin="body text\n",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "To: bob@example.org" in result.output
    assert "From: =?utf-8?q?W=C3=B6rk?= <work@example.org>" in result.output
    assert 'filename="report.csv"' in result.output
    assert "body text" in result.output
    assert "Bcc: " not in result.output.split("\n\n", 1)[0]


def test_connection_failure_exits_3(home: Path) -> None:
    import socket

    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    result = run(
        "account", "add", "dead", "--address", "d@example.org", "--imap-host", "127.0.0.1",
        "--imap-port", str(port), "--password-stdin", stdin="pw\n",
    )  # fmt: skip
    assert result.exit_code == 0
    failed = run("list", "--io-timeout", "5")
    assert failed.exit_code == 3
    assert "IMAP server 127.0.0.1:" in failed.output


# -- autoconfig ---------------------------------------------------------------------------------

CONFIG_XML = b"""<?xml version="1.0"?>
<clientConfig version="1.1">
  <emailProvider id="example.org">
    <domain>example.org</domain>
    <incomingServer type="imap">
      <hostname>imap.%EMAILDOMAIN%</hostname><port>993</port><socketType>SSL</socketType>
      <username>%EMAILLOCALPART%</username><authentication>password-cleartext</authentication>
    </incomingServer>
    <incomingServer type="imap">
      <hostname>second.example.org</hostname><port>143</port><socketType>STARTTLS</socketType>
    </incomingServer>
    <incomingServer type="pop3">
      <hostname>pop.example.org</hostname><port>995</port><socketType>SSL</socketType>
    </incomingServer>
    <outgoingServer type="smtp">
      <hostname>smtp.example.org</hostname><port>587</port><socketType>STARTTLS</socketType>
    </outgoingServer>
  </emailProvider>
</clientConfig>
"""


def test_parse_config_xml() -> None:
    found = autoconfig.parse_config_xml(CONFIG_XML, "al@example.org", source="test")
    assert found.username == "al"
    assert found.endpoints == {
        "imap": Endpoint("imap.example.org", 993, TlsMode.IMPLICIT),
        "pop3": Endpoint("pop.example.org", 995, TlsMode.IMPLICIT),
        "smtp": Endpoint("smtp.example.org", 587, TlsMode.STARTTLS),
    }
    assert autoconfig.parse_config_xml(b"<html>nope", "a@b.c", source="x").endpoints == {}


def test_srv_prefers_implicit_tls_and_priority() -> None:
    records = {
        "_imaps._tcp.example.org": [
            autoconfig.SrvRecord(20, 0, 993, "backup.example.org."),
            autoconfig.SrvRecord(10, 5, 993, "imap.example.org."),
        ],
        "_imap._tcp.example.org": [autoconfig.SrvRecord(0, 0, 143, "plain.example.org.")],
        "_pop3s._tcp.example.org": [autoconfig.SrvRecord(0, 0, 0, ".")],  # RFC 6186: absent
        "_submission._tcp.example.org": [autoconfig.SrvRecord(0, 1, 587, "smtp.example.org.")],
    }
    found = autoconfig.from_srv("example.org", lambda name: records.get(name, []))
    assert found.endpoints == {
        "imap": Endpoint("imap.example.org", 993, TlsMode.IMPLICIT),
        "smtp": Endpoint("smtp.example.org", 587, TlsMode.STARTTLS),
    }


class _ConfigHandler(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        if self.path.startswith("/.well-known/autoconfig/mail/config-v1.1.xml"):
            self.send_response(200)
            self.send_header("Content-Type", "text/xml")
            self.end_headers()
            self.wfile.write(CONFIG_XML)
        else:
            self.send_error(404)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def config_server() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _ConfigHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()
    thread.join()


def test_discover_over_http_then_srv(config_server: str) -> None:
    templates = (
        config_server + "/mail/config-v1.1.xml?emailaddress={address}",  # 404: next one
        config_server + "/.well-known/autoconfig/mail/config-v1.1.xml?emailaddress={address}",
    )
    found = autoconfig.discover(
        "al@example.org",
        url_templates=templates,
        http_get=autoconfig.https_get,
        srv_lookup=lambda name: pytest.fail("SRV must not be asked when autoconfig answered"),
    )
    assert found.source.startswith(config_server + "/.well-known/")
    assert found.endpoints["imap"].host == "imap.example.org"
    srv_only = autoconfig.discover(
        "al@example.org",
        url_templates=templates[:1],
        srv_lookup=lambda name: (
            [autoconfig.SrvRecord(0, 0, 465, "mail.example.org")]
            if name == "_submissions._tcp.example.org"
            else []
        ),
    )
    assert srv_only.endpoints == {"smtp": Endpoint("mail.example.org", 465, TlsMode.IMPLICIT)}
    with pytest.raises(UserError, match="publishes no autoconfig"):
        autoconfig.discover("al@example.org", url_templates=(), srv_lookup=lambda name: [])


def test_account_add_with_autoconfig(home: Path, config_server: str) -> None:
    result = run(
        "account", "add", "auto", "--autoconfig", "al@example.org",
        "--autoconfig-url",
        config_server + "/.well-known/autoconfig/mail/config-v1.1.xml?emailaddress={address}",
        "--smtp-host", "relay.example.org", "--smtp-port", "2525", "--smtp-tls", "starttls",
        "--password-stdin", stdin="pw\n",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    [account] = acct.load_accounts(acct.client_paths())
    assert account.username == "al"
    assert account.address == "al@example.org"
    assert account.imap == Endpoint("imap.example.org", 993, TlsMode.IMPLICIT)
    assert account.smtp == Endpoint("relay.example.org", 2525, TlsMode.STARTTLS)  # flag wins


def test_client_paths_default_to_xdg(tmp_path: Path) -> None:
    paths = acct.client_paths({"HOME": str(tmp_path), "XDG_STATE_HOME": str(tmp_path / "st")})
    assert paths.config_dir == tmp_path / ".config" / "pillarbox-mail"
    assert paths.state_dir == tmp_path / "st" / "pillarbox-mail"


class _MemoryBackend:
    priority = 1

    def __init__(self) -> None:
        self.store: dict[tuple[str, str], str] = {}


def test_os_keyring_is_used_when_available(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import sys
    import types

    backend = _MemoryBackend()
    fake = types.ModuleType("keyring")
    fake.get_keyring = lambda: backend  # type: ignore[attr-defined]
    fake.set_password = lambda s, u, p: backend.store.__setitem__((s, u), p)  # type: ignore[attr-defined]
    fake.get_password = lambda s, u: backend.store.get((s, u))  # type: ignore[attr-defined]
    fake.delete_password = lambda s, u: backend.store.pop((s, u))  # type: ignore[attr-defined]
    fake.errors = types.SimpleNamespace(PasswordDeleteError=KeyError)  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "keyring", fake)

    result = add("work")
    assert result.exit_code == 0 and "password kept in keyring" in result.output
    assert backend.store == {("pillarbox-mail", "work"): 'pa55 "word"'}
    assert not (home / "secrets" / "work").exists()
    paths = acct.client_paths()
    [account] = acct.load_accounts(paths)
    assert account.secret_store == "keyring"
    assert acct.password_for(paths, account) == 'pa55 "word"'
    assert run("account", "remove", "work").exit_code == 0
    assert backend.store == {}


def test_keyring_without_usable_backend_falls_back_to_file(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sys
    import types

    fail = types.ModuleType("keyring")
    fail.get_keyring = lambda: types.SimpleNamespace(priority=0)  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "keyring", fail)
    assert add("work").exit_code == 0
    assert (home / "secrets" / "work").exists()


@pytest.mark.parametrize("port", ["²", "٣", "0", "70000", "9" * 5000])
def test_parse_config_xml_skips_a_server_whose_port_is_no_port(port: str) -> None:
    """The document is another server's: a port that is not 1–65535 in ASCII digits drops
    that server ("²" passed ``isdigit`` and raised from ``int``; "٣" was read as 3)."""
    body = CONFIG_XML.replace(b"<port>993</port>", f"<port>{port}</port>".encode())
    found = autoconfig.parse_config_xml(body, "al@example.org", source="test")
    assert found.endpoints["imap"] == Endpoint("second.example.org", 143, TlsMode.STARTTLS)
