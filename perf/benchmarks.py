"""General benchmarks: the bundled model's score on each (with the chance level beside it) and what lm-eval
costs per item, through the pipeline's own harness (tasks/engines/harness.py) over the converted mirror.
Prints a table; not a test. Used to choose the quickstart's benchmarks and subset sizes.

    .venv/bin/python perf/benchmarks.py [--items 200] [--names arc_easy hellaswag ...] [--model bundled:...]
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from perf.common import print_table  # noqa: E402
from tasks.core.measure_settings import BenchmarkSettings  # noqa: E402
from tasks.core.settings import VllmSettings  # noqa: E402
from tasks.data.benchmark_mirror import convert_mirror  # noqa: E402
from tasks.engines.harness import run_benchmarks  # noqa: E402
from tasks.engines.models import materialize_model  # noqa: E402

# Chance: uniform guessing over the choices (BoolQ: always "yes", the majority answer of its validation split).
CHANCE = {"arc_easy": 25.0, "arc_challenge": 25.0, "hellaswag": 25.0, "winogrande": 50.0, "piqa": 50.0,
          "boolq": 62.2, "openbookqa": 25.0, "mmlu": 25.0}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--items", type=int, default=200, help="seeded items per benchmark (MMLU: per subject / 57)")
    p.add_argument("--names", nargs="+", default=["arc_easy", "arc_challenge", "hellaswag", "winogrande", "piqa",
                                                  "boolq", "openbookqa"])
    p.add_argument("--model", default="bundled:smollm2-135m-instruct")
    p.add_argument("--mirror", default=os.environ.get("S3FT_DATA_MIRROR", str(ROOT.parent / "shared" / "data")))
    a = p.parse_args()
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    model_dir = materialize_model(a.model, ROOT / "runs" / "perf-model")
    work = Path(tempfile.mkdtemp(prefix="s3ft-bench-"))
    convert_mirror(Path(a.mirror), work / "data")
    rows = []
    for name in a.names:
        settings = BenchmarkSettings(names=[name], limits={} if name == "mmlu" else {name: a.items},
                                     mmlu_per_subject=max(1, a.items // 57) if name == "mmlu" else None)
        start = time.perf_counter()
        metrics = run_benchmarks(model_dir, work / "data", settings, VllmSettings(), "float32", work / name)
        seconds = time.perf_counter() - start
        results = json.loads((work / name / "results.json").read_text())["results"][name]
        n = sum(len(f.read_text().splitlines()) for f in (work / name / "samples").glob("*.jsonl"))
        norm = results.get("acc_norm,none")
        rows.append([name, str(n), f"{100 * metrics[f'{name}/acc']:.1f}", f"{100 * norm:.1f}" if norm else "-",
                     f"{CHANCE.get(name, float('nan')):.1f}", f"{seconds:.0f}", f"{n / seconds:.2f}"])
    print_table(f"general benchmarks, {a.model}, hf backend fp32, {os.cpu_count()} cores",
                ["benchmark", "items", "acc %", "acc_norm %", "chance %", "seconds", "items/s"], rows)


if __name__ == "__main__":
    main()
