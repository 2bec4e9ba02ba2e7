"""Stage `targets`: per arm, the training conversations and where each answer came from."""
from __future__ import annotations

from pathlib import Path

from tasks.core.errors import TargetsError
from tasks.core.method_settings import RftSettings
from tasks.core.records import Artifact, artifact_for, write_jsonl
from tasks.core.stage import run_logger, stage
from tasks.methods.evidence import collect_evidence
from tasks.methods.strategies import build_targets, get_strategy, target_counts


@stage("targets", version="2", outputs=("targets.jsonl",))  # 2: evidence by name; several or no targets per example
def make_targets(out: Path, arm: str, examples: Artifact, evidence: dict[str, Artifact],
                 settings: RftSettings | None = None) -> Artifact:
    """Build one arm's training targets by its strategy from the named `evidence` (tasks/methods/evidence.py);
    `settings` only for the arms that read them (rft). Writes `targets.jsonl`."""
    ev = collect_evidence(examples, evidence)
    made = build_targets(get_strategy(arm), ev, settings)
    counts = target_counts(made, len(ev))
    if not made:
        raise TargetsError(f"arm {arm}: no training targets, all {len(ev)} examples were dropped (no correct answer "
                           f"among their samples). Fix: set rft.fallback: gold, or raise generation.samples")
    run_logger().info("arm %s targets: %s", arm, counts)
    return artifact_for(write_jsonl(out / "targets.jsonl", made), **counts)
