"""Stage `targets`: per arm, the training conversation of every example and where its answer came from."""
from __future__ import annotations

from pathlib import Path

from tasks.core.records import Artifact, artifact_for, write_jsonl
from tasks.core.stage import run_logger, stage
from tasks.methods.evidence import collect_evidence
from tasks.methods.strategies import build_targets, get_strategy, source_counts


@stage("targets", version="1", outputs=("targets.jsonl",))
def make_targets(out: Path, arm: str, examples: Artifact, own: Artifact | None, own_verdicts: Artifact | None,
            paraphrases: Artifact | None, paraphrase_verdicts: Artifact | None) -> Artifact:
    """Build one arm's training targets by its strategy; writes `targets.jsonl`."""
    made = build_targets(get_strategy(arm), collect_evidence(examples, own, own_verdicts, paraphrases,
                                                             paraphrase_verdicts))
    counts = source_counts(made)
    run_logger().info("arm %s targets: %s", arm, counts)
    return artifact_for(write_jsonl(out / "targets.jsonl", made), n=len(made), **counts)
