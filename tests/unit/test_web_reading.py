"""What the reader sees of a stored message: decoded people, the body chosen, parts,
authentication results, the spam verdict; and the JSON API's OpenAPI document."""

from __future__ import annotations

import json
import re
from typing import Any

from jsonschema import Draft202012Validator

from pillarbox import config as cfg
from pillarbox.mail.parse import parse_message, part_text
from pillarbox.mail.people import people
from pillarbox.policy.verdict import Action, Reason, Verdict
from pillarbox.web.api import OPERATIONS, openapi_document
from pillarbox.web.reading import (
    authentication_results,
    body_parts,
    body_text,
    part_at,
    section_of_content_id,
    spam_verdict,
)

ALTERNATIVE = (
    b'From: =?utf-8?q?J=C3=B6rg?= <jorg@example.net>, "Ann, B." <ann@example.net>\r\n'
    b"To: undisclosed-recipients:;\r\nSubject: alt\r\n"
    b"Authentication-Results: mx.test; spf=pass smtp.mailfrom=example.net;\r\n"
    b" dkim=fail (bad signature) header.d=example.net; dmarc=none\r\n"
    b"Authentication-Results: evil.example; dkim=pass\r\n"
    b"Authentication-Results: mx.test.evil.example; dmarc=pass\r\n"
    b'MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary="o"\r\n\r\n'
    b'--o\r\nContent-Type: multipart/alternative; boundary="a"\r\n\r\n'
    b"--a\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nplain version\r\n"
    b"--a\r\nContent-Type: text/html\r\n\r\n<p>html <b>version</b></p>\r\n--a--\r\n"
    b"--o\r\nContent-Type: text/plain; name=notes.txt\r\n\r\nattached text\r\n"
    b"--o\r\nContent-Type: image/gif\r\nContent-ID: <pic@x>\r\n\r\nGIF89a\r\n--o--\r\n"
)


def test_people_are_decoded_and_groups_dropped() -> None:
    info = parse_message(ALTERNATIVE)
    assert [str(p) for p in people(info.envelope.from_)] == [
        "Jörg <jorg@example.net>",
        '"Ann, B." <ann@example.net>',  # quoted again: a recipient field needs it
    ]
    assert people(info.envelope.to) == []


def test_body_parts_prefer_inline_text_not_attachments() -> None:
    info = parse_message(ALTERNATIVE)
    bodies = body_parts(info)
    assert bodies.plain is not None and bodies.html is not None
    assert part_text(ALTERNATIVE, bodies.plain).strip() == "plain version"
    assert "<b>version</b>" in part_text(ALTERNATIVE, bodies.html)
    assert body_text(ALTERNATIVE, info).strip() == "plain version"
    html_only = b"Subject: h\r\nContent-Type: text/html\r\n\r\n<p>only <i>html</i></p>\r\n"
    assert body_text(html_only, parse_message(html_only)).strip() == "only html"
    attachment_only = b"Subject: a\r\nContent-Type: text/plain; name=x.txt\r\n\r\nfile\r\n"
    assert body_parts(parse_message(attachment_only)).plain is None


def test_parts_by_section_and_content_id() -> None:
    info = parse_message(ALTERNATIVE)
    assert section_of_content_id(info, "<pic@x>") == "3"
    assert section_of_content_id(info, "nope@x") is None
    part = part_at(info, "2")
    assert part is not None and part.type == "text"
    for bad in ("", "0", "1.0", "x", "9", "-1", "1..2"):
        assert part_at(info, bad) is None, bad


def test_only_our_authentication_results_count() -> None:
    info = parse_message(ALTERNATIVE)
    results = authentication_results(ALTERNATIVE, info, "mx.test")
    assert [(r.method, r.result) for r in results] == [
        ("spf", "pass"),
        ("dkim", "fail"),
        ("dmarc", "none"),
    ]
    assert "bad signature" in results[1].detail
    assert authentication_results(ALTERNATIVE, info, "other.test") == []


def test_openapi_document_is_consistent() -> None:
    document = openapi_document()
    json.dumps(document)  # serialisable
    ids = [entry["operationId"] for ops in document["paths"].values() for entry in ops.values()]
    assert len(ids) == len(set(ids)) == len(OPERATIONS)
    refs = set(re.findall(r'"#/components/schemas/(\w+)"', json.dumps(document)))
    assert refs <= set(document["components"]["schemas"])
    for path, ops in document["paths"].items():
        named = set(re.findall(r"\{(\w+)\}", path))
        for entry in ops.values():
            declared = {p["name"] for p in entry.get("parameters", []) if p["in"] == "path"}
            assert declared == named, path
    admin = [op for op in OPERATIONS if op.path.startswith("/admin")]
    assert admin and all(op.admin for op in admin)
    # Links (for schemathesis's stateful phase) name operations and path parameters that exist.
    by_id = {e["operationId"]: p for p, ops in document["paths"].items() for e in ops.values()}
    links = {
        (entry["operationId"], name): link
        for ops in document["paths"].values()
        for entry in ops.values()
        for answer in entry["responses"].values()
        for name, link in answer.get("links", {}).items()
    }
    for link in links.values():
        target = by_id[link["operationId"]]
        assert set(link["parameters"]) <= set(re.findall(r"\{(\w+)\}", target)), link
    assert links[("create_mailbox", "get_message")]["parameters"] == {
        "mailbox": "$response.body#/id"
    }
    assert links[("admin_add_domain", "admin_domain_dns")]["parameters"] == {
        "name": "$response.body#/name"
    }


#: The keywords a refused request is told about in words (web/api.py ``_refusal``), and those
#: that only annotate.
_WORDED = {"type", "enum", "properties", "required", "items", "$ref", "minimum", "maximum"}
_WORDED |= {"maxLength", "description", "contentEncoding", "maxItems"}  # maxItems: _overlong


def test_request_schemas_are_json_schema_that_refusals_put_in_words() -> None:
    """Every schema of the document is Draft 2020-12 (OpenAPI 3.1's dialect), as the request
    check reads it; a body's or query's uses only keywords a refusal puts in words: another
    (a pattern, a oneOf) needs its wording first, or its refusal says "must be a string"."""
    document = openapi_document()
    schemas = document["components"]["schemas"]
    for schema in schemas.values():
        Draft202012Validator.check_schema(schema)
    used: set[str] = set()

    def walk(schema: dict[str, Any]) -> None:
        Draft202012Validator.check_schema(schema)
        if "$ref" in schema:
            schema = schemas[schema["$ref"].removeprefix("#/components/schemas/")]
        used.update(schema)
        # Every list a request sends is bounded (before its items are checked, web/api.py).
        assert schema.get("type") != "array" or "maxItems" in schema, schema
        members = list(schema.get("properties", {}).values())
        for member in members + ([schema["items"]] if "items" in schema else []):
            walk(member)

    for entry in (e for ops in document["paths"].values() for e in ops.values()):
        bodies = entry.get("requestBody", {}).get("content", {}).values()
        parameters = entry.get("parameters", [])
        for schema in [b["schema"] for b in bodies] + [p["schema"] for p in parameters]:
            walk(schema)
    assert "required" in used and "maxLength" in used and "maxItems" in used
    assert used <= _WORDED, used - _WORDED
    limits = {
        "web": cfg.WebSection(max_action_uids=7),
        "contacts": cfg.ContactsSection(max_emails=3),
    }
    stated = json.dumps(openapi_document(config=cfg.Config(**limits)))
    assert '"maxItems": 7' in stated and '"maxItems": 3' in stated
    assert "x-pillarbox-limit" not in stated


def _delivered(verdict: Verdict, rest: bytes = b"") -> bytes:
    """A message as our delivery stores it: trace fields, the verdict, then what arrived."""
    return (
        b"Return-Path: <x@example.net>\r\nDelivered-To: alice@example.org\r\n"
        + verdict.header()
        + b"Received: from client.test by mx.test; Mon, 1 Jan 2024 10:00:00 +0000\r\n"
        + rest
        + b"From: x@example.net\r\nSubject: hi\r\n\r\nbody\r\n"
    )


def test_spam_verdict_round_trips_the_header_delivery_writes() -> None:
    reasons = [
        Reason("BAYES", 8.04, "0.902"),
        Reason("SENDER_HISTORY", -1.5, "a@b.example verified"),
    ]
    reasons += [Reason(f"R{n}", 0.1 * n, f"zone{n}.test") for n in range(1, 14)]
    raw = _delivered(Verdict(Action.JUNK, 7.5, tuple(reasons), "allow-list"))
    verdict = spam_verdict(raw, parse_message(raw))
    assert verdict is not None
    assert (verdict.score, verdict.action, verdict.override) == (7.5, "junk", "allow-list")
    assert verdict.reasons[:2] == (
        type(verdict.reasons[0])("BAYES", "0.902", 8.0),
        type(verdict.reasons[0])("SENDER_HISTORY", "a@b.example verified", -1.5),
    )
    assert verdict.reasons[0].meaning == "content filter (spam probability)"
    fact = type(verdict.reasons[0])("MSGID_ALIGNED", "", -3.05)
    assert fact.meaning == "Message-ID from the From domain"  # header facts have words too
    assert len(verdict.reasons) == 12 and verdict.more == 3  # the header keeps the 12 strongest


def test_spam_verdict_without_reasons() -> None:
    raw = _delivered(Verdict(Action.INBOX, 0.0, ()))
    verdict = spam_verdict(raw, parse_message(raw))
    assert verdict is not None and verdict.action == "inbox" and verdict.reasons == ()


def test_a_spam_header_from_the_sender_is_ignored() -> None:
    forged = b"X-Pillarbox-Spam: score=-99.0; action=inbox; reasons=ALLOW_LIST(-99.0)\r\n"
    raw = (
        b"Return-Path: <x@example.net>\r\nReceived: from client.test by mx.test; "
        b"Mon, 1 Jan 2024 10:00:00 +0000\r\n" + forged + b"From: x@example.net\r\n\r\nhi\r\n"
    )
    assert spam_verdict(raw, parse_message(raw)) is None
    real = _delivered(Verdict(Action.JUNK, 6.0, (Reason("BAYES", 6.0),)), forged)
    verdict = spam_verdict(real, parse_message(real))
    assert verdict is not None and verdict.score == 6.0  # ours, not the forged one below it
