"""The quickstart from an empty store, stage by stage: wall time, the work each stage did (matmul FLOPs from
the token counts the stages record), its rate, and that rate as a fraction of this machine's matmul peak
(perf/peak.py) in the dtype the stage computes in. Then the identical re-run's wall time. Prints tables;
not a test.

    .venv/bin/python perf/quickstart.py [--config configs/quickstart.yaml] [--output-dir runs/perf-quickstart] [--set k=v]

FLOPs count the weight matmuls only (2 per weight per token forward, 4 for LoRA training: forward and the
input gradients; LoRA's own weights and attention scores are left out), so each fraction is a lower bound.
"""
from __future__ import annotations

import argparse
import json
import platform
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from perf.cache import run  # noqa: E402
from perf.common import print_table  # noqa: E402


@dataclass(frozen=True)
class Shape:
    body: int
    """Weights of the transformer body's matmuls (per token)."""
    head: int
    """Weights of the vocabulary projection (per projected row)."""


def model_shape(model_dir: Path) -> Shape:
    c = json.loads((model_dir / "config.json").read_text())
    d, heads = c["hidden_size"], c["num_attention_heads"]
    kv, hd = c.get("num_key_value_heads", heads), c.get("head_dim") or d // heads
    layer = d * heads * hd * 2 + d * kv * hd * 2 + 3 * d * c["intermediate_size"]
    return Shape(body=layer * c["num_hidden_layers"], head=d * c["vocab_size"])


def stage_work(label: str, counts: dict, shape: Shape) -> tuple[str, float] | None:
    """(what was computed, GFLOP) of one computed stage; None for stages without matmul work."""
    kind = label.split(":")[0]
    if kind == "generate":
        prompt, out = counts.get("prompt_tokens", 0), counts.get("tokens", 0)
        return f"{prompt:.0f} prompt + {out:.0f} output tok", (2 * shape.body * (prompt + out) + 2 * shape.head * out) / 1e9
    if kind == "train":
        tokens = counts["tokens_per_s"] * counts["seconds"]
        return f"{tokens:.0f} tok, {counts['steps']:.0f} steps", 4 * shape.body * tokens / 1e9
    if kind in ("benchmark", "drift", "drift_reference", "familiarity") and counts.get("forward_tokens"):
        t, rows = counts["forward_tokens"], counts["vocab_rows"]
        return f"{t:.0f} tok, {rows:.0f} vocab rows", (2 * shape.body * t + 2 * shape.head * rows) / 1e9
    return None


def stage_dtype(label: str, summary: dict) -> str:
    """The dtype a stage's matmuls run in: the run's model dtype, training's autocast, fp32 scoring on CPU."""
    cfg = summary["config"]
    dtype = summary.get("dtype") or cfg["model"]["dtype"]
    kind = label.split(":")[0]
    if kind == "train":
        return "bfloat16" if summary.get("training_bf16") else "float32"
    if kind == "benchmark":
        return summary.get("benchmark_dtype", dtype)
    return "float32" if kind in ("drift", "drift_reference", "familiarity") else dtype


def stage_rows(summary: dict, shape: Shape, peak: dict[str, float]) -> list[list[str]]:
    flow = summary["wall_seconds"]
    rows, other, other_s = [], 0, 0.0
    for s in summary["stages"]:
        work = None if s["cached"] else stage_work(s["stage"], s["counts"], shape)
        if work is None and s["seconds"] < 5:
            other, other_s = other + 1, other_s + s["seconds"]
            continue
        row = [s["stage"], f"{s['seconds']:.1f}", f"{100 * s['seconds'] / flow:.1f} %"]
        if work is None:
            rows.append(row + ["no matmul work (conversion, I/O)", "", "", "", ""])
            continue
        dtype = stage_dtype(s["stage"], summary)
        rate = work[1] / s["seconds"]
        rows.append(row + [work[0], f"{work[1]:.0f}", f"{rate:.0f}", f"{peak[dtype]:.0f} ({dtype})",
                           f"{100 * rate / peak[dtype]:.0f} %"])
    rows.append([f"{other} other stages (judging, prompts, targets, merge)", f"{other_s:.1f}",
                 f"{100 * other_s / flow:.1f} %", "bookkeeping", "", "", "", ""])
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", default="configs/quickstart.yaml")
    p.add_argument("--output-dir", type=Path, default=ROOT / "runs" / "perf-quickstart")
    p.add_argument("--set", dest="overrides", action="append", default=[])
    a = p.parse_args()
    shutil.rmtree(a.output_dir, ignore_errors=True)
    first_wall, summary = run(a.config, a.output_dir, a.overrides)
    start = time.perf_counter()
    again_wall, again = run(a.config, a.output_dir, a.overrides)
    assert time.perf_counter() - start >= again_wall
    from perf.peak import measure_peak
    from tasks.core.settings import cpu_flags

    peak = {dtype: r["peak"] for dtype, r in measure_peak(2.0).items()}
    model_dir = Path(next(s["path"] for s in summary["stages"] if s["stage"] == "prepare_model"))
    flags = " ".join(sorted(f for f in cpu_flags() if f.startswith(("avx512_bf16", "amx", "avx2", "avx512f"))))
    print(f"machine: {platform.processor() or platform.machine()}, flags {flags}; dtype {summary.get('dtype')}, "
          f"training bf16 autocast {summary.get('training_bf16')}")
    print_table(f"quickstart stages from an empty store ({a.config} {' '.join(a.overrides)}): flow "
                f"{summary['wall_seconds']:.0f} s, process {first_wall:.0f} s",
                ["stage", "wall s", "of flow", "work", "GFLOP", "GFLOP/s", "peak GFLOP/s", "of peak"],
                stage_rows(summary, model_shape(model_dir), peak))
    hits = sum(s["cached"] for s in again["stages"])
    print_table("identical re-run", ["run", "process wall s", "flow wall s", "stage cache hits", "generations"],
                [["first", f"{first_wall:.0f}", f"{summary['wall_seconds']:.0f}", "0", str(summary["generations_performed"])],
                 ["identical re-run", f"{again_wall:.1f}", f"{again['wall_seconds']:.1f}",
                  f"{hits}/{len(again['stages'])}", str(again["generations_performed"])]])


if __name__ == "__main__":
    main()
