"""Run axe-core in every page of the webmail and the admin; print the violations per page and rule.

Usage: ``python bench/axe_audit.py AXE_MIN_JS [--json PATH]``

axe-core is not a dependency: install it anywhere outside the repository
(``npm install --prefix /tmp/axe axe-core``) and pass ``/tmp/axe/node_modules/axe-core/axe.min.js``.
A live server on loopback gets mail (plain, threaded, HTML with an attachment), a contact, an
event, a second account with two-factor login and an administrator; Debian's Chromium walks the
pages (docs/accessibility.md lists them) and each state that matters to a keyboard or
screen-reader user: errors, the notice after an action, the 2FA set-up, the recipient listbox,
320 px, forced colours. Rules: WCAG 2.0/2.1/2.2 A and AA, and axe's best practices. The pages'
CSP forbids the injected script, so the browser context bypasses it (axe only reads the page).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import tempfile
from pathlib import Path
from typing import Any

from playwright.sync_api import Page, sync_playwright

from pillarbox.auth import totp
from pillarbox.testing.live import TEST_PASSWORD, LiveServer, loopback_config
from pillarbox.testing.webclient import deliver

ALICE = "alice@example.org"
TAGS = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "wcag22aa", "best-practice"]
HTML_MAIL = (
    'Content-Type: multipart/mixed; boundary="b"\r\n\r\n--b\r\nContent-Type: text/html\r\n\r\n'
    "<h2>Offer</h2><p style='color:#999'>Dear Alice, see <a href='https://example.net/x'>this</a>."
    "</p><img src='https://example.net/t.png'>\r\n--b\r\nContent-Type: application/pdf\r\n"
    "Content-Disposition: attachment; filename=report.pdf\r\nContent-Transfer-Encoding: base64"
    "\r\n\r\nJVBERi0xLjQK\r\n--b--"
)
Results = dict[str, dict[str, tuple[str, int, list[str]]]]


def mail(subject: str, body: str = "Hello Alice.", headers: str = "") -> bytes:
    if not headers.startswith("Content-Type"):
        headers += "Content-Type: text/plain\r\n\r\n"
    return (
        f"From: Carol <carol@example.net>\r\nTo: Alice <{ALICE}>\r\nSubject: {subject}\r\n"
        f"Date: Mon, 01 Jan 2024 10:00:00 +0000\r\nMessage-ID: <{subject.replace(' ', '.')}"
        f"@example.net>\r\nMIME-Version: 1.0\r\n{headers}{body}\r\n"
    ).encode()


class Auditor:
    def __init__(self, axe: str, origin: str) -> None:
        self.axe, self.origin, self.results = axe, origin, Results()

    def __call__(self, page: Page, name: str, path: str | None = None) -> None:
        if path is not None:
            page.goto(self.origin + path)
        page.wait_for_load_state("networkidle")
        page.add_script_tag(content=self.axe)
        found = page.evaluate(
            """async tags => (await axe.run(document, {runOnly: {type: "tag", values: tags}}))
            .violations.map(v => [v.id, v.impact, v.nodes.length,
                                  v.nodes.slice(0, 3).map(n => n.target.join(" "))])""",
            TAGS,
        )
        self.results[name] = {rule: (impact, count, where) for rule, impact, count, where in found}


def log_in(page: Page, origin: str, address: str) -> None:
    page.goto(origin + "/login")
    page.get_by_label("Email address", exact=True).fill(address)
    page.get_by_label("Password", exact=True).fill(TEST_PASSWORD)
    page.get_by_role("button", name="Log in").click()


def walk(live: LiveServer, axe: str) -> Results:
    origin = f"http://127.0.0.1:{live.port('http')}"
    audit = Auditor(axe, origin)
    box, uid = deliver(live, ALICE, mail("Quarterly numbers"))
    deliver(live, ALICE, mail("Plan"))
    thread = "In-Reply-To: <Plan@example.net>\r\nReferences: <Plan@example.net>\r\n"
    deliver(live, ALICE, mail("Re: Plan", "Agreed.", thread))
    _, html = deliver(live, ALICE, mail("Newsletter", "", HTML_MAIL))
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path="/usr/bin/chromium", args=["--headless", "--no-sandbox"]
        )

        def fresh() -> Any:
            context = browser.new_context(bypass_csp=True)
            context.set_default_timeout(10_000)
            return context.new_page()

        page = fresh()
        audit(page, "login", "/login")
        log_in(page, origin, "carl@example.org")
        page.wait_for_url(re.compile("/login/code"))
        audit(page, "login code (2FA)")
        page.get_by_label("Code", exact=True).fill("000000")
        page.get_by_role("button", name="Log in").click()
        audit(page, "login code, wrong")

        page = fresh()
        log_in(page, origin, "nobody@example.org")
        audit(page, "login, wrong")
        log_in(page, origin, ALICE)
        page.wait_for_url(re.compile(r"/mail/\d+$"))
        audit(page, "message list")
        audit(page, "threaded list", f"/mail/{box}?view=threads")
        audit(page, "search", f"/mail/{box}?q=Plan")
        audit(page, "message, plain", f"/mail/{box}/{uid}")
        audit(page, "message, HTML + attachment", f"/mail/{box}/{html}")
        audit(page, "compose", "/compose")
        page.get_by_label("To", exact=True).fill("not an address")
        page.get_by_role("button", name="Send").click()
        audit(page, "compose, wrong address")
        audit(page, "contacts", "/contacts")
        form = page.locator("#contact-form")
        form.get_by_label("Name", exact=True).fill("Dana Scully")
        form.get_by_label("Email addresses (one a line)").fill("dana@fbi.example")
        form.get_by_role("button", name="Add contact").click()
        page.wait_for_url(re.compile(r"/contacts/\d+"))
        audit(page, "contact")
        audit(page, "calendar", "/calendar?month=2031-07")
        page.get_by_label("Title", exact=True).fill("Concert")
        for field, value in (("start-date", "2031-07-14"), ("start-time", "20:00")):
            page.locator(f"#event-{field}").fill(value)
        for field, value in (("end-date", "2031-07-14"), ("end-time", "22:30")):
            page.locator(f"#event-{field}").fill(value)
        page.get_by_role("button", name="Add event").click()
        page.wait_for_url(re.compile("done=saved"))
        audit(page, "calendar event")
        for name, path in (
            ("settings", "/settings"),
            ("filters", "/settings/filters"),
            ("filter rule", "/settings/filters/rule"),
            ("filter script", "/settings/filters/script"),
            ("sharing", f"/mail/{box}/sharing"),
            ("not found", f"/mail/{box}/99999"),
        ):
            audit(page, name, path)
        page.goto(f"{origin}/mail/{box}")
        row = page.locator("table.messages tbody tr", has_text="Plan").first
        row.locator("input[name=uid]").check()
        page.locator("#move-target").select_option("Archive")
        page.get_by_role("button", name="Move", exact=True).click()
        audit(page, "list after a move (notice)")
        page.goto(origin + "/settings#2fa")
        page.get_by_role("button", name="Set up two-factor login").click()
        page.locator("#totp-secret").wait_for()
        audit(page, "settings, 2FA set-up")
        page.goto(origin + "/compose")
        page.get_by_role("combobox", name="To").press_sequentially("dan")
        page.get_by_role("listbox", name="Suggested addresses").wait_for()
        audit(page, "compose, suggestions open")
        page.get_by_label("Rich text (bold, italic, links, lists)").check()
        audit(page, "compose, rich text")
        page.set_viewport_size({"width": 320, "height": 640})
        audit(page, "message list at 320 px", f"/mail/{box}")
        audit(page, "message at 320 px", f"/mail/{box}/{html}")
        page.set_viewport_size({"width": 1280, "height": 720})
        page.emulate_media(forced_colors="active")
        audit(page, "message list, forced colours", f"/mail/{box}")

        page = fresh()
        log_in(page, origin, "root@example.org")
        page.wait_for_url(re.compile(r"/mail/\d+$"))
        for path in ("", "/domains", "/domains/example.org", "/domains/example.org/reports"):
            audit(page, "admin" + path, "/admin" + path)
        for path in ("/accounts", "/aliases", "/queue"):
            audit(page, "admin" + path, "/admin" + path)
        browser.close()
    return audit.results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("axe", type=Path, help="axe.min.js of the axe-core npm package")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    with (
        tempfile.TemporaryDirectory() as tmp,
        LiveServer(loopback_config(Path(tmp) / "data", only=["http", "smtp"])) as live,
    ):
        live.add_domain("example.org")
        live.add_account(ALICE, TEST_PASSWORD, display_name="Alice")
        live.add_account("root@example.org", TEST_PASSWORD, is_admin=True)
        carl = live.add_account("carl@example.org", TEST_PASSWORD)
        # An enrolment whose secret this server cannot open: the code page is what matters.
        sealed = f"sealed-{totp.new_secret().hex()}"
        live.call(live.store.enable_totp(carl.id, sealed, ["d"]))
        results = walk(live, args.axe.read_text())
    print(f"{'page':<34} {'rule':<30} {'impact':<9} nodes")
    for page, rules in results.items():
        for rule, (impact, count, _) in sorted(rules.items()) or [("—", ("", 0, []))]:
            print(f"{page:<34} {rule:<30} {impact:<9} {count}")
    total = sum(count for rules in results.values() for _, count, _ in rules.values())
    print(f"{len(results)} pages, {total} violating nodes", file=sys.stderr)
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
