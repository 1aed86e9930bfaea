"""``pillarbox spam train|evaluate|explain``: train the spam filter from files, measure it,
and show why it judged one message as it did; ``pillarbox spam allow|block|unlist|lists``: an
account's allow and block lists (:mod:`pillarbox.policy.senderlists`).

A directory holds one message per file (``.eml``, or anything else that is a message; a
leading mbox ``From `` line is skipped). ``train`` adds the messages to the global model, or to
one account's model and sender history with ``--account``. ``evaluate`` judges every message
with the same verdict code the MX uses (content and reputation only: files carry no SMTP
session to check SPF/DKIM/DMARC against) and prints accuracy, the false-positive rate (ham
delivered to Junk or refused), the missed-spam rate, the confusion matrix, and each message
it judged wrongly with the reasons that made it so (strongest first). With
``--train-ham/--train-spam`` it trains a fresh model in a temporary store first and needs
neither a config file nor a server. ``explain`` judges one file the same way and prints the
verdict's reasons and the classifier's clues behind ``BAYES``: each token it combined, with
its spam probability and the ham and spam messages the global and the account's model saw it
in (what an operator reads when a user asks why a newsletter went to Junk).

``allow``, ``block`` and ``unlist`` read every pattern before they change anything, so a typo
changes nothing; then they act in the order given and stop at the first refusal (a public
suffix allowed, the list full, an absent entry removed), having printed what they did.
"""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from pillarbox import config as cfg
from pillarbox.errors import NotFound, UserError
from pillarbox.mail.parse import parse_message
from pillarbox.policy import senderlists
from pillarbox.policy.learning import TrainingBatch, observe
from pillarbox.policy.pipeline import ExplainedClue, InboundPolicy, settings_from_config
from pillarbox.policy.verdict import Action, Verdict
from pillarbox.store.interface import Store
from pillarbox.store.sqlite.store import SqliteStore
from pillarbox.store.types import SenderListEntry, SenderListKind, SpamCounts

if TYPE_CHECKING:
    from pillarbox.cli.main import CliState

#: The account a throw-away evaluation store judges for.
EVALUATION_ACCOUNT = "evaluation@evaluation.invalid"
#: Messages observed per store write while training (bounds memory and transaction size).
TRAIN_CHUNK = 500
#: Reasons printed beside each wrongly judged message (``--json`` gives them all).
SHOWN_REASONS = 8

T = TypeVar("T")


def message_files(directory: Path) -> list[Path]:
    """Every regular file of ``directory``, sorted (hidden files skipped)."""
    if not directory.is_dir():
        raise UserError(f"{directory} is not a directory")
    return sorted(p for p in directory.iterdir() if p.is_file() and not p.name.startswith("."))


def read_message(path: Path) -> bytes:
    """A message file's bytes, without a leading mbox ``From `` separator line."""
    raw = path.read_bytes()
    if raw.startswith(b"From "):
        newline = raw.find(b"\n")
        raw = raw[newline + 1 :] if newline >= 0 else b""
    return raw


def _labelled(ham: Sequence[Path], spam: Sequence[Path]) -> Iterator[tuple[Path, bool]]:
    yield from ((p, False) for p in ham)
    yield from ((p, True) for p in spam)


async def train_files(
    store: Store,
    ham: Sequence[Path],
    spam: Sequence[Path],
    *,
    account_id: int | None,
    reputation_account: int | None,
    hostname: str,
) -> int:
    """Train every file (in chunks of :data:`TRAIN_CHUNK`); returns the number trained."""
    batch = TrainingBatch()
    count = 0
    for path, is_spam in _labelled(ham, spam):
        batch.add(observe(read_message(path), hostname), spam=is_spam)
        count += 1
        if count % TRAIN_CHUNK == 0:
            await batch.commit(store, account_id, reputation_account=reputation_account)
            batch = TrainingBatch()
    await batch.commit(store, account_id, reputation_account=reputation_account)
    return count


@dataclass(frozen=True, slots=True)
class Misjudged:
    """A message the filter got wrong, with the reasons that made it so (strongest first, as
    the ``X-Pillarbox-Spam`` field lists them): what an operator reads to see why."""

    name: str
    is_spam: bool
    score: float
    reasons: tuple[str, ...]


@dataclass
class Evaluation:
    """Counts of an evaluation: rows are the truth, columns what the filter did."""

    matrix: dict[tuple[bool, Action], int] = field(default_factory=dict)
    errors: list[Misjudged] = field(default_factory=list)
    seconds: float = 0.0

    def add(self, name: str, is_spam: bool, verdict: Verdict) -> None:
        action = verdict.action
        self.matrix[(is_spam, action)] = self.matrix.get((is_spam, action), 0) + 1
        if (action is not Action.INBOX) != is_spam:
            strongest = sorted(verdict.reasons, key=lambda r: -abs(r.score))
            reasons = tuple(r.render() for r in strongest)
            self.errors.append(Misjudged(name, is_spam, verdict.score, reasons))

    def count(self, is_spam: bool, *actions: Action) -> int:
        return sum(self.matrix.get((is_spam, a), 0) for a in actions or tuple(Action))

    @property
    def total(self) -> int:
        return self.count(False) + self.count(True)

    def figures(self) -> dict[str, Any]:
        ham, spam = self.count(False), self.count(True)
        false_positives = self.count(False, Action.JUNK, Action.REJECT)
        missed = self.count(True, Action.INBOX)
        return {
            "messages": self.total,
            "ham": ham,
            "spam": spam,
            "accuracy": (self.total - false_positives - missed) / self.total if self.total else 0,
            "false_positive_rate": false_positives / ham if ham else 0.0,
            "missed_spam_rate": missed / spam if spam else 0.0,
            "confusion": {
                truth: {a.value: self.count(truth == "spam", a) for a in Action}
                for truth in ("ham", "spam")
            },
            "ms_per_message": 1000 * self.seconds / self.total if self.total else 0.0,
            "errors": [
                {
                    "file": e.name,
                    "truth": "spam" if e.is_spam else "ham",
                    "score": e.score,
                    "reasons": list(e.reasons),
                }
                for e in self.errors
            ],
        }


async def evaluate_files(
    policy: InboundPolicy,
    account_id: int,
    ham: Sequence[Path],
    spam: Sequence[Path],
) -> Evaluation:
    """Judge every file for ``account_id`` as the MX would (content and reputation)."""
    result = Evaluation()
    start = time.perf_counter()
    for path, is_spam in _labelled(ham, spam):
        raw = read_message(path)
        assessment = await policy.assess(None, raw, parse_message(raw))
        verdict = await policy.verdict(assessment, account_id)
        result.add(path.name, is_spam, verdict)
    result.seconds = time.perf_counter() - start
    return result


@dataclass(frozen=True, slots=True)
class Explanation:
    """One message's verdict, and the classifier's clues behind its ``BAYES`` reason."""

    verdict: Verdict
    clues: list[ExplainedClue]


async def explain_file(policy: InboundPolicy, account_id: int, path: Path) -> Explanation:
    """Judge one file for ``account_id`` as :func:`evaluate_files` does, with its clues."""
    raw = read_message(path)
    assessment = await policy.assess(None, raw, parse_message(raw))
    verdict = await policy.verdict(assessment, account_id)
    return Explanation(verdict, await policy.explained_clues(assessment, account_id))


@contextlib.asynccontextmanager
async def _fresh_store(
    config: cfg.Config, train: tuple[Sequence[Path], Sequence[Path]]
) -> AsyncIterator[tuple[Store, int]]:
    """A temporary store whose global model learnt ``train`` (ham, spam), and the account
    whose sender history did too."""
    with tempfile.TemporaryDirectory(prefix="pillarbox-spam-") as tmp:
        store = SqliteStore(Path(tmp) / "evaluation.db")
        await store.open()
        try:
            await store.add_domain(EVALUATION_ACCOUNT.rpartition("@")[2])
            account = await store.add_account(EVALUATION_ACCOUNT, "!")  # "!" matches no password
            await train_files(
                store,
                *train,
                account_id=None,
                reputation_account=account.id,
                hostname=config.server.hostname,
            )
            yield store, account.id
        finally:
            await store.close()


def _judging(
    state: CliState,
    train_ham: Path | None,
    train_spam: Path | None,
    account: str | None,
    work: Callable[[InboundPolicy, int], Awaitable[T]],
) -> T:
    """Run ``work`` with the policy and the account to judge for: a fresh model trained on
    ``train_ham``/``train_spam`` (no site needed), or the site's store and ``account``."""
    from pillarbox.cli.main import run_store

    if (train_ham is None) != (train_spam is None):
        raise UserError("give both --train-ham and --train-spam, or neither")
    if train_ham is not None and train_spam is not None:
        path = state.config_path
        config = cfg.load(path) if path.exists() else cfg.Config()
        train = (message_files(train_ham), message_files(train_spam))

        async def fresh() -> T:
            async with _fresh_store(config, train) as (store, account_id):
                return await work(_policy(config, store), account_id)

        return asyncio.run(fresh())
    if account is None:
        raise UserError("--account names whose model to judge with (or train a fresh one)")
    config = state.load()

    async def go(store: Store) -> T:
        return await work(_policy(config, store), await _account_id(store, account))

    return run_store(config, go)


def _policy(config: cfg.Config, store: Store) -> InboundPolicy:
    from pillarbox.dns.resolver import DnsResolver

    # No DNS is asked: files are judged on content and reputation only.
    resolver = DnsResolver(nameserver=config.dns.nameserver or "127.0.0.1:9")
    return InboundPolicy(
        settings_from_config(config.policy), store, resolver, hostname=config.server.hostname
    )


async def _account_id(store: Store, address: str) -> int:
    account = await store.get_account(address.lower())
    if account is None:
        raise NotFound(f"no account {address}")
    return account.id


def _report(evaluation: Evaluation, as_json: bool) -> None:
    from pillarbox.cli.main import emit

    f = evaluation.figures()
    c = f["confusion"]
    lines = [
        f"messages          {f['messages']} ({f['ham']} ham, {f['spam']} spam)",
        f"accuracy          {f['accuracy']:.2%}",
        f"false positives   {f['false_positive_rate']:.2%} of ham (to Junk or refused)",
        f"missed spam       {f['missed_spam_rate']:.2%} of spam (to INBOX)",
        "",
        "confusion         inbox   junk  reject",
        f"  ham            {c['ham']['inbox']:>6} {c['ham']['junk']:>6} {c['ham']['reject']:>7}",
        f"  spam           {c['spam']['inbox']:>6} {c['spam']['junk']:>6} {c['spam']['reject']:>7}",
        "",
        f"time              {f['ms_per_message']:.2f} ms per message",
    ]
    for e in f["errors"]:
        reasons = e["reasons"][:SHOWN_REASONS]
        if len(e["reasons"]) > SHOWN_REASONS:
            reasons.append(f"+{len(e['reasons']) - SHOWN_REASONS} more")
        lines.append(
            f"  wrong: {e['file']} ({e['truth']}, score {e['score']:.1f}): {' '.join(reasons)}"
        )
    emit(f, as_json, lines)


@click.group()
def spam() -> None:
    """Train, measure and explain the spam filter; accounts' allowed and blocked senders."""


@spam.command("train")
@click.option("--ham", "ham_dir", type=click.Path(file_okay=False, path_type=Path), required=True)
@click.option("--spam", "spam_dir", type=click.Path(file_okay=False, path_type=Path), required=True)
@click.option("--account", default=None, help="Train this account's model (default: global).")
@click.pass_obj
def spam_train(state: CliState, ham_dir: Path, spam_dir: Path, account: str | None) -> None:
    """Add the messages of two directories to a model, as ham and as spam."""
    from pillarbox.cli.main import run_store

    config = state.load()
    ham, spam_files = message_files(ham_dir), message_files(spam_dir)

    async def go(store: Store) -> int:
        account_id = None if account is None else await _account_id(store, account)
        return await train_files(
            store,
            ham,
            spam_files,
            account_id=account_id,
            reputation_account=account_id,
            hostname=config.server.hostname,
        )

    count = run_store(config, go)
    target = f"the model of {account}" if account else "the global model"
    click.echo(f"trained {count} messages ({len(ham)} ham, {len(spam_files)} spam) into {target}")


@spam.command("evaluate")
@click.option("--ham", "ham_dir", type=click.Path(file_okay=False, path_type=Path), required=True)
@click.option("--spam", "spam_dir", type=click.Path(file_okay=False, path_type=Path), required=True)
@click.option(
    "--train-ham", type=click.Path(file_okay=False, path_type=Path), help="Train a fresh model."
)
@click.option(
    "--train-spam", type=click.Path(file_okay=False, path_type=Path), help="Train a fresh model."
)
@click.option("--account", default=None, help="Judge for this account (existing store).")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_obj
def spam_evaluate(
    state: CliState,
    ham_dir: Path,
    spam_dir: Path,
    train_ham: Path | None,
    train_spam: Path | None,
    account: str | None,
    as_json: bool,
) -> None:
    """Judge labelled messages and print accuracy, false positives and missed spam."""
    test = (message_files(ham_dir), message_files(spam_dir))

    async def work(policy: InboundPolicy, account_id: int) -> Evaluation:
        return await evaluate_files(policy, account_id, *test)

    _report(_judging(state, train_ham, train_spam, account, work), as_json)


def _counts(counts: SpamCounts) -> dict[str, int]:
    return {"ham": counts.ham, "spam": counts.spam}


def _explain_report(path: Path, explained: Explanation, shown: int, as_json: bool) -> None:
    from pillarbox.cli.main import emit

    verdict = explained.verdict
    reasons = [r.render() for r in sorted(verdict.reasons, key=lambda r: -abs(r.score))]
    figures = {
        "file": path.name,
        "score": verdict.score,
        "action": verdict.action.value,
        "override": verdict.override,
        "reasons": reasons,
        "clues": [
            {
                "token": c.token,
                "probability": c.probability,
                "global": _counts(c.global_counts),
                "account": _counts(c.account_counts),
            }
            for c in explained.clues
        ],
    }
    action = verdict.action.value + (f" ({verdict.override})" if verdict.override else "")
    lines = [
        f"file      {path.name}",
        f"score     {verdict.score:.1f}",
        f"action    {action}",
        f"reasons   {' '.join(reasons) or 'none'}",
    ]
    clues = explained.clues
    if clues and shown:
        lines += [
            "",
            f"clues     the {min(shown, len(clues))} strongest of the {len(clues)} the classifier "
            "combined (p: spam probability; ham/spam: messages each model saw the token in)",
            "       p   global ham/spam  account ham/spam  token",
        ]
        for c in clues[:shown]:
            g, a = c.global_counts, c.account_counts
            lines.append(
                f"  {c.probability:6.3f}  {f'{g.ham}/{g.spam}':>15}  {f'{a.ham}/{a.spam}':>16}  "
                f"{c.token}"
            )
    emit(figures, as_json, lines)


@spam.command("explain")
@click.argument("message", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--train-ham", type=click.Path(file_okay=False, path_type=Path), help="Train a fresh model."
)
@click.option(
    "--train-spam", type=click.Path(file_okay=False, path_type=Path), help="Train a fresh model."
)
@click.option("--account", default=None, help="Judge for this account (existing store).")
@click.option(
    "--clues", "shown", type=click.IntRange(min=0), default=20, show_default=True,
    help="Clues printed (--json gives all).",
)  # fmt: skip
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_obj
def spam_explain(
    state: CliState,
    message: Path,
    train_ham: Path | None,
    train_spam: Path | None,
    account: str | None,
    shown: int,
    as_json: bool,
) -> None:
    """Judge one message file and print why: the reasons and the classifier's clues."""

    async def work(policy: InboundPolicy, account_id: int) -> Explanation:
        return await explain_file(policy, account_id, message)

    _explain_report(message, _judging(state, train_ham, train_spam, account, work), shown, as_json)


#: What ``allow``, ``block`` and ``unlist`` (None) print before each stored pattern.
_DONE = {SenderListKind.ALLOW: "allowed", SenderListKind.BLOCK: "blocked", None: "removed"}


def _change_lists(
    state: CliState, address: str, patterns: Sequence[str], kind: SenderListKind | None
) -> None:
    """Put each pattern on the ``kind`` list, or take it off (None): all read first, the
    first refusal stops (module notes)."""
    from pillarbox.cli.main import run_store

    config = state.load()
    limit = config.policy.max_sender_entries
    checked = [senderlists.pattern_of(p) for p in patterns]

    async def go(store: Store) -> None:
        account_id = await _account_id(store, address)
        for pattern in checked:
            if kind is None:
                stored = await senderlists.remove(store, account_id, pattern)
            else:
                entry = await senderlists.put(store, account_id, pattern, kind, limit=limit)
                stored = entry.pattern
            click.echo(f"{_DONE[kind]} {stored}")

    run_store(config, go)


_PATTERNS = click.argument("patterns", metavar="PATTERN...", nargs=-1, required=True)
_LIST_ACCOUNT = click.option(
    "--account", "address", metavar="ADDRESS", required=True, help="Whose lists."
)


@spam.command("allow")
@_PATTERNS
@_LIST_ACCOUNT
@click.pass_obj
def spam_allow(state: CliState, patterns: tuple[str, ...], address: str) -> None:
    """Allow senders: INBOX for mail their domain vouches for (SPF, DKIM or DMARC pass)."""
    _change_lists(state, address, patterns, SenderListKind.ALLOW)


@spam.command("block")
@_PATTERNS
@_LIST_ACCOUNT
@click.pass_obj
def spam_block(state: CliState, patterns: tuple[str, ...], address: str) -> None:
    """Block senders (addresses or domains): their mail goes to Junk, whatever the filter says."""
    _change_lists(state, address, patterns, SenderListKind.BLOCK)


@spam.command("unlist")
@_PATTERNS
@_LIST_ACCOUNT
@click.pass_obj
def spam_unlist(state: CliState, patterns: tuple[str, ...], address: str) -> None:
    """Take senders off the allow or block list: the filter judges their mail again."""
    _change_lists(state, address, patterns, None)


@spam.command("lists")
@_LIST_ACCOUNT
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_obj
def spam_lists(state: CliState, address: str, as_json: bool) -> None:
    """Print the allow and block lists (an allow entry admits only mail its domain vouches for)."""
    from pillarbox.cli.main import emit, run_store

    async def go(store: Store) -> list[SenderListEntry]:
        return await store.list_sender_entries(await _account_id(store, address))

    listed = run_store(state.load(), go)
    lines = [f"{e.kind.value}  {e.pattern}" for e in listed] or ["(no entries)"]
    emit([{"pattern": e.pattern, "kind": e.kind.value} for e in listed], as_json, lines)
