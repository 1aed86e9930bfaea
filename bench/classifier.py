"""The content classifier alone: a fingerprint of its answers on real mail, and its CPU cost.

    python bench/classifier.py record OUT.json [--corpus /work/shared/corpora]
    python bench/classifier.py compare OLD.json NEW.json
    python bench/classifier.py cost [--messages 300] [--repeat 5]
    python bench/classifier.py hot [--messages 300] [--repeat 5]

``record`` tokenises every message of the spam corpus (train and dev) and of the MIME corpus,
trains a global model on the spam corpus's train split and an account model on every seventh
dev message, and writes each message's token set and its two classifications (global model
alone; global plus the account's at the default weight) with the probabilities' exact bits.
``compare`` reads two such files — one recorded before a change to the tokeniser or the
scoring, one after — and counts the messages whose tokens and probabilities are identical:
the stored models are counts keyed by token strings, so a tokeniser that changes one token
silently degrades every trained model in the field. The corpora are read in place, never
copied.

``cost`` prints the process CPU per 4 KB message (``bench/smtp.py``'s synthetic mail, a model
trained on 2,000 of them) of :func:`message_tokens` and of :func:`classify_views` with both
models, the best and the median of ``--repeat`` rounds. ``hot`` times, per message and on the
same mail, what the MX's policy does with it (trusted, as ``bench/smtp.py`` runs it, both
models trained as it trains them): :func:`message_tokens`, the kept clue table's
``missing`` and ``classify``, and the whole ``assess`` and ``judge`` on a SQLite store whose
caches are warm; each round is fresh messages, so their new tokens are new to the caches as in
the server. Prints tables; not a timed test.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from smtp import Corpus, training_tallies

from pillarbox.dns.resolver import DnsResolver
from pillarbox.mail.parse import parse_message
from pillarbox.policy.classifier import (
    DEFAULT_SETTINGS,
    Classification,
    ClueTable,
    ModelView,
    classify_views,
    message_tokens,
)
from pillarbox.policy.pipeline import Arrival, InboundPolicy, PolicySettings
from pillarbox.store.sqlite.store import SqliteStore
from pillarbox.store.types import SpamCounts

CORPORA = Path("/work/shared/corpora")


def _messages(corpora: Path) -> list[tuple[str, bytes, bool | None]]:
    """(name, raw, spam?) of every message: the spam corpus labelled, the MIME corpus not."""
    found: list[tuple[str, bytes, bool | None]] = []
    for split in ("train", "dev"):
        for kind in ("ham", "spam"):
            for path in sorted((corpora / "spam" / split / kind).iterdir()):
                name = f"spam/{split}/{kind}/{path.name}"
                found.append((name, path.read_bytes(), kind == "spam"))
    mime = corpora / "mime"
    for path in sorted(mime.rglob("*")):
        if path.is_file() and path.suffix not in (".json", ".md"):
            found.append((str(path.relative_to(corpora)), path.read_bytes(), None))
    return found


def _tally(tallies: dict[str, SpamCounts], tokens: frozenset[str], spam: bool) -> None:
    for token in tokens:
        old = tallies.get(token, SpamCounts())
        tallies[token] = SpamCounts(old.ham + (not spam), old.spam + spam)


def _answer(result: Classification) -> list[Any]:
    return [result.probability.hex(), [[t, p] for t, p in result.clues], result.trained]


def record(corpora: Path, out: Path) -> None:
    messages = _messages(corpora)
    tokens = [message_tokens(raw, parse_message(raw)) for _, raw, _ in messages]
    g_counts: dict[str, SpamCounts] = {}
    a_counts: dict[str, SpamCounts] = {}
    g_totals = a_totals = SpamCounts()
    for n, ((name, _, spam), toks) in enumerate(zip(messages, tokens, strict=True)):
        if spam is None:
            continue
        if name.startswith("spam/train/"):
            _tally(g_counts, toks, spam)
            g_totals = SpamCounts(g_totals.ham + (not spam), g_totals.spam + spam)
        elif n % 7 == 0:
            _tally(a_counts, toks, spam)
            a_totals = SpamCounts(a_totals.ham + (not spam), a_totals.spam + spam)
    g_view, a_view = ModelView(g_totals, g_counts), ModelView(a_totals, a_counts)
    weight = DEFAULT_SETTINGS.account_weight
    result = {
        name: {
            "tokens": sorted(toks),
            "global": _answer(classify_views(toks, g_view, None, 0.0)),
            "mixed": _answer(classify_views(toks, g_view, a_view, weight)),
        }
        for (name, _, _), toks in zip(messages, tokens, strict=True)
    }
    out.write_text(json.dumps(result))
    print(f"{len(result)} messages recorded to {out}")


def compare(old_path: Path, new_path: Path) -> int:
    old, new = json.loads(old_path.read_text()), json.loads(new_path.read_text())
    same_tokens = same_answers = 0
    worst = 0.0
    differ: list[str] = []
    for name, before in old.items():
        after = new.get(name)
        if after is None:
            differ.append(f"{name}: missing")
            continue
        if before["tokens"] == after["tokens"]:
            same_tokens += 1
        else:
            gone = sorted(set(before["tokens"]) - set(after["tokens"]))[:5]
            added = sorted(set(after["tokens"]) - set(before["tokens"]))[:5]
            differ.append(f"{name}: tokens -{gone} +{added}")
        if all(before[k] == after[k] for k in ("global", "mixed")):
            same_answers += 1
        else:
            differ.append(f"{name}: answers {before['global']} {after['global']}")
        for k in ("global", "mixed"):
            worst = max(worst, abs(float.fromhex(before[k][0]) - float.fromhex(after[k][0])))
    print(f"messages            {len(old)} (new file: {len(new)})")
    print(f"identical tokens    {same_tokens}")
    print(f"identical answers   {same_answers} (probability bits and clues, both models)")
    print(f"largest |dp|        {worst:.3g}")
    for line in differ[:20]:
        print(line)
    return 0 if not differ and len(old) == len(new) else 1


def cost(messages: int, repeat: int) -> None:
    corpus = Corpus()
    tallies, totals = training_tallies(corpus, 2000)
    account_tallies, account_totals = training_tallies(corpus, 200)
    g_view, a_view = ModelView(totals, tallies), ModelView(account_totals, account_tallies)
    raws = [corpus.message(4096, n) for n in range(messages)]
    infos = [parse_message(raw) for raw in raws]
    tokenise: list[float] = []
    score: list[float] = []
    for _ in range(repeat):
        start = time.process_time()
        tokens = [message_tokens(raw, info) for raw, info in zip(raws, infos, strict=True)]
        middle = time.process_time()
        for toks in tokens:
            classify_views(toks, g_view, a_view, DEFAULT_SETTINGS.account_weight)
        end = time.process_time()
        tokenise.append((middle - start) / messages * 1e6)
        score.append((end - middle) / messages * 1e6)
    per_message = statistics.mean(len(t) for t in tokens)
    print(f"messages              {messages} x 4096 bytes, {per_message:.0f} tokens each")
    print(f"model                 {len(tallies)} tokens (account: {len(account_tallies)})")
    for label, values in (("message_tokens", tokenise), ("classify_views", score)):
        best, median = min(values), statistics.median(values)
        print(f"{label:22}{best:.0f} µs best, {median:.0f} median")


def _per_message(rounds: list[float], messages: int) -> str:
    values = [r / messages * 1e6 for r in rounds]
    return f"{min(values):7.1f} µs best, {statistics.median(values):7.1f} median"


async def _hot(messages: int, repeat: int) -> None:
    corpus = Corpus()
    global_tallies, global_totals = training_tallies(corpus, 2000)
    account_tallies, account_totals = training_tallies(corpus, 200)
    arrival = Arrival("127.0.0.1", "client.test", "load@example.net")
    timings: dict[str, list[float]] = {
        k: [] for k in ("message_tokens", "missing", "classify", "assess", "judge")
    }
    with tempfile.TemporaryDirectory() as tmp:
        store = SqliteStore(Path(tmp) / "hot.db")
        await store.open()
        try:
            await store.add_domain("bench.test")
            account = (await store.add_account("inbox@bench.test", "!")).id
            await store.train_spam_model(None, global_totals, global_tallies)
            await store.train_spam_model(account, account_totals, account_tallies)
            policy = InboundPolicy(
                PolicySettings(), store, DnsResolver(nameserver="127.0.0.1:9"), hostname="mx.test"
            )
            table = ClueTable(global_totals, account_totals, DEFAULT_SETTINGS.account_weight)
            for n in range(-1, repeat):
                # Round -1 fills the caches (and the table) with the vocabulary; then each
                # round's messages are new, as the server's are.
                raws = [corpus.message(4096, n * messages + i) for i in range(messages)]
                infos = [parse_message(raw) for raw in raws]
                start = time.perf_counter()
                tokens = [message_tokens(r, i) for r, i in zip(raws, infos, strict=True)]
                timings["message_tokens"].append(time.perf_counter() - start)
                start = time.perf_counter()
                asked = [table.missing(t) for t in tokens]
                timings["missing"].append(time.perf_counter() - start)
                for missing in asked:
                    table.add(missing, global_tallies, account_tallies)
                start = time.perf_counter()
                for t in tokens:
                    table.classify(t)
                timings["classify"].append(time.perf_counter() - start)
                raws = [corpus.message(4096, n * messages + i, "policy") for i in range(messages)]
                infos = [parse_message(raw) for raw in raws]
                start = time.perf_counter()
                found = [await policy.assess(arrival, *m) for m in zip(raws, infos, strict=True)]
                timings["assess"].append(time.perf_counter() - start)
                start = time.perf_counter()
                for assessment in found:
                    await policy.judge(assessment, [account])
                timings["judge"].append(time.perf_counter() - start)
                if n < 0:
                    for values in timings.values():
                        values.clear()
        finally:
            await store.close()
    print(f"messages              {messages} x 4096 bytes, {repeat} rounds of new ones")
    for label, rounds in timings.items():
        print(f"{label:22}{_per_message(rounds, messages)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    r = sub.add_parser("record")
    r.add_argument("out", type=Path)
    r.add_argument("--corpus", type=Path, default=CORPORA)
    c = sub.add_parser("compare")
    c.add_argument("old", type=Path)
    c.add_argument("new", type=Path)
    k = sub.add_parser("cost")
    k.add_argument("--messages", type=int, default=300)
    k.add_argument("--repeat", type=int, default=5)
    h = sub.add_parser("hot")
    h.add_argument("--messages", type=int, default=300)
    h.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    if args.command == "hot":
        asyncio.run(_hot(args.messages, args.repeat))
    elif args.command == "record":
        record(args.corpus, args.out)
    elif args.command == "compare":
        sys.exit(compare(args.old, args.new))
    else:
        cost(args.messages, args.repeat)


if __name__ == "__main__":
    main()
