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
from tasks.engines.lora import IGNORE, encode_target


def answer_logprobs(model_dir: Path, conversations: list[list[dict[str, str]]], batch_size: int = 8,
                    max_len: int = 4096) -> list[float]:
    """Mean log-probability per answer token of each conversation's final assistant message."""
    import torch
    from tqdm.auto import tqdm
    from transformers import AutoModelForCausalLM, AutoTokenizer, DataCollatorForSeq2Seq

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    encoded = [encode_target(tokenizer, c, max_len) for c in conversations]
    pad = DataCollatorForSeq2Seq(tokenizer, padding=True, label_pad_token_id=IGNORE)
    order = sorted(range(len(encoded)), key=lambda i: len(encoded[i]["input_ids"]) if encoded[i] else 0)
    out: dict[int, float] = {}
    for start in tqdm(range(0, len(order), batch_size), desc="familiarity", unit="batch"):
        idx = [i for i in order[start:start + batch_size] if encoded[i] is not None]
        out.update({i: float("nan") for i in order[start:start + batch_size] if encoded[i] is None})
        if not idx:
            continue
        batch = pad([encoded[i] for i in idx])
        labels = batch["labels"][:, 1:]
        with torch.inference_mode():
            logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits[:, :-1]
            logp = torch.log_softmax(logits.float(), dim=-1)
            mask = labels != IGNORE
            token_lp = logp.gather(-1, labels.clamp(min=0).unsqueeze(-1)).squeeze(-1) * mask
            means = token_lp.sum(1) / mask.sum(1).clamp(min=1)
        out.update({i: float(m) for i, m in zip(idx, means.tolist())})
    return [out[i] for i in range(len(conversations))]


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
    scores = dict(zip(keys, answer_logprobs(Path(model.path), [unique[k].messages for k in keys])))
    result = {arm: {s: {"mean_logprob": sum(scores[_key(t)] for t in ts) / len(ts), "n": len(ts)}
                    for s, ts in sources.items() if ts} for arm, sources in picked.items()}
    path = out / "familiarity.json"
    write_text_atomic(path, json.dumps(result, indent=1))
    run_logger().info("familiarity (mean token log-prob under the base model): %s", {
        a: {s: round(v["mean_logprob"], 3) for s, v in d.items()} for a, d in result.items()})
    return artifact_for(path, scored=len(keys))
