"""Stage `load_examples`: one split of a data source, validated and subsampled, as `examples.jsonl`."""
from __future__ import annotations

from pathlib import Path

from tasks.core.records import Artifact, artifact_for, write_jsonl
from tasks.core.stage import run_logger, stage
from tasks.data import read_examples


@stage("load_examples", version="1", outputs=("examples.jsonl",), locations=("mirror",))
def load_examples(out: Path, source: str, split: str, size: int | None, seed: int, system_prompt: str | None,
                  mirror: str | None, source_hash: str) -> Artifact:
    """Read, validate and subsample one split; `source_hash` (data.split_fingerprint) names the data's content."""
    examples = read_examples(source, split, size, seed, Path(mirror) if mirror else None, system_prompt)
    path = write_jsonl(out / "examples.jsonl", examples)
    run_logger().info("%s/%s: %d examples", source, split, len(examples))
    return artifact_for(path, examples=len(examples))
