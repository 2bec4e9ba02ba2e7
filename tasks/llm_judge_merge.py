"""Stage `llm_judge_merge`, step 2 of a two-step judge (QA), part 3: the LLM judge's replies folded into
the verdicts (see tasks/llm_judge_prompts.py for the whole step)."""
from __future__ import annotations

from pathlib import Path

from judges.qa import llm_verdict
from tasks.core.errors import JudgeStageError
from tasks.core.records import Artifact, Generation, Verdict, artifact_for, read_jsonl, write_jsonl
from tasks.core.stage import run_logger, stage
from tasks.core.verdicts import decided_by_counts, outcome_counts


def merge_llm_verdicts(verdicts: list[Verdict], replies: list[Generation]) -> list[Verdict]:
    """The first step's verdicts with every deferred one replaced by the LLM's decision."""
    said = {g.example_id: g.text for g in replies}
    return [llm_verdict(v, said[v.example_id]) if v.example_id in said else v for v in verdicts]


@stage("llm_judge_merge", version="1", outputs=("verdicts.jsonl",))
def llm_judge_merge(out: Path, verdicts: Artifact, replies: Artifact, max_error_fraction: float) -> Artifact:
    """Fold the LLM judge's replies into the verdicts; writes `verdicts.jsonl`.

    Unparseable replies become `error` verdicts (counted as `llm_unparseable`, never guessed); the
    stage fails like the judge stage when they exceed `judge.max_error_fraction` of all verdicts.
    """
    merged = merge_llm_verdicts(read_jsonl(Path(verdicts.path), Verdict), read_jsonl(Path(replies.path), Generation))
    path = write_jsonl(out / "verdicts.jsonl", merged)  # kept even if the stage fails below
    counts, steps = outcome_counts(merged), decided_by_counts(merged)
    run_logger().info("judged %d: %s; decided by %s", len(merged), counts, steps)
    if merged and counts["error"] / len(merged) > max_error_fraction:
        raise JudgeStageError(f"{counts['error']} of {len(merged)} verdicts are errors, {steps['llm_unparseable']} "
                              f"of them unparseable LLM-judge replies (> judge.max_error_fraction="
                              f"{max_error_fraction}); see {path}. Fix: a stronger judge.llm.model, a stricter "
                              f"judge.llm.prompt, or raise the threshold knowingly")
    return artifact_for(path, n=len(merged), **counts, **steps)
