"""IDNA 2008 in ``mail.address``: UTS #46 mapping, RFC 5892 contextual rules, RFC 5893 Bidi.

Each refusal names the rule that refuses it; each acceptance is the same shape in the context the
rule asks for, so a test fails if the rule is dropped or over-applied.
"""

from __future__ import annotations

import pytest

from pillarbox.auth.directory import normalize_username
from pillarbox.dns.records import normalise_name
from pillarbox.errors import InvalidName
from pillarbox.mail.address import domain_to_ascii, parse_address


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # UTS #46 §4 mapping: width and case folded, ideographic full stop, soft hyphen ignored,
        # the deviation ß kept (non-transitional).
        ("ＥＸＡＭＰＬＥ．ｃｏｍ", "example.com"),
        ("ÖBB.at", "xn--bb-eka.at"),
        ("bücher。example", "xn--bcher-kva.example"),
        ("ex\u00adample.com", "example.com"),
        ("straße.de", "xn--strae-oqa.de"),
        ("A\u030a.example", "xn--5ca.example"),  # NFC: A + ring above is Å
    ],
)
def test_uts46_mapping(text: str, expected: str) -> None:
    assert domain_to_ascii(text) == expected


@pytest.mark.parametrize(
    ("valid", "invalid"),
    [
        # RFC 5892 A.1 ZERO WIDTH NON-JOINER: after a virama, or between joining letters.
        ("\u0645\u06cc\u200c\u062e\u0648\u0627\u0647\u0645", "a\u200cb"),
        # A.2 ZERO WIDTH JOINER: only after a virama.
        ("\u0915\u094d\u200d\u0937", "a\u200db"),
        # A.3 MIDDLE DOT: between two l.
        ("col\u00b7lecci\u00f3", "a\u00b7b"),
        # A.4 GREEK LOWER NUMERAL SIGN: followed by Greek.
        ("\u0375\u03b1", "\u03b1\u0375"),
        # A.6 HEBREW PUNCTUATION GERESH: preceded by Hebrew.
        ("\u05d0\u05f3", "a\u05f3"),
        # A.9 KATAKANA MIDDLE DOT: with Hiragana, Katakana or Han in the label.
        ("\u30a2\u30fb\u30a4", "a\u30fbb"),
        # A.8/A.9 Arabic-Indic and extended Arabic-Indic digits are not mixed.
        ("\u0627\u0661\u0662", "\u0627\u0661\u06f2"),
    ],
)
def test_rfc5892_contextual_rules(valid: str, invalid: str) -> None:
    assert domain_to_ascii(f"{valid}.example").startswith("xn--")
    with pytest.raises(InvalidName):
        domain_to_ascii(f"{invalid}.example")


@pytest.mark.parametrize(
    "text",
    [
        "1\u05d0.example",  # rule 1: a label starts with L, R or AL
        "\u05d0a.example",  # rule 2: an RTL label holds no L
        "a\u05d0.example",  # rule 5: an LTR label holds no R
        "\u05d0\u05d1.1example",  # rule 1 on the LTR label of a Bidi domain name
        "\u05d0\u05d1.ab-\u05d0.example",
    ],
)
def test_rfc5893_bidi_failures(text: str) -> None:
    with pytest.raises(InvalidName):
        domain_to_ascii(text)


def test_rfc5893_bidi_passes() -> None:
    assert domain_to_ascii("\u05d0\u05d1.example") == "xn--4dbc.example"
    assert domain_to_ascii("\u05d0\u05d11.example") == "xn--1-zhcd.example"  # rule 3: EN ends
    assert domain_to_ascii("1example.com") == "1example.com"  # no RTL label: no Bidi rule
    # The rule reads U-labels, so an A-label input is held to it too.
    with pytest.raises(InvalidName):
        domain_to_ascii("xn--4dbc.1example")


@pytest.mark.parametrize(
    "text",
    [
        "\u2603.example",  # DISALLOWED symbol
        "\u0301a.example",  # RFC 5891 §4.2.3.2: no leading combining mark
        "xn---bbk.example",  # RFC 5891 §5.4: not the canonical Punycode of its U-label
        "xn--zz-zzzzzz.example",  # not Punycode at all
        "a_b.example",  # UTS #46 UseSTD3ASCIIRules
    ],
)
def test_refused(text: str) -> None:
    with pytest.raises(InvalidName):
        domain_to_ascii(text)


def test_smtp_path_keeps_its_error_type() -> None:
    assert parse_address("u@\u0915\u094d\u200d\u0937.example").domain == "xn--11b2ezcw70k.example"
    with pytest.raises(InvalidName):
        parse_address("u@a\u200db.example")


def test_other_call_sites_use_idna2008() -> None:
    # The stdlib codec (IDNA 2003) would give "strasse.de" for both.
    assert normalize_username("U@Straße.de") == "u@xn--strae-oqa.de"
    assert normalise_name("_dmarc.straße.de") == "_dmarc.xn--strae-oqa.de"
    assert normalize_username("u@a\u200db.example") is None
    with pytest.raises(InvalidName):
        normalise_name("a\u200db.example")
