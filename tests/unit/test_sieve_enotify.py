"""Sieve "enotify" (RFC 5435) with the mailto method (RFC 5436): the notify action, its
compile-time and runtime errors, valid_notify_method, notify_method_capability, the
:encodeurl modifier, the mailto URI parse (RFC 6068) and the notification message."""

from __future__ import annotations

import email
from datetime import UTC, datetime
from email.policy import default

import pytest

from pillarbox.queue.notification import compose, reason_not_to_notify
from pillarbox.queue.vacation import Incoming
from pillarbox.sieve import (
    Discard,
    Keep,
    Notify,
    Outcome,
    Reject,
    RunLimits,
    SieveError,
    SieveMessage,
    compile_script,
)
from pillarbox.sieve.notify import InvalidMethod, Mailto, encode_url, parse
from pillarbox.store.types import Account

MESSAGE = (
    b"From: Jeff Smith <jeff@hobbies.example.com>\r\n"
    b"To: Knitting <knitting@example.com>\r\n"
    b"Subject: [Knitting] A new sweater\r\n"
    b"Date: Wed, 07 Dec 2005 10:59:19 +0100\r\n"
    b"List-Id: Knitting Mailing List <knitting.example.com>\r\n"
    b"\r\n"
    b"I just finished a great new sweater!\r\n"
)
NOW = datetime(2026, 11, 30, 8, 0, tzinfo=UTC)
ALICE = Account(1, "alice@example.org", "Alice Liddell", "", None, False, None, None, NOW)


def run(script: str, limits: RunLimits | None = None) -> Outcome:
    return compile_script(script).run(SieveMessage.from_bytes(MESSAGE), limits)


def notifies(outcome: Outcome) -> list[Notify]:
    assert outcome.error is None, outcome.error
    return [a for a in outcome.actions if isinstance(a, Notify)]


def test_rfc5436_section_3_example() -> None:
    outcome = run(
        'require ["enotify", "variables"];\n'
        'if header :contains "list-id" "knitting.example.com" {\n'
        '  if header :matches "Subject" "[*] *" {\n'
        '    notify :message "From ${1} list: ${2}" :importance "3"\n'
        '        "mailto:0123456789@sms.example.net?to=backup@example.com";\n'
        "  }\n"
        "}\n"
    )
    assert outcome.actions == (
        Notify(
            "mailto:0123456789@sms.example.net?to=backup@example.com",
            Mailto(to=("0123456789@sms.example.net", "backup@example.com")),
            ("0123456789@sms.example.net", "backup@example.com"),
            importance=3,
            message="From Knitting list: A new sweater",
        ),
        Keep(),  # RFC 5435 §7: notify MUST NOT cancel the implicit keep
    )


def test_defaults_and_from() -> None:
    script = 'require "enotify"; notify :from "me@example.org" "mailto:a@b.example";'
    [action] = notifies(run(script))
    assert action.importance == 2  # RFC 5435 §3.4
    assert action.from_ == "me@example.org"
    assert action.message is None
    assert action.recipients == ("a@b.example",)


def test_a_recipient_is_notified_once_per_run() -> None:
    """RFC 5435 §7 lets a method collapse notifications: later notifies skip addresses
    already notified, and one left with none is dropped (as Pigeonhole)."""
    outcome = run(
        'require ["enotify", "variables"];\n'
        'set "m" "mailto:x@y.example";\n'
        'notify "${m}";\n'
        'notify "mailto:x@y.example";\n'
        'notify :message "second" "mailto:x@y.example?cc=w@y.example";\n'
    )
    assert [a.recipients for a in notifies(outcome)] == [("x@y.example",), ("w@y.example",)]


def test_notify_goes_with_reject_and_discard() -> None:
    outcome = run('require ["enotify", "reject"]; notify "mailto:a@b.example"; reject "no";')
    assert outcome.error is None
    assert [type(a) for a in outcome.actions] == [Notify, Reject]
    outcome = run('require "enotify"; notify "mailto:a@b.example"; discard;')
    assert [type(a) for a in outcome.actions] == [Notify, Discard]


@pytest.mark.parametrize(
    ("script", "message_part"),
    [
        ('notify "mailto:a@b.example";', "needs require 'enotify'"),
        ('require "enotify"; notify "xmpp:tim@example.com";', "unsupported method 'xmpp'"),
        ('require "enotify"; notify "tel:+14085551212";', "unsupported method 'tel'"),
        ('require "enotify"; notify "no scheme";', "not a URI"),
        ('require "enotify"; notify "mailto:not an address";', "invalid character"),
        ('require "enotify"; notify "mailto:nobody";', "invalid to address"),
        ('require "enotify"; notify "mailto:a@b.example?subject=%ZZ";', "percent-encoding"),
        ('require "enotify"; notify "mailto:a@b.example?subject=%FF";', "not UTF-8"),
        ('require "enotify"; notify "mailto:a@b.example?subject";', "invalid header field"),
        ('require "enotify"; notify "mailto:?cc=oops";', "invalid cc address"),
        ('require "enotify"; notify :importance "4" "mailto:a@b.example";', "RFC 5435 §3.4"),
        ('require "enotify"; notify :importance "0" "mailto:a@b.example";', "RFC 5435 §3.4"),
        ('require "enotify"; notify :options "a" "mailto:a@b.example";', "RFC 5435 §3.5"),
        ('require "enotify"; notify :options "=b" "mailto:a@b.example";', "RFC 5435 §3.5"),
        ('require "enotify"; notify :from "not an address" "mailto:a@b.example";', ":from"),
        ('require "enotify"; notify :message 1 "mailto:a@b.example";', "expected a string"),
        ('require "enotify"; notify;', "positional"),
        ('require "variables"; set :encodeurl "a" "b";', "needs require 'enotify'"),
        ('require "enotify"; if valid_notify_method {}', "positional"),
        ('require "enotify"; if notify_method_capability "mailto:a@b.c" "online" {}', "got 2"),
    ],
)
def test_compile_errors(script: str, message_part: str) -> None:
    with pytest.raises(SieveError) as caught:
        compile_script(script)
    assert message_part in str(caught.value)


def test_an_empty_mailto_compiles_and_notifies_nobody() -> None:
    """Pigeonhole only warns of "mailto:" (no recipients); nothing is sent."""
    outcome = run('require "enotify"; notify "mailto:";')
    assert outcome.actions == (Keep(),)


@pytest.mark.parametrize(
    ("script", "error"),
    [
        (
            'require ["enotify", "variables"]; set "m" "xmpp:foo"; notify "${m}";',
            "unsupported method 'xmpp'",
        ),
        (
            'require ["enotify", "variables"]; set "i" "9"; '
            'notify :importance "${i}" "mailto:a@b.example";',
            "invalid :importance",
        ),
        (
            'require ["enotify", "variables"]; set "o" "x"; '
            'notify :options "${o}" "mailto:a@b.example";',
            "invalid option",
        ),
        (
            'require ["enotify", "variables"]; set "f" "nobody"; '
            'notify :from "${f}" "mailto:a@b.example";',
            "invalid address",
        ),
    ],
)
def test_invalid_values_made_of_variables_are_runtime_errors(script: str, error: str) -> None:
    """RFC 5435 §3.2: MUST cause an error; at run time that keeps the message, nothing sent."""
    outcome = run(f'{script} fileinto "x";'.replace("require [", 'require ["fileinto", '))
    assert outcome.actions == (Keep(),)
    assert outcome.error is not None and error in outcome.error


def test_recipient_limits_are_runtime_errors() -> None:
    """RFC 5435 §8: an administrator MUST be able to limit notify (sieve.max_notify_recipients,
    sieve.max_notifications)."""
    three = 'notify "mailto:a@x.example%2Cb@x.example?cc=c@x.example";'
    limits = RunLimits(max_notify_recipients=2)
    outcome = run(f'require "enotify"; {three}', limits)
    assert outcome.actions == (Keep(),)
    assert outcome.error == "notify: more than 2 recipients"
    assert notifies(run(f'require "enotify"; {three}', RunLimits(max_notify_recipients=3)))
    per_run = RunLimits(max_notifications=3)
    script = f'require "enotify"; {three} notify "mailto:d@x.example";'
    outcome = run(script, per_run)
    assert outcome.actions == (Keep(),)
    assert outcome.error == "more than 3 notification recipients"
    # Recipients notified before do not count again.
    assert len(notifies(run(f'require "enotify"; {three} {three}', per_run))) == 1


@pytest.mark.parametrize(
    ("uris", "expected"),
    [
        ('"mailto:a@b.example"', True),
        ('"MAILTO:a@b.example"', True),
        ('"mailto:"', True),
        ('["mailto:a@b.example", "mailto:c@d.example?subject=hi%20there"]', True),
        ('["mailto:a@b.example", "xmpp:tim@example.com"]', False),  # §4: ALL of them
        ('"http://gw.example.net/notify?test"', False),
        ('"mailto:a@b.example?subject=%ZZ"', False),
        ('"mailto:a b@example.com"', False),
        ('""', False),
    ],
)
def test_valid_notify_method(uris: str, expected: bool) -> None:
    outcome = run(f'require "enotify"; if valid_notify_method {uris} {{ discard; }}')
    assert (outcome.actions == (Discard(),)) is expected


@pytest.mark.parametrize(
    ("test", "expected"),
    [
        ('notify_method_capability "mailto:a@b.example" "online" "maybe"', True),
        ('notify_method_capability "mailto:a@b.example" "Online" "MAYBE"', True),  # §5
        ('notify_method_capability "mailto:a@b.example" "online" ["yes", "no"]', False),
        ('notify_method_capability :comparator "i;octet" "mailto:a@b.c" "online" "Maybe"', False),
        ('notify_method_capability :matches "mailto:a@b.example" "online" "m*"', True),
        ('notify_method_capability "mailto:a@b.example" "busy" "maybe"', False),
        ('notify_method_capability "xmpp:a@b.example" "online" "maybe"', False),
        ('notify_method_capability "mailto:%ZZ" "online" "maybe"', False),
        ('notify_method_capability :count "eq" "mailto:a@b.c" "online" "1"', True),
        ('notify_method_capability :count "eq" "mailto:a@b.c" "other" "0"', True),
    ],
)
def test_notify_method_capability(test: str, expected: bool) -> None:
    """RFC 5435 §5 with RFC 5436 §2.2: "maybe" for mailto; false, never an error, for an
    unknown capability or URI."""
    requires = '["enotify", "relational", "comparator-i;ascii-numeric"]'
    outcome = run(f"require {requires}; if {test} {{ discard; }}")
    assert outcome.error is None
    assert (outcome.actions == (Discard(),)) is expected


@pytest.mark.parametrize(
    ("modifiers", "value", "expected"),
    [
        (":encodeurl", "Safe body&evil=evilbody", "Safe%20body%26evil%3Devilbody"),  # §6
        (":encodeurl", "a b&c=\u00fc/~-._", "a%20b%26c%3D%C3%BC%2F~-._"),
        (":encodeurl :upper", "a b", "A%20B"),  # :upper (40) first
        (":encodeurl :quotewildcard", "a*b", "a%5C%2Ab"),  # :quotewildcard (20) first
        (":length :encodeurl", "a b", "5"),  # :encodeurl (15) before :length (10)
    ],
)
def test_encodeurl(modifiers: str, value: str, expected: str) -> None:
    outcome = run(
        f'require ["enotify", "variables", "fileinto"]; set {modifiers} "v" "{value}";'
        ' fileinto "${v}";'
    )
    assert outcome.error is None
    assert outcome.actions[0].mailbox == expected  # type: ignore[union-attr]


def test_encodeurl_function_keeps_only_unreserved() -> None:
    assert encode_url("AZaz09-._~ !*'();:@&=+$,/?#[]") == (
        "AZaz09-._~%20%21%2A%27%28%29%3B%3A%40%26%3D%2B%24%2C%2F%3F%23%5B%5D"
    )


def test_mailto_parse() -> None:
    """RFC 6068 §2 with RFC 5436 §2.7: recipients from the path, to and cc; subject and body;
    the unsafe fields (and the ones we write) ignored; other fields copied once each."""
    uri = (
        "mailto:a@x.example,B@X.example%2Cc@x.example?to=d@x.example&cc=e@x.example,"
        "a@x.example&bcc=hidden@x.example&subject=Hi%20%C3%A9&body=line%0D%0Atwo"
        "&from=evil@x.example&Auto-Submitted=no&received=x&message-id=%3Cx%3E&date=today"
        "&resent-to=r@x.example&content-type=text/html&X-Tag=one&x-tag=two&Reply-To=r@x.example"
    )
    assert parse(uri) == Mailto(
        to=("a@x.example", "B@x.example", "c@x.example", "d@x.example"),
        cc=("e@x.example", "a@x.example"),
        subject="Hi \u00e9",
        body="line\r\ntwo",
        fields=(("X-Tag", "one"), ("Reply-To", "r@x.example")),
    )
    assert parse(uri).recipients == (
        "a@x.example",
        "B@x.example",
        "c@x.example",
        "d@x.example",
        "e@x.example",
    )
    with pytest.raises(InvalidMethod):
        parse("mailto:a@x.example#fragment")


def composed(action: Notify, incoming: Incoming, sender: str = "") -> bytes:
    return compose(action, incoming, ALICE, sender=sender, now=NOW, max_field_size=2048)


def test_the_notification_message() -> None:
    """RFC 5436 §2.7: Auto-Submitted first with owner-email; From the account; To/Cc as the
    URI gives them; Subject from :message; Importance for :importance 1."""
    action = Notify(
        "mailto:sms@example.net?cc=backup@example.com&x-tag=t",
        parse("mailto:sms@example.net?cc=backup@example.com&x-tag=t"),
        ("sms@example.net", "backup@example.com"),
        importance=1,
        message="From Knitting list: A new sweater",
    )
    raw = composed(action, Incoming.of("list@example.com", MESSAGE))
    assert raw.startswith(b'Auto-Submitted: auto-notified; owner-email="alice@example.org"\r\n')
    parsed = email.message_from_bytes(raw, policy=default)
    assert parsed["From"] == "Alice Liddell <alice@example.org>"
    assert parsed["To"] == "sms@example.net"
    assert parsed["Cc"] == "backup@example.com"
    assert parsed["Subject"] == "From Knitting list: A new sweater"
    assert parsed["Importance"] == "high"
    assert parsed["X-Tag"] == "t"
    assert parsed["Date"] == "Mon, 30 Nov 2026 08:00:00 +0000"
    assert parsed["Message-ID"].endswith("@example.org>")
    body = parsed.get_content()
    assert "From: Jeff Smith <jeff@hobbies.example.com>" in body
    assert "Subject: [Knitting] A new sweater" in body
    assert "great new sweater" not in body  # never the triggering message's body


def test_notification_subject_and_body_fall_back() -> None:
    """RFC 5436 §2.7: without :message the URI's subject, without that the triggering
    message's; the URI's body when it has one; a :from the account may use as From."""
    incoming = Incoming.of("list@example.com", MESSAGE)
    uri = "mailto:a@b.example?subject=New%20mail&body=Look%21"
    action = Notify(uri, parse(uri), ("a@b.example",), importance=3)
    parsed = email.message_from_bytes(
        composed(action, incoming, sender="alias@example.org"), policy=default
    )
    assert parsed["Subject"] == "New mail"
    assert parsed["From"] == "alias@example.org"
    assert parsed["Importance"] == "low"
    assert parsed.get_content() == "Look!\r\n"
    plain = Notify("mailto:a@b.example", parse("mailto:a@b.example"), ("a@b.example",))
    parsed = email.message_from_bytes(composed(plain, incoming))
    assert parsed["Subject"] == "[Knitting] A new sweater"
    assert parsed["Importance"] is None


def test_uri_fields_are_written_as_text_never_parsed() -> None:
    """A URI field is written as addheader writes one (RFC 2047, folded, one line), with
    its first letter in capitals (RFC 5436 §2.7's suggestion); a value no structured parse
    would take is still just text."""
    uri = "mailto:a@b.example?reply-to=a%2Cb%3C&keywords=%C3%A9t%C3%A9&x-nl=a%0D%0AX-Evil:%201"
    action = Notify(uri, parse(uri), ("a@b.example",))
    raw = composed(action, Incoming.of("x@y.example", MESSAGE))
    header = raw.partition(b"\r\n\r\n")[0]
    assert b"\r\nReply-to: a,b<\r\n" in header
    assert b"\r\nKeywords: =?utf-8?b?w6l0w6k=?=\r\n" in header
    assert header.endswith(b"\r\nX-nl: a X-Evil: 1")
    assert b"\r\nX-Evil" not in header


def test_a_uri_field_too_large_is_a_runtime_error() -> None:
    """The fields are bounded as addheader's (sieve.max_header_size)."""
    script = 'require "enotify"; notify "mailto:a@b.example?x-big=' + "a" * 60 + '";'
    assert notifies(run(script))
    outcome = run(script, RunLimits(max_header_size=40))
    assert outcome.actions == (Keep(),)
    assert outcome.error is not None and "larger than 40 octets" in outcome.error


@pytest.mark.parametrize(
    ("header", "reason"),
    [
        (b"", None),
        (b"Auto-Submitted: no\r\n", None),
        (b"Auto-Submitted: No\r\n", None),
        (b"Auto-Submitted: auto-replied\r\n", "auto-submitted"),
        (b'Auto-Submitted: auto-notified; owner-email="x@y.example"\r\n', "auto-submitted"),
    ],
)
def test_no_notification_about_automatic_mail(header: bytes, reason: str | None) -> None:
    """RFC 5436 §2.7: none for a message Auto-Submitted other than "no"; the null sender
    does notify (MUST)."""
    assert reason_not_to_notify(Incoming.of("", header + MESSAGE), spam=False) == reason
    assert reason_not_to_notify(Incoming.of("a@b.example", MESSAGE), spam=True) == "judged spam"


@pytest.mark.parametrize("requiretls", [False, True])
def test_a_notification_asks_what_the_message_asked_of_tls(requiretls: bool) -> None:
    """RFC 8689 §6: about a message marked ``TLS-Required: No``, the notification is marked so
    (the REQUIRETLS tag, carried by the queue, makes the field moot: §4.1)."""
    action = Notify("mailto:sms@example.net", parse("mailto:sms@example.net"), ("sms@example.net",))
    message = b"TLS-Required: No\r\n" + MESSAGE
    raw = composed(action, Incoming.of("list@example.com", message, requiretls=requiretls))
    parsed = email.message_from_bytes(raw, policy=default)
    assert parsed.get("TLS-Required") == (None if requiretls else "No")
    assert (
        email.message_from_bytes(
            composed(action, Incoming.of("l@x.example", MESSAGE)), policy=default
        ).get("TLS-Required")
        is None
    )


def test_a_notification_uri_setting_tls_required_is_not_doubled() -> None:
    """A script's mailto URI may set ``TLS-Required`` itself; the field carried over from a
    message marked ``TLS-Required: No`` then gives way, so the notification has one."""
    uri = "mailto:sms@example.net?TLS-Required=No"
    action = Notify(uri, parse(uri), ("sms@example.net",))
    raw = composed(action, Incoming.of("list@example.com", b"TLS-Required: No\r\n" + MESSAGE))
    parsed = email.message_from_bytes(raw, policy=default)
    assert parsed.get_all("TLS-Required") == ["No"]
