"""Benchmark scoring engines against lm-eval's own `hf` model: shared contexts (the pipeline's default) and
lm-eval's `vllm` model (prompt log-probs), on the same benchmarks (a config's `benchmarks` section) and model,
once each, then wall time, per-benchmark scores, and per item the chosen answer and the score. Prints tables;
not a test. Run vLLM through the CLI's preload (LD_PRELOAD=...libtcmalloc_minimal.so.4:.venv/lib/libiomp5.so).

    .venv/bin/python perf/benchmark_scoring.py [--config configs/quickstart.yaml] [--engines stock,shared,vllm]
        [--dtype float32] [--model bundled:...]
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
    p.add_argument("--engines", default="stock,shared", help="comma-separated: stock, shared, vllm (stock first)")
    p.add_argument("--dtype", default=None, help="default: the config's model.dtype, resolved on this machine")
    a = p.parse_args()
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    cfg = load_config(Path(a.config))
    settings, dtype = cfg.benchmarks, a.dtype or cfg.model.resolved().dtype
    model_dir = materialize_model(a.model, ROOT / "runs" / "perf-model")
    work = Path(tempfile.mkdtemp(prefix="s3ft-scoring-"))
    convert_mirror(Path(a.mirror), work / "data")
    import lm_eval.models.huggingface  # noqa: F401  imported before timing: neither run pays the imports
    import tasks.engines.shared_context  # noqa: F401

    variants = {"stock": dict(share_context=False), "shared": dict(share_context=True),
                "vllm": dict(backend="vllm")}
    names = {"stock": "lm-eval `hf` (stock)", "shared": "shared contexts", "vllm": "lm-eval `vllm` (prompt log-probs)"}
    runs = {}
    for engine in a.engines.split(","):
        out = work / engine
        start = time.perf_counter()
        metrics = run_benchmarks(model_dir, work / "data", settings.model_copy(update=variants[engine]),
                                 VllmSettings(), dtype, out)
        runs[engine] = (time.perf_counter() - start, metrics, per_item(out))
    t_stock, m_stock, i_stock = runs[a.engines.split(",")[0]]
    rows = []
    for engine, (t, _, items) in runs.items():
        same = sum(i_stock[k][0] == items[k][0] for k in i_stock)
        worst = max(abs(i_stock[k][1] - items[k][1]) for k in i_stock)
        rows.append([names[engine], f"{t:.0f}", f"{t_stock / t:.2f}x", str(len(items)),
                     f"{same}/{len(i_stock)} ({100 * same / len(i_stock):.1f} %)", f"{worst:.2e}"])
    print_table(f"benchmark scoring, {a.model}, {Path(a.config).name} benchmarks, {dtype}, {os.cpu_count()} cores",
                ["scoring", "wall s", "first / this", "items", "same chosen answer", "largest item score change"],
                rows)
    print_table("scores (%)", ["benchmark", *(names[e] for e in runs)],
                [[k.removesuffix("/acc"), *(f"{100 * m[k]:.2f}" for _, m, _ in runs.values())]
                 for k in m_stock if k.endswith("/acc")])

if __name__ == "__main__":
    main()
