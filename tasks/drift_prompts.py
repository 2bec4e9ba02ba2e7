"""Stage `drift_prompts`: the fixed, seeded general-domain prompts drift is measured on (tasks/data/general_text.py),
as `examples.jsonl`; the base model's replies to them come from the ordinary `generate` stage."""
from __future__ import annotations

from collections import Counter
from pathlib import Path

from tasks.core.records import Artifact, artifact_for, write_jsonl
from tasks.core.stage import run_logger, stage
from tasks.data.general_text import general_prompts


@stage("drift_prompts", version="1", outputs=("examples.jsonl",))
def drift_prompts(out: Path, data: Artifact | None, benchmarks: list[str], prompts: int, seed: int) -> Artifact:
    """`prompts` prompts in equal shares from `benchmarks`, read from `data` (the converted mirror copy; None:
    the hub)."""
    examples = general_prompts(benchmarks, prompts, seed, Path(data.path) if data else None)
    run_logger().info("drift prompts: %s", dict(Counter(e.source for e in examples)))
    return artifact_for(write_jsonl(out / "examples.jsonl", examples), examples=len(examples))
