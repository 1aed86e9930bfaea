"""Crash benchmark: ``pillarbox serve`` SIGKILLed many times at random moments under
concurrent clients, restarted on the same data, and checked (the harness and its invariants:
:mod:`pillarbox.testing.crash`; the quick version is tests/e2e/test_crash.py).

Prints a row per kill (what it interrupted, the restart time, the running totals) and a
summary per store: kills, acknowledged, found, lost, duplicated, orphans, restart time.
Lost must be 0; duplicated counts remote deliveries repeated because the kill fell after the
smart host's 250 and before the queue recorded it (RFC 5321 §6.1 allows it); orphans are blobs
no row refers to (files left by a kill, removed after the next start; the most seen at a kill
and at the end); staged are files a kill left in blobs/tmp (removed once an hour old). Not a
timed test.

    python bench/chaos.py [--kills 20] [--stores sqlite,files,postgresql] [--seed 1]
                          [--min 0.2] [--max 4.0] [--points anywhere,after-250,remote-250]

Kill points (``--points``, taken in turn): ``anywhere`` kills when the wait ends (every kill so far
found a DATA and an APPEND without their reply; whether a group commit was under way is not
seen from outside), ``after-250`` the moment an MX client reads
a 250 after DATA, ``remote-250`` while the smart host holds a queue delivery's 250.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from pillarbox.testing.crash import Chaos, KillPoint, Round
from pillarbox.testing.postgres import TestDatabase, unreachable_reason

STORES = {"sqlite": "sqlite:", "files": "sqlite:?blobs=files", "postgresql": ""}


POINTS = {
    "anywhere": KillPoint.ANYWHERE,
    "after-250": KillPoint.AFTER_250,
    "remote-250": KillPoint.REMOTE_250,
}


def run(
    name: str, url: str, kills: int, seed: int, wait: tuple[float, float], points: list[KillPoint]
) -> list[Round]:
    with (
        tempfile.TemporaryDirectory(prefix="chaos-") as tmp,
        Chaos(Path(tmp), url, seed=seed) as chaos,
    ):
        time.sleep(0.5)
        print(f"\n{name}: {url}")
        print(
            f"{'kill':>4} {'point':<10} {'after s':>7} {'restart s':>9} {'acked':>6} {'found':>6} "
            f"{'lost':>4} {'dup':>3} {'orphans':>7} {'staged':>6}  interrupted"
        )
        for number in range(1, kills + 1):
            point = points[(number - 1) % len(points)]
            result = chaos.round(chaos.rng.uniform(*wait), point)
            hit = ", ".join(f"{kind} {n}" for kind, n in result.interrupted.items() if n)
            print(
                f"{number:>4} {point.value:<10} {result.kill_after:>7.2f} "
                f"{result.restart_seconds:>9.2f} {result.acknowledged:>6} {result.found:>6} "
                f"{result.lost:>4} {result.duplicated:>3} {result.orphans:>7} {result.staged:>6}  "
                f"{hit or '-'}",
                flush=True,
            )
            for problem in result.problems:
                print(f"     PROBLEM {problem}")
        final = chaos.finish()
        print(
            f" end {'':<10} {'':>7} {'':>9} {final.acknowledged:>6} {final.found:>6} "
            f"{final.lost:>4} {final.duplicated:>3} {final.orphans:>7} {final.staged:>6}  "
            "(queue drained, stopped cleanly)"
        )
        for problem in final.problems:
            print(f"     PROBLEM {problem}")
        return [*chaos.rounds]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--stores", default="sqlite,files,postgresql")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--min", type=float, default=0.2, help="least seconds before a kill")
    parser.add_argument("--max", type=float, default=4.0, help="most seconds before a kill")
    parser.add_argument("--points", default="anywhere", help="kill points, taken in turn")
    args = parser.parse_args()
    summary = []
    database = None
    for name in args.stores.split(","):
        url = STORES[name]
        if name == "postgresql":
            reason = unreachable_reason()
            if reason is not None:
                print(f"\npostgresql skipped: {reason}")
                continue
            database = database or TestDatabase()
            url = database.new_store_url()
        points = [POINTS[point] for point in args.points.split(",")]
        rounds = run(name, url, args.kills, args.seed, (args.min, args.max), points)
        kills, final = rounds[:-1], rounds[-1]
        restarts = [r.restart_seconds for r in kills]
        summary.append(
            (
                name,
                len(kills),
                final.acknowledged,
                final.found,
                final.lost,
                final.duplicated,
                f"{max(r.orphans for r in kills)}/{final.orphans}",
                statistics.mean(restarts),
                max(restarts),
                sum(len(r.problems) for r in rounds),
            )
        )
    if database is not None:
        database.drop()
    print(
        f"\n{'store':<11} {'kills':>5} {'acked':>6} {'found':>6} {'lost':>4} {'dup':>3} "
        f"{'orphans max/end':>15} {'restart s (mean/max)':>20} {'problems':>8}"
    )
    for name, kills, acked, found, lost, dup, orphans, mean, most, problems in summary:
        print(
            f"{name:<11} {kills:>5} {acked:>6} {found:>6} {lost:>4} {dup:>3} {orphans:>15} "
            f"{mean:>13.2f} / {most:>4.2f} {problems:>8}"
        )


if __name__ == "__main__":
    main()
