"""Stage `sample_examples`: each example once per sample (`q7#s0` ... `q7#s{k-1}`), so that the k sampled
answers of one question (one generation request with n=k) are judged by the unchanged judging stages, the
LLM judge's included: one answer per id."""
from __future__ import annotations

from pathlib import Path

from tasks.core.records import Artifact, Example, artifact_for, read_jsonl, sample_id, write_jsonl
from tasks.core.stage import run_logger, stage


@stage("sample_examples", version="1", outputs=("examples.jsonl",))
def sample_examples(out: Path, examples: Artifact, samples: int) -> Artifact:
    """Write `samples` copies of every example, each under its sample id; writes `examples.jsonl`."""
    copies = [e.model_copy(update={"id": sample_id(e.id, j)})
              for e in read_jsonl(Path(examples.path), Example) for j in range(samples)]
    run_logger().info("%d sample slots", len(copies))
    return artifact_for(write_jsonl(out / "examples.jsonl", copies), examples=len(copies))
