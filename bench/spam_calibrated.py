"""Calibrated combination of content models and header facts (issue #10; docs/spam-filter.md,
"Calibrated combination"): one logistic regression over the out-of-fold scores of the models
and the header facts, judged by its probability, instead of adding each reason's points.

    python bench/spam_calibrated.py cv --inputs verdict,svm
    python bench/spam_calibrated.py cv --inputs others,svm --seed 2
    python bench/spam_calibrated.py dev --inputs others,svm --junk-p 0.9

Inputs (each a column of the fit; the header facts are always columns too):

- ``verdict``: the product's verdict score without the facts (Bayes + rules + reputation) / 10;
- ``others``: rules + reputation / 10 (the verdict without Bayes);
- ``svm``: the margin ``w·x`` of :class:`spam_cv.LinearSVM` over the product's tokens (C = 10,
  2^20 hashed weights, converged; ``--svm-passes 1``: PA-I, trained one message at a time).

Every training message's inputs are out-of-fold (inner 5-fold CV on the training set, models
and sender tallies trained without it), as :class:`spam_cv.Evidence` does for the facts, so the
fit sees the scores unseen mail gets. A message is Junk when the fitted probability is at least
``--junk-p``: the threshold is a cost ratio (0.9: a false positive costs nine missed spam),
declared before a run, not read off it.
"""

from __future__ import annotations

import argparse
import math
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from spam_cv import Bayes, LinearSVM, Result, Sample, _tallies, fit, load

from pillarbox.policy import reputation
from pillarbox.store.types import SpamCounts


@dataclass(frozen=True, slots=True)
class Parts:
    """One message's scores from models trained without it."""

    bayes: float
    #: Rules + sender reputation (reasons that do not learn from content).
    others: float
    svm: float


INPUTS: dict[str, Callable[[Parts], float]] = {
    "verdict": lambda p: (p.bayes + p.others) / 10,
    "others": lambda p: p.others / 10,
    "svm": lambda p: p.svm,
}


class Models:
    """The content models and sender tallies trained on one training set."""

    def __init__(self, svm_passes: int) -> None:
        self.bayes = Bayes()
        self.svm = LinearSVM(cost=10.0, hash_bits=20, max_passes=svm_passes)
        self.tallies: dict[str, SpamCounts] = {}

    def train(self, samples: Sequence[Sample]) -> None:
        self.bayes.train(samples)
        self.svm.train(samples)
        self.tallies = _tallies(samples)

    def parts(self, s: Sample) -> Parts:
        others = s.static + sum(r.score for r in reputation.reasons(s.sender, self.tallies))
        return Parts(self.bayes.score(s), others, self.svm.z(s) / self.svm.slope)


def folds_of(
    samples: Sequence[Sample], folds: int, seed: int
) -> list[tuple[list[Sample], list[Sample]]]:
    """(train, test) per fold, split as :func:`spam_cv.cross_validate` splits."""
    order = list(samples)
    random.Random(seed).shuffle(order)
    return [
        ([s for i, s in enumerate(order) if i % folds != k], order[k::folds]) for k in range(folds)
    ]


def out_of_fold(
    samples: Sequence[Sample], folds: int, seed: int, svm_passes: int
) -> dict[str, Parts]:
    out: dict[str, Parts] = {}
    for train, test in folds_of(samples, folds, seed):
        models = Models(svm_passes)
        models.train(train)
        out.update((s.name, models.parts(s)) for s in test)
    return out


class Calibrated:
    """The fitted combination: log-odds of spam from the inputs and the header facts."""

    def __init__(self, inputs: Sequence[str], *, l2: float, seed: int, svm_passes: int) -> None:
        self.inputs = [INPUTS[name] for name in inputs]
        self.l2 = l2
        self.seed = seed
        self.svm_passes = svm_passes
        self.models = Models(svm_passes)
        self.index: dict[str, int] = {}
        self.weights: list[float] = []

    def _row(self, parts: Parts, s: Sample) -> tuple[list[float], list[int]]:
        return [f(parts) for f in self.inputs], [self.index[f] for f in s.facts if f in self.index]

    def train(self, samples: Sequence[Sample]) -> None:
        inner = out_of_fold(samples, 5, self.seed, self.svm_passes)
        self.index = {f: i for i, f in enumerate(sorted({f for s in samples for f in s.facts}))}
        rows = [self._row(inner[s.name], s) for s in samples]
        self.weights = fit(rows, [s.spam for s in samples], len(self.index), self.l2)
        self.models.train(samples)

    def log_odds(self, s: Sample) -> float:
        dense, facts = self._row(self.models.parts(s), s)
        w, d = self.weights, len(dense)
        return (
            w[0]
            + sum(wi * x for wi, x in zip(w[1:], dense, strict=False))
            + sum(w[1 + d + f] for f in facts)
        )


def report(result: Result, junk_p: float, label: str, cpu: float) -> None:
    t = math.log(junk_p / (1 - junk_p))
    print(
        f"{label}: junk from p {junk_p:g}: {result.line(t)}  score CPU {1000 * cpu:.3f} ms/message"
    )
    print(f"  {result.curve()}")
    for p in (0.5, 0.75, 0.9, 0.95, 0.99):
        print(f"  junk from p {p:g}: {result.line(math.log(p / (1 - p)))}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", type=Path, default=Path("/work/shared/corpora/spam"))
    parser.add_argument("--cache", type=Path, default=Path("/tmp"))
    parser.add_argument("--inputs", default="verdict,svm", help=f"comma list of {sorted(INPUTS)}")
    parser.add_argument("--l2", type=float, default=0.1)
    parser.add_argument("--svm-passes", type=int, default=200, help="1: PA-I")
    parser.add_argument("--junk-p", type=float, default=0.9)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("mode", choices=("cv", "dev"))
    args = parser.parse_args()
    train = load(args.corpus, "train", args.cache)

    def make() -> Calibrated:
        inputs = args.inputs.split(",")
        return Calibrated(inputs, l2=args.l2, seed=args.seed + 100, svm_passes=args.svm_passes)

    if args.mode == "cv":
        splits = folds_of(train, 5, args.seed)
        label = "5-fold CV"
    else:
        splits = [(train, load(args.corpus, "dev", args.cache))]
        label = "dev"
    scored: list[tuple[Sample, float]] = []
    cpu = 0.0
    for fold_train, test in splits:
        model = make()
        start = time.process_time()
        model.train(fold_train)
        trained = time.process_time()
        model.models.svm.train(fold_train)
        print(
            f"  trained on {len(fold_train)}: {trained - start:.1f} s CPU with the inner folds,"
            f" the SVM alone {time.process_time() - trained:.1f} s"
        )
        start = time.process_time()
        scored += [(s, model.log_odds(s)) for s in test]
        cpu += (time.process_time() - start) / len(test) / len(splits)
    result = Result(scored)
    report(result, args.junk_p, label, cpu)
    if args.mode == "dev":
        t = math.log(args.junk_p / (1 - args.junk_p))
        for s, z in scored:
            if (z >= t) != s.spam:
                print(f"  wrong: {s.name} log-odds {z:.2f}")


if __name__ == "__main__":
    main()
