"""The session's end in Chromium, with a lifetime of seconds: an idle page warns in an
assertive live region and offers "Stay signed in" (reached with Tab, pressed with Enter: WCAG
2.2.1), a page being typed in extends the session itself, and once the session has ended the
message being written is kept through the login (both steps of a two-factor one, through a
reload of the code page and its "Start again"), in Drafts, or, too long for the login's form
or not found by the code page, offered back from the browser's copy."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import test_browser_webmail as webmail
from test_browser_accessibility import from_the_top, tab_to
from test_browser_webmail import ALICE, BOB, Page, base, inbox_count, login, sync_api

from pillarbox import config as cfg
from pillarbox.auth import totp
from pillarbox.testing.live import TEST_PASSWORD, LiveServer, loopback_config
from pillarbox.web.session import ENDS_COOKIE
from pillarbox.web.totpseal import TotpSealer, load_key

browser, new_page = webmail.browser, webmail.new_page
expect = sync_api.expect

#: Seconds a session lives idle, and the warning before its end: the warning comes TTL - WARN
#: seconds after the last refresh.
TTL, WARN = 16.0, 8.0


@pytest.fixture
def server(tmp_path: Path) -> Iterator[LiveServer]:
    web = cfg.WebSection(session_ttl=TTL, session_warning=WARN)
    with LiveServer(loopback_config(tmp_path / "data", only=["http"], web=web)) as live:
        live.add_domain("example.org")
        live.add_account(ALICE, TEST_PASSWORD, display_name="Alice")
        live.add_account(BOB, TEST_PASSWORD, display_name="Bob")
        yield live


def session_ends(page: Page) -> int:
    """When the browser's session ends, as the server last said (the ends cookie)."""
    [value] = [c["value"] for c in page.context.cookies() if c["name"] == ENDS_COOKIE]
    return int(value)


def warning_height(page: Page) -> float:
    box = page.locator("#session-warning").bounding_box()
    assert box is not None
    return box["height"]


def test_an_idle_page_warns_and_stays_signed_in(server: LiveServer, new_page: Any) -> None:
    page = new_page()
    login(page, server)
    first_end = session_ends(page)
    alert = page.locator("#session-text")
    assert alert.get_attribute("aria-live") == "assertive"
    # No warning yet: no box either (it was an empty yellow strip on every page).
    assert warning_height(page) == 0
    expect(alert).to_contain_text("You will be logged out at", timeout=int(TTL * 1000))
    assert warning_height(page) > 0
    assert time.time() < first_end
    from_the_top(page)
    tab_to(page, "Stay signed in")
    page.keyboard.press("Enter")
    expect(alert).to_contain_text("You stay signed in")
    expect(page.get_by_role("button", name="Stay signed in")).to_be_hidden()
    assert session_ends(page) > first_end
    # Past the first end the session still holds: the page is the mailbox, not the login.
    time.sleep(max(0.0, first_end + 1 - time.time()))
    page.reload()
    assert re.search(r"/mail/\d+$", page.url)


def test_typing_keeps_the_session_and_its_end_keeps_the_text(
    server: LiveServer, new_page: Any
) -> None:
    page = new_page()
    login(page, server)
    page.goto(base(server) + "/compose")
    page.get_by_label("To", exact=True).fill(BOB)
    body = page.get_by_label("Message", exact=True)
    body.click()
    first_end = session_ends(page)
    # Someone writing is not idle: no warning comes, and the session outlives its first end.
    while time.time() < first_end + 2:
        page.keyboard.type("words ")
        assert page.locator("#session-extend").is_hidden()
        page.wait_for_timeout(700)
    assert session_ends(page) > first_end
    # Left alone (after one more extension for the last words typed), the page warns, then
    # says the session ended.
    expect(page.locator("#session-text")).to_contain_text(
        "You will be logged out at", timeout=int(TTL * 1000)
    )
    expect(page.locator("#session-text")).to_contain_text(
        "Your session has ended", timeout=int(TTL * 1000)
    )
    expect(page.get_by_role("link", name="Log in again")).to_be_visible()
    written = body.input_value()
    assert written.count("words") >= 3
    # Sending now answers with the login page, which holds the message; the login keeps it in
    # Drafts and opens it there, not sent.
    page.get_by_role("button", name="Send").click()
    expect(page.get_by_role("status")).to_contain_text("the message you were writing is kept")
    page.get_by_label("Email address", exact=True).fill(ALICE)
    page.get_by_label("Password", exact=True).fill(TEST_PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(re.compile(r"/compose\?draft=\d+:\d+$"))
    assert page.get_by_label("Message", exact=True).input_value().strip() == written.strip()
    assert page.get_by_label("To", exact=True).input_value() == BOB


def enrol_totp(server: LiveServer, address: str) -> bytes:
    """Turn on ``address``'s second factor (sealed under the server's key, as enrolment
    would); the authenticator's key."""
    key = totp.new_secret()
    sealer = TotpSealer(load_key(server.config.data_dir))

    async def go() -> None:
        account = await server.store.get_account(address)
        assert account is not None
        await server.store.enable_totp(account.id, sealer.seal(account.id, key), [])

    server.call(go())
    return key


def password_step(page: Page) -> None:
    page.get_by_label("Email address", exact=True).fill(ALICE)
    page.get_by_label("Password", exact=True).fill(TEST_PASSWORD)
    page.get_by_role("button", name="Log in").click()


def test_the_code_step_keeps_the_text_too(server: LiveServer, new_page: Any) -> None:
    """With a second factor: the login page holding the message goes to the code page holding
    it — reloaded, that page is read again (the password is not posted twice); "Start again"
    goes back to the login page still holding it; a wrong code keeps it too — and the code
    step saves it in Drafts, unsent."""
    key = enrol_totp(server, ALICE)
    page = new_page()
    page.goto(base(server) + "/login")
    password_step(page)
    page.get_by_label("Code", exact=True).fill(totp.totp(key, time.time()))
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(re.compile(r"/mail/\d+$"))
    page.goto(base(server) + "/compose")
    page.get_by_label("To", exact=True).fill(BOB)
    page.get_by_label("Subject", exact=True).fill("two steps")
    written = "Dear Bob,\n\nkept through both steps <of> the login & more.\n"
    page.get_by_label("Message", exact=True).fill(written)
    page.context.clear_cookies()  # the session is gone, as at its idle end, without the wait
    page.get_by_role("button", name="Send").click()
    expect(page.get_by_role("status")).to_contain_text("the message you were writing is kept")
    password_step(page)
    page.wait_for_url(re.compile(r"/login/code\?"))
    expect(page.get_by_role("heading", name="Two-factor login")).to_be_visible()
    posted: list[str] = []
    page.on("request", lambda r: posted.append(r.url) if r.method == "POST" else None)
    page.reload()
    expect(page.get_by_role("heading", name="Two-factor login")).to_be_visible()
    expect(page.get_by_role("status")).to_contain_text("the message you were writing is kept")
    assert posted == []
    page.get_by_role("button", name="Start again").click()
    expect(page.get_by_role("heading", name="Log in")).to_be_visible()
    expect(page.get_by_role("status")).to_contain_text("the message you were writing is kept")
    password_step(page)
    page.wait_for_url(re.compile(r"/login/code\?"))
    expect(page.get_by_role("status")).to_contain_text("the message you were writing is kept")
    wrong = f"{(int(totp.totp(key, time.time())) + 1) % 10**6:06d}"
    page.get_by_label("Code", exact=True).fill(wrong)
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("alert")).to_contain_text("Wrong or already used code")
    later = totp.totp(key, time.time() + totp.STEP_SECONDS)  # the first code's step is used
    page.get_by_label("Code", exact=True).fill(later)
    page.get_by_label("Code", exact=True).press("Enter")  # "Log in", not "Start again"
    page.wait_for_url(re.compile(r"/compose\?draft=\d+:\d+$"))
    assert page.get_by_label("Message", exact=True).input_value().strip() == written.strip()
    assert page.get_by_label("To", exact=True).input_value() == BOB
    assert inbox_count(server, BOB) == 0


def test_a_message_the_code_page_did_not_find_comes_back_from_the_browser(
    server: LiveServer, new_page: Any
) -> None:
    """The message is held between the steps in the store, one per account: when the code
    page finds none (here another browser's password step for the account replaced it; a
    node whose totp-key differs alike), the page says so, and after the login the compose
    page offers the browser's copy."""
    key = enrol_totp(server, ALICE)
    page = new_page()
    page.goto(base(server) + "/login")
    password_step(page)
    page.get_by_label("Code", exact=True).fill(totp.totp(key, time.time()))
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(re.compile(r"/mail/\d+$"))
    page.goto(base(server) + "/compose")
    page.get_by_label("To", exact=True).fill(BOB)
    written = "Dear Bob,\n\nkept by this browser.\n"
    page.get_by_label("Message", exact=True).fill(written)
    page.context.clear_cookies()
    page.get_by_role("button", name="Send").click()
    password_step(page)
    page.wait_for_url(re.compile(r"/login/code\?"))
    other = new_page()
    other.goto(base(server) + "/login")
    # The other browser's login carries a message of its own: it takes the account's place.
    other.evaluate(
        """() => { const form = document.querySelector("form");
                   const field = document.createElement("input");
                   field.type = "hidden"; field.name = "carried.subject"; field.value = "theirs";
                   form.append(field); }"""
    )
    password_step(other)
    other.wait_for_url(re.compile(r"/login/code\?"))
    page.reload()
    expect(page.get_by_role("status")).to_contain_text("could not be kept through this step")
    page.get_by_label("Code", exact=True).fill(totp.totp(key, time.time() + totp.STEP_SECONDS))
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(re.compile(r"/compose$"))
    page.get_by_role("button", name="Restore it").click()
    assert page.get_by_label("Message", exact=True).input_value().strip() == written.strip()
    assert page.get_by_label("To", exact=True).input_value() == BOB
    assert inbox_count(server, BOB) == 0


#: A long text put in a field as a paste would (typing it takes Playwright minutes): one input
#: event, which app.js answers by keeping the form in the browser.
PASTE = (
    "(box, text) => { box.value = text; box.dispatchEvent(new Event('input', {bubbles: true})) }"
)


def test_a_long_message_rides_the_login_or_comes_back_from_the_browser(
    server: LiveServer, new_page: Any
) -> None:
    """The login's form is held to [web] max_form_bytes (1 MiB). 300,000 "é" (600 KB as
    UTF-8, 1.8 MB percent-encoded) ride through it as multipart; 1 MiB of text is too long:
    the login page says so, and after the login the compose page offers the browser's copy."""
    page = new_page()
    login(page, server)
    accented = "é" * 300_000
    page.goto(base(server) + "/compose")
    page.get_by_label("To", exact=True).fill(BOB)
    page.get_by_label("Message", exact=True).evaluate(PASTE, accented)
    page.context.clear_cookies()
    page.get_by_role("button", name="Send").click()
    expect(page.get_by_role("status")).to_contain_text("the message you were writing is kept")
    password_step(page)
    page.wait_for_url(re.compile(r"/compose\?draft=\d+:\d+$"))
    assert page.get_by_label("Message", exact=True).input_value().strip() == accented

    long = ("x" * 99 + "\n") * 10_600
    page.goto(base(server) + "/compose")
    page.get_by_label("To", exact=True).fill(BOB)
    page.get_by_label("Message", exact=True).evaluate(PASTE, long)
    page.context.clear_cookies()
    page.get_by_role("button", name="Send").click()
    page.wait_for_url(re.compile(r"/login\?.*reason=unkept"))
    expect(page.get_by_role("status")).to_contain_text("too long to carry through the login")
    password_step(page)
    page.wait_for_url(re.compile(r"/compose$"))
    page.get_by_role("button", name="Restore it").click()
    assert page.get_by_label("Message", exact=True).input_value() == long
    assert page.get_by_label("To", exact=True).input_value() == BOB
    assert inbox_count(server, BOB) == 0
