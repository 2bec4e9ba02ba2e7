"""Benchmark scoring, shared contexts vs lm-eval's own `hf` model: the same benchmarks (a config's
`benchmarks` section) on the same model, once each way, then wall time, per-benchmark scores, and per item
the chosen answer and the score. Prints tables; not a test.

    .venv/bin/python perf/benchmark_scoring.py [--config configs/quickstart.yaml] [--model bundled:...]
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
from tasks.core.config_file import load_config  # noqa: E402
from tasks.core.settings import VllmSettings  # noqa: E402
from tasks.data.benchmark_mirror import convert_mirror  # noqa: E402
from tasks.engines.harness import run_benchmarks  # noqa: E402
from tasks.engines.models import materialize_model  # noqa: E402


def per_item(out: Path) -> dict[tuple[str, int], tuple[int, float]]:
    """(task, doc) -> (chosen answer: the highest log-likelihood, the item's score: acc or mc2)."""
    items = {}
    for path in sorted((out / "samples").glob("*.jsonl")):
        for line in path.read_text().splitlines():
            row = json.loads(line)
            lps = [resp[0] for resp in row["filtered_resps"]]
            score = row.get("acc", row.get("mc2"))
            items[(path.stem, row["doc_id"])] = (max(range(len(lps)), key=lps.__getitem__), float(score))
    return items


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", default=str(ROOT / "configs" / "quickstart.yaml"))
    p.add_argument("--model", default="bundled:smollm2-135m-instruct")
    p.add_argument("--mirror", default=os.environ.get("S3FT_DATA_MIRROR", str(ROOT.parent / "shared" / "data")))
    a = p.parse_args()
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    settings = load_config(Path(a.config)).benchmarks
    model_dir = materialize_model(a.model, ROOT / "runs" / "perf-model")
    work = Path(tempfile.mkdtemp(prefix="s3ft-scoring-"))
    convert_mirror(Path(a.mirror), work / "data")
    import lm_eval.models.huggingface  # noqa: F401  imported before timing: neither run pays the imports
    import tasks.engines.shared_context  # noqa: F401

    runs = {}
    for shared in (False, True):
        out = work / ("shared" if shared else "stock")
        start = time.perf_counter()
        metrics = run_benchmarks(model_dir, work / "data", settings.model_copy(update={"share_context": shared}),
                                 VllmSettings(), "float32", out)
        runs[shared] = (time.perf_counter() - start, metrics, per_item(out))
    (t_stock, m_stock, i_stock), (t_shared, m_shared, i_shared) = runs[False], runs[True]
    same = sum(i_stock[k][0] == i_shared[k][0] for k in i_stock)
    worst = max(abs(i_stock[k][1] - i_shared[k][1]) for k in i_stock)
    print_table(f"benchmark scoring, {a.model}, {Path(a.config).name} benchmarks, fp32, {os.cpu_count()} cores",
                ["scoring", "wall s", "stock / this", "items", "same chosen answer", "largest item score change"],
                [["lm-eval `hf` (stock)", f"{t_stock:.0f}", "1.00x", str(len(i_stock)), "-", "-"],
                 ["shared contexts", f"{t_shared:.0f}", f"{t_stock / t_shared:.2f}x", str(len(i_shared)),
                  f"{same}/{len(i_stock)} ({100 * same / len(i_stock):.1f} %)", f"{worst:.2e}"]])
    print_table("scores (%)", ["benchmark", "stock", "shared contexts", "difference (points)"],
                [[k.removesuffix("/acc"), f"{100 * m_stock[k]:.2f}", f"{100 * m_shared[k]:.2f}",
                  f"{100 * (m_shared[k] - m_stock[k]):+.2f}"] for k in m_stock if k.endswith("/acc")])


if __name__ == "__main__":
    main()
