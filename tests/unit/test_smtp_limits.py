"""RFC 9422 (LIMITS) in the client core: the EHLO reply bytes → the limits it keeps to."""

from __future__ import annotations

import pytest

from pillarbox.mail.address import parse_address
from pillarbox.smtp.client import ClientConnection, MessageDone, Response, SmtpClientSettings
from pillarbox.smtp.errors import LocalProtocolError
from pillarbox.smtp.extensions import Capabilities, Limits
from pillarbox.smtp.grammar import MailFrom, Path, RcptTo
from pillarbox.smtp.sentinels import Sentinel

MAIL = MailFrom(Path(parse_address("a@out.example")))
RCPTS = [RcptTo(Path(parse_address(f"r{n}@mx.test"))) for n in range(3)]


def drain(client: ClientConnection, data: bytes = b"") -> list[object]:
    client.receive_data(data, 0.0)
    out: list[object] = []
    while not isinstance(event := client.next_event(), Sentinel):
        out.append(event)
    return out


def after_ehlo(limits_line: bytes | None) -> ClientConnection:
    """A client that read ``220`` and an EHLO reply with ``limits_line`` (None: no LIMITS)."""
    client = ClientConnection(SmtpClientSettings(hostname="out.example"), now=0.0)
    drain(client, b"220 mx.test ESMTP\r\n")
    ehlo(client, limits_line)
    return client


def ehlo(client: ClientConnection, limits_line: bytes | None) -> None:
    client.ehlo()
    client.data_to_send(0.0)
    extra = b"" if limits_line is None else b"250-" + limits_line + b"\r\n"
    [response] = drain(client, b"250-mx.test\r\n" + extra + b"250 PIPELINING\r\n")
    assert isinstance(response, Response) and response.reply.code == 250


@pytest.mark.parametrize(
    ("line", "limits"),
    [
        # §5's example, and the names in any case and order.
        (b"LIMITS RCPTMAX=20 MAILMAX=5", Limits(mail_max=5, rcpt_max=20)),
        (b"limits rcptdomainmax=1 Rcptmax=999999", Limits(rcpt_max=999_999, rcpt_domain_max=1)),
        # §3.7 MUST: a limit whose value breaks §4's syntax is ignored, the others kept.
        (b"LIMITS RCPTMAX=0 MAILMAX=5", Limits(mail_max=5)),
        (b"LIMITS RCPTMAX=1000000 MAILMAX=05", Limits()),
        (b"LIMITS RCPTMAX=+7 MAILMAX=1x RCPTDOMAINMAX=3", Limits(rcpt_domain_max=3)),
        (b"LIMITS RCPTMAX MAILMAX=2", Limits(mail_max=2)),  # a value-less limit
        # Limits not registered are ignored (§3.7: unrecognized ones, "proceed as if").
        (b"LIMITS X-FUTURE=any:thing FLAG RCPTMAX=3", Limits(rcpt_max=3)),
        # §3.7 SHOULD: the parameter's own syntax broken, LIMITS counts as absent.
        (b"LIMITS RCPTMAX=3 MAILMAX=2;", Limits()),  # ";" is no limit-value character
        (b"LIMITS RCPTMAX=3 =2", Limits()),  # a value without a name
        (b"LIMITS RCPTMAX= MAILMAX=2", Limits()),  # "=" with no value
        (b"LIMITS RCPTMAX=3 MAIL.MAX=2", Limits()),  # "." is no limit-name character
        (b"LIMITS RCPTMAX=3 RCPTMAX=2", Limits()),  # the same limit twice
        (b"LIMITS RCPTMAX=3 MAILMAX=\xc2\xb2", Limits()),  # not VCHAR
        (b"LIMITS", Limits()),
    ],
)
def test_limits_from_the_ehlo_reply(line: bytes, limits: Limits) -> None:
    client = after_ehlo(line)
    assert "LIMITS" in client.capabilities  # the session goes on either way
    assert client.capabilities.limits == limits


def test_the_last_ehlo_decides() -> None:
    """§3.6: the limits of an earlier EHLO are discarded, even when the last announces none."""
    client = after_ehlo(b"LIMITS RCPTMAX=2 MAILMAX=1")
    ehlo(client, b"LIMITS RCPTMAX=5")
    assert client.capabilities.limits == Limits(rcpt_max=5)
    ehlo(client, None)
    assert client.capabilities.limits == Limits()
    assert client.transactions_left is None


def test_rcptmax_caps_a_transaction() -> None:
    client = after_ehlo(b"LIMITS RCPTMAX=2")
    with pytest.raises(LocalProtocolError, match="2 recipients per transaction"):
        client.send_mail(MAIL, RCPTS)
    assert client.data_to_send(0.0) == b""
    client.send_mail(MAIL, RCPTS[:2])
    assert client.data_to_send(0.0).count(b"RCPT TO:") == 2


def test_mailmax_counts_every_mail_command() -> None:
    """§4.1: refused or not, each MAIL counts; none is sent past MAILMAX."""
    client = after_ehlo(b"LIMITS MAILMAX=2")
    assert client.transactions_left == 2
    client.send_mail(MAIL, RCPTS[:1])
    client.data_to_send(0.0)
    # Pipelined MAIL, RCPT, DATA: MAIL refused, so everything is (and RSET is not needed).
    refused = b"550 5.7.1 no\r\n554 5.5.1 no valid recipients\r\n554 5.5.1 no\r\n"
    assert isinstance(drain(client, refused)[-1], MessageDone)
    assert client.transactions_left == 1
    client.send_mail(MAIL, RCPTS[:1])
    assert client.transactions_left == 0
    client.data_to_send(0.0)
    drain(client, refused)
    with pytest.raises(LocalProtocolError, match="no more transactions"):
        client.send_mail(MAIL, RCPTS[:1])


def test_limits_round_trip_through_the_ehlo_lines() -> None:
    offer = Capabilities(frozenset({"LIMITS", "SIZE"}), 10, (), Limits(7, 100, 3))
    assert offer.ehlo_lines() == ("SIZE 10", "LIMITS MAILMAX=7 RCPTMAX=100 RCPTDOMAINMAX=3")
    assert Capabilities.from_ehlo_lines(offer.ehlo_lines()) == offer
