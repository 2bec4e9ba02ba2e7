"""Counting verdicts: outcomes, which step of a two-step judge decided, and accuracy with its stderr."""
from __future__ import annotations

import math
from collections import Counter
from pathlib import Path

from tasks.core.records import Artifact, Scores, Verdict, read_jsonl


def outcome_counts(verdicts: list[Verdict]) -> dict[str, int]:
    counts = Counter(v.outcome for v in verdicts)
    return {k: counts.get(k, 0) for k in ("correct", "incorrect", "error")}


def decided_by_counts(verdicts: list[Verdict]) -> dict[str, int]:
    """How many verdicts each step of a two-step judge made, and how many LLM replies were unparseable."""
    by = Counter(v.decided_by or "precheck" for v in verdicts)
    unparseable = sum(v.decided_by == "llm" and v.reason.startswith("unparseable") for v in verdicts)
    return {"by_normalized": by.get("normalized", 0), "by_llm": by.get("llm", 0),
            "by_precheck": by.get("precheck", 0), "llm_unparseable": unparseable}


def accuracy_scores(model_ref: str, split: str, verdicts: list[Verdict]) -> Scores:
    """Accuracy with its standard error (sample std / sqrt(n), as lm-eval reports)."""
    counts = outcome_counts(verdicts)
    n = len(verdicts)
    p = counts["correct"] / n if n else float("nan")
    stderr = math.sqrt(p * (1 - p) / (n - 1)) if n > 1 else float("nan")
    return Scores(model_ref=model_ref, split=split, n=n, stderr={"accuracy": stderr},
                  metrics={"accuracy": p, **{k: float(v) for k, v in counts.items()}})


def score(model_ref: str, split: str, verdicts: Artifact) -> Scores:
    """In-domain scores of one model from its verdicts file (cheap: recomputed every run)."""
    return accuracy_scores(model_ref, split, read_jsonl(Path(verdicts.path), Verdict))
