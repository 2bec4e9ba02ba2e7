"""Drift from the base model: exactly 0 against itself, > 0 against a perturbed copy; the general prompts
are a fixed, seeded draw in equal shares that never shows an answer."""
import json
from collections import Counter
from pathlib import Path

import pytest

from tasks.core.records import Example, Generation, artifact_for, write_jsonl
from tasks.data.general_text import general_prompts, shares
from tasks.drift import drift

REPLIES = ["Paris is the capital of France.", "Four.", "The sea is wide and deep, and it is blue today."]


def _inputs(tmp: Path):
    examples = [Example(id=f"p{i}", source="drift:test", prompt_messages=[{"role": "user", "content": q}], gold="")
                for i, q in enumerate(["Capital of France?", "2+2?", "Say something about the sea."])]
    gens = [Generation(example_id=e.id, model_ref="base", text=t) for e, t in zip(examples, REPLIES)]
    return (artifact_for(write_jsonl(tmp / "prompts.jsonl", examples)),
            artifact_for(write_jsonl(tmp / "replies.jsonl", gens)))


def _model(folder: Path):
    return artifact_for(folder / "config.json").model_copy(update={"path": str(folder)})


@pytest.fixture(scope="module")
def perturbed_model_dir(tiny_model_dir, tmp_path_factory) -> Path:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    torch.manual_seed(1)
    with torch.no_grad():
        model.model.layers[0].self_attn.q_proj.weight.add_(0.05 * torch.randn_like(model.model.layers[0].self_attn.q_proj.weight))
        model.model.norm.weight.mul_(3.0)  # sharper next-token distributions: a KL far above float rounding
    out = tmp_path_factory.mktemp("perturbed")
    model.save_pretrained(out)
    AutoTokenizer.from_pretrained(tiny_model_dir).save_pretrained(out)
    return out


def test_drift_of_the_base_model_against_itself_is_exactly_zero(tiny_model_dir, tmp_path):
    prompts, replies = _inputs(tmp_path)
    art = drift.fn(base=_model(tiny_model_dir), model=_model(tiny_model_dir), prompts=prompts, replies=replies,
                   batch_size=2, seed=0, store=str(tmp_path / "store"))
    summary = json.loads(Path(art.path).read_text())
    assert (summary["kl"], summary["kl_ci_low"], summary["kl_ci_high"], summary["logprob_delta"]) == (0.0, 0.0, 0.0, 0.0)
    items = [json.loads(l) for l in (Path(art.path).parent / "drift_items.jsonl").read_text().splitlines()]
    assert len(items) == 3 and all(i["kl"] == 0.0 and i["n_tokens"] > 0 for i in items)


def test_drift_against_a_perturbed_copy_is_positive(tiny_model_dir, perturbed_model_dir, tmp_path):
    prompts, replies = _inputs(tmp_path)
    art = drift.fn(base=_model(tiny_model_dir), model=_model(perturbed_model_dir), prompts=prompts, replies=replies,
                   batch_size=2, seed=0, store=str(tmp_path / "store"))
    summary = json.loads(Path(art.path).read_text())
    assert summary["kl"] > 0 and 0 < summary["kl_ci_low"] <= summary["kl"] <= summary["kl_ci_high"]
    assert summary["prompts"] == 3 and summary["logprob_delta"] != 0.0


def test_the_kl_is_the_full_vocabulary_kl_at_each_reply_position(tiny_model_dir, perturbed_model_dir):
    """Against a direct computation on one conversation, position by position."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from tasks.engines.lora import IGNORE, encode_target
    from tasks.engines.scoring import answer_drift

    from tasks.engines.scoring import Work

    conv = [{"role": "user", "content": "Capital of France?"}, {"role": "assistant", "content": REPLIES[0]}]
    work = Work()
    (item,) = answer_drift(tiny_model_dir, perturbed_model_dir, [conv], work=work)
    enc = encode_target(AutoTokenizer.from_pretrained(tiny_model_dir), conv, 4096)
    assert work.forward_tokens == 2 * len(enc["input_ids"])  # both models read the whole conversation
    assert 2 * item.n_tokens <= work.vocab_rows < 2 * len(enc["input_ids"])  # projected from the answer on
    ids, labels = torch.tensor([enc["input_ids"]]), torch.tensor(enc["labels"][1:])
    with torch.no_grad():
        p = torch.log_softmax(AutoModelForCausalLM.from_pretrained(tiny_model_dir)(ids).logits[0, :-1], -1)
        q = torch.log_softmax(AutoModelForCausalLM.from_pretrained(perturbed_model_dir)(ids).logits[0, :-1], -1)
    rows = labels != IGNORE
    expected = (p.exp() * (p - q)).sum(-1)[rows].mean().item()
    assert item.n_tokens == int(rows.sum()) and item.kl == pytest.approx(expected, rel=1e-4)


def test_the_base_reference_gives_the_drift_of_two_forwards_without_the_base_body(tiny_model_dir, perturbed_model_dir,
                                                                                    tmp_path):
    """drift_reference once, then drift per arm: the same numbers as running both models, with the base
    model's transformer body run once for all arms; base against itself stays exactly 0."""
    from tasks.drift_reference import drift_reference

    prompts, replies = _inputs(tmp_path)
    store = str(tmp_path / "store")
    ref = drift_reference.fn(base=_model(tiny_model_dir), prompts=prompts, replies=replies, batch_size=2, store=store)
    assert ref.counts["batches"] == 2 and ref.counts["forward_tokens"] > 0

    def run(model_dir, reference):
        art = drift.fn(base=_model(tiny_model_dir), model=_model(model_dir), prompts=prompts, replies=replies,
                       batch_size=2, seed=0, reference=reference, store=store)
        items = [json.loads(l) for l in (Path(art.path).parent / "drift_items.jsonl").read_text().splitlines()]
        return art, items

    with_ref, items_ref = run(perturbed_model_dir, ref)
    direct, items_direct = run(perturbed_model_dir, None)
    assert with_ref.path != direct.path  # the reference is an input of the key
    for a, b in zip(items_ref, items_direct, strict=True):
        assert a["n_tokens"] == b["n_tokens"] and a["kl"] > 0
        assert a["kl"] == pytest.approx(b["kl"], rel=1e-5) and a["logprob_base"] == pytest.approx(b["logprob_base"], rel=1e-6)
    assert with_ref.counts["forward_tokens"] * 2 == direct.counts["forward_tokens"]  # the arm's body only
    assert with_ref.counts["vocab_rows"] == direct.counts["vocab_rows"]
    _, itself = run(tiny_model_dir, ref)
    assert all(i["kl"] == 0.0 and i["logprob_base"] == i["logprob_arm"] for i in itself)


def test_a_reference_of_other_batches_is_refused(tiny_model_dir, perturbed_model_dir):
    from tasks.engines.scoring import answer_drift, base_reference

    convs = [[{"role": "user", "content": f"Question {i}?"}, {"role": "assistant", "content": REPLIES[i]}]
             for i in range(3)]
    reference = base_reference(tiny_model_dir, convs, batch_size=3)
    with pytest.raises(ValueError, match="drift reference"):
        answer_drift(tiny_model_dir, perturbed_model_dir, convs, batch_size=2, reference=reference)


def test_general_prompts_are_a_seeded_draw_in_equal_shares_without_answers(mirror, tmp_path_factory):
    from tasks.data.benchmark_mirror import convert_mirror

    data = tmp_path_factory.mktemp("bench-copy")
    convert_mirror(mirror, data)
    names = ["mmlu", "truthfulqa", "arc_easy", "hellaswag", "piqa"]
    a = general_prompts(names, 23, seed=0, data_dir=data)
    assert [e.id for e in a] == [e.id for e in general_prompts(names, 23, seed=0, data_dir=data)]
    assert [e.id for e in a] != [e.id for e in general_prompts(names, 23, seed=1, data_dir=data)]
    assert Counter(e.source for e in a) == {f"drift:{n}": k for n, k in shares(23, names).items()}
    assert shares(23, names) == {"mmlu": 5, "truthfulqa": 5, "arc_easy": 5, "hellaswag": 4, "piqa": 4}
    mmlu = next(e for e in a if e.source == "drift:mmlu").prompt_messages[-1]["content"]
    assert "\nA. " in mmlu and "\nD. " in mmlu and "Answer" not in mmlu
    assert all(e.gold == "" and len(e.prompt_messages) == 1 for e in a)
