"""Stage `answer_familiarity`: how familiar each correct own answer is to the base model, where an arm must
choose among several (s3ft_k keeps the most familiar of the greedy answer and the k samples).

The measure is the familiarity stage's: the mean per-token log-prob of the answer under the base model,
teacher-forced with the chat template and answer-only masking of training.
"""
from __future__ import annotations

import math
from pathlib import Path

from tasks.core.records import Artifact, artifact_for, write_jsonl
from tasks.core.stage import run_logger, stage
from tasks.engines.scoring import Work, answer_logprobs
from tasks.methods.evidence import Familiar, collect_evidence
from tasks.methods.sampled import correct_answers

UNSCORABLE = -1e9
"""The score of an answer whose prompt alone exceeds the scoring length: never the most familiar."""


@stage("answer_familiarity", version="1", outputs=("familiar.jsonl",))
def answer_familiarity(out: Path, model: Artifact, examples: Artifact, answers: dict[str, Artifact]) -> Artifact:
    """Score the distinct correct answers of every example that has more than one; writes `familiar.jsonl`.
    `answers` holds the evidence files `own`, `own_verdicts`, `samples`, `sample_verdicts`."""
    pending: list[tuple[str, str, list]] = []
    for ev in collect_evidence(examples, answers):
        texts = list(dict.fromkeys(correct_answers(ev)))
        if len(texts) > 1:
            pending += [(ev.example.id, t, ev.example.prompt_messages + [{"role": "assistant", "content": t}])
                        for t in texts]
    work = Work()
    scores = answer_logprobs(Path(model.path), [c for _, _, c in pending], work=work) if pending else []
    scored = [Familiar(example_id=i, text=t, mean_logprob=UNSCORABLE if math.isnan(s) else s)
              for (i, t, _), s in zip(pending, scores)]
    run_logger().info("scored %d correct answers of %d examples with several", len(scored),
                      len({f.example_id for f in scored}))
    return artifact_for(write_jsonl(out / "familiar.jsonl", scored), scored=len(scored),
                        forward_tokens=work.forward_tokens)
