"""Tokens, Bayesian probabilities, verdicts and the headers that explain them."""

from __future__ import annotations

import pytest

from pillarbox.mail.parse import parse_message
from pillarbox.policy import authresults, classifier, rules
from pillarbox.policy.classifier import ModelView, classify, classify_views, message_tokens
from pillarbox.policy.dkim import DkimResult, SignatureResult
from pillarbox.policy.spf import SpfOutcome, SpfResult
from pillarbox.policy.verdict import Action, Reason, Thresholds, decide
from pillarbox.store.types import SpamCounts

HAM = [
    b"From: Ann <ann@lists.example>\r\nTo: me@example.org\r\nSubject: meeting notes\r\n\r\n"
    b"The agenda for tomorrow's meeting: budget review and the release schedule.\r\n",
    b"From: Ann <ann@lists.example>\r\nTo: me@example.org\r\nSubject: release schedule\r\n\r\n"
    b"The release is planned for Thursday; the review happens after the meeting.\r\n",
]
SPAM = [
    b"From: winner@prizes.example\r\nTo: you@example.org\r\nSubject: YOU WON $$$\r\n\r\n"
    b"Claim your free prize now! Click http://prizes.example/claim to collect cash.\r\n",
    b"From: deals@prizes.example\r\nTo: you@example.org\r\nSubject: Free cash prize!!!\r\n\r\n"
    b"Cheap pills and free cash, click http://prizes.example/now limited offer.\r\n",
]


def tokens(raw: bytes) -> frozenset[str]:
    return message_tokens(raw, parse_message(raw))


def model(ham: list[bytes], spam: list[bytes]) -> ModelView:
    counts: dict[str, SpamCounts] = {}
    for messages, is_spam in ((ham, False), (spam, True)):
        for raw in messages:
            for token in tokens(raw):
                c = counts.get(token, SpamCounts())
                counts[token] = SpamCounts(c.ham + (not is_spam), c.spam + is_spam)
    return ModelView(SpamCounts(len(ham), len(spam)), counts)


def test_tokens_prefix_header_evidence() -> None:
    found = tokens(SPAM[0])
    assert {"subject:won", "from:dom:prizes.example", "url:prizes.example", "claim"} <= found
    assert "from:no-display-name" in found
    assert "subject:shape:dollar" in found


def test_tokens_of_hostile_input_are_bounded() -> None:
    raw = b"Subject: x\r\n\r\n" + b" ".join(b"w%d" % n for n in range(200_000))
    limits = classifier.TokenLimits(max_tokens=500)
    assert len(message_tokens(raw, parse_message(raw), limits=limits)) == 500


def test_untrained_model_says_nothing() -> None:
    result = classify(tokens(SPAM[0]), SpamCounts(3, 0), {})
    assert (result.probability, result.trained) == (0.5, False)


def test_classify_separates_and_explains() -> None:
    view = model(HAM, SPAM)
    spam = classify(tokens(SPAM[0].replace(b"cash", b"money")), view.totals, view.counts)
    ham = classify(tokens(HAM[0].replace(b"budget", b"plan")), view.totals, view.counts)
    assert spam.probability > 0.9
    assert ham.probability < 0.1
    assert spam.clues and all(p > 0.5 for _, p in spam.clues[:3])


def test_account_model_outweighs_the_global_one() -> None:
    global_view = model(HAM, SPAM)
    # The account calls the meeting notes spam.
    account = model([SPAM[1]], [HAM[0], HAM[1]])
    assert classify(tokens(HAM[0]), global_view.totals, global_view.counts).probability < 0.5
    result = classify_views(tokens(HAM[0]), global_view, account, weight=3.0)
    assert result.probability > 0.5


def test_thresholds_and_forced_actions() -> None:
    t = Thresholds(junk=5, reject=15)
    assert decide([Reason("BAYES", 4.9)], t).action is Action.INBOX
    assert decide([Reason("BAYES", 9.0), Reason("SPF_FAIL", 1.5)], t).action is Action.JUNK
    refused = decide([Reason("GTUBE", 1000)], t)
    assert (refused.action, refused.refusal) == (
        Action.REJECT,
        "message looks like spam (score 1000.0)",
    )
    allowed = decide([Reason("BAYES", 10)], t, forced=Action.INBOX, override="allow-list")
    assert (allowed.action, allowed.score) == (Action.INBOX, 10.0)


def test_spam_header_lists_reasons_strongest_first() -> None:
    verdict = decide(
        [Reason("SPF_FAIL", 1.5, "x.test"), Reason("BAYES", 8.2, "0.910")], Thresholds()
    )
    header = verdict.header()
    assert header.startswith(b"X-Pillarbox-Spam: score=9.7; action=junk; reasons=BAYES:0.910(+8.2)")
    assert header.endswith(b"SPF_FAIL:x.test(+1.5)\r\n")
    assert all(len(line) <= 78 for line in header.split(b"\r\n"))


def test_rules() -> None:
    gtube = b"Subject: t\r\n\r\n" + rules.GTUBE + b"\r\n"
    assert rules.gtube(gtube, parse_message(gtube), 1000.0) is not None
    # Only the body counts: the string in a header field is no test message.
    quoted = b"Subject: " + rules.GTUBE + b"\r\n\r\nabout that string\r\n"
    assert rules.gtube(quoted, parse_message(quoted), 1000.0) is None
    attachment = (
        b"Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: application/zip\r\n"
        b"Content-Disposition: attachment; filename=a.zip\r\n\r\nUEsDBA==\r\n--b--\r\n"
    )
    assert rules.attachment_only(parse_message(attachment), 2.5) is not None
    assert rules.attachment_only(parse_message(HAM[0]), 2.5) is None
    forged = rules.forged_local_sender(["example.org"], {"example.org"}, vouched=False, score=4)
    assert forged == Reason("FORGED_LOCAL_SENDER", 4, "example.org")
    assert (
        rules.forged_local_sender(["example.org"], {"example.org"}, vouched=True, score=4) is None
    )


def test_authentication_results_header() -> None:
    summary = authresults.AuthSummary(
        spf=SpfOutcome(SpfResult.PASS, "sender.test", "ip4"),
        dkim=(
            SignatureResult(DkimResult.FAIL, "sender.test", "s1", "rsa-sha256", "abcd1234", "bad"),
        ),
        dkim_checked=True,
    )
    assert authresults.header("mx.test", summary) == (
        b"Authentication-Results: mx.test;\r\n\tspf=pass smtp.mailfrom=sender.test;\r\n"
        b"\tdkim=fail (bad) header.d=sender.test header.s=s1 header.a=rsa-sha256"
        b" header.b=abcd1234\r\n"
    )
    assert authresults.header("mx.test", authresults.AuthSummary()) == (
        b"Authentication-Results: mx.test; none\r\n"
    )


@pytest.mark.parametrize(
    "raw",
    [
        b"Subject: hi\r\nauthentication-results \t: mx.test; spf=pass\r\n\r\nbody\r\n",
        b"Subject: hi\nAUTHENTICATION-RESULTS:mx.test; spf=pass\n\nbody\n",
        b"Subject: hi\r\n folded\r\nAuthentication-Results: mx.test; x=y\r\n\r\n",
        b"Authentication-Results: mx.test; spf=pass\r\n",
    ],
)
def test_forged_fields_are_found_however_written(raw: bytes) -> None:
    stripped = authresults.strip_forged(raw, "mx.test")
    assert b"mx.test" not in stripped.lower()


def test_every_arriving_spam_verdict_field_is_removed() -> None:
    """X-Pillarbox-Spam is ours alone: whatever its value, a copy that arrives is a forgery."""
    raw = (
        b"x-pillarbox-spam : score=-9.0; action=inbox; reasons=none\r\n"
        b"Subject: hi\r\n"
        b"X-Pillarbox-Spam: score=0.0;\r\n action=inbox\r\n"
        b"X-Pillarbox-Spam-Other: stays\r\n"
        b"\r\nX-Pillarbox-Spam: in the body stays\r\n"
    )
    assert authresults.strip_forged(raw, "mx.test") == (
        b"Subject: hi\r\nX-Pillarbox-Spam-Other: stays\r\n"
        b"\r\nX-Pillarbox-Spam: in the body stays\r\n"
    )


def test_mail_without_our_fields_is_returned_as_it_is() -> None:
    for raw in (
        b"Subject: hi\r\n\r\nAuthentication-Results: mx.test; in the body\r\n",
        b"\r\nAuthentication-Results: mx.test; no header at all\r\n",
        b"Subject: x-authentication-results: mx.test;\r\n\r\n",
    ):
        assert authresults.strip_forged(raw, "mx.test") is raw


def test_forged_authentication_results_of_our_host_are_removed() -> None:
    raw = (
        b"Authentication-Results: MX.test; dmarc=pass\r\n"
        b"Authentication-Results: other.test; spf=pass\r\n"
        b"Authentication-Results: (comment) mx.test;\r\n dkim=pass\r\n"
        b"Subject: hi\r\n\r\nAuthentication-Results: mx.test; in the body stays\r\n"
    )
    assert authresults.strip_forged(raw, "mx.test") == (
        b"Authentication-Results: other.test; spf=pass\r\n"
        b"Subject: hi\r\n\r\nAuthentication-Results: mx.test; in the body stays\r\n"
    )
