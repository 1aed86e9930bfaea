"""The webmail for keyboard and screen-reader users, in Chromium (WCAG 2.2 AA, the parts a
test can hold without axe-core: docs/accessibility.md has the axe-core results).

Structure is read from Playwright's ARIA snapshot (the accessibility tree as a screen reader
gets it: landmarks, headings, names of controls) and the DOM; the keyboard is the real one
(Tab, Shift+Tab, Enter, Space) — no element is clicked or focused by the test itself.
"""

from __future__ import annotations

import dataclasses
import itertools
import re
from pathlib import Path
from typing import Any

import pytest

if not Path("/usr/bin/chromium").exists():
    pytest.skip(
        "browser tests need Debian's Chromium at /usr/bin/chromium (apt-get install -y chromium)",
        allow_module_level=True,
    )

import test_browser_webmail as webmail
from test_browser_webmail import ALICE, Page, base, login, message, smtp_deliver, sync_api

from pillarbox import config as cfg
from pillarbox.testing.live import TEST_PASSWORD, LiveServer, loopback_config
from pillarbox.testing.testca import make_ca
from pillarbox.testing.webclient import deliver, mailbox_id

# The webmail tests' browser, live server and page fixtures: bound here, pytest finds them.
browser, server, new_page = webmail.browser, webmail.server, webmail.new_page
expect = sync_api.expect

# Roles a user operates: each needs a name (WCAG 4.1.2). In the ARIA snapshot a named one
# reads `- button "Send"`; an unnamed one `- button` alone, or followed by `:` or `[`.
_OPERABLE = (
    "textbox|searchbox|combobox|checkbox|radio|spinbutton|button|link|listbox|slider|switch|img"
)
_UNNAMED = re.compile(rf"^\s*- ({_OPERABLE})(?: \[[^\]]*\])*:?$", re.M)
_HEADING = re.compile(r'^\s*- heading "(.*)" \[level=(\d)\]', re.M)

# Where the keyboard is, and whether the user can see it (WCAG 2.4.7): a ring of 2 px or more.
_FOCUS = r"""() => {
  const e = document.activeElement;
  if (!e || e === document.body) return null;
  const s = getComputedStyle(e), r = e.getBoundingClientRect();
  // WCAG 1.4.11: the ring itself at 3:1 against the white of cards and fields.
  const lum = (rgb) => rgb
    .map((v) => (v /= 255) <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4)
    .reduce((sum, v, i) => sum + v * [0.2126, 0.7152, 0.0722][i], 0);
  const channels = (s.outlineColor.match(/[\d.]+/g) || []).slice(0, 3).map(Number);
  const contrast = channels.length === 3 ? 1.05 / (lum(channels) + 0.05) : 0;
  const ring = s.outlineStyle !== "none" && parseFloat(s.outlineWidth) >= 2 && contrast >= 3;
  const keys = window.__focusKeys = window.__focusKeys || new WeakMap();
  if (!keys.has(e)) keys.set(e, (window.__focusCount = (window.__focusCount || 0) + 1));
  const label = e.getAttribute("aria-label") || (e.labels && e.labels[0] && e.labels[0].innerText)
                || e.innerText || e.value || "";
  return {key: keys.get(e), tag: e.tagName, id: e.id, cls: e.className || "",
          text: label.trim().slice(0, 60), ring: e.tagName === "IFRAME" || ring,
          shown: r.width > 0 && r.height > 0};
}"""


NEWSLETTER = (
    b"From: Carol <carol@example.net>\r\nTo: alice@example.org\r\nSubject: Newsletter\r\n"
    b'MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary="b"\r\n\r\n'
    b"--b\r\nContent-Type: text/html\r\n\r\n<p>An <a href='https://example.net/'>offer</a>.</p>\r\n"
    b"--b\r\nContent-Type: text/plain; name=a.txt\r\nContent-Disposition: attachment; "
    b"filename=a.txt\r\n\r\nattached\r\n--b--\r\n"
)


def structure_problems(page: Page, *, signed_in: bool = True) -> list[str]:
    """What a screen reader's user would miss on this page (empty: nothing found)."""
    problems: list[str] = []
    if not page.evaluate("document.documentElement.lang"):
        problems.append("no lang on <html> (WCAG 3.1.1)")
    tree = page.locator("body").aria_snapshot()
    for landmark in ("banner", "main") + (("navigation",) if signed_in else ()):
        if not re.search(rf"^\s*- {landmark}\b", tree, re.M):
            problems.append(f"no {landmark} landmark")
    if len(re.findall(r"^\s*- main\b", tree, re.M)) > 1:
        problems.append("more than one main landmark")
    # Two landmarks of one kind need names that tell them apart (ARIA 1.2 §4.3.2 landmarks).
    for kind in ("search", "navigation", "region", "form"):
        names = re.findall(rf"^\s*- {kind}( \"[^\"]*\")?:?$", tree, re.M)
        if len(names) != len(set(names)):
            problems.append(f"{kind} landmarks not told apart: {names}")
    problems += [f"unnamed {m.group(1)}: {m.group(0).strip()}" for m in _UNNAMED.finditer(tree)]
    levels = [int(level) for _, level in _HEADING.findall(tree)]
    if levels[:1] != [1] or levels.count(1) != 1:
        problems.append(f"headings do not start with one h1: {levels}")
    problems += [
        f"heading level jumps {a} → {b}" for a, b in itertools.pairwise(levels) if b > a + 1
    ]
    problems += page.evaluate("""() => [
      ...Array.from(document.querySelectorAll("table:not([role=presentation])"))
        .filter(t => !t.querySelector("th"))
        .map(t => "table without headers: " + (t.id || t.className)),
      ...Array.from(document.querySelectorAll("img:not([alt])"))
        .map(i => "img without alt: " + i.src),
      // ARIA 1.2: a generic element (span, div) cannot be named; screen readers skip the label.
      ...Array.from(document.querySelectorAll(":is(span, div, p, td)[aria-label]:not([role])"))
        .map(e => "aria-label on a generic element: " + e.outerHTML.slice(0, 80)),
      ...Array.from(document.querySelectorAll("[role=status], [role=alert]"))
        .filter(n => !n.textContent.trim() && n.id !== "list-news" && n.id !== "shortcuts-state"
                     && !n.hidden).map(n => "empty live region shown: " + n.id),
    ]""")
    return problems


def from_the_top(page: Page) -> None:
    """Where a page without autofocus starts: the next Tab goes to its first control (a field
    the page focused on arrival, like compose's To, would start the walk in the middle)."""
    page.evaluate("""() => { window.scrollTo(0, 0); const b = document.body;
      b.tabIndex = -1; b.focus(); b.removeAttribute("tabindex"); }""")


def tab_through(page: Page, limit: int = 200) -> list[dict[str, Any]]:
    """Tab from the top of the page until focus comes round to the skip link again; fails on a
    trap (the same element twice in a row) or a control focused without a visible ring."""
    from_the_top(page)
    stops: list[dict[str, Any]] = []
    repeats = 0
    for _ in range(limit):
        page.keyboard.press("Tab")
        here = page.evaluate(_FOCUS)
        if here is None:  # past the last control: the browser's own UI, then the page again
            continue
        if stops and here["cls"] == "skip":
            return stops
        if stops and here["key"] == stops[-1]["key"]:
            # A date field's Tab steps through its day, month, year and picker button (the
            # browser's own parts, with their own highlight) before leaving it.
            repeats += 1
            assert repeats < 4, f"focus stuck on {here}"
            continue
        assert here["ring"] and here["shown"], f"focus not visible on {here}"
        repeats = 0
        stops.append(here)
    raise AssertionError(f"focus never came back to the top after {limit} Tabs: {stops[-3:]}")


def tab_to(
    page: Page, text: str = "", *, id: str = "", back: bool = False, limit: int = 120
) -> None:
    """Move focus with Tab (Shift+Tab when ``back``) to the control named ``text`` (or with
    the element id ``id``)."""
    for _ in range(limit):
        page.keyboard.press("Shift+Tab" if back else "Tab")
        here = page.evaluate(_FOCUS)
        if here and (here["id"] == id if id else here["text"] == text):
            return
    raise AssertionError(f"no control {text or '#' + id!r} reached with the keyboard")


def focused(page: Page) -> dict[str, Any]:
    here = page.evaluate(_FOCUS)
    assert here is not None, "focus is on the page's body"
    return dict(here)


def sign_in_admin(server: LiveServer, page: Page, address: str = "root@example.org") -> None:
    server.add_account(address, TEST_PASSWORD, is_admin=True)
    login(page, server, address)


# -- structure -----------------------------------------------------------------------------------


def test_every_page_has_landmarks_headings_names_and_a_way_round_by_keyboard(
    server: LiveServer, new_page: Any
) -> None:
    """Each page of the webmail and the admin: lang, banner/navigation/main, one h1 and no
    skipped heading level, every control named, tables with headers; then the skip link goes
    to the content and Tab visits every control with a visible ring and comes round again."""
    smtp_deliver(server, message("Plan", "Shall we?"))
    smtp_deliver(server, NEWSLETTER)
    inbox = mailbox_id(server, ALICE)
    page = new_page()
    page.goto(base(server) + "/login")
    assert structure_problems(page, signed_in=False) == []
    login(page, server)
    newsletter = page.get_by_role("link", name="Newsletter").get_attribute("href")
    pages = [
        f"/mail/{inbox}",
        f"/mail/{inbox}?view=threads",
        f"/mail/{inbox}?q=Plan",
        str(newsletter),
        "/compose",
        "/contacts",
        "/calendar",
        "/settings",
        "/settings/filters",
        "/settings/filters/rule",
        "/settings/filters/script",
        f"/mail/{inbox}/sharing",
    ]
    titles: dict[str, str] = {}
    for path in pages:
        page.goto(base(server) + path)
        assert structure_problems(page) == [], path
        from_the_top(page)
        page.keyboard.press("Tab")
        assert focused(page)["cls"] == "skip", path  # WCAG 2.4.1: the first stop
        page.keyboard.press("Enter")
        assert page.evaluate("document.activeElement.id") == "main", path
        assert len(tab_through(page)) > 5, path
        if "view=threads" not in path:  # the same folder, shown another way
            titles[path] = page.title()

    admin = new_page()
    sign_in_admin(server, admin)
    for path in ("/admin", "/admin/domains", "/admin/domains/example.org", "/admin/accounts"):
        admin.goto(base(server) + path)
        assert structure_problems(admin) == [], path
        tab_through(admin)
        titles[path] = admin.title()
    # WCAG 2.4.2: each page's title tells it from the others (a tab list, a screen reader's
    # first words on arrival).
    assert len(set(titles.values())) == len(titles), titles


def test_two_factor_page_is_labelled(server: LiveServer, new_page: Any) -> None:
    from pillarbox.auth import totp

    account = server.call(server.store.get_account(ALICE))
    assert account is not None
    server.call(server.store.enable_totp(account.id, f"sealed-{totp.new_secret().hex()}", ["d"]))
    page = new_page()
    page.goto(base(server) + "/login")
    page.keyboard.type(ALICE)  # the address field has the focus on arrival
    page.keyboard.press("Tab")
    page.keyboard.type(TEST_PASSWORD)
    page.keyboard.press("Enter")
    page.wait_for_url(re.compile(r"/login/code"))
    assert structure_problems(page, signed_in=False) == []
    assert page.evaluate("document.activeElement.id") == "code"


def test_pages_reflow_at_320_pixels(server: LiveServer, new_page: Any) -> None:
    """WCAG 1.4.10 / 1.4.4: 320 CSS pixels is a 1280-pixel window at 400 % zoom; no page
    scrolls sideways (a wide table scrolls inside itself)."""
    page = new_page(viewport={"width": 320, "height": 640})
    # A long address, one word to the browser: it is in the settings' heading.
    sign_in_admin(server, page, "postmaster.of.the.mail.service@example.org")
    for path in ("/mail", "/compose", "/settings", "/contacts", "/calendar", "/admin"):
        page.goto(base(server) + path)
        overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
        assert overflow <= 1, path
    # On /admin, last: the chart scrolls inside its frame at a width where its labels stay
    # legible, and each range button wraps whole (one box, not split over two lines).
    assert page.eval_on_selector("svg.chart", "e => e.getBoundingClientRect().width") >= 540
    frame = page.eval_on_selector(".chart-frame", "e => [e.clientWidth, e.scrollWidth]")
    assert frame[0] < frame[1] <= frame[0] + 300, frame
    boxes = page.eval_on_selector_all(
        ".view-toggle a", "es => es.map(e => e.getClientRects().length)"
    )
    assert boxes == [1, 1], boxes


def test_a_signed_domains_page_fits_at_1280_and_reflows_at_320(
    tmp_path: Path, new_page: Any
) -> None:
    """The domain page of a signed zone with a TLSA: its long DNSKEY, DS and TLSA values wrap
    or scroll inside their table, never the page (WCAG 1.4.10), and its headings hold."""
    host = "mail.example.org"
    cert, key = make_ca(tmp_path).issue(host)
    config = loopback_config(tmp_path / "data", only=["http"])
    config = dataclasses.replace(
        config,
        server=dataclasses.replace(config.server, hostname=host),
        tls=cfg.TlsSection(cert=str(cert), key=str(key)),
        dns=dataclasses.replace(config.dns, dnssec=True),
    )
    with LiveServer(config) as signed:
        signed.add_domain("example.org")
        for width in (1280, 320):
            page = new_page(viewport={"width": width, "height": 800})
            sign_in_admin(signed, page, f"root{width}@example.org")
            page.goto(base(signed) + "/admin/domains/example.org")
            assert structure_problems(page) == [], width
            cells = page.locator("#secure-heading ~ table td:nth-child(2)").all_inner_texts()
            assert cells == ["TLSA", "DNSKEY", "CDS", "CDNSKEY", "DS"], cells
            overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
            assert overflow <= 1, width
            page.screenshot(path=str(tmp_path / f"domain-{width}.png"), full_page=True)


# -- keyboard journeys ---------------------------------------------------------------------------


@pytest.mark.parametrize("script", [True, False], ids=["script", "no-script"])
def test_move_from_the_list_by_keyboard_lands_on_the_notice(
    server: LiveServer, new_page: Any, script: bool
) -> None:
    """Check a message with Space, choose a folder, Move with Enter: the next page's focus is
    on the "1 message moved" status, so a screen reader says it (with and without script)."""
    smtp_deliver(server, message("Plan"))
    smtp_deliver(server, message("Other"))
    page = new_page(java_script_enabled=script)
    login(page, server)
    tab_to(page, "Select Plan")
    page.keyboard.press("Space")
    assert page.get_by_role("checkbox", name="Select Plan").is_checked()
    tab_to(page, "Move", back=True)
    page.keyboard.press("Shift+Tab")
    assert focused(page)["id"] == "move-target"
    page.keyboard.press("ArrowDown")
    page.keyboard.press("ArrowDown")
    page.keyboard.press("ArrowDown")  # Move to… → Drafts → Sent → Archive
    assert page.locator("#move-target option:checked").inner_text() == "Archive"
    page.keyboard.press("Tab")
    page.keyboard.press("Enter")
    page.wait_for_load_state()
    expect(page.get_by_role("status").filter(has_text="moved")).to_have_text(
        "1 message moved to Archive."
    )
    here = focused(page)
    assert here["id"] == "action-done" and here["ring"]
    page.keyboard.press("Tab")  # onwards from the notice, not from the top of the page
    assert focused(page)["text"] != "Skip to content"


def test_delete_from_a_message_and_send_from_compose_by_keyboard(
    server: LiveServer, new_page: Any
) -> None:
    smtp_deliver(server, message("Plan"))
    page = new_page()
    login(page, server)
    tab_to(page, "Plan")
    page.keyboard.press("Enter")
    page.wait_for_url(re.compile(r"/mail/\d+/\d+$"))
    tab_to(page, "Delete")
    page.keyboard.press("Enter")
    page.wait_for_url(re.compile(r"/mail/\d+(\?.*)?$"))
    assert focused(page)["id"] == "action-done"
    assert "moved to Trash" in page.locator("#action-done").inner_text()

    page.keyboard.press("c")  # the shortcut; Enter on the Compose link is the same
    page.wait_for_url(re.compile(r"/compose$"))
    assert focused(page)["id"] == "f-to"  # the first field, ready to type in
    page.keyboard.type("bob@example.org")
    tab_to(page, id="f-subject")
    page.keyboard.type("Lunch")
    tab_to(page, "Send")
    page.keyboard.press("Enter")
    page.wait_for_url(re.compile(r"sent=1"))
    assert focused(page)["id"] == "sent-notice"


def test_a_compose_mistake_puts_focus_on_the_field(server: LiveServer, new_page: Any) -> None:
    page = new_page()
    login(page, server)
    page.goto(base(server) + "/compose")
    page.keyboard.type("bob@example.org")
    page.keyboard.press("Tab")
    page.keyboard.type("not an address")  # Cc
    tab_to(page, "Send")
    page.keyboard.press("Enter")
    expect(page.locator("#e-cc")).to_be_visible()
    here = focused(page)
    assert here["id"] == "f-cc"
    described = page.locator("#f-cc").get_attribute("aria-describedby")
    assert described and page.locator(f"#{described}").get_attribute("role") == "alert"


def test_a_dismissed_confirmation_leaves_focus_on_its_button(
    server: LiveServer, new_page: Any
) -> None:
    box, _ = deliver(server, ALICE, message("Old"), "Trash")
    page = new_page()
    login(page, server)
    page.goto(f"{base(server)}/mail/{box}")
    tab_to(page, "Select Old")
    page.keyboard.press("Space")
    page.once("dialog", lambda dialog: dialog.dismiss())
    tab_to(page, "Delete forever", back=True)
    page.keyboard.press("Enter")
    assert focused(page)["text"] == "Delete forever"
    assert page.get_by_role("checkbox", name="Select Old").is_checked()


def test_single_key_shortcuts_can_be_switched_off(server: LiveServer, new_page: Any) -> None:
    """WCAG 2.1.4: the Settings switch (Space on it) turns "c" and friends off, and back on;
    the choice is the account's, so it holds in another browser (a fresh context) too."""
    page = new_page()
    login(page, server)
    page.goto(base(server) + "/settings")
    tab_to(page, "Use single-key shortcuts")
    page.keyboard.press("Space")
    expect(page.locator("#shortcuts-state")).to_have_text("Shortcuts off.")
    other = new_page()
    login(other, server)
    for each in (page, other):
        each.goto(base(server) + "/mail")
        each.keyboard.press("c")
        each.wait_for_timeout(300)
        assert not each.url.endswith("/compose")
    page.goto(base(server) + "/settings")
    tab_to(page, "Use single-key shortcuts")
    page.keyboard.press("Space")
    expect(page.locator("#shortcuts-state")).to_have_text("Shortcuts on.")
    page.goto(base(server) + "/mail")
    page.keyboard.press("c")
    page.wait_for_url(re.compile(r"/compose$"))


def test_new_mail_is_announced_and_focus_stays_put(server: LiveServer, new_page: Any) -> None:
    """A live update replaces the list: the link the user was on keeps the focus, and the
    status region says what came."""
    smtp_deliver(server, message("Plan"))
    page = new_page()
    with page.expect_response(webmail.live_feed):
        login(page, server)
    tab_to(page, "Plan")
    smtp_deliver(server, message("Lunch?"))
    page.locator("table.messages").get_by_text("Lunch?").wait_for()
    expect(page.locator("#list-news")).to_have_text("1 new message")
    assert focused(page)["text"] == "Plan"


def test_forced_colours_keep_the_focus_ring_and_the_current_folder(
    server: LiveServer, new_page: Any
) -> None:
    page = new_page(forced_colors="active")
    login(page, server)
    tab_to(page, "Compose")
    assert focused(page)["ring"]
    current = page.locator("#folders a[aria-current]")
    outline = current.evaluate("a => getComputedStyle(a).outlineStyle")
    assert outline != "none"  # its background is gone in forced colours; the outline is not


def test_rich_text_toolbar_by_keyboard_with_names_that_hold_their_words(
    server: LiveServer, new_page: Any
) -> None:
    """WCAG 2.5.3: a speech-input user says what a button shows ("Unlink", "List"): each
    formatting button's name holds its visible words."""
    page = new_page()
    login(page, server)
    page.goto(base(server) + "/compose")
    tab_to(page, "Rich text (bold, italic, links, lists)")
    page.keyboard.press("Space")
    expect(page.get_by_role("toolbar", name="Formatting")).to_be_visible()
    assert structure_problems(page) == []
    tab_to(page, "Bold")
    buttons = page.get_by_role("toolbar", name="Formatting").get_by_role("button")
    for n in range(buttons.count()):
        button = buttons.nth(n)
        words = button.evaluate("b => b.textContent.trim().toLowerCase()")
        name = (button.get_attribute("aria-label") or button.inner_text()).lower()
        assert words in name, (words, name)


def test_a_saved_setting_is_announced_in_its_section(server: LiveServer, new_page: Any) -> None:
    page = new_page()
    login(page, server)
    page.goto(base(server) + "/settings")
    tab_to(page, id="display_name")
    page.keyboard.type("Alice L.")
    page.keyboard.press("Enter")
    page.wait_for_url(re.compile(r"saved=profile"))
    here = focused(page)
    assert here["text"] == "Saved." and here["ring"]
    assert page.evaluate("document.activeElement.closest('section').id") == "profile"


def test_arrow_keys_move_along_a_toolbar(server: LiveServer, new_page: Any) -> None:
    """A screen reader says "toolbar": its user tries the arrows (ARIA APG), and Tab still
    stops on each button as it does without script."""
    smtp_deliver(server, message("Plan"))
    page = new_page()
    login(page, server)
    tab_to(page, "Mark read")
    page.keyboard.press("ArrowRight")
    assert focused(page)["text"] == "Mark unread"
    page.keyboard.press("ArrowLeft")
    page.keyboard.press("ArrowLeft")  # round to the end of the bar
    assert focused(page)["text"] == "Move"
    page.keyboard.press("Home")
    assert focused(page)["text"] == "Mark read"
    page.keyboard.press("Tab")
    assert focused(page)["text"] == "Mark unread"
