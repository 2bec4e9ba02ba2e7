"""Stage `load_examples`: one split of a built-in data source, or of your own data (`data.source: file | hub`),
validated and subsampled, as `examples.jsonl`."""
from __future__ import annotations

from pathlib import Path

from tasks.core.data_settings import DataSettings
from tasks.core.records import Artifact, artifact_for, write_jsonl
from tasks.core.stage import run_logger, stage
from tasks.data import read_examples
from tasks.data.custom import read_configured


@stage("load_examples", version="1", outputs=("examples.jsonl",), locations=("mirror",))
def load_examples(out: Path, source: str, split: str, size: int | None, seed: int, system_prompt: str | None,
                  mirror: str | None, source_hash: str, own: DataSettings | None = None) -> Artifact:
    """Read, validate and subsample one split; `source_hash` (data.split_fingerprint or
    data.custom.configured_fingerprint) names the data's content; `own` is the data section for your own data
    (its file locations are runtime, out of the key)."""
    if own is not None:
        examples = read_configured(own, split, size, seed)
    else:
        examples = read_examples(source, split, size, seed, Path(mirror) if mirror else None, system_prompt)
    path = write_jsonl(out / "examples.jsonl", examples)
    run_logger().info("%s/%s: %d examples", source, split, len(examples))
    return artifact_for(path, examples=len(examples))
