"""Cache reuse: wall time and generations of a first run, an identical re-run, and a run with one
training hyper-parameter changed. Prints a table of ratios; not a test.

    .venv/bin/python perf/cache.py [--config configs/quickstart.yaml] [--output-dir runs-perf] [--set k=v ...]
"""
from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run(config: str, out: Path, overrides: list[str]) -> tuple[float, dict]:
    cmd = [sys.executable, "-m", "flows.cli", "run", config, "--set", f"output_dir={out}"]
    for o in overrides:
        cmd += ["--set", o]
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if proc.returncode:
        sys.exit(f"run failed:\n{proc.stderr[-3000:]}")
    line = next(l for l in proc.stdout.splitlines() if l.startswith("summary: "))
    return wall, json.loads(Path(line.removeprefix("summary: ")).read_text())


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", default="configs/quickstart.yaml")
    p.add_argument("--output-dir", type=Path, default=ROOT / "runs-perf")
    p.add_argument("--set", dest="overrides", action="append", default=[])
    p.add_argument("--keep", action="store_true", help="reuse an existing output dir (first run not cold)")
    a = p.parse_args()
    if a.output_dir.exists() and not a.keep:
        shutil.rmtree(a.output_dir)
    rows = []
    for label, extra in (("first run", []), ("identical re-run", []),
                         ("training.learning_rate changed", ["training.learning_rate=3e-4"])):
        wall, summary = run(a.config, a.output_dir, a.overrides + extra)
        recomputed = [s["stage"] for s in summary["stages"] if not s["cached"]]
        non_eval = sum(s["counts"].get("generations", 0) for s in summary["stages"]
                       if not s["cached"] and s["stage"].startswith("generate:")
                       and "test" not in s["stage"].split(":"))  # generate:test:<arm>, generate:judge:test:<arm>
        rows.append((label, wall, summary["generations_performed"], non_eval, len(recomputed)))
    first = rows[0][1]
    print(f"{'run':34} {'wall s':>8} {'vs first':>9} {'generations':>12} {'outside eval':>13} {'stages run':>11}")
    for label, wall, gens, non_eval, n in rows:
        print(f"{label:34} {wall:8.1f} {wall / first:9.3f} {gens:12d} {non_eval:13d} {n:11d}")


if __name__ == "__main__":
    main()
