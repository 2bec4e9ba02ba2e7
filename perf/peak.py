"""This machine's matmul peak, fp32 and bf16, with torch on all its cores: the "limit" column of
PERFORMANCE.md's per-stage table. Shapes are the bundled model's (hidden 576, MLP 1536, vocabulary 49,152)
at the token counts the stages run, plus one large square GEMM. Prints a table; not a test.

    .venv/bin/python perf/peak.py [--seconds 2]
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from perf.common import print_table  # noqa: E402
from tasks.core.settings import BF16_CPU_FLAGS, cpu_flags  # noqa: E402

SHAPES = {  # (m, k, n): activations m x k times weights k x n
    "MLP up, 512 tokens (576 x 1536)": (512, 576, 1536),
    "MLP up, 4096 tokens": (4096, 576, 1536),
    "vocabulary, 512 tokens (576 x 49152)": (512, 576, 49152),
    "square 2048": (2048, 2048, 2048),
}


def gflops(m: int, k: int, n: int, dtype: torch.dtype, seconds: float) -> float:
    """Best-of GFLOP/s of `a @ b` over about `seconds` of repetitions, after one warm-up call; at least one timed
    call (bf16 without avx512_bf16/AMX takes seconds per call, so a repetition budget bounds the script)."""
    a, b = torch.randn(m, k).to(dtype), torch.randn(k, n).to(dtype)
    a @ b
    best, deadline = 0.0, time.perf_counter() + seconds
    while not best or time.perf_counter() < deadline:
        start = time.perf_counter()
        a @ b
        best = max(best, 2 * m * k * n / (time.perf_counter() - start) / 1e9)
    return best


def measure_peak(seconds: float = 2.0) -> dict[str, dict[str, float]]:
    """GFLOP/s per shape and dtype; `peak` is the best of each dtype. Without native bf16 (no avx512_bf16 or AMX:
    torch then runs bf16 matmuls at ~1 GFLOP/s, 7 minutes for these shapes) bf16 is measured on the first shape
    alone: enough to show why `model.dtype: auto` stays fp32 there."""
    native_bf16 = bool(set(BF16_CPU_FLAGS) & cpu_flags())
    out: dict[str, dict[str, float]] = {}
    for dtype in (torch.float32, torch.bfloat16):
        name = str(dtype).removeprefix("torch.")
        shapes = SHAPES if dtype == torch.float32 or native_bf16 else dict(list(SHAPES.items())[:1])
        out[name] = {label: gflops(*shape, dtype, seconds) for label, shape in shapes.items()}
        out[name]["peak"] = max(out[name].values())
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seconds", type=float, default=2.0, help="repetition time per shape and dtype")
    a = p.parse_args()
    flags = sorted(f for f in cpu_flags() if f.startswith(("avx", "amx", "fma")))
    print(f"threads {torch.get_num_threads()}, cores {os.cpu_count()}, flags: {' '.join(flags)}")
    res = measure_peak(a.seconds)
    bf16 = res["bfloat16"]
    rows = [[label, f"{res['float32'][label]:.0f}", f"{bf16[label]:.0f}" if label in bf16 else "not measured",
             f"{bf16[label] / res['float32'][label]:.2f}x" if label in bf16 else "-"] for label in [*SHAPES, "peak"]]
    print_table("matmul GFLOP/s (best of repetitions), torch on all cores", ["shape", "fp32", "bf16", "bf16 / fp32"],
                rows)


if __name__ == "__main__":
    main()
