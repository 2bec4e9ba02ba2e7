"""Code-judge throughput: test suites per second on the real MBPP gold solutions (each runs in its
own sandbox child), one worker versus one per core. Prints a table; not a test.

    .venv/bin/python perf/judge.py [--limit 974] [--mirror ../shared/data]
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from judges.code import CodeJudge  # noqa: E402
from tasks.data import read_examples  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--limit", type=int, default=974, help="how many MBPP problems (all splits)")
    p.add_argument("--mirror", default=os.environ.get("S3FT_DATA_MIRROR", str(ROOT.parent / "shared" / "data")))
    a = p.parse_args()
    examples = [e for s in ("prompt", "train", "validation", "test")
                for e in read_examples("mbpp", s, None, 0, Path(a.mirror), None)][:a.limit]
    cores = os.cpu_count() or 1
    rows = []
    for workers in sorted({1, cores}):
        start = time.perf_counter()
        verdicts = CodeJudge(workers=workers).judge_many([(e, e.gold) for e in examples])
        seconds = time.perf_counter() - start
        passed = sum(v.outcome == "correct" for v in verdicts)
        rows.append((workers, len(examples), passed, seconds, len(examples) / seconds))
    print(f"\ncode judge on MBPP gold solutions ({cores} cores)\n")
    print("| workers | suites | passed | seconds | suites/s | vs 1 worker |")
    print("|---|---|---|---|---|---|")
    for w, n, ok, s, rate in rows:
        print(f"| {w} | {n} | {ok} | {s:.1f} | {rate:.1f} | {rate / rows[0][4]:.2f}x |")


if __name__ == "__main__":
    main()
