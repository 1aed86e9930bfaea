"""SMTP with swaks, the tool administrators test mail servers with.

Submission with STARTTLS and AUTH PLAIN / LOGIN (certificate verified), implicit TLS on the
submissions port, PIPELINING, and delivery to the MX; what was accepted is read back over IMAP.
The refusals a user meets (a wrong password, sending without logging in, relaying through the MX,
someone else's address) are read from swaks' transcript: each must be the right reply code.
And ``--protocol LMTP`` against the lmtp listener as a front MTA from another host would meet
it: STARTTLS and AUTH before MAIL, then one reply per recipient after the data.
"""

from __future__ import annotations

import imaplib
import re
import ssl
from pathlib import Path

import pytest

from pillarbox import config as cfg
from pillarbox.net.tls import tls_paths
from pillarbox.testing.live import TEST_PASSWORD, LiveServer, loopback_config
from pillarbox.testing.peers import require, run

pytestmark = pytest.mark.listeners("smtp", "submission", "submissions", "imap")

#: swaks' exit codes (its manual, "EXIT CODES"): 0 delivered; the others name the step refused.
AUTH_FAILED, MAIL_REFUSED, RCPT_REFUSED, DATA_REFUSED = 28, 23, 24, 26


def swaks_with_tls() -> str:
    """The swaks program; skips the test unless it can speak TLS (Net::SSLeay)."""
    program = require("swaks", "swaks")
    if "=== TLS supported" not in run([program, "--support"]).stdout:
        pytest.skip("swaks without TLS (apt-get install libnet-ssleay-perl)")
    return program


def swaks(live: LiveServer, listener: str, *args: str, ok: int = 0) -> list[str]:
    """swaks against one of our listeners; the lines it read from the server."""
    result = run(
        [
            swaks_with_tls(),
            "--server",
            f"localhost:{live.port(listener)}",
            "--helo",
            "client.example.net",
            "--tls-ca-path",
            str(tls_paths(live.config)[0]),
            "--tls-verify",
            *args,
        ],
        ok=(ok,),
    )
    # "<-  " in the clear, "<~  " under TLS, "<** " or "<~* " for a reply taken as a failure.
    return [line[4:] for line in result.stdout.splitlines() if line.startswith("<")]


def login(user: str = "alice@example.org", password: str = TEST_PASSWORD) -> list[str]:
    return ["--auth-user", user, "--auth-password", password]


def inbox_subjects(live: LiveServer, user: str) -> list[str]:
    with imaplib.IMAP4("127.0.0.1", live.port("imap")) as imap:
        imap.starttls(ssl.create_default_context(cafile=str(tls_paths(live.config)[0])))
        imap.login(user, TEST_PASSWORD)
        imap.select("INBOX", readonly=True)
        typ, data = imap.fetch("1:*", "(BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
        assert typ == "OK"
        return [
            item[1].decode().removeprefix("Subject: ").strip()
            for item in data
            if isinstance(item, tuple)
        ]


def ehlo_keywords(live: LiveServer, replies: list[str]) -> list[list[str]]:
    """The keywords of each EHLO reply in a transcript (before and after STARTTLS)."""
    found: list[list[str]] = []
    keywords: list[str] | None = None
    for line in replies:
        if keywords is None:
            if line == f"250-{live.config.server.hostname}":
                keywords = []
        else:
            keywords.append(line[4:])
            if line.startswith("250 "):
                found.append(keywords)
                keywords = None
    return found


@pytest.mark.parametrize("mechanism", ["PLAIN", "LOGIN"])
def test_submission_starttls_auth(tls_live: LiveServer, mechanism: str) -> None:
    replies = swaks(
        tls_live,
        "submission",
        "--tls",
        "--auth",
        mechanism,
        *login(),
        "--from",
        "alice@example.org",
        "--to",
        "bob@example.org",
        "--header",
        f"Subject: starttls {mechanism}",
    )
    before, after = ehlo_keywords(tls_live, replies)
    # RFC 4954 §4 / RFC 8314 §3.3: no AUTH (no password) before TLS, on this server's setting.
    assert not [k for k in before if k.startswith("AUTH")] and "STARTTLS" in before
    assert any(k.startswith("AUTH") and mechanism in k.split() for k in after)
    assert "235 2.7.0 authentication successful" in replies
    assert inbox_subjects(tls_live, "bob@example.org") == [f"starttls {mechanism}"]


def test_submissions_implicit_tls_and_pipelining(tls_live: LiveServer) -> None:
    replies = swaks(
        tls_live,
        "submissions",
        "--tlsc",
        "--pipeline",
        "--auth",
        "PLAIN",
        *login(),
        "--from",
        "alice@example.org",
        "--to",
        "bob@example.org,alice@example.org",
        "--header",
        "Subject: implicit tls",
    )
    assert "PIPELINING" in ehlo_keywords(tls_live, replies)[0]
    # The pipelined group MAIL, RCPT, RCPT, DATA is answered in order (RFC 2920 §3.1).
    start = replies.index("235 2.7.0 authentication successful") + 1
    assert [r[:3] for r in replies[start : start + 5]] == ["250", "250", "250", "354", "250"]
    assert inbox_subjects(tls_live, "bob@example.org") == ["implicit tls"]
    assert inbox_subjects(tls_live, "alice@example.org") == ["implicit tls"]


def test_mx_delivery_with_pipelining_and_an_unknown_recipient(tls_live: LiveServer) -> None:
    replies = swaks(
        tls_live,
        "smtp",
        "--pipeline",
        "--from",
        "friend@example.net",
        "--to",
        "alice@example.org,nobody@example.org",
        "--header",
        "Subject: from the internet",
    )
    assert "550 5.1.1 mailbox unavailable" in replies
    assert any(re.fullmatch(r"250 2\.0\.0 message accepted as \w+", r) for r in replies)
    assert inbox_subjects(tls_live, "alice@example.org") == ["from the internet"]


def test_mx_over_starttls(tls_live: LiveServer) -> None:
    replies = swaks(
        tls_live,
        "smtp",
        "--tls",
        "--from",
        "friend@example.net",
        "--to",
        "bob@example.org",
        "--header",
        "Subject: encrypted hop",
    )
    assert "220 2.0.0 ready to start TLS" in replies
    assert inbox_subjects(tls_live, "bob@example.org") == ["encrypted hop"]


@pytest.mark.parametrize(
    ("listener", "args", "code", "refusal"),
    [
        (
            "submission",
            ["--tls", "--auth", "PLAIN", *login(password="not the password")],
            AUTH_FAILED,
            "535 5.7.8 authentication credentials invalid",
        ),
        (
            "submissions",
            ["--tlsc", "--auth", "LOGIN", *login(password="not the password")],
            AUTH_FAILED,
            "535 5.7.8 authentication credentials invalid",
        ),
        ("submission", ["--tls"], MAIL_REFUSED, "530 5.7.0 authentication required"),
        ("smtp", [], RCPT_REFUSED, "554 5.7.1 relay access denied"),
        (
            "submission",
            ["--tls", "--auth", "PLAIN", *login(user="bob@example.org")],
            MAIL_REFUSED,
            "550 5.7.1 sender address not owned by the login",
        ),
    ],
    ids=["wrong-password", "wrong-password-465", "no-auth", "relay", "not-my-address"],
)
def test_refusals(
    tls_live: LiveServer, listener: str, args: list[str], code: int, refusal: str
) -> None:
    replies = swaks(
        tls_live,
        listener,
        *args,
        "--from",
        "alice@example.org",
        "--to",
        "someone@far.example",
        ok=code,
    )
    assert refusal in replies
    assert tls_live.call(tls_live.store.list_queue()) == []


def test_lmtp_from_outside_trusted_networks(tmp_path: Path) -> None:
    """``[lmtp] trusted_networks`` empty (loopback counts as another host): without AUTH
    swaks' MAIL is refused after STARTTLS; with AUTH as the ``auth_accounts`` account each
    recipient gets its own 250 after the data (RFC 2033 §4.2)."""
    section = cfg.LmtpSection(trusted_networks=(), auth_accounts=("front@example.org",))
    config = loopback_config(tmp_path / "data", only=("lmtp",), lmtp=section)
    with LiveServer(config) as live:
        live.add_domain("example.org")
        for user in ("alice", "bob", "front"):
            live.add_account(f"{user}@example.org", TEST_PASSWORD)
        lmtp = ("--protocol", "LMTP", "--from", "friend@example.net", "--tls")
        refused = swaks(live, "lmtp", *lmtp, "--to", "alice@example.org", ok=MAIL_REFUSED)
        assert "530 5.7.0 authentication required" in refused
        replies = swaks(
            live,
            "lmtp",
            *lmtp,
            "--auth",
            "PLAIN",
            *login("front@example.org"),
            "--to",
            "alice@example.org,bob@example.org",
            "--header",
            "Subject: lmtp over tls",
        )
        before, after = ehlo_keywords(live, replies)
        assert "STARTTLS" in before and not [k for k in before if k.startswith("AUTH")]
        assert "AUTH SCRAM-SHA-256 PLAIN LOGIN" in after and "STARTTLS" not in after
        accepted = [r for r in replies if re.fullmatch(r"250 2\.0\.0 message accepted as \w+", r)]
        assert len(accepted) == 2
        for user in ("alice", "bob"):
            (stored,) = live.mailbox_messages(f"{user}@example.org", "INBOX")
            assert b"Subject: lmtp over tls" in stored and b" with LMTPSA id " in stored
