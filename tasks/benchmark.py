"""Stage `benchmark`: lm-eval general benchmarks (MMLU, TruthfulQA MC1/MC2, extras) for the base model or
base + one arm's LoRA adapter, through tasks.engines.harness; writes metrics, results and per-sample logs."""
from __future__ import annotations

import json
import math
from pathlib import Path

from tasks.core.records import Artifact, artifact_for
from tasks.core.settings import BenchmarkSettings, VllmSettings
from tasks.core.stage import run_logger, stage
from tasks.engines.harness import run_benchmarks


@stage("benchmark", version="1", outputs=("metrics.json", "results.json", "samples"))
def benchmark(out: Path, model: Artifact, adapter: Artifact | None, data: Artifact | None,
              settings: BenchmarkSettings, vllm: VllmSettings | None, dtype: str) -> Artifact:
    """Scores of the base model (adapter None) or one arm; `vllm` is set when `settings.backend` is vllm."""
    if not (out / "metrics.json").is_file():  # written last: its presence marks a finished run
        run_benchmarks(Path(model.path), Path(adapter.path) if adapter else None, Path(data.path) if data else None,
                       settings, vllm or VllmSettings(), dtype, out)
    metrics = json.loads((out / "metrics.json").read_text())
    run_logger().info("benchmarks: %s", ", ".join(f"{k} {v:.3f}" for k, v in metrics.items() if k.endswith("/acc")))
    return artifact_for(out / "metrics.json", **{k.replace("/", "."): v for k, v in metrics.items()
                                                 if not math.isnan(v)})
