"""vLLM and transformers agree: same chat template, same greedy tokens on the bundled model."""
import importlib.util
from pathlib import Path

import pytest

from tasks.engines.backends import HfBackend, Sampling, VllmBackend
from tasks.core.settings import VllmSettings

PROMPTS = [
    "What is 12 times 7?",
    "Natalia sold clips to 48 of her friends in April, and then she sold half as many clips in May. "
    "How many clips did Natalia sell altogether in April and May?",
    "Name three colors.",
    "Write one sentence about the sea.",
    "If a train travels 60 miles in 1.5 hours, what is its average speed?",
]


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("vllm") is None, reason="vllm not installed")
def test_vllm_and_hf_greedy_outputs_agree(bundled_model_dir):
    conversations = [[{"role": "user", "content": p}] for p in PROMPTS]
    sampling = Sampling(max_new_tokens=40)
    hf = HfBackend(bundled_model_dir, "float32", batch_size=8)
    hf_out = hf.generate(conversations, sampling)
    hf.close()
    vllm = VllmBackend(bundled_model_dir, "float32", VllmSettings(), seed=0)
    try:
        v_out = vllm.generate(conversations, sampling)
    finally:
        vllm.close()
    assert all(o.text for o in hf_out)
    assert [o.text for o in v_out] == [o.text for o in hf_out]
    assert [o.n_tokens for o in v_out] == [o.n_tokens for o in hf_out]


def test_prompt_tokens_count_what_generation_reads(tiny_model_dir):
    """The generate stage's `prompt_tokens` (perf/quickstart.py's FLOPs) are the tokens the backend encodes."""
    from tasks.core.records import Example
    from tasks.generate import prompt_tokens

    examples = [Example(id=str(i), source="test", gold="x", prompt_messages=[{"role": "user", "content": q}])
                for i, q in enumerate(["Hi?", "A longer question about the passage, with more words in it?"])]
    hf = HfBackend(tiny_model_dir, "float32", batch_size=2)
    encoded = hf._encode([e.prompt_messages for e in examples])
    assert prompt_tokens(tiny_model_dir, examples) == sum(map(len, encoded))
    assert prompt_tokens(tiny_model_dir, examples[1:]) > prompt_tokens(tiny_model_dir, examples[:1])


@pytest.mark.skipif(importlib.util.find_spec("vllm") is None, reason="vllm not installed")
def test_the_loop_rule_is_vllms_repetition_detection():
    """`ends_in_loop` (the transformers backend's stop) against vLLM's own check, on random token runs."""
    import random

    from vllm.sampling_params import RepetitionDetectionParams
    from vllm.v1.core.sched.utils import check_sequence_repetition

    from tasks.core.settings import RepetitionStop
    from tasks.engines.backends import ends_in_loop

    rng = random.Random(0)
    seen = set()
    for trial in range(3000):
        rule = RepetitionStop(max_pattern=rng.randint(1, 6), min_pattern=1, min_count=rng.randint(2, 4))
        rule = rule.model_copy(update={"min_pattern": rng.randint(1, rule.max_pattern)})
        unit = [rng.randint(0, 2) for _ in range(rng.randint(1, 6))]
        tokens = [rng.randint(0, 2) for _ in range(rng.randint(0, 8))] + unit * rng.randint(1, 4)
        expected = check_sequence_repetition(tokens, RepetitionDetectionParams(
            max_pattern_size=rule.max_pattern, min_pattern_size=rule.min_pattern, min_count=rule.min_count))
        assert ends_in_loop(tokens, rule) == expected, (tokens, rule)
        seen.add(expected)
    assert seen == {True, False}


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("vllm") is None, reason="vllm not installed")
def test_vllm_and_hf_stop_answers_at_the_same_place(bundled_model_dir):
    """Stop strings and the loop stop: the same text, token count and finish reason from both engines."""
    from tasks.core.settings import RepetitionStop

    conversations = [[{"role": "user", "content": p}] for p in PROMPTS + ["Repeat the word hello twenty times."]]
    sampling = Sampling(max_new_tokens=48, stop=("\n\n",), repetition=RepetitionStop(max_pattern=6, min_count=2))
    hf = HfBackend(bundled_model_dir, "float32", batch_size=8)
    hf_out = hf.generate(conversations, sampling)
    plain = hf.generate(conversations, Sampling(max_new_tokens=48))
    hf.close()
    vllm = VllmBackend(bundled_model_dir, "float32", VllmSettings(), seed=0)
    try:
        v_out = vllm.generate(conversations, sampling)
    finally:
        vllm.close()
    assert [(o.text, o.n_tokens, o.finish_reason) for o in v_out] == [(o.text, o.n_tokens, o.finish_reason) for o in hf_out]
    reasons = [o.finish_reason for o in hf_out]
    assert "repetition" in reasons, reasons
    assert any("\n\n" in p.text and "\n\n" not in o.text for p, o in zip(plain, hf_out))  # a stop string cut one
    assert all(p.text.startswith(o.text) and o.n_tokens <= p.n_tokens for p, o in zip(plain, hf_out))


def _samples_by_prompt(backend, conversations, n: int, seed: int = 0) -> list[list[str]]:
    out = backend.generate(conversations, Sampling(max_new_tokens=24, temperature=1.0, seed=seed, n=n))
    assert len(out) == n * len(conversations)
    return [[o.text for o in out[i * n:(i + 1) * n]] for i in range(len(conversations))]


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("vllm") is None, reason="vllm not installed")
def test_k_samples_come_grouped_per_prompt_from_both_engines_and_follow_the_seed(bundled_model_dir):
    """n=k: each prompt's k answers together, in prompt order; k different answers; the same seed, the same
    samples (an engine's own; vLLM and transformers draw differently)."""
    conversations = [[{"role": "user", "content": p}] for p in PROMPTS[:3]]
    hf = HfBackend(bundled_model_dir, "float32", batch_size=2)  # prompts of one batch and of two
    hf_a, hf_b = _samples_by_prompt(hf, conversations, 3), _samples_by_prompt(hf, conversations, 3)
    hf.close()
    vllm = VllmBackend(bundled_model_dir, "float32", VllmSettings(), seed=0, sampling=True)
    try:
        v_a, v_b = _samples_by_prompt(vllm, conversations, 3), _samples_by_prompt(vllm, conversations, 3)
        v_other = _samples_by_prompt(vllm, conversations, 3, seed=1)
        alone = _samples_by_prompt(vllm, conversations[1:2], 3)  # a prompt's samples do not depend on its batch
    finally:
        vllm.close()
    for samples in (hf_a, v_a):
        assert all(len(set(s)) > 1 for s in samples), samples  # k draws, not k copies of one
    assert hf_a == hf_b and v_a == v_b and v_other != v_a and alone == v_a[1:2]


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("vllm") is None, reason="vllm not installed")
def test_seeded_sampling_of_prompts_longer_than_one_step_runs_on_vllm(bundled_model_dir):
    """Long prompts (NQ passages) overflow one scheduler step; seeded sampling must still run and repeat
    (vLLM on CPU used to crash here: it rewinds a chunk-prefilled request's generator, which CPU cannot)."""
    passage = " ".join(f"Sentence {i} of the passage says that the river is long and the city is old." for i in range(80))
    conversations = [[{"role": "user", "content": f"Passage {q}. {passage}\nHow long is the river?"}] for q in range(10)]
    vllm = VllmBackend(bundled_model_dir, "float32", VllmSettings(), seed=0, sampling=True)
    try:
        tok = vllm.llm.get_tokenizer()
        tokens = sum(len(tok(tok.apply_chat_template(c, tokenize=False))["input_ids"]) for c in conversations)
        assert tokens > 3 * 4096  # several steps of vLLM's token budget on CPU (distinct prompts: no prefix hits)
        first = vllm.generate(conversations, Sampling(max_new_tokens=6, temperature=1.0, seed=3, n=2))
        again = vllm.generate(conversations, Sampling(max_new_tokens=6, temperature=1.0, seed=3, n=2))
    finally:
        vllm.close()
    assert len(first) == 20 and [c.text for c in first] == [c.text for c in again]
