"""The typed config: defaults, validation with dotted keys, environment overrides, rendering."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from pillarbox import config as cfg
from pillarbox.errors import ConfigError
from pillarbox.store.open import open_store
from pillarbox.store.sqlite import SqliteStore


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "pillarbox.toml"
    path.write_text(text)
    return path


def test_empty_file_gives_defaults(tmp_path: Path) -> None:
    config = cfg.load(write(tmp_path, ""), environ={})
    assert config.listeners.smtp.port == 25
    assert config.smtp.bare_newline == "reject"
    assert config.data_dir == tmp_path / "data"


@pytest.mark.parametrize(
    ("text", "key", "problem"),
    [
        ("[listeners.imap]\nport = 'abc'", "listeners.imap.port", "expected an integer"),
        ("[listeners.imap]\nport = 70000", "listeners.imap.port", "0–65535"),
        ("[smtp]\nmax_line_length = 512", "smtp.max_line_length", "at least 1000"),
        ("[smtp]\ngreet_pause = 300.0", "smtp.greet_pause", "RFC 5321 §4.5.3.2.1"),
        ("[smtp]\ngreet_pause = -1.0", "smtp.greet_pause", "0 (off)"),
        ("[smtp]\ngreet_pass_ttl = -1.0", "smtp.greet_pass_ttl", "not be negative"),
        ("[smtp]\ngreet_pass_clients = 0", "smtp.greet_pass_clients", "at least 1"),
        ("[smtp]\nbare_newline = 'maybe'", "smtp.bare_newline", "expected one of"),
        ("[milter]\nmx = ['inet:127.0.0.1']", "milter.mx[0]", "inet:HOST:PORT"),
        ("[milter]\nmx = ['unix:x.sock']", "milter.mx[0]", "absolute path"),
        ("[milter]\nsubmission = ['x', 'tcp:h:1']", "milter.submission[0]", "expected inet:"),
        ("[milter]\nmx = ['inet:[::1:8891']", "milter.mx[0]", "inet:HOST:PORT"),
        ("[milter]\ndefault_action = 'drop'", "milter.default_action", "expected one of"),
        ("[milter]\ncontent_timeout = 0.0", "milter.content_timeout", "must be positive"),
        ("[smtp]\nmax_recipients = 0", "smtp.max_recipients", "must be positive"),
        ("[smtpd]\nx = 1", "smtpd", "unknown key"),
        ("[smtp]\nmax_recipents = 5", "smtp.max_recipents", "unknown key"),
        ("[tls]\ncert = 'a.pem'", "tls.key", "go together"),
        ("[imap]\nidle_timeout = 60.0", "imap.idle_timeout", "RFC 9051"),
        ("[queue]\nretry_schedule = 5", "queue.retry_schedule", "expected a list"),
        ("[auth]\nlockout_failures = true", "auth.lockout_failures", "expected an integer"),
        ("[auth]\nfree_failures = 12", "auth.free_failures", "smaller than"),
        ("smtp = 3", "smtp", "expected a table"),
        ("[forwarding]\nsrs_max_age_days = 0", "forwarding.srs_max_age_days", "positive"),
        ("[forwarding]\nsrs_max_age_days = 2000", "forwarding.srs_max_age_days", "below 1024"),
        ("[vacation]\ninterval_days = -1.0", "vacation.interval_days", "positive"),
        ("[web]\npage_size = 500", "web.page_size", "within 1..web.max_page_size"),
        ("[web]\nmax_upload_bytes = 10", "web.max_upload_bytes", "at least 1024"),
        ("[web]\nsse_per_account = 0", "web.sse_per_account", "at least 1"),
        ("[web]\nsession_ttl = -1", "web.session_ttl", "must be positive"),
        ("[web]\nsession_warning = -1", "web.session_warning", "0 or more"),
        ("[web]\nlogin_hold_bytes = 1024", "web.login_hold_bytes", "at least web.max_form_bytes"),
        ("[contacts]\nmax_per_account = 0", "contacts.max_per_account", "at least 1"),
        ("[contacts]\nmax_import_bytes = 10", "contacts.max_import_bytes", "at least 1024"),
        ("[policy]\ndmarc_discovery = 'dns'", "policy.dmarc_discovery", "expected one of"),
        ("[retention]\njunk_days = -1", "retention.junk_days", "must be 0–3650"),
        ("[retention]\ntrash_days = 4000", "retention.trash_days", "must be 0–3650"),
        ("[retention]\nmax_days = 100000", "retention.max_days", "must be 1–36500"),
        ("[retention]\nbatch_size = 0", "retention.batch_size", "must be positive"),
        ("[sieve]\nregex_max_memory = 4096", "sieve.regex_max_memory", "at least 65536"),
        ("[sieve]\nregex_max_length = 0", "sieve.regex_max_length", "positive"),
        ("[quota]\nwarning_thresholds = [80, 0]", "quota.warning_thresholds[1]", "1–100"),
        ("[quota]\nwarning_thresholds = [90, 90]", "quota.warning_thresholds", "twice"),
        ("[tls]\nacme = true\nacme_lease = 180.0", "tls.acme_lease", "twice tls.acme_timeout"),
        ("[tls]\nacme = true\nacme_store_poll = 0", "tls.acme_store_poll", "must be positive"),
        (
            "[dmarc_failure_reports]\nenabled = true",
            "dmarc_failure_reports.from_address",
            "needs an address",
        ),
        (
            "[dmarc_failure_reports]\nmax_per_domain = 0",
            "dmarc_failure_reports.max_per_domain",
            "must be positive",
        ),
        (
            "[dmarc_failure_reports]\ncontent = 'body'",
            "dmarc_failure_reports.content",
            "expected one of",
        ),
    ],
)
def test_invalid_values_name_the_dotted_key(
    tmp_path: Path, text: str, key: str, problem: str
) -> None:
    with pytest.raises(ConfigError) as info:
        cfg.load(write(tmp_path, text), environ={})
    assert info.value.key == key
    assert problem in info.value.problem


def test_invalid_toml(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not valid TOML"):
        cfg.load(write(tmp_path, "[smtp"), environ={})


def test_environment_overrides(tmp_path: Path) -> None:
    env = {
        "PILLARBOX__LISTENERS__IMAP__PORT": "1143",
        "PILLARBOX__SERVER__HOSTNAME": "mx.example.org",
        "PILLARBOX__QUEUE__RETRY_SCHEDULE": "[1, 2.5]",
        "UNRELATED": "x",
    }
    config = cfg.load(write(tmp_path, "[listeners.imap]\nport = 143\n"), environ=env)
    assert config.listeners.imap.port == 1143
    assert config.server.hostname == "mx.example.org"
    assert config.queue.retry_schedule == (1.0, 2.5)


def test_environment_override_unknown_key(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        cfg.load(write(tmp_path, ""), environ={"PILLARBOX__SMTP__NOPE": "1"})
    assert info.value.key == "smtp.nope"


def test_environment_override_bad_value(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        cfg.load(write(tmp_path, ""), environ={"PILLARBOX__SMTP__MAX_ERRORS": "many"})
    assert info.value.key == "smtp.max_errors"


def test_rendered_toml_loads_back_equal(tmp_path: Path) -> None:
    for config in (cfg.dev_config("d"), cfg.production_config("/var/lib/pb", "mx.example.org")):
        text = cfg.render_toml(config)
        assert "# Largest message accepted" in text
        loaded = cfg.load(write(tmp_path, text), environ={})
        assert loaded == config


def test_dev_config_is_loopback_and_unprivileged() -> None:
    config = cfg.dev_config("d")
    for name in cfg.LISTENER_DOCS:
        listener = getattr(config.listeners, name)
        assert listener.address == "127.0.0.1"
        assert listener.port >= 1024 or name in cfg.OPT_IN_LISTENERS
        assert listener.enabled is (name not in cfg.OPT_IN_LISTENERS)


def test_markdown_reference_documents_every_field() -> None:
    text = cfg.render_markdown()
    raw = tomllib.loads(cfg.render_toml(cfg.Config()))

    def documented(table: str, keys: dict[str, object]) -> None:
        # A TOML table is a table of the reference, or a key whose value is a table
        # (``queue.tls_policy``, rendered inline).
        inner = {
            k: v for k, v in keys.items() if isinstance(v, dict) and f"## `[{table}.{k}]`" in text
        }
        if len(inner) < len(keys) or not keys:  # a table with keys of its own
            assert f"## `[{table}]`" in text
            assert all(f"| `{k}` |" in text for k in keys if k not in inner)
        for name, sub in inner.items():
            documented(f"{table}.{name}", sub)

    for table, keys in raw.items():
        documented(table, keys)
    assert "## `[store.sqlite]`" in text and "## `[store.postgres]`" in text


def test_store_tuning_reaches_the_store(tmp_path: Path) -> None:
    path = tmp_path / "pillarbox.toml"
    path.write_text("[store.sqlite]\nreaders = 2\ndirectory_ttl_ms = 0\n")
    config = cfg.load(path, environ={"PILLARBOX__STORE__SQLITE__CACHE_MIB": "8"})
    store = open_store(config.store.url, config.data_dir, config.store)
    assert isinstance(store, SqliteStore)
    assert (store._limits.readers, store._limits.directory_ttl_ms, store._limits.cache_mib) == (
        2,
        0,
        8,
    )
    path.write_text("[store.sqlite]\nreaderz = 2\n")
    with pytest.raises(ConfigError, match=r"store\.sqlite\.readerz"):
        cfg.load(path, environ={})


def test_failure_reports_default_to_the_aggregate_sender(tmp_path: Path) -> None:
    text = (
        "[dmarc_reports]\nfrom_address = 'reports@example.org'\n"
        "[dmarc_failure_reports]\nenabled = true\n"
    )
    config = cfg.load(write(tmp_path, text), environ={})
    assert config.dmarc_failure_reports.enabled


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("[tls_reports]\nenabled = true\n", "tls_reports.from_address"),
        ("[tls_reports]\ninterval = 0\n", "tls_reports.interval"),
        ("[tls_reports]\npost_timeout = -1\n", "tls_reports.post_timeout"),
        ("[tls_reports]\ninterval = 3600.0\n", "tls_reports.max_delay"),
        ("[imap]\nlogin_timeout = 0\n", "imap.login_timeout"),
        ("[pop3]\nlogin_timeout = 601\n", "pop3.login_timeout"),
        ("[managesieve]\nlogin_timeout = -1\n", "managesieve.login_timeout"),
        ("[smtp]\nlogin_timeout = 301\n", "smtp.login_timeout"),
        ("[tls_reports]\nmax_delay = -1\n", "tls_reports.max_delay"),
        ("[tls_reports]\npost_retry = 0\n", "tls_reports.post_retry"),
        ("[tls_reports]\npost_retry_for = -5\n", "tls_reports.post_retry_for"),
        ("[dns]\ntrust_ad = 'sometimes'\n", "dns.trust_ad"),
        # Signing needs our server to serve the zone: a DS for an unsigned zone is an outage.
        ("[dns]\ndnssec = true\n", "dns.dnssec"),
        ("[dns]\ndnssec_validity = 0\n", "dns.dnssec_validity"),
        ("[dns]\ndnssec_refresh = 1209600\n", "dns.dnssec_refresh"),
        ("[dns]\ndnssec_inception_offset = -1\n", "dns.dnssec_inception_offset"),
        ("[dns]\ndnssec_signature_cache = 0\n", "dns.dnssec_signature_cache"),
        ("[dns]\ndnssec_signatures_per_second = -1\n", "dns.dnssec_signatures_per_second"),
        # A retired key removed before the zones' TTL has passed strands cached signatures.
        ("[dns]\ndnssec_retire_seconds = 3599\n", "dns.dnssec_retire_seconds"),
        ("[dns]\nauthoritative_max_tcp_connections = 0\n", "dns.authoritative_max_tcp_connections"),
    ],
)
def test_tls_report_and_dnssec_settings_are_checked(tmp_path: Path, text: str, key: str) -> None:
    with pytest.raises(ConfigError) as refused:
        cfg.load(write(tmp_path, text), environ={})
    assert refused.value.key == key


def test_dnssec_signs_what_the_authoritative_server_serves(tmp_path: Path) -> None:
    text = "[dns]\nauthoritative_enabled = true\ndnssec = true\n"
    config = cfg.load(write(tmp_path, text), environ={})
    assert config.dns.dnssec and config.dns.dnssec_refresh < config.dns.dnssec_validity


def test_tls_reports_default_to_the_dmarc_sender(tmp_path: Path) -> None:
    text = "[dmarc_reports]\nfrom_address = 'reports@example.org'\n[tls_reports]\nenabled = true\n"
    config = cfg.load(write(tmp_path, text), environ={})
    assert config.tls_reports.enabled and config.dns.trust_ad == "loopback" and config.queue.dane


def test_config_path_precedence() -> None:
    assert cfg.config_path("x.toml", {"PILLARBOX_CONFIG": "y.toml"}) == Path("x.toml")
    assert cfg.config_path(None, {"PILLARBOX_CONFIG": "y.toml"}) == Path("y.toml")
    assert cfg.config_path(None, {}) == Path("pillarbox.toml")


@pytest.mark.parametrize(
    ("table", "line", "key"),
    [
        ("store.sqlite", "readers = 0", "store.sqlite.readers"),
        ("store.sqlite", "directory_ttl_ms = -1", "store.sqlite.directory_ttl_ms"),
        ("store.postgres", "min_connections = 20", "store.postgres.min_connections"),
    ],
)
def test_store_tuning_out_of_range_is_refused(
    tmp_path: Path, table: str, line: str, key: str
) -> None:
    path = tmp_path / "pillarbox.toml"
    path.write_text(f"[{table}]\n{line}\n")
    with pytest.raises(ConfigError) as refused:
        cfg.load(path, environ={})
    assert refused.value.key == key


def test_store_tuning_may_turn_caches_off(tmp_path: Path) -> None:
    path = tmp_path / "pillarbox.toml"
    path.write_text("[store.sqlite]\ndirectory_ttl_ms = 0\nspam_cache_tokens = 0\n")
    assert cfg.load(path, environ={}).store.sqlite.spam_cache_tokens == 0


def test_a_config_from_before_the_https_listener_does_not_start_it(tmp_path: Path) -> None:
    """A file with no ``[listeners.https]`` (written before it existed, e.g. an earlier
    ``pillarbox demo``'s) must not make an upgraded server bind 443, which needs root; the
    files ``pillarbox init`` writes now turn it on."""
    old = cfg.load(write(tmp_path, "[listeners.http]\nport = 8080\n"), environ={})
    assert not old.listeners.https.enabled
    for fresh in (cfg.production_config("d", "mail.example.org"), cfg.dev_config("d")):
        written = cfg.load(write(tmp_path, cfg.render_toml(fresh)), environ={})
        assert written.listeners.https.enabled


def test_a_config_from_before_managesieve_does_not_start_it(tmp_path: Path) -> None:
    """Likewise ``[listeners.managesieve]``: an upgraded server must not try 4190, which the
    host's Dovecot may hold (a bind that fails stops the whole server); new files turn it on."""
    old = cfg.load(write(tmp_path, "[listeners.http]\nport = 8080\n"), environ={})
    assert not old.listeners.managesieve.enabled
    for fresh in (cfg.production_config("d", "mail.example.org"), cfg.dev_config("d")):
        written = cfg.load(write(tmp_path, cfg.render_toml(fresh)), environ={})
        assert written.listeners.managesieve.enabled
        assert written.listeners.managesieve.port == 4190


def test_the_metrics_listener_is_off_unless_named(tmp_path: Path) -> None:
    """No ``[listeners.metrics]``: no metrics listener (nor in the files ``pillarbox init``
    writes, which leave it off and on loopback); naming the table turns it on, on loopback
    and Mox's port 8010 unless the table says otherwise."""
    assert not cfg.Config().listeners.metrics.enabled
    old = cfg.load(write(tmp_path, "[listeners.http]\nport = 8080\n"), environ={})
    assert not old.listeners.metrics.enabled
    for fresh in (cfg.production_config("d", "mail.example.org"), cfg.dev_config("d")):
        written = cfg.load(write(tmp_path, cfg.render_toml(fresh)), environ={})
        metrics = written.listeners.metrics
        assert (metrics.enabled, metrics.address) == (False, "127.0.0.1")
    named = cfg.load(write(tmp_path, "[listeners.metrics]\n"), environ={})
    assert named.listeners.metrics == cfg.Listener(address="127.0.0.1", port=8010)


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("[metrics]\nmax_connections = 0\n", "metrics.max_connections"),
        ("[metrics]\nrequest_timeout = 0\n", "metrics.request_timeout"),
        (
            '[metrics]\nbasic_auth_password = "p"\nbasic_auth_username = ""\n',
            "metrics.basic_auth_username",
        ),
    ],
)
def test_metrics_settings_are_checked(tmp_path: Path, text: str, key: str) -> None:
    with pytest.raises(ConfigError) as caught:
        cfg.load(write(tmp_path, text), environ={})
    assert caught.value.key == key


def test_a_tls_policy_table_loads_and_renders_back(tmp_path: Path) -> None:
    text = (
        "[queue.tls_policy]\n"
        '"partner.example" = "secure match=nexthop:.mail.partner.example"\n'
        '".bank.example" = "encrypt"\n'
        '"[relay.isp.example]:587" = "verify"\n'
    )
    config = cfg.load(write(tmp_path, text), environ={})
    assert dict(config.queue.tls_policy) == {
        "partner.example": "secure match=nexthop:.mail.partner.example",
        ".bank.example": "encrypt",
        "[relay.isp.example]:587": "verify",
    }
    rendered = cfg.render_toml(config)
    assert '"partner.example" = "secure match=nexthop:.mail.partner.example"' in rendered
    assert cfg.load(write(tmp_path, rendered), environ={}) == config
    env = {"PILLARBOX__QUEUE__TLS_POLICY": '{ "a.example" = "dane-only" }'}
    assert dict(cfg.load(write(tmp_path, ""), environ=env).queue.tls_policy) == {
        "a.example": "dane-only"
    }


@pytest.mark.parametrize(
    ("entry", "key", "problem"),
    [
        ('"p.example" = "must"', 'queue.tls_policy."p.example"', "unknown level 'must'"),
        ('"p.example" = 3', 'queue.tls_policy."p.example"', "expected a string"),
        ('"p.example" = ""', 'queue.tls_policy."p.example"', "empty policy"),
        ('"a b" = "may"', 'queue.tls_policy."a b"', "expected a domain"),
        ('"[relay.example]" = "dane"', 'queue.tls_policy."[relay.example]"', "smart host"),
        ('"[relay.example]:0" = "may"', 'queue.tls_policy."[relay.example]:0"', "expected a"),
        ('"p.example" = "encrypt match=p.example"', 'queue.tls_policy."p.example"', "match="),
        ('"p.example" = "verify protocols=!SSLv3"', 'queue.tls_policy."p.example"', "only match"),
        ('"p.example" = "secure match=a..b"', 'queue.tls_policy."p.example"', "bad match"),
        ('"P.example" = "may"\n"p.EXAMPLE" = "none"', 'queue.tls_policy."p.EXAMPLE"', "twice"),
    ],
)
def test_a_bad_tls_policy_entry_is_named(
    tmp_path: Path, entry: str, key: str, problem: str
) -> None:
    with pytest.raises(ConfigError) as refused:
        cfg.load(write(tmp_path, f"[queue.tls_policy]\n{entry}\n"), environ={})
    assert refused.value.key == key
    assert problem in refused.value.problem


def test_a_tls_policy_is_a_table_and_overridden_whole(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as refused:
        cfg.load(write(tmp_path, '[queue]\ntls_policy = "encrypt"\n'), environ={})
    assert refused.value.key == "queue.tls_policy"
    env = {"PILLARBOX__QUEUE__TLS_POLICY__P.EXAMPLE": "encrypt"}
    with pytest.raises(ConfigError) as refused:
        cfg.load(write(tmp_path, ""), environ=env)
    assert refused.value.key == "queue.tls_policy.p.example"


def test_lmtp_is_off_unless_named_and_then_on_loopback_port_24(tmp_path: Path) -> None:
    """LMTP takes mail for every account without AUTH: no file turns it on by itself — not one
    from before it existed, not the files ``pillarbox init`` writes (off, on loopback, even in
    the production config that binds everything else on every address). Naming
    ``[listeners.lmtp]`` turns it on, where Dovecot's LMTP listens: 127.0.0.1:24."""
    old = cfg.load(write(tmp_path, "[listeners.http]\nport = 8080\n"), environ={})
    assert not old.listeners.lmtp.enabled
    for fresh in (cfg.production_config("d", "mail.example.org"), cfg.dev_config("d")):
        written = cfg.load(write(tmp_path, cfg.render_toml(fresh)), environ={})
        assert not written.listeners.lmtp.enabled
        assert written.listeners.lmtp.address == "127.0.0.1"
    named = cfg.load(write(tmp_path, "[listeners.lmtp]\n"), environ={})
    assert named.listeners.lmtp == cfg.Listener(enabled=True, address="127.0.0.1", port=24)
    assert named.lmtp == cfg.LmtpSection()
    assert named.lmtp.policy == "content" and named.lmtp.quota_full == "tempfail"
    assert not named.lmtp.refuse_spam


def test_lmtp_section_is_checked(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        cfg.load(write(tmp_path, '[lmtp]\npolicy = "strict"\n'), environ={})
    assert info.value.key == "lmtp.policy"
    with pytest.raises(ConfigError) as info:
        cfg.load(write(tmp_path, "[lmtp]\nmax_connections = 0\n"), environ={})
    assert info.value.key == "lmtp.max_connections"
    for text, key in [
        ('[lmtp]\ntrusted_networks = ["10.0.0.0/33"]\n', "lmtp.trusted_networks"),
        ('[lmtp]\nauth_accounts = ["relay"]\n', "lmtp.auth_accounts"),
    ]:
        with pytest.raises(ConfigError) as info:
            cfg.load(write(tmp_path, text), environ={})
        assert info.value.key == key
    # The defaults keep loopback as it was: no TLS or AUTH asked of it.
    assert cfg.LmtpSection().trusted_networks == ("127.0.0.0/8", "::1/128")


def test_lmtp_socket_settings_are_checked(tmp_path: Path) -> None:
    """The socket path comes from the admin's file only and must be absolute; the mode is
    octal permission bits."""
    for text, key in [
        ('[lmtp]\nsocket = "run/lmtp"\n', "lmtp.socket"),
        ('[lmtp]\nsocket_mode = "0999"\n', "lmtp.socket_mode"),
        ('[lmtp]\nsocket_mode = "01777"\n', "lmtp.socket_mode"),
    ]:
        with pytest.raises(ConfigError) as info:
            cfg.load(write(tmp_path, text), environ={})
        assert info.value.key == key
    loaded = cfg.load(write(tmp_path, '[lmtp]\nsocket = "/run/pb/lmtp"\n'), environ={})
    assert (
        loaded.lmtp.socket == "/run/pb/lmtp" and cfg.socket_mode(loaded.lmtp.socket_mode) == 0o660
    )


def test_a_listener_behind_a_load_balancer(tmp_path: Path) -> None:
    text = (
        "[listeners.imaps]\nproxy_protocol = true\nproxy_networks = ['10.0.0.0/24', 'fd00::/8']\n"
        "[listeners.https]\nenabled = true\nforwarded_headers = true\n"
        "proxy_networks = ['10.0.0.5']\n"
    )
    config = cfg.load(write(tmp_path, text), environ={})
    imaps = config.listeners.imaps
    assert (imaps.port, imaps.proxy_protocol, imaps.proxy_timeout) == (993, True, 5.0)
    assert imaps.proxy_networks == ("10.0.0.0/24", "fd00::/8")
    assert config.listeners.https.forwarded_headers
    assert not config.listeners.smtp.proxy_protocol  # off unless turned on


@pytest.mark.parametrize(
    ("text", "key", "problem"),
    [
        ("[listeners.smtp]\nproxy_protocol = true", "listeners.smtp.proxy_networks", "needed"),
        ("[listeners.http]\nforwarded_headers = true", "listeners.http.proxy_networks", "needed"),
        (
            "[listeners.http]\nproxy_protocol = true\nproxy_networks = ['10.0.0.1']",
            "listeners.http.proxy_protocol",
            "use forwarded_headers",
        ),
        (
            "[listeners.imap]\nforwarded_headers = true\nproxy_networks = ['10.0.0.1']",
            "listeners.imap.forwarded_headers",
            "only for the http and https",
        ),
        (
            "[listeners.pop3]\nproxy_protocol = true\nproxy_networks = ['10.0.0.300/8']",
            "listeners.pop3.proxy_networks",
            "not a network",
        ),
        ("[listeners.lmtp]\nproxy_timeout = 0", "listeners.lmtp.proxy_timeout", "positive"),
    ],
)
def test_load_balancer_settings_are_checked(
    tmp_path: Path, text: str, key: str, problem: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        cfg.load(write(tmp_path, text), environ={})
    assert caught.value.key == key
    assert problem in caught.value.problem


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ('["mx.example.org"]', "is not an IP address"),
        ('["192.0.2.1", "192.0.2.2"]', "at most one IPv4 and one IPv6"),
    ],
)
def test_queue_source_addresses_are_checked(tmp_path: Path, value: str, problem: str) -> None:
    with pytest.raises(ConfigError) as info:
        cfg.load(write(tmp_path, f"[queue]\nsource_addresses = {value}\n"), environ={})
    assert info.value.key == "queue.source_addresses"
    assert problem in str(info.value)
    loaded = cfg.load(
        write(tmp_path, '[queue]\nsource_addresses = ["192.0.2.1", "2001:db8::1"]\n'), environ={}
    )
    assert loaded.queue.source_addresses == ("192.0.2.1", "2001:db8::1")


@pytest.mark.parametrize(("value", "valid"), [("0", True), ("300", True), ("60", False)])
def test_mta_sts_refresh_is_off_or_five_minutes_at_least(
    tmp_path: Path, value: str, valid: bool
) -> None:
    """RFC 8461 §3.3: no more than one fetch per five minutes."""
    text = f"[queue]\nmta_sts_refresh = {value}\n"
    if valid:
        assert cfg.load(write(tmp_path, text), environ={}).queue.mta_sts_refresh == float(value)
        return
    with pytest.raises(ConfigError) as info:
        cfg.load(write(tmp_path, text), environ={})
    assert info.value.key == "queue.mta_sts_refresh"
