"""Stage `benchmark_data`: the mirror's MMLU and TruthfulQA converted once (per mirror content) into the
layout lm-eval reads (tasks.data.benchmark_mirror)."""
from __future__ import annotations

import json
from pathlib import Path

from tasks.core.records import Artifact
from tasks.core.stage import run_logger, stage
from tasks.data.benchmark_mirror import convert_mirror


@stage("benchmark_data", version="1", hashed_by="inputs", locations=("mirror",))
def benchmark_data(out: Path, mirror: str, files_hash: str) -> Artifact:
    """`files_hash` (benchmark_mirror.mirror_hash) names the mirror files' content; `mirror` where they lie."""
    marker = out / "counts.json"
    if not marker.is_file():
        counts = convert_mirror(Path(mirror), out)
        marker.write_text(json.dumps(counts))
    counts = json.loads(marker.read_text())
    run_logger().info("benchmark data: %s", counts)
    return Artifact(path=str(out), sha256=files_hash, counts=counts)
