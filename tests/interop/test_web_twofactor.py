"""Two-factor web login (TOTP, RFC 6238) over real HTTP, IMAP and SMTP against the live server:
enrolment, the two-step login (wrong, replayed and recovery codes), the pending state granting
nothing, rate limits, turning it off, bearer tokens, and the mail protocols taking app
passwords only."""

from __future__ import annotations

import html
import imaplib
import re
import smtplib
import time
from pathlib import Path

import httpx
import pytest

from pillarbox.auth import totp
from pillarbox.store.interface import Store
from pillarbox.testing.live import TEST_PASSWORD, LiveServer, loopback_config
from pillarbox.testing.scrape import moved, scrape
from pillarbox.testing.webclient import WebSession
from pillarbox.web.session import SECRET_FILE
from pillarbox.web.totpseal import TotpSealer

pytestmark = pytest.mark.listeners("http", "imap", "submission", "metrics")

ALICE = "alice@example.org"


def enrol(web: WebSession) -> tuple[bytes, list[str]]:
    """Turn two-factor login on from the settings page; the key and the recovery codes."""
    page = web.post("/settings/2fa/setup")
    assert page.status_code == 200
    shown = re.search(r'id="totp-secret">([^<]+)<', page.text)
    sealed = re.search(r'name="sealed" value="([^"]+)"', page.text)
    uri = re.search(r'id="totp-uri">([^<]+)<', page.text)
    assert shown and sealed and uri
    assert 'src="data:image/svg+xml' in page.text  # the QR code
    key = totp.decode_secret(shown.group(1))
    assert key is not None and len(key) == 20
    assert html.unescape(uri.group(1)).startswith("otpauth://totp/Pillarbox%20")
    assert f"secret={shown.group(1).replace(' ', '')}" in html.unescape(uri.group(1))
    wrong = f"{(int(totp.totp(key, time.time())) + 1) % 10**6:06d}"
    form = {"sealed": sealed.group(1), "password": TEST_PASSWORD, "code": wrong}
    refused = web.post("/settings/2fa/confirm", form)
    assert refused.status_code == 400 and "not the current one" in refused.text
    assert shown.group(1) in refused.text  # the same key, to try again
    form["code"] = totp.totp(key, time.time())
    no_password = web.post("/settings/2fa/confirm", {**form, "password": "not it"})
    assert no_password.status_code == 400 and "password is wrong" in no_password.text
    done = web.post("/settings/2fa/confirm", form)
    assert done.status_code == 200, done.text[:300]
    codes = re.findall(r"<li><code>([a-z0-9]{5}-[a-z0-9]{5})</code></li>", done.text)
    assert len(codes) == 10
    # Replacing the factor goes through turning it off, never around it.
    again = web.post("/settings/2fa/setup")
    assert again.status_code == 400 and "turn it off first" in again.text
    assert web.post("/settings/2fa/confirm", form).status_code == 400
    return key, codes


def next_code(key: bytes) -> str:
    """The code of the next time step: later than the one enrolment used up, and inside the
    ±1 window whenever the server checks it."""
    return totp.totp(key, time.time() + totp.STEP_SECONDS)


def password_step(live: LiveServer, password: str = TEST_PASSWORD) -> WebSession:
    web = WebSession(live)
    response = web.login(ALICE, password)
    assert response.status_code == 303
    assert response.headers["location"] == "/login/code?next=%2Fmail"
    return web


def code_step(web: WebSession, code: str) -> httpx.Response:
    token = web.csrf("/login/code?next=%2Fmail")
    return web.client.post("/login/code", data={"csrf": token, "code": code, "next": "/mail"})


#: Where a refused code sends the browser (Post/Redirect/Get): the code page, saying why.
WRONG_CODE_PAGE = "/login/code?next=%2Fmail&error=wrong"


def refused_code(web: WebSession, code: str) -> httpx.Response:
    """The code step refusing ``code`` with a redirect to the code page; that page."""
    refused = code_step(web, code)
    assert refused.status_code == 303 and refused.headers["location"] == WRONG_CODE_PAGE
    page = web.get(WRONG_CODE_PAGE)
    assert page.status_code == 200 and "Wrong or already used code" in page.text
    return page


def test_two_step_login_codes_replay_and_recovery(live: LiveServer, alice: WebSession) -> None:
    key, codes = enrol(alice)
    assert "Two-factor login" in alice.get("/settings").text
    assert "10 recovery codes left" in alice.get("/settings").text

    # The password step alone grants nothing: no page, no form, no API call.
    web = password_step(live)
    assert web.get("/mail").status_code == 303
    assert web.get("/settings").headers["location"].startswith("/login")
    assert web.api("GET", "/me").status_code == 401
    assert web.client.post("/api/v1/mailboxes", json={"name": "X"}).status_code == 401
    profile = web.client.post(
        "/settings/profile", data={"csrf": web.csrf("/login/code"), "display_name": "Eve"}
    )
    assert profile.status_code == 303 and profile.headers["location"].startswith("/login")
    refused_code(web, f"{(int(next_code(key)) + 1) % 10**6:06d}")
    code = next_code(key)
    ok = code_step(web, code)
    assert ok.status_code == 303 and ok.headers["location"] == "/mail"
    assert web.api("GET", "/me").json()["address"] == ALICE

    # The same code again, from another browser that knows the password: refused.
    replay = password_step(live)
    refused_code(replay, code)
    assert replay.get("/settings").status_code == 303

    # A recovery code works once, however it is typed.
    recovered = code_step(replay, codes[0].upper().replace("-", " "))
    assert recovered.status_code == 303
    assert recovered.headers["location"] == "/mail"
    again = password_step(live)
    refused_code(again, codes[0])
    assert "9 recovery codes left" in alice.get("/settings").text


def test_pending_state_is_bound_to_the_browser_and_needs_the_password(
    live: LiveServer, alice: WebSession
) -> None:
    key, _ = enrol(alice)
    stranger = WebSession(live)
    assert stranger.get("/login/code").headers["location"].startswith("/login?")
    assert code_step(stranger, next_code(key)).headers["location"].startswith("/login?")
    assert stranger.get("/settings").status_code == 303
    wrong_password = WebSession(live)
    assert wrong_password.login(ALICE, "not it").status_code == 401


_CARRIED_FIELD = re.compile(r'<input type="hidden" name="carried\.([^"]+)" value="([^"]*)">')


def carried_in(page: str) -> dict[str, str]:
    """The fields of a message being written that a login page's forms carry."""
    return {name: html.unescape(value) for name, value in _CARRIED_FIELD.findall(page)}


def test_a_carried_message_is_held_for_the_code_page_through_reloads_and_start_again(
    live: LiveServer, alice: WebSession
) -> None:
    """Post/Redirect/Get: a password step carrying a message being written answers with a
    redirect, and the code page (a GET: a reload never posts the password again) puts the
    message back in its forms as often as it is read, for this browser only. "Start again"
    takes it back to the login page; another browser's password step for the account replaces
    what the first held, whose page then says so; the code step keeps the message in Drafts."""
    key, _ = enrol(alice)
    text = 'Dear Bob,\r\n\r\nheld <between> the "steps" & kept.\r\n'
    message = {"to": "bob@example.org", "subject": "held", "body": text}
    fields = {f"carried.{name}": value for name, value in message.items()}
    web = WebSession(live)
    login = {"username": ALICE, "password": TEST_PASSWORD, "next": "/compose", **fields}
    step = web.client.post("/login", data={**login, "csrf": web.csrf("/login")})
    assert step.status_code == 303
    code_page = step.headers["location"]
    assert code_page == "/login/code?next=%2Fcompose&held=1"
    for _ in range(2):  # the page, then its reload
        page = web.get(code_page)
        assert page.status_code == 200 and "the message you were writing is kept" in page.text
        assert carried_in(page.text) == message
    stranger = WebSession(live)
    assert stranger.get(code_page).headers["location"].startswith("/login?")

    # A wrong code: the code page again, saying so, the message still in its forms.
    token = web.csrf(code_page)
    wrong = {"csrf": token, "next": "/compose", "code": "000000x", **fields}
    refused = web.client.post("/login/code", data=wrong)
    assert refused.status_code == 303
    assert refused.headers["location"] == f"{code_page}&error=wrong"
    page = web.get(refused.headers["location"])
    assert "Wrong or already used code" in page.text
    assert carried_in(page.text) == message

    # "Start again" posts the code page's form to the password step: the message stays.
    token = web.csrf(code_page)
    again = web.client.post("/login/again", data={"csrf": token, "next": "/compose", **fields})
    assert again.status_code == 200 and "<h1>Log in</h1>" in again.text
    assert "the message you were writing is kept" in again.text
    assert carried_in(again.text) == message
    plain = web.client.post("/login/again", data={"csrf": token, "next": "/compose"})
    assert plain.status_code == 303 and plain.headers["location"] == "/login?next=%2Fcompose"

    # Another browser's password step for the account: held in place of the first one's.
    other = WebSession(live)
    theirs = {**message, "subject": "theirs"}
    other_fields = {f"carried.{name}": value for name, value in theirs.items()}
    other_login = {**login, **other_fields, "csrf": other.csrf("/login")}
    assert other.client.post("/login", data=other_login).headers["location"] == code_page
    replaced = web.get(code_page)
    assert "could not be kept through this step" in replaced.text
    assert carried_in(replaced.text) == {}
    page = other.get(code_page)
    assert carried_in(page.text) == theirs
    done = other.client.post(
        "/login/code",
        data={"csrf": other.csrf(code_page), "next": "/compose", "code": next_code(key)}
        | other_fields,
    )
    assert done.status_code == 303 and done.headers["location"].startswith("/compose?draft=")
    draft = other.get(done.headers["location"]).text
    assert "held &lt;between&gt; the &#34;steps&#34; &amp; kept." in draft
    assert 'value="theirs"' in draft


def carrying_password_step(
    web: WebSession, message: dict[str, str], target: str = "/compose"
) -> str:
    """The password step of a login whose form carries ``message``; the code page it sends
    the browser to."""
    fields = {f"carried.{name}": value for name, value in message.items()}
    login = {"username": ALICE, "password": TEST_PASSWORD, "next": target, **fields}
    step = web.client.post("/login", data={**login, "csrf": web.csrf("/login")})
    assert step.status_code == 303
    code_page: str = step.headers["location"]
    assert code_page == f"/login/code?next={target.replace('/', '%2F')}&held=1"
    return code_page


def test_a_held_message_outlives_a_restart_between_the_steps(tmp_path: Path) -> None:
    """The hold is in the store, not the process: the password step on one run of the server,
    a restart on the same data directory, then the code page (a GET) still finds the message
    being written, and the code step keeps it in Drafts. ``$PILLARBOX_TEST_STORE`` runs it on
    PostgreSQL (the same config: the same database)."""
    config = loopback_config(tmp_path / "data", only=("http",))
    text = "Dear Bob,\r\n\r\nwritten before the restart.\r\n"
    message = {"to": "bob@example.org", "subject": "restarted", "body": text}
    with LiveServer(config) as live:
        live.add_domain("example.org")
        live.add_account(ALICE, TEST_PASSWORD)
        owner = WebSession(live)
        assert owner.login(ALICE).status_code == 303
        key, _ = enrol(owner)
        before = WebSession(live)
        code_page = carrying_password_step(before, message)
        cookies = before.client.cookies
    with LiveServer(config) as live:
        after = WebSession(live)
        after.client.cookies = cookies
        page = after.get(code_page)
        assert page.status_code == 200 and "the message you were writing is kept" in page.text
        assert carried_in(page.text) == message
        form = {"csrf": after.csrf(code_page), "next": "/compose", "code": next_code(key)}
        done = after.client.post("/login/code", data=form | carried_form(page.text))
        assert done.status_code == 303 and done.headers["location"].startswith("/compose?draft=")
        draft = after.get(done.headers["location"]).text
        assert "written before the restart." in draft and 'value="restarted"' in draft


def carried_form(page: str) -> dict[str, str]:
    """The carried fields of a code page's form, as the browser posts them back."""
    return {f"carried.{name}": value for name, value in carried_in(page).items()}


def test_a_wrong_code_after_the_hold_was_replaced_keeps_the_forms_message(
    live: LiveServer, alice: WebSession
) -> None:
    """Browser A shows the code page with its message; browser B's password step for the same
    account then holds B's message in place of A's (one hold per account); A posts a wrong
    code. The message is in A's form, though no longer in the store: the answer is the code
    page itself with it (not a redirect to a page that could only say it is gone), and B's
    hold stays B's."""
    key, _ = enrol(alice)
    mine = {"to": "bob@example.org", "subject": "mine", "body": "A's text.\r\n"}
    theirs = {"to": "carol@example.org", "subject": "theirs", "body": "B's text.\r\n"}
    first, second = WebSession(live), WebSession(live)
    code_page = carrying_password_step(first, mine)
    shown = first.get(code_page).text
    assert carried_in(shown) == mine
    assert carrying_password_step(second, theirs) == code_page

    wrong = {"csrf": first.csrf(code_page), "next": "/compose", "code": "000000x"}
    refused = first.client.post("/login/code", data=wrong | carried_form(shown))
    assert refused.status_code == 401
    assert "Wrong or already used code" in refused.text
    assert carried_in(refused.text) == mine
    assert "could not be kept through this step" not in refused.text
    assert carried_in(second.get(code_page).text) == theirs

    form = {"csrf": first.csrf(code_page), "next": "/compose", "code": next_code(key)}
    done = first.client.post("/login/code", data=form | carried_form(refused.text))
    assert done.status_code == 303 and done.headers["location"].startswith("/compose?draft=")
    assert "A&#39;s text." in first.get(done.headers["location"]).text
    assert carried_in(second.get(code_page).text) == theirs  # B's to finish


def test_wrong_codes_count_into_the_login_limits_and_the_metrics(
    live: LiveServer, alice: WebSession
) -> None:
    """Each wrong code is one failure, answered with a redirect to the code page saying so:
    reloading that page sends no code, so it counts none (Post/Redirect/Get). Past the
    limits, the answer is a 429 with Retry-After, even to the right code."""
    key, codes = enrol(alice)
    before = scrape(live)
    assert code_step(password_step(live), codes[0]).status_code == 303
    web = password_step(live)
    bad = f"{(int(next_code(key)) + 1) % 10**6:06d}"
    refused_code(web, bad)
    for _ in range(5):  # the page saying so, reloaded
        assert "Wrong or already used code" in web.get(WRONG_CODE_PAGE).text
    middle = scrape(live)
    outcomes = "pillarbox_web_second_factor_logins_total"
    assert moved(before, middle, outcomes, outcome="wrong_code") == 1
    statuses = [303]
    for _ in range(7):
        statuses.append(code_step(web, bad).status_code)
    assert 429 in statuses and set(statuses) == {303, 429}
    limited = code_step(web, next_code(key))  # even the right code waits now
    assert limited.status_code == 429 and int(limited.headers["retry-after"]) >= 1
    assert "Too many failed attempts" in limited.text
    after = scrape(live)
    assert moved(before, after, outcomes, outcome="passed") == 1
    assert moved(before, after, outcomes, outcome="wrong_code") == statuses.count(303)
    assert moved(before, after, outcomes, outcome="rate_limited") == statuses.count(429) + 1


def test_new_recovery_codes_replace_the_old_ones(live: LiveServer, alice: WebSession) -> None:
    key, codes = enrol(alice)
    refused = alice.post("/settings/2fa/recovery", {"password": TEST_PASSWORD, "code": "x"})
    assert refused.status_code == 400 and "code is wrong" in refused.text
    renewed = alice.post(
        "/settings/2fa/recovery", {"password": TEST_PASSWORD, "code": next_code(key)}
    )
    assert renewed.status_code == 200
    fresh = re.findall(r"<li><code>([a-z0-9]{5}-[a-z0-9]{5})</code></li>", renewed.text)
    assert len(fresh) == 10 and not set(fresh) & set(codes)
    assert "10 recovery codes left" in alice.get("/settings").text
    old = alice.post("/settings/2fa/disable", {"password": TEST_PASSWORD, "code": codes[0]})
    assert old.status_code == 400  # the old sheet stopped working
    # Wrong codes count into the login limits here too.
    for _ in range(4):
        last = alice.post("/settings/2fa/disable", {"password": TEST_PASSWORD, "code": "x"})
    assert last.status_code == 429 and "too many failed attempts" in last.text
    assert live.call(live.store.get_totp(alice_id(live))) is not None


def test_turning_off_needs_password_and_code(live: LiveServer, alice: WebSession) -> None:
    _, codes = enrol(alice)
    refused = alice.post("/settings/2fa/disable", {"password": "wrong", "code": codes[0]})
    assert refused.status_code == 400 and "password is wrong" in refused.text
    refused = alice.post("/settings/2fa/disable", {"password": TEST_PASSWORD, "code": "123"})
    assert refused.status_code == 400 and "code is wrong" in refused.text
    done = alice.post("/settings/2fa/disable", {"password": TEST_PASSWORD, "code": codes[0]})
    assert done.status_code == 303
    assert WebSession(live).login(ALICE).headers["location"] == "/mail"  # one step again
    assert live.call(live.store.get_totp(alice_id(live))) is None


def alice_id(live: LiveServer) -> int:
    account = live.call(live.store.get_account(ALICE))
    assert account is not None
    return account.id


def test_bearer_tokens_and_app_passwords_work_the_mail_protocols_do_not_take_the_password(
    live: LiveServer, alice: WebSession
) -> None:
    page = alice.post("/settings/api-token", {"label": "script"})
    token = re.search(r'id="new-secret">([^<]+)<', page.text)
    page = alice.post("/settings/app-password", {"label": "phone"})
    app_password = re.search(r'id="new-secret">([^<]+)<', page.text)
    assert token and app_password
    imap_port, smtp_port = live.port("imap"), live.port("submission")

    def imap_login(password: str) -> bool:
        client = imaplib.IMAP4("127.0.0.1", imap_port)
        try:
            client.login(ALICE, password)
            return True
        except imaplib.IMAP4.error:
            return False
        finally:
            client.shutdown()

    def smtp_login(password: str) -> bool:
        with smtplib.SMTP("127.0.0.1", smtp_port) as client:
            try:
                client.login(ALICE, password)
                return True
            except smtplib.SMTPAuthenticationError:
                return False

    assert imap_login(TEST_PASSWORD) and smtp_login(TEST_PASSWORD)
    enrol(alice)
    assert "app passwords only" in alice.get("/settings").text
    assert imap_login(app_password.group(1))
    assert smtp_login(app_password.group(1))
    # Last: these failures count into the address's limits (smtplib tries PLAIN, then LOGIN).
    assert not imap_login(TEST_PASSWORD)
    assert not smtp_login(TEST_PASSWORD)
    bearer = {"authorization": f"Bearer {token.group(1)}"}
    me = httpx.get(f"{alice.base}/api/v1/me", headers=bearer)
    assert me.status_code == 200 and me.json()["address"] == ALICE


def test_admin_accounts_page_shows_who_has_two_factor_login(
    live: LiveServer, alice: WebSession
) -> None:
    live.add_account("root@example.org", TEST_PASSWORD, is_admin=True)
    admin = WebSession(live)
    assert admin.login("root@example.org").status_code == 303
    page = admin.get("/admin/accounts").text
    assert page.count('<td class="two-factor">on</td>') == 0
    enrol(alice)
    page = admin.get("/admin/accounts").text
    assert page.count('<td class="two-factor">on</td>') == 1
    assert page.count('<td class="two-factor">off</td>') == 2


def test_admin_removes_a_second_factor_from_the_accounts_page(
    live: LiveServer, alice: WebSession
) -> None:
    """Account recovery from the web admin (the owner lost the device): the button on the
    accounts page, as a browser submits it; CSRF-protected and for admins only."""
    live.add_account("root@example.org", TEST_PASSWORD, is_admin=True)
    admin = WebSession(live)
    assert admin.login("root@example.org").status_code == 303
    assert "/admin/accounts/2fa-remove" not in admin.get("/admin/accounts").text
    enrol(alice)
    forms = re.findall(
        r'<form method="post" action="/admin/accounts/2fa-remove"[^>]*>(.*?)</form>',
        admin.get("/admin/accounts").text,
    )
    assert len(forms) == 1  # only the enrolled account has the button
    fields = dict(re.findall(r'<input type="hidden" name="(\w+)" value="([^"]*)">', forms[0]))
    assert fields["address"] == ALICE and fields["csrf"]

    forged = admin.client.post("/admin/accounts/2fa-remove", data={"address": ALICE})
    assert forged.status_code == 303 and forged.headers["location"].startswith("/login?")
    not_admin = alice.post("/admin/accounts/2fa-remove", {"address": ALICE})
    assert not_admin.status_code == 403
    assert live.call(live.store.get_totp(alice_id(live))) is not None

    removed = admin.client.post("/admin/accounts/2fa-remove", data={**fields, "confirmed": "1"})
    assert removed.status_code == 303 and removed.headers["location"] == "/admin/accounts"
    assert live.call(live.store.get_totp(alice_id(live))) is None
    page = admin.get("/admin/accounts").text
    assert '<td class="two-factor">on</td>' not in page
    assert "/admin/accounts/2fa-remove" not in page
    assert WebSession(live).login(ALICE).headers["location"] == "/mail"  # one step again
    unknown = admin.post(
        "/admin/accounts/2fa-remove", {"address": "nobody@example.org", "confirmed": "1"}
    )
    assert unknown.status_code == 400 and "nobody@example.org" in unknown.text


def test_replacing_the_web_secret_ends_sessions_and_keeps_two_factor_login(
    tmp_path: Path,
) -> None:
    """The operator replaces data_dir/web-secret to end every session: the sessions end, the
    enrolments (sealed under data_dir/totp-key) keep working."""
    config = loopback_config(tmp_path / "data", only=("http",))
    with LiveServer(config) as live:
        live.add_domain("example.org")
        live.add_account(ALICE, TEST_PASSWORD)
        before = WebSession(live)
        assert before.login(ALICE).status_code == 303
        key, _ = enrol(before)
        cookies = before.client.cookies
    (tmp_path / "data" / SECRET_FILE).unlink()
    with LiveServer(config) as live:
        stale = WebSession(live)
        stale.client.cookies = cookies
        assert stale.get("/settings").headers["location"].startswith("/login")
        done = code_step(password_step(live), next_code(key))
        assert done.status_code == 303 and done.headers["location"] == "/mail"


def test_a_secret_that_does_not_open_is_said_so_and_recovery_still_works(
    live: LiveServer, alice: WebSession
) -> None:
    """An enrolment sealed under another key (a node without the shared totp-key, or the file
    lost): the code step says what is wrong and still takes a recovery code; the admin sees
    it as unreadable; the metrics count it."""
    key, codes = enrol(alice)
    account_id = alice_id(live)
    elsewhere = TotpSealer(b"another node's key, not ours!!!!").seal(account_id, key)

    async def sealed_elsewhere(store: Store) -> None:
        await store.disable_totp(account_id)
        await store.enable_totp(account_id, elsewhere, [totp.recovery_digest(c) for c in codes])

    live.with_store(sealed_elsewhere)
    before = scrape(live)
    web = password_step(live)
    refused = code_step(web, next_code(key))
    assert refused.status_code == 303
    assert refused.headers["location"] == "/login/code?next=%2Fmail&error=unreadable"
    page = web.get(refused.headers["location"]).text
    assert "cannot read your authenticator" in page and "recovery code" in page
    after = scrape(live)
    outcomes = "pillarbox_web_second_factor_logins_total"
    assert moved(before, after, outcomes, outcome="unreadable_secret") == 1
    assert moved(before, after, outcomes, outcome="wrong_code") == 0
    assert code_step(web, codes[1]).headers["location"] == "/mail"

    live.add_account("root@example.org", TEST_PASSWORD, is_admin=True)
    admin = WebSession(live)
    assert admin.login("root@example.org").status_code == 303
    page = admin.get("/admin/accounts").text
    assert page.count("on, unreadable</strong></td>") == 1
    assert "/admin/accounts/2fa-remove" in page
