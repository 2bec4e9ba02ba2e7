"""Stage `benchmark`: lm-eval general benchmarks for one model folder, the base model or an arm's merged model
(stage `merge`; tests/test_benchmark_adapter.py shows merged scores equal the adapter-applied ones, and a
merged model runs at full speed in any engine), through tasks.engines.harness; writes metrics, results and
lm-eval's per-sample logs (the items the paired comparisons pair)."""
from __future__ import annotations

import json
import math
from pathlib import Path

from tasks.core.records import Artifact, artifact_for
from tasks.core.measure_settings import BenchmarkSettings
from tasks.core.settings import VllmSettings
from tasks.core.stage import run_logger, stage
from tasks.engines.harness import run_benchmarks


@stage("benchmark", version="2", outputs=("metrics.json", "results.json", "samples"))  # 2: merged models
def benchmark(out: Path, model: Artifact, data: Artifact | None, settings: BenchmarkSettings,
              vllm: VllmSettings | None, dtype: str) -> Artifact:
    """Scores of one model folder; `vllm` is set when `settings.backend` is vllm."""
    if not (out / "metrics.json").is_file():  # written last: its presence marks a finished run
        run_benchmarks(Path(model.path), Path(data.path) if data else None, settings, vllm or VllmSettings(), dtype,
                       out)
    metrics = json.loads((out / "metrics.json").read_text())
    run_logger().info("benchmarks: %s", ", ".join(f"{k} {v:.3f}" for k, v in metrics.items() if k.endswith("/acc")))
    work = json.loads((out / "results.json").read_text()).get("work") or {}
    return artifact_for(out / "metrics.json", **{k.replace("/", "."): v for k, v in metrics.items()
                                                 if not math.isnan(v)}, **{k: v for k, v in work.items() if v})
