"""Mail filters in the web interface over real HTTP against the live server: rules built in the
form become the stored, active Sieve script; errors are shown beside the form or editor; a
hand-written script is shown, never replaced; quotas; CSRF; another account's scripts are not
reachable; the JSON API for scripts and rules."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from html import unescape
from pathlib import Path
from urllib.parse import quote

import pytest

from pillarbox import config as cfg
from pillarbox.net.tls import tls_paths
from pillarbox.sieve import compile_script
from pillarbox.store.types import SieveScript
from pillarbox.testing.live import TEST_PASSWORD, LiveServer, loopback_config
from pillarbox.testing.webclient import WebSession
from pillarbox.web.sieverules import (
    SCRIPT_NAME,
    Action,
    ActionKind,
    Condition,
    Field,
    Match,
    Rule,
    rule_json,
    rules_of,
    script_of,
)

pytestmark = pytest.mark.listeners("http")

ALICE = "alice@example.org"
BOB = "bob@example.org"
BOSS_FORM = {
    "index": "",
    "name": "Boss",
    "enabled": "1",
    "match": "all",
    "condition_rows": "2",
    "c0_field": "from",
    "c0_match": "contains",
    "c0_value": "boss",
    "c0_header": "",
    "c1_field": "from",
    "c1_match": "contains",
    "c1_value": "",
    "c1_header": "",
    "action_rows": "3",
    "a0_kind": "move",
    "a0_folder": "Work",
    "a0_address": "",
    "a1_kind": "flag",
    "a1_folder": "",
    "a1_address": "",
    "a2_kind": "",
    "a2_folder": "",
    "a2_address": "",
}
BOSS = Rule(
    "Boss",
    (Condition(Field.FROM, Match.CONTAINS, "boss"),),
    (Action(ActionKind.MOVE, "Work"), Action(ActionKind.FLAG)),
)


@pytest.fixture
def alice(live: LiveServer) -> Iterator[WebSession]:
    live.call(_folder(live, ALICE, "Work"))
    session = WebSession(live)
    assert session.login(ALICE).status_code == 303
    yield session
    session.close()


async def _folder(live: LiveServer, address: str, name: str) -> None:
    account = await live.store.get_account(address)
    assert account is not None
    await live.store.create_mailbox(account.id, name)


def account_id(live: LiveServer, address: str) -> int:
    account = live.call(live.store.get_account(address))
    assert account is not None
    return account.id


def scripts(live: LiveServer, address: str) -> dict[str, SieveScript]:
    found = live.call(live.store.list_sieve_scripts(account_id(live, address)))
    return {s.name: s for s in found}


def put_script(live: LiveServer, address: str, name: str, content: str, active: bool) -> None:
    owner = account_id(live, address)

    async def go() -> None:
        await live.store.put_sieve_script(owner, name, content)
        if active:
            await live.store.set_active_sieve_script(owner, name)

    live.call(go())


def version(session: WebSession) -> str:
    """The version the filter pages carry (the rule form's; the notice's for a hand-written
    script, where the form redirects)."""
    page = session.get("/settings/filters/rule", follow_redirects=True)
    match = re.search(r'name="version" value="([0-9a-f]*)"', page.text)
    assert match is not None
    return match.group(1)


def error_of(text: str) -> str:
    match = re.search(r'<p class="error" role="alert"[^>]*>(.*?)</p>', text, re.S)
    assert match is not None, text[:2000]
    return unescape(re.sub(r"\s+", " ", match.group(1)).strip())


# -- the rule builder ------------------------------------------------------------------------------


def test_a_rule_made_in_the_form_becomes_the_active_script(
    live: LiveServer, alice: WebSession
) -> None:
    form = alice.get("/settings/filters/rule")
    assert form.status_code == 200
    assert '<option value="Work">Work</option>' in form.text  # the account's folders
    saved = alice.post("/settings/filters/rule", {**BOSS_FORM, "version": version(alice)})
    assert saved.status_code == 303, error_of(saved.text)
    stored = scripts(live, ALICE)[SCRIPT_NAME]
    assert stored.active
    assert stored.content == script_of([BOSS])
    assert rules_of(stored.content) == (BOSS,)
    compile_script(stored.content)
    page = alice.get("/settings/filters")
    assert "From contains “boss” → Move to folder Work, Flag" in unescape(page.text)
    assert "Sieve scripts" in page.text and ">pillarbox</a>" in page.text
    raw = alice.get("/settings/filters/script?name=pillarbox")
    assert "The rule builder wrote this script" in raw.text


def test_editing_a_rule_keeps_the_others_and_more_rows_keeps_what_was_typed(
    live: LiveServer, alice: WebSession
) -> None:
    news = Rule(
        "News", (Condition(Field.SUBJECT, Match.IS, "[news]"),), (Action(ActionKind.MARK_READ),)
    )
    assert (
        alice.api("PUT", "/sieve/rules", {"rules": [rule_json(BOSS), rule_json(news)]}).status_code
        == 200
    )
    form = alice.get("/settings/filters/rule?index=1")
    assert 'value="News"' in form.text and 'value="[news]"' in form.text
    more = alice.post(
        "/settings/filters/rule",
        {**BOSS_FORM, "index": "1", "name": "Typed", "op": "more", "version": version(alice)},
    )
    assert more.status_code == 200 and 'value="Typed"' in more.text
    assert 'id="c3_value"' in more.text  # two rows more than posted
    edited = {
        **BOSS_FORM,
        "index": "1",
        "name": "News",
        "c0_field": "subject",
        "c0_match": "is",
        "c0_value": "[news]",
        "a0_kind": "mark-read",
        "a0_folder": "",
        "a1_kind": "stop",
        "version": version(alice),
    }
    assert alice.post("/settings/filters/rule", edited).status_code == 303
    stored = rules_of(scripts(live, ALICE)[SCRIPT_NAME].content)
    assert stored == (
        BOSS,
        Rule(
            "News",
            news.conditions,
            (Action(ActionKind.MARK_READ), Action(ActionKind.STOP)),
        ),
    )


@pytest.mark.parametrize(
    ("changes", "problem"),
    [
        ({"c0_match": "matches", "c0_value": "a\\b"}, "may only come before"),
        ({"a0_folder": "Nowhere"}, "there is no folder Nowhere"),
        ({"a0_kind": "redirect", "a0_address": "not an address"}, "not one valid forwarding"),
        ({"a0_kind": "redirect", "a0_folder": "", "a0_address": ALICE}, "forward to itself"),
        ({"a0_kind": "", "a1_kind": ""}, "has no action"),
        ({"c0_field": "size", "c0_match": "over", "c0_value": "lots"}, "a number"),
        ({"c0_field": "header", "c0_header": "Bad Name", "c0_value": "x"}, "header field name"),
        ({"a1_kind": "stop", "a2_kind": "flag"}, "last action"),
    ],
)
def test_errors_are_shown_on_the_form_with_what_was_typed(
    live: LiveServer, alice: WebSession, changes: dict[str, str], problem: str
) -> None:
    response = alice.post(
        "/settings/filters/rule", {**BOSS_FORM, **changes, "version": version(alice)}
    )
    assert response.status_code == 400
    assert problem in error_of(response.text)
    assert 'value="Boss"' in response.text
    assert scripts(live, ALICE) == {}


def test_rules_move_switch_off_and_delete(live: LiveServer, alice: WebSession) -> None:
    rules = [
        Rule(name, (Condition(Field.SUBJECT, Match.CONTAINS, name),), (Action(ActionKind.FLAG),))
        for name in ("one", "two", "three")
    ]
    assert (
        alice.api("PUT", "/sieve/rules", {"rules": [rule_json(r) for r in rules]}).status_code
        == 200
    )

    def names() -> list[tuple[str, bool]]:
        found = rules_of(scripts(live, ALICE)[SCRIPT_NAME].content)
        assert found is not None
        return [(r.name, r.enabled) for r in found]

    assert alice.post("/settings/filters/2/up", {"version": version(alice)}).status_code == 303
    assert names() == [("one", True), ("three", True), ("two", True)]
    assert alice.post("/settings/filters/0/down", {"version": version(alice)}).status_code == 303
    assert names() == [("three", True), ("one", True), ("two", True)]
    assert alice.post("/settings/filters/1/toggle", {"version": version(alice)}).status_code == 303
    assert names() == [("three", True), ("one", False), ("two", True)]
    assert '"subject" "one"' not in scripts(live, ALICE)[SCRIPT_NAME].content
    stale = version(alice)
    assert (
        alice.post("/settings/filters/0/delete", {"version": stale, "confirmed": "1"}).status_code
        == 303
    )
    assert names() == [("one", False), ("two", True)]
    refused = alice.post(
        "/settings/filters/0/delete", {"version": stale, "confirmed": "1"}
    )  # an older page
    assert refused.status_code == 409 and "changed since" in error_of(refused.text)
    assert names() == [("one", False), ("two", True)]
    assert alice.post("/settings/filters/0/up", {"version": version(alice)}).status_code == 404
    assert alice.post("/settings/filters/9/delete", {"version": version(alice)}).status_code == 404


# -- hand-written scripts --------------------------------------------------------------------------

HAND = 'require "fileinto";\n# mine\nif header :contains "subject" "x" { fileinto "Work"; }\n'


def test_a_hand_written_active_script_is_shown_not_replaced(
    live: LiveServer, alice: WebSession
) -> None:
    put_script(live, ALICE, "mine", HAND, active=True)
    page = alice.get("/settings/filters")
    assert "written by hand" in page.text and "# mine" in page.text
    assert "New rule" not in page.text
    assert alice.get("/settings/filters/rule").headers["location"] == "/settings/filters"
    refused = alice.post("/settings/filters/rule", {**BOSS_FORM, "version": ""})
    assert refused.status_code == 409 and "“mine”" in error_of(refused.text)
    assert alice.api("PUT", "/sieve/rules", {"rules": [rule_json(BOSS)]}).status_code == 409
    assert set(scripts(live, ALICE)) == {"mine"} and scripts(live, ALICE)["mine"].active
    # the user chooses the builder: "mine" stays, switched off
    assert alice.post("/settings/filters/use-rules", {"version": version(alice)}).status_code == 303
    after = scripts(live, ALICE)
    assert after["mine"].content == HAND and not after["mine"].active
    assert after[SCRIPT_NAME].active and rules_of(after[SCRIPT_NAME].content) == ()
    assert "New rule" in alice.get("/settings/filters").text


def test_the_rules_script_edited_elsewhere_is_kept_under_a_new_name(
    live: LiveServer, alice: WebSession
) -> None:
    assert alice.api("PUT", "/sieve/rules", {"rules": [rule_json(BOSS)]}).status_code == 200
    edited = scripts(live, ALICE)[SCRIPT_NAME].content + "keep;\n"  # as over ManageSieve
    put_script(live, ALICE, SCRIPT_NAME, edited, active=False)
    page = alice.get("/settings/filters")
    assert "changed outside this page" in page.text and "keep;" in page.text
    assert alice.api("GET", "/sieve/rules").json()["rules"] is None
    refused = alice.api("PUT", "/sieve/rules", {"rules": [], "take_over": True})
    assert refused.status_code == 409
    assert scripts(live, ALICE)[SCRIPT_NAME].content == edited
    assert alice.post("/settings/filters/use-rules", {"version": version(alice)}).status_code == 303
    after = scripts(live, ALICE)
    assert after["pillarbox-edited"].content == edited and not after["pillarbox-edited"].active
    assert rules_of(after[SCRIPT_NAME].content) == () and after[SCRIPT_NAME].active


# -- the raw editor --------------------------------------------------------------------------------


def test_the_raw_editor_compiles_first_and_shows_the_line(
    live: LiveServer, alice: WebSession, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="pillarbox.web.filters")
    bad = 'require "fileinto";\nif header :contains "subject" "x" {\n  fileinto;\n}\n'
    response = alice.post(
        "/settings/filters/script", {"name": "mine", "content": bad, "version": "", "activate": "1"}
    )
    assert response.status_code == 400
    message = error_of(response.text)
    assert message.startswith("Line 3: "), message
    assert "fileinto;" in unescape(response.text)  # the text stays in the editor
    assert scripts(live, ALICE) == {}
    [refused] = [r for r in caplog.records if r.getMessage() == "sieve script refused"]
    assert refused.__dict__["fields"]["reason"].startswith("line 3: ")
    saved = alice.post(
        "/settings/filters/script",
        {"name": "mine", "content": HAND.replace("\n", "\r\n"), "version": "", "activate": "1"},
    )
    assert saved.status_code == 303
    assert saved.headers["location"] == "/settings/filters/script?name=mine&saved=1"
    assert scripts(live, ALICE)["mine"] == SieveScript("mine", HAND, True)
    editor = alice.get("/settings/filters/script?name=mine")
    assert "# mine" in editor.text
    again = alice.post(
        "/settings/filters/script", {"name": "mine", "content": "keep;\n", "version": ""}
    )
    assert again.status_code == 409 and "exists already" in error_of(again.text)
    active = alice.post("/settings/filters/scripts/delete", {"name": "mine", "confirmed": "1"})
    assert active.status_code == 400 and "deactivate it first" in error_of(active.text)
    assert alice.post("/settings/filters/scripts/activate", {"name": ""}).status_code == 303
    assert not scripts(live, ALICE)["mine"].active
    assert (
        alice.post(
            "/settings/filters/scripts/delete", {"name": "mine", "confirmed": "1"}
        ).status_code
        == 303
    )
    assert scripts(live, ALICE) == {}


def test_the_raw_editor_takes_include_environment_and_editheader(
    live: LiveServer, alice: WebSession
) -> None:
    """RFC 6609 §3.2: an include of a script not stored yet is no error at upload (as in
    Pigeonhole's ManageSieve); an invalid include name is."""
    script = (
        'require ["include", "variables", "environment", "editheader"];\n'
        'global "folder";\ninclude :optional "later";\ninclude :global "site";\n'
        'if environment :is "location" "MDA" { addheader "X-Filtered" "yes"; }\n'
    )
    saved = alice.post(
        "/settings/filters/script", {"name": "mine", "content": script, "version": ""}
    )
    assert saved.status_code == 303
    assert scripts(live, ALICE)["mine"].content == script
    bad = alice.post(
        "/settings/filters/script",
        {"name": "bad", "content": 'require "include";\ninclude "a/b";\n', "version": ""},
    )
    assert bad.status_code == 400 and error_of(bad.text).startswith("Line 2: include")


def test_quotas_come_from_the_sieve_config(tmp_path: Path) -> None:
    config = loopback_config(
        tmp_path / "data",
        only=["http"],
        sieve=cfg.SieveSection(max_script_size=200, max_scripts=2),
    )
    with LiveServer(config) as live:
        live.add_domain("example.org")
        live.add_account(ALICE, TEST_PASSWORD)
        web = WebSession(live)
        assert web.login(ALICE).status_code == 303
        big = "keep;\n" + "# " + "x" * 200 + "\n"
        too_big = web.api("PUT", "/sieve/scripts/big", {"content": big})
        assert too_big.status_code == 400
        assert too_big.json()["error"] == "script is 209 octets, more than the 200 allowed"
        for name in ("a", "b"):
            assert web.api("PUT", f"/sieve/scripts/{name}", {"content": "keep;"}).status_code == 200
        third = web.api("PUT", "/sieve/scripts/c", {"content": "keep;"})
        assert third.status_code == 400
        assert third.json()["error"] == "2 scripts stored, the most allowed"
        assert web.api("PUT", "/sieve/scripts/a", {"content": "stop;"}).status_code == 200
        page = web.get("/settings/filters")
        assert "at most 2 scripts of 200 B each" in page.text
        web.close()


# -- CSRF and ownership ----------------------------------------------------------------------------

CSRF_POSTS = [
    ("/settings/filters/rule", BOSS_FORM),
    ("/settings/filters/use-rules", {}),
    ("/settings/filters/script", {"name": "forged", "content": "discard;"}),
    ("/settings/filters/scripts/activate", {"name": "mine"}),
    ("/settings/filters/scripts/delete", {"name": "mine", "confirmed": "1"}),
    ("/settings/filters/0/delete", {"confirmed": "1"}),
]


@pytest.mark.parametrize(("path", "data"), CSRF_POSTS)
def test_filter_changes_without_csrf_are_refused(
    live: LiveServer, alice: WebSession, path: str, data: dict[str, str]
) -> None:
    put_script(live, ALICE, "mine", HAND, active=False)
    put_script(live, ALICE, SCRIPT_NAME, script_of([BOSS]), active=False)
    before = scripts(live, ALICE)
    for token in (None, "not-the-token"):
        sent = dict(data) if token is None else {**data, "csrf": token}
        response = alice.post(path, sent, csrf=False)
        assert response.status_code == 303
        assert "reason=stale" in response.headers["location"]
    assert scripts(live, ALICE) == before
    no_header = alice.client.put("/api/v1/sieve/scripts/forged", json={"content": "discard;"})
    assert no_header.status_code == 403
    assert scripts(live, ALICE) == before


def test_another_accounts_scripts_are_not_reachable(live: LiveServer, alice: WebSession) -> None:
    put_script(live, BOB, "secret", "# bob's own\nkeep;\n", active=True)
    assert alice.get("/settings/filters/script?name=secret").status_code == 404
    assert "bob's own" not in alice.get("/settings/filters").text
    for method, path in (("GET", "/sieve/scripts/secret"), ("DELETE", "/sieve/scripts/secret")):
        assert alice.api(method, path).status_code == 404
    assert alice.api("PUT", "/sieve/active", {"name": "secret"}).status_code == 404
    assert alice.post("/settings/filters/scripts/activate", {"name": "secret"}).status_code == 404
    assert alice.post("/settings/filters/scripts/delete", {"name": "secret"}).status_code == 404
    assert alice.api("GET", "/sieve/scripts").json() == []
    # alice's script of the same name is hers alone
    assert alice.api("PUT", "/sieve/scripts/secret", {"content": "stop;"}).status_code == 200
    assert scripts(live, BOB)["secret"] == SieveScript("secret", "# bob's own\nkeep;\n", True)


# -- the JSON API ----------------------------------------------------------------------------------


def test_api_scripts_and_rules(live: LiveServer, alice: WebSession) -> None:
    assert alice.api("GET", "/sieve/rules").json() == {
        "script": SCRIPT_NAME,
        "rules": [],
        "active": False,
        "version": "",
        "hand_written": None,
    }
    saved = alice.api("PUT", "/sieve/rules", {"rules": [rule_json(BOSS)], "version": ""})
    assert saved.status_code == 200 and saved.json()["rules"] == [rule_json(BOSS)]
    rules = alice.api("GET", "/sieve/rules").json()
    assert rules["active"] is True and rules["version"] == saved.json()["version"]
    stale = alice.api("PUT", "/sieve/rules", {"rules": [], "version": "0" * 32})
    assert stale.status_code == 409
    invalid = alice.api("PUT", "/sieve/rules", {"rules": [{"name": "x", "actions": []}]})
    assert invalid.status_code == 400 and "has no action" in invalid.json()["error"]

    name = "Mine/2 — ünïcode"
    path = "/sieve/scripts/" + quote(name, safe="")
    broken = alice.api("PUT", path, {"content": "keep;\nfileinto;\n"})
    assert broken.status_code == 400 and broken.json()["line"] == 2
    assert broken.json()["error"].startswith("line 2: ")
    created = alice.api("PUT", path, {"content": "keep;\n", "active": True})
    assert created.status_code == 200, created.text
    assert created.json()["active"] is True and created.json()["generated"] is False
    listed = {s["name"]: s for s in alice.api("GET", "/sieve/scripts").json()}
    assert listed[name]["active"] and not listed[SCRIPT_NAME]["active"]
    assert listed[SCRIPT_NAME]["generated"] is True
    one = alice.api("GET", "/sieve/scripts/" + SCRIPT_NAME).json()
    assert one["rules"] == [rule_json(BOSS)] and one["content"] == script_of([BOSS])
    assert alice.api("GET", "/sieve/rules").json()["hand_written"] == name
    assert alice.api("PUT", "/sieve/active", {"name": SCRIPT_NAME}).json() == {"ok": True}
    assert scripts(live, ALICE)[SCRIPT_NAME].active
    assert alice.api("PUT", "/sieve/active", {"name": None}).status_code == 200
    assert not any(s.active for s in scripts(live, ALICE).values())
    assert alice.api("PUT", "/sieve/scripts/bad%01name", {"content": "keep;"}).status_code == 400
    assert alice.api("DELETE", path).json() == {"ok": True}
    assert set(scripts(live, ALICE)) == {SCRIPT_NAME}

    token = alice.api("POST", "/tokens", {"kind": "api", "label": "sieve"}).json()["secret"]
    bearer = alice.client.get("/api/v1/sieve/scripts", headers={"Authorization": f"Bearer {token}"})
    assert [s["name"] for s in bearer.json()] == [SCRIPT_NAME]
    document = alice.get("/api/v1/openapi.json").json()
    for route in ("/api/v1/sieve/scripts", "/api/v1/sieve/scripts/{name}", "/api/v1/sieve/rules"):
        assert route in document["paths"], route
    assert "FilterRule" in document["components"]["schemas"]


def test_filters_say_when_forwarding_leaves_nothing_to_filter(alice: WebSession) -> None:
    assert "forwarded without keeping a copy" not in alice.get("/settings/filters").text
    forwarding = {"to": ["me@elsewhere.example"], "keep_copy": False}
    assert alice.api("PUT", "/settings/forwarding", forwarding).status_code == 200
    assert "forwarded without keeping a copy" in alice.get("/settings/filters").text
    forwarding["keep_copy"] = True
    assert alice.api("PUT", "/settings/forwarding", forwarding).status_code == 200
    assert "forwarded without keeping a copy" not in alice.get("/settings/filters").text


def test_rules_forward_to_no_more_addresses_than_sieve_allows(
    live: LiveServer, alice: WebSession
) -> None:
    limit = live.config.sieve.max_redirects

    def forward(n: int, enabled: bool = True) -> dict[str, object]:
        action = Action(ActionKind.REDIRECT_COPY, f"me{n}@elsewhere.example")
        return rule_json(Rule(f"fwd {n}", (), (action,), enabled=enabled))

    rules = [forward(n) for n in range(limit)]
    assert alice.api("PUT", "/sieve/rules", {"rules": rules}).status_code == 200
    over = alice.api("PUT", "/sieve/rules", {"rules": [*rules, forward(limit)]})
    assert over.status_code == 400
    assert f"forward to {limit + 1} addresses; at most {limit}" in over.json()["error"]
    off = [*rules, forward(limit, enabled=False)]  # a rule that is off forwards nothing
    assert alice.api("PUT", "/sieve/rules", {"rules": off}).status_code == 200
    switched = alice.post(f"/settings/filters/{limit}/toggle", {"version": version(alice)})
    assert switched.status_code == 400 and "at most" in error_of(switched.text)


# -- with a ManageSieve client -------------------------------------------------------------------


def test_rules_seen_and_changed_over_managesieve(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """sievelib (a real ManageSieve client) downloads the builder's script and puts it back
    unchanged (with CRLF line ends): still rules. Edited, it is shown as written; another
    script activated over ManageSieve is shown with the notice, and the builder does not
    replace it."""
    managesieve = pytest.importorskip("sievelib.managesieve")
    config = loopback_config(tmp_path / "data", only=["http", "managesieve"])
    with LiveServer(config) as live:
        live.add_domain("example.org")
        live.add_account(ALICE, TEST_PASSWORD)
        live.call(_folder(live, ALICE, "Work"))
        web = WebSession(live)
        assert web.login(ALICE).status_code == 303
        assert web.api("PUT", "/sieve/rules", {"rules": [rule_json(BOSS)]}).status_code == 200
        # sievelib verifies the certificate against the default CA store: make ours that.
        monkeypatch.setenv("SSL_CERT_FILE", str(tls_paths(live.config)[0]))
        client = managesieve.Client(
            "127.0.0.1", live.port("managesieve"), srvhostname=live.config.server.hostname
        )
        assert client.connect(ALICE, TEST_PASSWORD, starttls=True, authmech="PLAIN")
        try:
            assert client.listscripts() == (SCRIPT_NAME, [])
            downloaded = client.getscript(SCRIPT_NAME)
            assert downloaded.replace("\r\n", "\n") == script_of([BOSS])
            assert client.putscript(SCRIPT_NAME, downloaded.replace("\n", "\r\n").rstrip())
            assert web.api("GET", "/sieve/rules").json()["rules"] == [rule_json(BOSS)]
            assert client.putscript(SCRIPT_NAME, downloaded + "\r\n# mine now\r\n")
            page = web.get("/settings/filters")
            assert "changed outside this page" in page.text and "# mine now" in page.text
            assert client.putscript("mine", HAND)
            assert client.setactive("mine")
            page = web.get("/settings/filters")
            assert "filtered by the script “mine”" in unescape(page.text)
            assert "# mine" in page.text and "New rule" not in page.text
            refused = web.api("PUT", "/sieve/rules", {"rules": [], "take_over": True})
            assert refused.status_code == 409  # the edited rules script is not overwritten
            assert "# mine now" in client.getscript(SCRIPT_NAME)
        finally:
            client.logout()
            web.close()
