"""Stage `familiarity`, the paper's evidence measured: how familiar each arm's training targets are to the base model.

For every target, the mean per-token log-probability of its answer under the base model (teacher
forcing, the same chat template and answer-only masking as training). The paper's observation: the
model's own correct answers score far higher than gold answers, with paraphrases in between. Each
distinct (prompt, answer) pair is scored once even when several arms train on it.
"""
from __future__ import annotations

import json
import random
from pathlib import Path

from tasks.core.records import Artifact, Target, artifact_for, read_jsonl, sha256_json, write_text_atomic
from tasks.core.stage import run_logger, stage
from tasks.engines.scoring import Work, answer_logprobs


def _key(t: Target) -> str:
    return sha256_json(t.messages)


@stage("familiarity", version="1", outputs=("familiarity.json",))
def familiarity(out: Path, model: Artifact, targets: dict[str, Artifact], max_per_source: int | None,
                seed: int) -> Artifact:
    """Per arm and target source: mean per-token log-prob under the base model, and how many were scored."""
    rng = random.Random(seed)
    picked: dict[str, dict[str, list[Target]]] = {}
    for arm, art in sorted(targets.items()):
        by_source: dict[str, list[Target]] = {}
        for t in read_jsonl(Path(art.path), Target):
            by_source.setdefault(t.source, []).append(t)
        picked[arm] = {s: (ts if max_per_source is None or len(ts) <= max_per_source
                           else rng.sample(ts, max_per_source)) for s, ts in sorted(by_source.items())}
    unique = {_key(t): t for arms in picked.values() for ts in arms.values() for t in ts}
    keys = sorted(unique)
    work = Work()
    scores = dict(zip(keys, answer_logprobs(Path(model.path), [unique[k].messages for k in keys], work=work)))
    result = {arm: {s: {"mean_logprob": sum(scores[_key(t)] for t in ts) / len(ts), "n": len(ts)}
                    for s, ts in sources.items() if ts} for arm, sources in picked.items()}
    path = out / "familiarity.json"
    write_text_atomic(path, json.dumps(result, indent=1))
    run_logger().info("familiarity (mean token log-prob under the base model): %s", {
        a: {s: round(v["mean_logprob"], 3) for s, v in d.items()} for a, d in result.items()})
    return artifact_for(path, scored=len(keys), forward_tokens=work.forward_tokens, vocab_rows=work.vocab_rows)
