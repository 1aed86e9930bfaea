"""``pillarbox spam train`` and ``pillarbox spam evaluate`` run as an operator runs them, on
message files the tests write: two kinds of mail with words of their own, so what the filter
learns from one directory decides how it judges the other. ``allow``, ``block``, ``unlist``
and ``lists`` run on the same sites, several patterns a run (each run starts a process)."""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path

import pytest

from pillarbox.testing.command import backend_site, init_site, run_pillarbox

PASSWORD = "correct horse battery"
ALICE = "alice@example.org"

HAM_WORDS = (  # noqa: SIM905
    "meeting agenda budget review quarterly project deadline draft minutes schedule team "
    "sprint release notes design document feedback colleague lunch thursday proposal"
).split()
SPAM_WORDS = (  # noqa: SIM905
    "viagra cheap pills discount offer winner prize casino mortgage refinance guaranteed "
    "millions unclaimed lottery bonus pharmacy rolex replica bargain exclusive deal"
).split()


def message(index: int, words: list[str], sender: str, rng: random.Random) -> bytes:
    """A plain message as a mail client writes one: every field a real one has, the body
    forty words drawn from ``words``."""
    date = datetime(2026, 11, 2, 9, 0, tzinfo=UTC) + timedelta(minutes=17 * index)
    body = " ".join(rng.choice(words) for _ in range(40))
    local, _, domain = sender.partition("@")
    return (
        f"From: {local.title()} <{sender}>\r\n"
        f"To: Alice <{ALICE}>\r\n"
        f"Subject: {' '.join(rng.choice(words) for _ in range(3))}\r\n"
        f"Date: {format_datetime(date)}\r\n"
        f"Message-ID: <{index}.{rng.getrandbits(32):08x}@{domain}>\r\n"
        "MIME-Version: 1.0\r\n"
        "Content-Type: text/plain; charset=utf-8\r\n"
        "\r\n"
        f"{body}\r\n"
    ).encode()


def corpus(directory: Path, words: list[str], senders: list[str], count: int, seed: int) -> Path:
    """``count`` messages of ``words`` from ``senders`` in turn, one ``.eml`` file each."""
    rng = random.Random(seed)
    directory.mkdir(parents=True)
    for i in range(count):
        raw = message(seed * 1000 + i, words, senders[i % len(senders)], rng)
        (directory / f"{directory.name}-{i:03}.eml").write_bytes(raw)
    return directory


HAM_SENDERS = ["bob@colleagues.example", "carol@colleagues.example", "dave@partner.example"]
SPAM_SENDERS = ["promo@deals.example", "winner@lottery.example", "offers@pharmacy.example"]


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    """Training and test directories of both kinds, from separate seeds (no file in common)."""
    root = tmp_path / "corpus"
    return {
        "train_ham": corpus(root / "train-ham", HAM_WORDS, HAM_SENDERS, 30, 1),
        "train_spam": corpus(root / "train-spam", SPAM_WORDS, SPAM_SENDERS, 30, 2),
        "ham": corpus(root / "ham", HAM_WORDS, HAM_SENDERS, 12, 3),
        "spam": corpus(root / "spam", SPAM_WORDS, SPAM_SENDERS, 8, 4),
    }


def evaluate(site: Path, *args: str | Path) -> dict[str, object]:
    result = run_pillarbox(site, "spam", "evaluate", "--json", *map(str, args))
    assert result.returncode == 0, result.stderr
    figures: dict[str, object] = json.loads(result.stdout)
    return figures


def test_a_fresh_evaluation_trains_then_judges_without_a_site(
    tmp_path: Path, files: dict[str, Path]
) -> None:
    # A ham message that reads like spam (a mislabelled file, or the newsletter an operator
    # wants to understand): the one error, named with the reasons that made it.
    planted = files["ham"] / "ham-planted.eml"
    planted.write_bytes(message(99, SPAM_WORDS, "news@shop.example", random.Random(5)))
    # What a directory may hold besides messages: a hidden file is skipped, and a message
    # saved from an mbox keeps its "From " separator line, which is not a header.
    (files["spam"] / ".listing").write_text("not a message")
    mboxed = files["spam"] / "spam-mbox.eml"
    mboxed.write_bytes(
        b"From promo@deals.example Mon Nov  2 09:00:00 2026\n"
        + message(98, SPAM_WORDS, "promo@deals.example", random.Random(6))
    )
    site = tmp_path / "no-site"
    site.mkdir()
    figures = evaluate(
        site,
        "--ham", files["ham"], "--spam", files["spam"],
        "--train-ham", files["train_ham"], "--train-spam", files["train_spam"],
    )  # fmt: skip
    assert not (site / "pillarbox.toml").exists()
    assert (figures["messages"], figures["ham"], figures["spam"]) == (22, 13, 9)
    assert figures["confusion"] == {
        "ham": {"inbox": 12, "junk": 1, "reject": 0},
        "spam": {"inbox": 0, "junk": 9, "reject": 0},
    }
    assert figures["accuracy"] == pytest.approx(21 / 22)
    assert figures["false_positive_rate"] == pytest.approx(1 / 13)
    assert figures["missed_spam_rate"] == 0.0
    (wrong,) = figures["errors"]  # type: ignore[misc]
    assert wrong["file"] == "ham-planted.eml" and wrong["truth"] == "ham"
    assert wrong["score"] >= 5.0
    # Strongest first: the content model's certainty leads, as in the X-Pillarbox-Spam field.
    assert wrong["reasons"][0].startswith("BAYES:")
    scores = [float(r.rpartition("(")[2].rstrip(")")) for r in wrong["reasons"]]
    assert scores == sorted(scores, key=abs, reverse=True)
    assert sum(scores) == pytest.approx(wrong["score"], abs=0.05 * len(scores))

    text = run_pillarbox(
        site, "spam", "evaluate",
        "--ham", str(files["ham"]), "--spam", str(files["spam"]),
        "--train-ham", str(files["train_ham"]), "--train-spam", str(files["train_spam"]),
    )  # fmt: skip
    assert text.returncode == 0, text.stderr
    lines = text.stdout.splitlines()
    assert "messages          22 (13 ham, 9 spam)" in lines
    assert "accuracy          95.45%" in lines
    assert "false positives   7.69% of ham (to Junk or refused)" in lines
    assert "  ham                12      1       0" in lines
    (line,) = (x for x in lines if x.startswith("  wrong:"))
    assert line.startswith(f"  wrong: ham-planted.eml (ham, score {wrong['score']:.1f}): BAYES:")


@pytest.fixture(params=["sqlite", "postgresql"])
def site(request: pytest.FixtureRequest, tmp_path: Path) -> Path:
    """A site with Alice's account, on each store backend (PostgreSQL skipped when
    unreachable): the models live in the store."""
    return backend_site(request, tmp_path / "site", ALICE, PASSWORD)


def test_trained_into_an_account_the_account_judges(site: Path, files: dict[str, Path]) -> None:
    untrained = evaluate(site, "--ham", files["ham"], "--spam", files["spam"], "--account", ALICE)
    # Nothing learnt yet: no content verdict, every message to the INBOX.
    assert untrained["confusion"] == {
        "ham": {"inbox": 12, "junk": 0, "reject": 0},
        "spam": {"inbox": 8, "junk": 0, "reject": 0},
    }
    trained = run_pillarbox(
        site, "spam", "train",
        "--ham", str(files["train_ham"]), "--spam", str(files["train_spam"]), "--account", ALICE,
    )  # fmt: skip
    assert trained.returncode == 0, trained.stderr
    assert (
        trained.stdout.strip() == f"trained 60 messages (30 ham, 30 spam) into the model of {ALICE}"
    )
    judged = evaluate(site, "--ham", files["ham"], "--spam", files["spam"], "--account", ALICE)
    assert judged["confusion"] == {
        "ham": {"inbox": 12, "junk": 0, "reject": 0},
        "spam": {"inbox": 0, "junk": 8, "reject": 0},
    }
    assert judged["errors"] == []


def test_the_global_model_judges_for_every_account(tmp_path: Path, files: dict[str, Path]) -> None:
    init_site(tmp_path, ALICE, PASSWORD)
    trained = run_pillarbox(
        tmp_path,
        "spam",
        "train",
        "--ham",
        str(files["train_ham"]),
        "--spam",
        str(files["train_spam"]),
    )
    assert trained.returncode == 0, trained.stderr
    assert trained.stdout.strip() == "trained 60 messages (30 ham, 30 spam) into the global model"
    judged = evaluate(tmp_path, "--ham", files["ham"], "--spam", files["spam"], "--account", ALICE)
    assert judged["confusion"] == {
        "ham": {"inbox": 12, "junk": 0, "reject": 0},
        "spam": {"inbox": 0, "junk": 8, "reject": 0},
    }


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--train-ham", "{train_ham}"), "give both --train-ham and --train-spam, or neither"),
        ((), "--account names whose model to judge with"),
        (("--account", "nobody@example.org"), "no account nobody@example.org"),
    ],
)
def test_evaluate_refusals(
    tmp_path: Path, files: dict[str, Path], args: tuple[str, ...], message: str
) -> None:
    init_site(tmp_path, ALICE, PASSWORD)
    named = [a.format(**{k: str(v) for k, v in files.items()}) for a in args]
    result = run_pillarbox(
        tmp_path,
        "spam",
        "evaluate",
        "--ham",
        str(files["ham"]),
        "--spam",
        str(files["spam"]),
        *named,
    )
    assert result.returncode == 1
    assert message in result.stderr
    assert result.stdout == ""


def test_train_refuses_a_file_for_a_directory(tmp_path: Path, files: dict[str, Path]) -> None:
    init_site(tmp_path, ALICE, PASSWORD)
    one_file = next(files["train_ham"].iterdir())
    result = run_pillarbox(
        tmp_path, "spam", "train", "--ham", str(one_file), "--spam", str(files["train_spam"])
    )
    assert result.returncode == 2
    assert "is a file" in result.stderr


def body_words(path: Path) -> set[str]:
    """The words of a test message's body (the files above: plain text, one line)."""
    return set(path.read_bytes().split(b"\r\n\r\n", 1)[1].decode().split())


def seen_in(directory: Path, word: str) -> int:
    """In how many of ``directory``'s messages ``word`` is a body word."""
    return sum(word in body_words(p) for p in directory.iterdir())


def explain(site: Path, *args: str | Path) -> dict[str, object]:
    result = run_pillarbox(site, "spam", "explain", "--json", *map(str, args))
    assert result.returncode == 0, result.stderr
    explained: dict[str, object] = json.loads(result.stdout)
    return explained


def test_explain_shows_the_clues_behind_the_verdict(tmp_path: Path, files: dict[str, Path]) -> None:
    # The newsletter a user asks about: ham, but in the words the spam taught.
    newsletter = tmp_path / "newsletter.eml"
    newsletter.write_bytes(message(99, SPAM_WORDS, "news@shop.example", random.Random(5)))
    site = tmp_path / "no-site"
    site.mkdir()
    training = ("--train-ham", files["train_ham"], "--train-spam", files["train_spam"])
    explained = explain(site, newsletter, *training)
    assert (explained["file"], explained["action"]) == ("newsletter.eml", "junk")
    reasons = explained["reasons"]
    assert isinstance(reasons, list) and reasons[0].startswith("BAYES:")
    clues = explained["clues"]
    assert isinstance(clues, list) and clues
    # Strongest first, as the classifier chose them.
    strengths = [abs(c["probability"] - 0.5) for c in clues]
    assert strengths == sorted(strengths, reverse=True)
    # Each body word's counts are the training files' own: in how many of each it occurs.
    words = [c for c in clues if c["token"] in body_words(newsletter)]
    assert len(words) >= 10
    for clue in words:
        assert clue["global"] == {
            "ham": seen_in(files["train_ham"], clue["token"]),
            "spam": seen_in(files["train_spam"], clue["token"]),
        }, clue
        assert clue["account"] == {"ham": 0, "spam": 0}  # a fresh model is global only
        assert clue["probability"] > 0.9
    # Its sender's domain was never seen; the recipient's was, in both kinds alike: neither is
    # a clue.
    assert not {c["token"] for c in clues} & {"from:dom:shop.example", "to:dom:example.org"}

    text = run_pillarbox(
        site, "spam", "explain", "--clues", "3", str(newsletter), *map(str, training)
    )
    assert text.returncode == 0, text.stderr
    lines = text.stdout.splitlines()
    assert lines[:3] == [
        "file      newsletter.eml",
        f"score     {explained['score']:.1f}",
        "action    junk",
    ]
    assert lines[3] == f"reasons   {' '.join(reasons)}"
    table = lines[lines.index("       p   global ham/spam  account ham/spam  token") + 1 :]
    assert len(table) == 3
    first = clues[0]
    assert table[0].split() == [
        f"{first['probability']:.3f}",
        f"{first['global']['ham']}/{first['global']['spam']}",
        "0/0",
        first["token"],
    ]


def test_explain_for_an_account_shows_its_own_counts(site: Path, files: dict[str, Path]) -> None:
    trained = run_pillarbox(
        site, "spam", "train",
        "--ham", str(files["train_ham"]), "--spam", str(files["train_spam"]), "--account", ALICE,
    )  # fmt: skip
    assert trained.returncode == 0, trained.stderr
    ham = next(iter(sorted(files["ham"].iterdir())))
    explained = explain(site, ham, "--account", ALICE)
    assert explained["action"] == "inbox"
    clues = explained["clues"]
    assert isinstance(clues, list)
    words = [c for c in clues if c["token"] in body_words(ham)]
    assert words
    for clue in words:
        assert clue["account"] == {
            "ham": seen_in(files["train_ham"], clue["token"]),
            "spam": seen_in(files["train_spam"], clue["token"]),
        }, clue
        assert clue["global"] == {"ham": 0, "spam": 0}
        assert clue["probability"] < 0.1


def test_explain_needs_a_model(tmp_path: Path, files: dict[str, Path]) -> None:
    init_site(tmp_path, ALICE, PASSWORD)
    one = next(files["ham"].iterdir())
    result = run_pillarbox(tmp_path, "spam", "explain", str(one))
    assert result.returncode == 1
    assert "--account names whose model to judge with" in result.stderr
    # An account without training: no classifier verdict and no clues, said as such.
    untrained = explain(tmp_path, one, "--account", ALICE)
    assert (untrained["action"], untrained["clues"]) == ("inbox", [])


def test_allow_block_unlist_and_list_an_accounts_senders(site: Path) -> None:
    def spam(*args: str) -> tuple[int, list[str], str]:
        result = run_pillarbox(site, "spam", *args)
        return result.returncode, result.stdout.splitlines(), result.stderr

    account = ("--account", ALICE.upper())  # an address in any case names the account
    assert spam("lists", *account) == (0, ["(no entries)"], "")
    # Stored as the verdict matches them: lowercase, a Unicode domain as its A-label.
    assert spam("allow", "Ann@Example.org", "EXÄMPLE.net", *account) == (
        0,
        ["allowed ann@example.org", "allowed xn--exmple-cua.net"],
        "",
    )
    # Blocking an allowed sender changes its kind; a whole suffix may be blocked.
    assert spam("block", "ann@example.org", "@spam.test", "top", *account) == (
        0,
        ["blocked ann@example.org", "blocked spam.test", "blocked top"],
        "",
    )
    assert spam("lists", *account)[1] == [
        "block  ann@example.org",
        "block  spam.test",
        "block  top",
        "allow  xn--exmple-cua.net",
    ]
    # Every pattern is read first: a typo changes nothing, not even the patterns before it.
    code, out, err = spam("block", "new.test", "ann@[192.0.2.1]", *account)
    assert (code, out) == (1, [])
    assert err == "pillarbox: an address literal names no sender's domain\n"
    # A refusal stops the run where it happens, after what was done is printed.
    code, out, err = spam("allow", "friend.test", "co.uk", "later.test", *account)
    assert (code, out) == (1, ["allowed friend.test"])
    assert err == "pillarbox: co.uk is a public suffix: allow a domain or address under it\n"
    code, out, err = spam("unlist", "SPAM.test", "top", "nobody.test", "friend.test", *account)
    assert (code, out) == (1, ["removed spam.test", "removed top"])
    assert err == "pillarbox: nobody.test is on neither list\n"
    code, out, err = spam("lists", "--json", *account)
    assert code == 0, err
    assert json.loads("\n".join(out)) == [
        {"pattern": "ann@example.org", "kind": "block"},
        {"pattern": "friend.test", "kind": "allow"},
        {"pattern": "xn--exmple-cua.net", "kind": "allow"},
    ]
    assert spam("unlist", "bob@example.org", "--account", "nobody@example.org") == (
        1,
        [],
        "pillarbox: no account nobody@example.org\n",
    )
