"""Familiarity diagnostic: per-token answer log-probs under the base model, per arm and source."""
import json
import math
from pathlib import Path

import pytest

from tasks.engines.scoring import answer_logprobs
from tasks.familiarity import familiarity
from tasks.core.records import Target, artifact_for, write_jsonl

Q = [{"role": "user", "content": "What is 2+2?"}]


def _t(i, source, answer):
    return Target(example_id=str(i), source=source, messages=Q + [{"role": "assistant", "content": answer}])


def test_mean_token_logprob_equals_minus_the_models_answer_loss(tiny_model_dir, bundled_tokenizer):
    import torch
    from transformers import AutoModelForCausalLM

    from tasks.engines.lora import encode_target

    convs = [Q + [{"role": "assistant", "content": a}] for a in ("2+2 = 4. The answer is: 4", "Four.", "x" * 50)]
    got = answer_logprobs(tiny_model_dir, convs, batch_size=2)  # padding inside a batch must not matter
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir).eval()
    for conv, lp in zip(convs, got):
        enc = encode_target(bundled_tokenizer, conv, 4096)
        with torch.inference_mode():
            loss = model(**{k: torch.tensor([v]) for k, v in enc.items()}).loss.item()
        assert lp == pytest.approx(-loss, abs=1e-4) and lp < 0


def test_stage_scores_each_pair_once_and_samples_per_source(tiny_model_dir, tmp_path):
    sft = [_t(i, "gold", f"gold answer {i}") for i in range(5)]
    s3ft = [_t(0, "self", "own answer 0"), _t(1, "paraphrase", "para 1")] + sft[2:]
    arts = {arm: artifact_for(write_jsonl(tmp_path / f"{arm}.jsonl", ts)) for arm, ts in (("sft", sft), ("s3ft", s3ft))}
    model = artifact_for(tiny_model_dir / "config.json").model_copy(update={"path": str(tiny_model_dir)})
    art = familiarity.fn(model=model, targets=arts, max_per_source=None, seed=0, store=str(tmp_path / "store"))
    result = json.loads(Path(art.path).read_text())
    assert art.counts["scored"] == 7  # 5 gold shared by both arms + own + paraphrase
    assert {s: v["n"] for s, v in result["s3ft"].items()} == {"self": 1, "paraphrase": 1, "gold": 3}
    assert result["sft"]["gold"]["n"] == 5 and all(math.isfinite(v["mean_logprob"]) for d in result.values()
                                                    for v in d.values())
    capped = familiarity.fn(model=model, targets=arts, max_per_source=2, seed=0, store=str(tmp_path / "store"))
    assert json.loads(Path(capped.path).read_text())["sft"]["gold"]["n"] == 2
