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
sys.path.insert(0, str(ROOT))

from perf.common import print_table  # noqa: E402


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
        rows.append((label, wall, int(summary["generations_performed"]), int(non_eval), len(recomputed),
                     summary["wall_seconds"]))
    first = rows[0][1]
    print_table(f"cache reuse, {a.config} {' '.join(a.overrides)}",
                ["run", "wall s (process)", "vs first", "flow wall s", "generations", "outside evaluation",
                 "stages run"],
                [[label, f"{wall:.1f}", f"{wall / first:.3f}", f"{flow:.1f}", str(gens), str(non_eval), str(n)]
                 for label, wall, gens, non_eval, n, flow in rows])

if __name__ == "__main__":
    main()
