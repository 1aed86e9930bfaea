"""``pillarbox import ics`` and ``pillarbox import vcard`` as an operator runs them, on a real
data directory (each store backend): the objects and contacts stored as the web's imports
store them, the summary and exit codes as the mail imports give them, a re-run changing
nothing, and an imported meeting queueing no invitation. ``pillarbox export --ics`` and
``--vcard``: the round trip into a fresh account, one calendar's file and the refusals, and
an export beside a running ``pillarbox serve``."""

from __future__ import annotations

import dataclasses
import json
import ssl
from pathlib import Path
from typing import TypeVar

import httpx
import pytest

from pillarbox.calendarfile import same_content
from pillarbox.store.interface import Store
from pillarbox.store.types import CalendarObject, Contact
from pillarbox.testing.command import backend_site, run_pillarbox, start_serve
from pillarbox.testing.icalendars import WEEKLY
from pillarbox.testing.mailstore import with_site_store
from pillarbox.testing.vcards import RICH_CARD

T = TypeVar("T")

PASSWORD = "correct horse battery"
USER = "alice@example.org"
OTHER = "bob@example.org"
HEAD = "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//Exporter//EN\r\n"
SERIES = WEEKLY[WEEKLY.index("BEGIN:VTIMEZONE") : WEEKLY.index("END:VCALENDAR")]
MEETING = (
    "BEGIN:VEVENT\r\nUID:meeting-1\r\nDTSTAMP:20250101T000000Z\r\n"
    "DTSTART:20310304T093000Z\r\nDTEND:20310304T103000Z\r\nSUMMARY:Board\r\n"
    f"ORGANIZER:mailto:{USER}\r\nATTENDEE;PARTSTAT=NEEDS-ACTION;RSVP=TRUE:mailto:bob@example.net\r\n"
    "END:VEVENT\r\n"
)
LUNCH = (
    "BEGIN:VEVENT\r\nUID:lunch-1\r\nDTSTAMP:20250101T000000Z\r\n"
    "DTSTART:20310305T120000Z\r\nDTEND:20310305T130000Z\r\nSUMMARY:Lunch\r\nEND:VEVENT\r\n"
)
JOURNAL = "BEGIN:VJOURNAL\r\nUID:j-1\r\nDTSTAMP:20250101T000000Z\r\nEND:VJOURNAL\r\n"
VCF = (
    b"BEGIN:VCARD\r\nVERSION:4.0\r\nUID:urn:uuid:1\r\nFN:John Doe\r\n"
    b"EMAIL:john@example.com\r\nEND:VCARD\r\n"
    b"BEGIN:VCARD\r\nVERSION:4.0\r\nUID:urn:uuid:2\r\nEMAIL:not an address\r\nEND:VCARD\r\n"
)


def _objects(site: Path, calendar: str) -> list[CalendarObject]:
    async def go(store: Store) -> list[CalendarObject]:
        account = await store.get_account(USER)
        return await store.calendar_objects(account.id, calendar)

    return with_site_store(site, go)


def _contacts(site: Path) -> list[Contact]:
    async def go(store: Store) -> list[Contact]:
        return await store.list_contacts((await store.get_account(USER)).id)

    return with_site_store(site, go)


def _sync_token(site: Path) -> int:
    async def go(store: Store) -> int:
        return await store.contacts_sync_token((await store.get_account(USER)).id)

    return with_site_store(site, go)


@pytest.fixture(params=["sqlite", "postgresql"])
def site(request: pytest.FixtureRequest, tmp_path: Path) -> Path:
    return backend_site(request, tmp_path / "site", USER, PASSWORD)


def test_import_ics(site: Path, tmp_path: Path) -> None:
    path = tmp_path / "export.ics"
    path.write_text(HEAD + SERIES + MEETING + JOURNAL + "END:VCALENDAR\r\n", newline="")
    result = run_pillarbox(site, "import", "ics", str(path), "--account", USER, "--json")
    assert result.returncode == 1, result.stderr  # the journal was skipped, and says so
    assert json.loads(result.stdout) == {
        "calendar": "personal",
        "created": False,
        "imported": 2,
        "unchanged": 0,
        "skipped": 1,
        "reasons": ["VJOURNAL j-1: a VJOURNAL is not kept in a calendar"],
    }
    assert "1 component(s) could not be imported" in result.stderr
    stored = {o.name: o for o in _objects(site, "personal")}
    assert sorted(stored) == ["meeting-1.ics", "weekly-1.ics"]
    assert stored["meeting-1.ics"].data == (HEAD + MEETING + "END:VCALENDAR\r\n").encode()
    assert stored["weekly-1.ics"].component == "VEVENT"
    # The meeting names an attendee, and its organizer is the account: nothing is queued.
    assert with_site_store(site, lambda store: store.list_queue()) == []

    path.write_text(HEAD + SERIES + MEETING + "END:VCALENDAR\r\n", newline="")
    again = run_pillarbox(site, "import", "ics", str(path), "--account", USER)
    assert again.returncode == 0, again.stderr
    assert again.stdout == "imported 0, unchanged 2, skipped 0\n"
    assert [(o.name, o.etag) for o in _objects(site, "personal")] == [
        (o.name, o.etag) for o in stored.values()
    ]

    bad = run_pillarbox(site, "import", "ics", str(path), "--account", USER, "--calendar", "a b")
    assert bad.returncode == 1 and "a calendar's name is letters, digits" in bad.stderr
    path.write_bytes(b"BEGIN:VCARD\r\nEND:VCARD\r\n")
    wrong = run_pillarbox(site, "import", "ics", str(path), "--account", USER)
    assert wrong.returncode == 1 and "not an iCalendar (.ics) file" in wrong.stderr
    nobody = run_pillarbox(site, "import", "ics", str(path), "--account", "eve@example.org")
    assert nobody.returncode == 1
    usage = run_pillarbox(site, "import", "ics", str(path))
    assert usage.returncode == 2 and "--account" in usage.stderr


def test_import_ics_into_a_new_calendar(site: Path, tmp_path: Path) -> None:
    """``--calendar NAME`` the account lacks: made as MKCALENDAR makes one, titled as the
    file titles its calendar (X-WR-CALNAME), else NAME; a file that is no calendar makes
    none."""
    path = tmp_path / "work.ics"
    named = HEAD + "X-WR-CALNAME:Work\\, home\r\n" + MEETING + "END:VCALENDAR\r\n"
    path.write_text(named, newline="")
    made = run_pillarbox(site, "import", "ics", str(path), "--account", USER, "--calendar", "w")
    assert made.returncode == 0, made.stderr
    assert made.stdout == "made the calendar w\nimported 1, unchanged 0, skipped 0\n"
    path.write_text(HEAD + SERIES + "END:VCALENDAR\r\n", newline="")
    plain = run_pillarbox(
        site, "import", "ics", str(path), "--account", USER, "--calendar", "w2", "--json"
    )
    assert json.loads(plain.stdout)["created"] is True, plain.stderr
    again = run_pillarbox(
        site, "import", "ics", str(path), "--account", USER, "--calendar", "w2", "--json"
    )
    assert json.loads(again.stdout)["created"] is False
    assert (json.loads(again.stdout)["unchanged"], again.returncode) == (1, 0)
    path.write_bytes(b"BEGIN:VCARD\r\nEND:VCARD\r\n")
    wrong = run_pillarbox(site, "import", "ics", str(path), "--account", USER, "--calendar", "x")
    assert wrong.returncode == 1 and "not an iCalendar (.ics) file" in wrong.stderr

    async def calendars(store: Store) -> list[tuple[str, str]]:
        account = await store.get_account(USER)
        return [(c.name, c.display_name) for c in await store.list_calendars(account.id)]

    assert with_site_store(site, calendars) == [
        ("personal", "Calendar"), ("w", "Work, home"), ("w2", "w2"),
    ]  # fmt: skip
    assert [o.name for o in _objects(site, "w")] == ["meeting-1.ics"]


def test_import_vcard(site: Path, tmp_path: Path) -> None:
    path = tmp_path / "contacts.vcf"
    path.write_bytes(VCF)
    result = run_pillarbox(site, "import", "vcard", str(path), "--account", USER, "--json")
    assert result.returncode == 1, result.stderr
    assert json.loads(result.stdout) == {
        "imported": 1,
        "unchanged": 0,
        "skipped": 1,
        "reasons": ["card not an address: not a valid address: not an address"],
    }
    (john,) = _contacts(site)
    assert (john.uid, john.display_name, john.emails) == (
        "urn:uuid:1",
        "John Doe",
        ("john@example.com",),
    )
    path.write_bytes(VCF.split(b"END:VCARD\r\n")[0] + b"END:VCARD\r\n")
    again = run_pillarbox(site, "import", "vcard", str(path), "--account", USER)
    # John's card is stored as it is: left alone (no new ETag, no sync token raised).
    assert again.returncode == 0 and again.stdout == "imported 0, unchanged 1, skipped 0\n"
    assert _contacts(site) == [john] and _sync_token(site) == john.modseq
    path.write_bytes(path.read_bytes().replace(b"FN:John Doe", b"FN:John Roe"))
    third = run_pillarbox(site, "import", "vcard", str(path), "--account", USER, "--json")
    assert third.returncode == 0, third.stderr
    assert json.loads(third.stdout) == {"imported": 1, "unchanged": 0, "skipped": 0, "reasons": []}
    (roe,) = _contacts(site)
    assert (roe.id, roe.uid, roe.display_name) == (john.id, john.uid, "John Roe")  # by UID
    assert roe.etag != john.etag and _sync_token(site) > john.modseq


def test_import_vcard_without_uids_twice(site: Path, tmp_path: Path) -> None:
    """Outlook's and Android's exports carry no UID: each card is given one derived from
    its text, so the same file imported again finds them: stored as they are, left alone."""
    path = tmp_path / "outlook.vcf"
    path.write_bytes(
        b"BEGIN:VCARD\r\nVERSION:2.1\r\nN:Doe;Jane\r\nEMAIL;INTERNET:jane@example.com\r\n"
        b"END:VCARD\r\nBEGIN:VCARD\nVERSION:3.0\nFN:Max\nTEL:+1 555\nEND:VCARD\n"
    )
    first = run_pillarbox(site, "import", "vcard", str(path), "--account", USER)
    assert first.returncode == 0, first.stderr
    assert first.stdout == "imported 2, unchanged 0, skipped 0\n"
    before = _contacts(site)
    assert [c.display_name for c in before] == ["Jane Doe", "Max"]
    token = _sync_token(site)
    again = run_pillarbox(site, "import", "vcard", str(path), "--account", USER)
    assert again.returncode == 0, again.stderr
    assert again.stdout == "imported 0, unchanged 2, skipped 0\n"
    assert _contacts(site) == before and _sync_token(site) == token


def _add_user(site: Path, address: str) -> None:
    added = run_pillarbox(site, "user", "add", address, "--password-stdin", stdin=PASSWORD + "\n")
    assert added.returncode == 0, added.stderr


def _tree(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir())}


def test_export_round_trip_into_a_fresh_account(site: Path, tmp_path: Path) -> None:
    """What ``import ics`` and ``import vcard`` stored, ``export --ics`` and ``--vcard`` write
    (one NAME.ics per calendar, the contacts in one file, each readable by its owner only);
    those files imported into a fresh account give it the same calendars, objects and
    contacts: its own export is byte for byte the first one."""
    path = tmp_path / "in.ics"
    path.write_text(HEAD + SERIES + MEETING + "END:VCALENDAR\r\n", newline="")
    assert run_pillarbox(site, "import", "ics", str(path), "--account", USER).returncode == 0
    work = (
        HEAD + "X-WR-CALNAME:Work\r\n" + MEETING.replace("meeting-1", "w-1") + "END:VCALENDAR\r\n"
    )
    path.write_text(work, newline="")
    made = run_pillarbox(site, "import", "ics", str(path), "--account", USER, "--calendar", "work")
    assert made.returncode == 0, made.stderr
    cards = tmp_path / "in.vcf"
    cards.write_bytes(
        VCF.split(b"BEGIN:VCARD\r\nVERSION:4.0\r\nUID:urn:uuid:2")[0] + RICH_CARD.encode()
    )
    assert run_pillarbox(site, "import", "vcard", str(cards), "--account", USER).returncode == 0

    out = tmp_path / "alice"
    first = run_pillarbox(site, "export", "--account", USER, "--ics", str(out / "cal"), "--json")
    assert first.returncode == 0, first.stderr
    assert json.loads(first.stdout) == {
        "objects": 3,
        "calendars": 2,
        "path": str(out / "cal"),
        "files": [
            {"path": str(out / "cal" / "personal.ics"), "objects": 2},
            {"path": str(out / "cal" / "work.ics"), "objects": 1},
        ],
        "deleted": [],
    }
    assert f"personal -> {out / 'cal' / 'personal.ics'}" in first.stderr
    vcf = out / "contacts.vcf"
    contacts = run_pillarbox(site, "export", "--account", USER, "--vcard", str(vcf))
    assert (contacts.returncode, contacts.stdout) == (0, f"exported 2 contact(s) to {vcf}\n")
    exported = _tree(out / "cal")
    assert {p.stat().st_mode & 0o777 for p in (*(out / "cal").iterdir(), vcf)} == {0o600}
    assert exported["work.ics"].startswith(
        b"BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//Pillarbox//"
    )
    assert b"X-WR-CALNAME:Work\r\n" in exported["work.ics"]

    _add_user(site, OTHER)
    for name in ("personal", "work"):
        file = str(out / "cal" / f"{name}.ics")
        back = run_pillarbox(site, "import", "ics", file, "--account", OTHER, "--calendar", name)
        assert back.returncode == 0, back.stderr
    back = run_pillarbox(site, "import", "vcard", str(vcf), "--account", OTHER)
    assert (back.returncode, back.stdout) == (0, "imported 2, unchanged 0, skipped 0\n")
    again = tmp_path / "bob"
    for option, target in (("--ics", again / "cal"), ("--vcard", again / "contacts.vcf")):
        done = run_pillarbox(site, "export", "--account", OTHER, option, str(target))
        assert done.returncode == 0, done.stderr
    assert _tree(again / "cal") == exported
    assert (again / "contacts.vcf").read_bytes() == vcf.read_bytes()

    def held(address: str) -> list[tuple[str, str, bytes]]:
        async def go(store: Store) -> list[tuple[str, str, bytes]]:
            account = await store.get_account(address)
            found = []
            for calendar in await store.list_calendars(account.id):
                for obj in await store.calendar_objects(account.id, calendar.name):
                    found.append((calendar.display_name, obj.name, obj.data))
            return found

        return with_site_store(site, go)

    mine, theirs = held(USER), held(OTHER)
    assert [(title, name) for title, name, _ in theirs] == [
        ("Calendar", "meeting-1.ics"), ("Calendar", "weekly-1.ics"), ("Work", "w-1.ics"),
    ]  # fmt: skip
    assert all(same_content(a, b) for (_, _, a), (_, _, b) in zip(mine, theirs, strict=True))


def test_export_one_calendar_and_refusals(site: Path, tmp_path: Path) -> None:
    """``--ics FILE --calendar NAME``: one file; never over a file there; one target
    exactly; --calendar only with --ics; a calendar the account lacks, no file."""
    path = tmp_path / "in.ics"
    path.write_text(HEAD + MEETING + "END:VCALENDAR\r\n", newline="")
    assert run_pillarbox(site, "import", "ics", str(path), "--account", USER).returncode == 0
    one = tmp_path / "personal.ics"
    done = run_pillarbox(
        site, "export", "--account", USER, "--ics", str(one), "--calendar", "personal"
    )
    assert (done.returncode, done.stdout) == (
        0, f"exported 1 object(s) from 1 calendar(s) to {one}\n",
    )  # fmt: skip
    written = one.read_bytes()
    assert written.endswith(MEETING.encode() + b"END:VCALENDAR\r\n")
    twice = run_pillarbox(
        site, "export", "--account", USER, "--ics", str(one), "--calendar", "personal"
    )
    assert twice.returncode == 1 and f"{one} exists; export into a new file" in twice.stderr
    assert one.read_bytes() == written and sorted(p.name for p in tmp_path.iterdir()) == [
        "in.ics", "personal.ics", "site",
    ]  # fmt: skip
    gone = tmp_path / "gone.ics"
    missing = run_pillarbox(
        site, "export", "--account", USER, "--ics", str(gone), "--calendar", "nope"
    )
    assert missing.returncode == 1 and "no calendar named 'nope'" in missing.stderr
    assert not gone.exists()
    both = run_pillarbox(
        site, "export", "--account", USER, "--ics", str(gone), "--vcard", str(tmp_path / "c")
    )
    assert both.returncode == 2 and "give exactly one of --mbox FILE" in both.stderr
    stray = run_pillarbox(
        site, "export", "--account", USER, "--vcard", str(gone), "--calendar", "personal"
    )
    assert stray.returncode == 2 and "--calendar goes with --ics" in stray.stderr
    # An account that never had a calendar: none to export, and the export makes none (the
    # webmail's listing would make the default one).
    _add_user(site, "ann@example.org")
    for _ in range(2):
        none = run_pillarbox(
            site,
            "export",
            "--account",
            "ann@example.org",
            "--ics",
            str(gone),
            "--calendar",
            "personal",
        )
        assert none.returncode == 1 and "no calendar named 'personal'" in none.stderr
    assert not gone.exists()
    nobody = run_pillarbox(site, "export", "--account", "eve@example.org", "--vcard", str(gone))
    assert nobody.returncode == 1 and not gone.exists()


def test_export_while_the_server_runs(site: Path, tmp_path: Path) -> None:
    """``pillarbox serve`` runs on the site's store; a CalDAV client writes an event through
    it; ``export --ics`` beside it has the event (one more reader of the store the server
    uses, as the import is one more writer)."""
    from pillarbox import config as cfg
    from pillarbox.net.tls import tls_paths

    config = cfg.load(site / "pillarbox.toml")
    listeners = cfg.Listeners(
        **{name: cfg.Listener(port=0, enabled=name == "https") for name in cfg.LISTENER_DOCS}
    )
    (site / "pillarbox.toml").write_text(
        cfg.render_toml(dataclasses.replace(config, listeners=listeners)), "utf-8"
    )
    process, ports = start_serve(site / "pillarbox.toml")
    try:
        trust = ssl.create_default_context(cafile=tls_paths(cfg.load(site / "pillarbox.toml"))[0])
        with httpx.Client(
            base_url=f"https://127.0.0.1:{ports['https']}", auth=(USER, PASSWORD), verify=trust
        ) as dav:
            put = dav.put(
                f"/dav/calendars/{USER}/personal/lunch-1.ics",
                content=HEAD + LUNCH + "END:VCALENDAR\r\n",
                headers={"content-type": "text/calendar; charset=utf-8"},
            )
            assert put.status_code == 201, put.text
        out = tmp_path / "live.ics"
        done = run_pillarbox(
            site, "export", "--account", USER, "--ics", str(out), "--calendar", "personal"
        )
        assert done.returncode == 0, done.stderr
        assert out.read_bytes().endswith(LUNCH.encode() + b"END:VCALENDAR\r\n")
        assert process.poll() is None  # still serving
    finally:
        process.terminate()
        _, stderr = process.communicate(timeout=30)
    assert process.returncode == 0, stderr
