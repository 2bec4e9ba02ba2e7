"""Stage `judge`: one Verdict per generation, by the data source's judge."""
from __future__ import annotations

from pathlib import Path

from judges import get_judge
from tasks.core.errors import JudgeStageError
from tasks.core.records import Artifact, Example, Generation, Verdict, artifact_for, read_jsonl, write_jsonl
from tasks.core.stage import run_logger, stage
from tasks.core.verdicts import decided_by_counts, outcome_counts


def too_short(text: str, gold: str, min_length_ratio: float) -> bool:
    return len(text.split()) < min_length_ratio * len(gold.split())


def judge_generations(examples: list[Example], generations: list[Generation], judge_name: str,
                      min_length_ratio: float = 0.0, reject_truncated: bool = False,
                      judge_params: dict | None = None) -> list[Verdict]:
    """Judge each generation against its example; a judge crash becomes an `error` verdict.

    `reject_truncated` first rejects unfinished texts: cut off at the token cap (finish reason `length`) or
    ended in a loop (`repetition`, generation.repetition_stop);
    `min_length_ratio` > 0 (paraphrases) rejects texts much shorter than the gold answer.
    """
    judge = get_judge(judge_name, judge_params)
    by_id = {e.id: e for e in examples}
    decided: dict[int, Verdict] = {}
    pending: list[tuple[int, Example, str]] = []
    for i, g in enumerate(generations):
        example = by_id.get(g.example_id)
        if example is None:
            raise KeyError(f"generation for unknown example {g.example_id!r}: inputs do not belong together")
        reason = ""
        if reject_truncated and g.finish_reason == "length":
            reason = f"truncated: hit the {g.n_tokens}-token cap before finishing"
        elif reject_truncated and g.finish_reason == "repetition":
            reason = f"unfinished: stopped in a loop after {g.n_tokens} tokens"
        elif min_length_ratio and too_short(g.text, example.gold, min_length_ratio):
            reason = f"too short: {len(g.text.split())} words vs gold {len(example.gold.split())}"
        if reason:
            decided[i] = Verdict(example_id=g.example_id, outcome="incorrect", judge=judge.name,
                                 judge_version=judge.version, reason=reason)
        else:
            pending.append((i, example, g.text))
    many = getattr(judge, "judge_many", None)
    if callable(many) and pending:  # judges that run work in parallel (the code sandbox)
        try:
            decided.update(zip((i for i, _, _ in pending), many([(e, t) for _, e, t in pending])))
            pending = []
        except Exception:  # fall back to one at a time, so one bad item becomes one error verdict
            pass
    for i, example, text in pending:
        try:
            decided[i] = judge.judge(example, text)
        except Exception as err:  # the judge's own failure is not a wrong answer: keep it apart
            decided[i] = Verdict(example_id=example.id, outcome="error", judge=judge.name,
                                 judge_version=judge.version, reason=f"{err.__class__.__name__}: {err}")
    verdicts = [decided[i] for i in range(len(generations))]
    return verdicts


@stage("judge", version="3", outputs=("verdicts.jsonl",))  # 3: verdicts say which judge step decided
def judge(out: Path, examples: Artifact, generations: Artifact, judge_name: str, judge_version: str,
          max_error_fraction: float, min_length_ratio: float = 0.0, reject_truncated: bool = False,
          judge_params: dict | None = None) -> Artifact:
    """Judge `generations` against `examples` with the judge `judge_name` tuned by `judge_params` (its config
    section); writes `verdicts.jsonl` (kept even when the stage fails)."""
    verdicts = judge_generations(read_jsonl(Path(examples.path), Example),
                                 read_jsonl(Path(generations.path), Generation), judge_name, min_length_ratio,
                                 reject_truncated, judge_params)
    counts = outcome_counts(verdicts)
    path = write_jsonl(out / "verdicts.jsonl", verdicts)  # kept even if the stage fails below
    short = sum(v.reason.startswith("too short") for v in verdicts)
    cut = sum(v.reason.startswith("truncated") for v in verdicts)
    run_logger().info("judged %d: %s (%d truncated, %d too short)", len(verdicts), counts, cut, short)
    if verdicts and counts["error"] / len(verdicts) > max_error_fraction:
        raise JudgeStageError(f"{counts['error']} of {len(verdicts)} verdicts are judge errors (> "
                              f"judge.max_error_fraction={max_error_fraction}); see {path}. Fix the judge's "
                              f"environment, or raise the threshold knowingly")
    steps = decided_by_counts(verdicts) if any(v.decided_by for v in verdicts) else {}  # two-step judges
    return artifact_for(path, n=len(verdicts), too_short=short, truncated=cut, **counts, **steps)
