"""Targets stage: per arm, the training conversation of every example and where its answer came from."""
from __future__ import annotations

from collections import Counter
from pathlib import Path

from tasks.cache import stage_dir
from tasks.records import (Artifact, Example, Generation, Target, Verdict, artifact_for, read_jsonl,
                           write_jsonl)
from tasks.stage import run_logger, stage
from tasks.strategies import Evidence, build_targets, get_strategy


def _by_id(path: str | None, cls: type) -> dict:
    return {} if path is None else {r.example_id: r for r in read_jsonl(Path(path), cls)}


def collect_evidence(examples: Artifact, own: Artifact | None, own_verdicts: Artifact | None,
                     paraphrases: Artifact | None, paraphrase_verdicts: Artifact | None) -> list[Evidence]:
    """Join the per-example records of the earlier stages by example id."""
    gens = _by_id(own and own.path, Generation)
    verdicts = _by_id(own_verdicts and own_verdicts.path, Verdict)
    paras = _by_id(paraphrases and paraphrases.path, Generation)
    para_verdicts = _by_id(paraphrase_verdicts and paraphrase_verdicts.path, Verdict)
    return [Evidence(example=e, own=gens.get(e.id), own_verdict=verdicts.get(e.id), paraphrase=paras.get(e.id),
                     paraphrase_verdict=para_verdicts.get(e.id))
            for e in read_jsonl(Path(examples.path), Example)]


def source_counts(targets: list[Target]) -> dict[str, int]:
    counts = Counter(t.source for t in targets)
    return {k: counts.get(k, 0) for k in ("self", "paraphrase", "gold")}


@stage("targets")
def make_targets(arm: str, examples: Artifact, own: Artifact | None, own_verdicts: Artifact | None,
                 paraphrases: Artifact | None, paraphrase_verdicts: Artifact | None, store: str) -> Artifact:
    """Build one arm's training targets; writes `targets.jsonl`."""
    out = stage_dir(store, "targets", {"arm": arm, "examples": examples, "own": own, "own_verdicts": own_verdicts,
                                       "paraphrases": paraphrases, "paraphrase_verdicts": paraphrase_verdicts})
    targets = build_targets(get_strategy(arm), collect_evidence(examples, own, own_verdicts, paraphrases,
                                                                paraphrase_verdicts))
    counts = source_counts(targets)
    run_logger().info("arm %s targets: %s", arm, counts)
    return artifact_for(write_jsonl(out / "targets.jsonl", targets), n=len(targets), **counts)
