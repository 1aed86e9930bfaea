"""Reply values: rendering (RFC 5321 §4.2, RFC 2034 §4) and the invariants of the constants."""

from __future__ import annotations

import pytest

from pillarbox.smtp import replies as R
from pillarbox.smtp.replies import Reply


def test_render_single_and_multi_line() -> None:
    assert R.OK.render() == b"250 2.0.0 OK\r\n"
    assert Reply(250, None, "a\nb\nc").render() == b"250-a\r\n250-b\r\n250 c\r\n"
    assert Reply(550, "5.7.1", "x\ny").render() == b"550-5.7.1 x\r\n550 5.7.1 y\r\n"
    assert R.service_ready("mx.example").render() == b"220 mx.example ESMTP Pillarbox\r\n"


@pytest.mark.parametrize(
    ("code", "enhanced", "text"),
    [
        (199, None, "x"),
        (600, None, "x"),
        (250, "5.0.0", "x"),
        (550, "5.0", "x"),
        (250, None, "a\rb"),
    ],
)
def test_invalid(code: int, enhanced: str | None, text: str) -> None:
    with pytest.raises(ValueError, match=r"range|enhanced|control"):
        Reply(code, enhanced, text)


def test_text_may_hold_no_control_character_but_the_line_break() -> None:
    for c in map(chr, range(0x110000)):
        if c == "\n" or (c >= " " and c != "\x7f"):
            assert Reply(250, None, f"a{c}b").text == f"a{c}b"
        else:
            with pytest.raises(ValueError, match="control"):
                Reply(250, None, f"a{c}b")


def test_classes() -> None:
    assert R.START_MAIL_INPUT.is_positive
    assert R.TOO_MANY_RECIPIENTS.is_transient
    assert not R.MAILBOX_UNKNOWN.is_transient
    assert not R.MAILBOX_UNKNOWN.is_positive
    assert R.OK.with_text("fine") == Reply(250, "2.0.0", "fine")


def test_every_constant_has_an_enhanced_code_unless_exempt() -> None:
    constants = [v for v in vars(R).values() if isinstance(v, Reply)]
    assert len(constants) > 40
    for reply in constants:
        # Greetings precede EHLO, so ENHANCEDSTATUSCODES is not in effect (RFC 2034 §3).
        greetings = (
            R.SERVICE_REFUSED,
            R.TALKED_FIRST,
            R.FILTER_REFUSED_SERVICE,
            R.FILTER_DEFERRED_SERVICE,
        )
        exempt = reply.code in (220, 354) or reply in greetings
        assert (reply.enhanced is None) == exempt or reply.code == 220, reply


def test_the_rendered_form_is_kept_per_value_not_shared_with_derived_replies() -> None:
    assert R.OK.render() is R.OK.render()
    assert R.OK.with_text("fine").render() == b"250 2.0.0 fine\r\n"
    assert R.OK.with_text("fine") == Reply(250, "2.0.0", "fine")  # the cache is not compared
    assert R.service_ready("mx.example") is R.service_ready("mx.example")
