"""The webmail's Storage settings over real HTTP against the live server: the account's quota
usage as the store counts it, its own Junk and Trash retention days (set, back to the
server's, bad values refused with the form's error, CSRF refused), the same through the JSON
API, and a draft saved past a quota threshold warning at once. ``$PILLARBOX_TEST_STORE`` runs
it on PostgreSQL."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from pillarbox import config as cfg
from pillarbox.store.types import INBOX, AccountSettings, QuotaUsage
from pillarbox.testing.live import TEST_PASSWORD, LiveServer, loopback_config
from pillarbox.testing.webclient import WebSession, deliver, simple_message

ALICE = "alice@example.org"
WARNING = b"Subject: Your mailbox is "


@pytest.fixture
def live(tmp_path: Path) -> Iterator[LiveServer]:
    """Junk kept 30 days by default, Trash until deleted; warnings at 80 and 95 %."""
    config = loopback_config(
        tmp_path / "data",
        only=("http", "smtp"),
        retention=cfg.RetentionSection(junk_days=30, trash_days=0, max_days=365),
    )
    with LiveServer(config) as server:
        server.add_domain("example.org")
        server.add_account(ALICE, TEST_PASSWORD)
        yield server


@pytest.fixture
def alice(live: LiveServer) -> Iterator[WebSession]:
    session = WebSession(live)
    assert session.login(ALICE).status_code == 303
    yield session
    session.close()


def settings_of(live: LiveServer) -> AccountSettings:
    async def go() -> AccountSettings:
        account = await live.store.get_account(ALICE)
        assert account is not None
        return await live.store.get_settings(account.id)

    return live.call(go())


def usage_of(live: LiveServer) -> QuotaUsage:
    async def go() -> QuotaUsage:
        account = await live.store.get_account(ALICE)
        assert account is not None
        return await live.store.quota_usage(account.id)

    return live.call(go())


def set_quota(live: LiveServer, size: int | None, messages: int | None) -> None:
    async def go() -> None:
        account = await live.store.get_account(ALICE)
        assert account is not None
        await live.store.set_quota(account.id, size, messages)

    live.call(go())


def checked(page: str, name: str) -> str:
    """The value of the checked radio button ``name`` on the page."""
    found = re.findall(rf'name="{name}" value="(\w+)" checked', page)
    assert len(found) == 1, found
    return str(found[0])


def test_usage_against_the_quota_as_the_store_counts_it(
    live: LiveServer, alice: WebSession
) -> None:
    page = alice.get("/settings").text
    assert "your mailbox has no quota" in page and 'id="quota-meter"' not in page
    for n in range(3):
        deliver(live, ALICE, simple_message(f"message {n}"))
    usage = usage_of(live)
    set_quota(live, 10 * usage.bytes_used, 4)  # 10 % of the size, 75 % of the messages
    usage = usage_of(live)
    page = alice.get("/settings").text
    assert "You use 75% of your quota" in page
    assert f"({usage.bytes_percent}%)" in page and usage.bytes_percent == 10
    assert "3 of 4 messages (75%)" in page
    assert '<meter id="quota-meter" min="0" max="100" value="75" low="80" high="95"' in page
    api = alice.api("GET", "/quota").json()
    assert api == {
        "bytes_used": usage.bytes_used,
        "bytes_limit": 10 * usage.bytes_used,
        "bytes_percent": 10,
        "messages": 3,
        "messages_limit": 4,
        "messages_percent": 75,
        "percent": 75,
    }


def test_retention_days_set_back_to_default_and_refused(
    live: LiveServer, alice: WebSession
) -> None:
    page = alice.get("/settings").text
    assert "Server default (30 days)" in page  # Junk
    assert "Server default (keep until I delete)" in page  # Trash
    assert checked(page, "junk") == "default" and checked(page, "trash") == "default"
    saved = alice.post(
        "/settings/storage", {"junk": "days", "junk_days": "7", "trash": "keep", "trash_days": ""}
    )
    assert saved.status_code == 303 and saved.headers["location"] == "/settings?saved=storage"
    assert (settings_of(live).junk_days, settings_of(live).trash_days) == (7, 0)
    page = alice.get("/settings").text
    assert checked(page, "junk") == "days" and 'name="junk_days" type="number"' in page
    assert 'value="7"' in page and checked(page, "trash") == "keep"

    for fields, error in (
        ({"junk": "days", "junk_days": "0"}, "give the number of days Junk keeps mail"),
        ({"junk": "days", "junk_days": "-3"}, "give the number of days Junk keeps mail"),
        (
            {"junk": "days", "junk_days": "366"},
            "days for Junk must be 0 (keep until deleted) to 365",
        ),
        ({"junk": "keep", "trash": "days", "trash_days": "99999999999999999999"}, "Trash keeps"),
        ({"junk": "forever"}, "choose how long Junk keeps mail"),
    ):
        refused = alice.post("/settings/storage", {"trash": "keep", **fields})
        assert refused.status_code == 400, fields
        shown = r'<p class="error" role="alert"[^>]*>[^<]*' + re.escape(error)
        assert re.search(shown, refused.text)
        assert (settings_of(live).junk_days, settings_of(live).trash_days) == (7, 0)

    back = alice.post("/settings/storage", {"junk": "default", "trash": "default"})
    assert back.status_code == 303
    assert (settings_of(live).junk_days, settings_of(live).trash_days) == (None, None)


def test_retention_form_without_csrf_is_refused(live: LiveServer, alice: WebSession) -> None:
    fields = {"junk": "keep", "trash": "keep"}
    for token in (None, "not-the-token"):
        sent = fields if token is None else {**fields, "csrf": token}
        response = alice.post("/settings/storage", sent, csrf=False)
        assert response.status_code == 303 and "reason=stale" in response.headers["location"]
    assert (settings_of(live).junk_days, settings_of(live).trash_days) == (None, None)
    assert alice.client.put("/api/v1/settings/retention", json={"junk_days": 0}).status_code == 403
    assert settings_of(live).junk_days is None


def test_retention_through_the_json_api(live: LiveServer, alice: WebSession) -> None:
    shown = alice.api("GET", "/settings").json()["retention"]
    assert shown == {
        "max_days": 365,
        "junk": {"days": None, "default": 30, "effective": 30},
        "trash": {"days": None, "default": 0, "effective": 0},
    }
    put = alice.api("PUT", "/settings/retention", {"junk_days": 0, "trash_days": 60})
    assert put.status_code == 200
    assert put.json()["junk"] == {"days": 0, "default": 30, "effective": 0}
    assert put.json()["trash"] == {"days": 60, "default": 0, "effective": 60}
    assert (settings_of(live).junk_days, settings_of(live).trash_days) == (0, 60)
    for body, error in (
        ({"junk_days": 366}, "days for Junk must be 0 (keep until deleted) to 365, got 366"),
        ({"trash_days": -1}, "trash_days must be at least 0"),  # the document says so
        ({"junk_days": "7"}, "junk_days must be an integer or null"),
    ):
        refused = alice.api("PUT", "/settings/retention", body)
        assert (refused.status_code, refused.json()) == (400, {"error": error})
    assert (settings_of(live).junk_days, settings_of(live).trash_days) == (0, 60)
    cleared = alice.api("PUT", "/settings/retention", {"junk_days": None})
    assert cleared.json()["junk"]["effective"] == 30 and cleared.json()["trash"]["days"] is None
    assert (settings_of(live).junk_days, settings_of(live).trash_days) == (None, None)


def test_a_draft_saved_past_a_threshold_warns_at_once(live: LiveServer, alice: WebSession) -> None:
    for n in range(3):
        deliver(live, ALICE, simple_message(f"message {n}"))
    set_quota(live, None, 5)  # 3 of 5: 60 %
    draft = {"to": "bob@example.org", "subject": "later", "body": "half", "action": "save"}
    assert alice.post("/compose", draft).status_code == 200  # 4 of 5: 80 %
    warnings = [m for m in live.mailbox_messages(ALICE, INBOX) if WARNING in m]
    assert len(warnings) == 1 and b"Subject: Your mailbox is 80% full\r\n" in warnings[0]


def test_the_admin_account_list_shows_each_accounts_days(
    live: LiveServer, alice: WebSession
) -> None:
    live.add_account("root@example.org", TEST_PASSWORD, is_admin=True)
    admin = WebSession(live)
    assert admin.login("root@example.org").status_code == 303
    saved = alice.post("/settings/storage", {"junk": "keep", "trash": "days", "trash_days": "9"})
    assert saved.status_code == 303
    page = admin.get("/admin/accounts").text
    admin.close()
    rows = re.findall(r'<span class="meta retention">([^<]*)</span>', page)
    assert "Junk: kept until deleted (own); Trash: 9 days (own)" in rows
    assert "Junk: 30 days (default); Trash: kept until deleted (default)" in rows  # root's
