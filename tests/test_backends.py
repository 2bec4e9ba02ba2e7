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
