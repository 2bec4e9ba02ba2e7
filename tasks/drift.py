"""Stage `drift`: how far one fine-tuned model moved from the base model on text no arm trains on.

The text is the base model's own greedy reply to each general-domain prompt (stages `drift_prompts` and
`generate`). Teacher-forced on it, per reply token: KL(p_base || p_arm) over the whole vocabulary, and the
change of the reply's log-prob under the arm. No labels; deterministic. Per prompt in `drift_items.jsonl`,
and their means with 95 % bootstrap CIs over prompts in `drift.json`. The base model against itself gives
exactly 0; an arm whose training changed nothing, too.

The base model's part is the same for every arm: `drift_reference` computes it once.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

from tasks.core.records import Artifact, artifact_for, write_lines_atomic, write_text_atomic
from tasks.core.stage import run_logger, stage
from tasks.core.statistics import bootstrap_mean
from tasks.engines.scoring import Work, answer_drift, drift_conversations


@stage("drift", version="2", outputs=("drift.json", "drift_items.jsonl"))
def drift(out: Path, base: Artifact, model: Artifact, prompts: Artifact, replies: Artifact, batch_size: int,
          seed: int, reference: Artifact | None = None) -> Artifact:
    """Drift of `model` (an arm's merged model) from `base` on the base model's `replies` to `prompts`;
    `reference` (`drift_reference` of the same inputs) spares the base model's forward."""
    from safetensors.torch import load_file

    gens, conversations = drift_conversations(Path(prompts.path), Path(replies.path))
    work = Work()
    tensors = load_file(reference.path) if reference is not None else None
    items = answer_drift(Path(base.path), Path(model.path), conversations, batch_size, work=work, reference=tensors)
    rows = [{"id": g.example_id, "n_tokens": d.n_tokens, "kl": d.kl, "logprob_base": d.logprob_base,
             "logprob_arm": d.logprob_arm} for g, d in zip(gens, items) if d is not None and d.n_tokens]
    write_lines_atomic(out / "drift_items.jsonl", (json.dumps(r) + "\n" for r in rows))
    kl = bootstrap_mean([r["kl"] for r in rows], seed)
    delta = bootstrap_mean([r["logprob_arm"] - r["logprob_base"] for r in rows], seed)
    summary = {"kl": kl.estimate, "kl_ci_low": kl.low, "kl_ci_high": kl.high, "logprob_delta": delta.estimate,
               "logprob_delta_ci_low": delta.low, "logprob_delta_ci_high": delta.high, "prompts": len(rows),
               "skipped": len(gens) - len(rows)}
    write_text_atomic(out / "drift.json", json.dumps(summary, indent=1))
    run_logger().info("drift over %d prompts: KL %.5f [%.5f, %.5f], log-prob change %+.4f", len(rows), kl.estimate,
                      kl.low, kl.high, delta.estimate)
    return artifact_for(out / "drift.json", **{k: v for k, v in summary.items() if not math.isnan(v)},
                        forward_tokens=work.forward_tokens, vocab_rows=work.vocab_rows)
