"""Generation backends by name: `vllm` (offline `LLM.chat`) and `hf` (transformers batched generate).

Both apply the model's own chat template to the same messages and use the same sampling settings.
Engines are kept per process (keyed by model folder and settings) so that the stages that use the
base model (generation, paraphrasing, base evaluation) share one engine instead of reloading it.
"""
from __future__ import annotations

import gc
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from tasks.core.records import Message
from tasks.core.settings import GenerationSettings, RepetitionStop, VllmSettings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Sampling:
    max_new_tokens: int
    temperature: float = 0.0
    top_p: float = 1.0
    seed: int = 0
    stop: tuple[str, ...] = ()
    """Strings that end an answer (finish reason `stop`, the string not in the text)."""
    repetition: RepetitionStop | None = None
    """End an answer that loops (finish reason `repetition`)."""
    n: int = 1
    """Answers per conversation (one request with n samples; the result lists a conversation's n together)."""


def ends_in_loop(tokens: list[int], rule: RepetitionStop) -> bool:
    """Whether `tokens` end in `rule.min_count` identical runs of some n-gram of `rule.min_pattern` to
    `rule.max_pattern` tokens: vLLM's check after each output token (v1/core/sched/utils.py)."""
    for size in range(rule.min_pattern, rule.max_pattern + 1):
        if size * rule.min_count > len(tokens):
            return False
        tail = tokens[-size:]
        if all(tokens[len(tokens) - size * (m + 1):len(tokens) - size * m] == tail for m in range(1, rule.min_count)):
            return True
    return False


@dataclass(frozen=True)
class Completion:
    text: str
    finish_reason: str | None
    n_tokens: int


class Backend(Protocol):
    name: str

    def generate(self, conversations: list[list[Message]], sampling: Sampling) -> list[Completion]:
        """`sampling.n` completions per conversation, conversation by conversation."""
        ...

    def close(self) -> None: ...


class VllmBackend:
    name = "vllm"

    def __init__(self, model_dir: Path, dtype: str, settings: VllmSettings, seed: int, sampling: bool = False):
        single = settings.tensor_parallel_size == 1 and settings.data_parallel_size == 1
        if single:  # in-process engine: ~4 s start on CPU instead of ~15-20 s
            os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
        from vllm import LLM
        from vllm.platforms import current_platform

        kwargs = dict(model=str(model_dir), dtype=dtype, seed=seed, enforce_eager=settings.enforce_eager,
                      max_model_len=settings.max_model_len,
                      tensor_parallel_size=settings.tensor_parallel_size,
                      gpu_memory_utilization=settings.gpu_memory_utilization)
        if settings.data_parallel_size > 1:
            kwargs["data_parallel_size"] = settings.data_parallel_size
        if settings.kv_cache_gib is not None:
            kwargs["kv_cache_memory_bytes"] = int(settings.kv_cache_gib * (1 << 30))
        if sampling and current_platform.is_cpu():
            # vLLM on CPU crashes ("CPU Generator does not use offset") when a seeded sampling request is
            # prefilled in chunks: it rewinds the request's generator after the partial step, which only CUDA
            # generators can. Without chunked prefill every prompt is prefilled whole (greedy engines keep it).
            # The step's token budget stays vLLM's CPU default (4096), and holds any whole prompt.
            kwargs.update(enable_chunked_prefill=False, max_num_batched_tokens=max(settings.max_model_len, 4096))
        self.llm = LLM(**kwargs)

    def generate(self, conversations: list[list[Message]], sampling: Sampling) -> list[Completion]:
        from vllm import SamplingParams

        from vllm.sampling_params import RepetitionDetectionParams

        rule = sampling.repetition
        params = SamplingParams(max_tokens=sampling.max_new_tokens, temperature=sampling.temperature,
                                top_p=sampling.top_p, seed=sampling.seed, stop=list(sampling.stop) or None,
                                n=sampling.n,
                                repetition_detection=RepetitionDetectionParams(
                                    max_pattern_size=rule.max_pattern, min_pattern_size=rule.min_pattern,
                                    min_count=rule.min_count) if rule else None)
        outputs = self.llm.chat(conversations, params, use_tqdm=True)
        return [Completion(c.text, c.finish_reason, len(c.token_ids))
                for o in outputs for c in sorted(o.outputs, key=lambda c: c.index)]

    def close(self) -> None:
        engine = getattr(self.llm, "llm_engine", None)
        shutdown = getattr(engine, "shutdown", None)
        if callable(shutdown):
            shutdown()
        del self.llm


class HfBackend:
    name = "hf"

    def __init__(self, model_dir: Path, dtype: str, batch_size: int):
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.torch = torch
        self.tokenizer = AutoTokenizer.from_pretrained(model_dir)
        self.tokenizer.padding_side = "left"
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=getattr(torch, dtype))
        self.model.eval()
        self.batch_size = batch_size

    def _encode(self, conversations: list[list[Message]]) -> list[list[int]]:
        texts = [self.tokenizer.apply_chat_template(c, add_generation_prompt=True, tokenize=False)
                 for c in conversations]
        return [self.tokenizer(t, add_special_tokens=False)["input_ids"] for t in texts]

    def generate(self, conversations: list[list[Message]], sampling: Sampling) -> list[Completion]:
        from tqdm.auto import tqdm

        torch = self.torch
        encoded = self._encode(conversations)
        order = sorted(range(len(encoded)), key=lambda i: -len(encoded[i]))  # similar lengths batch well
        results: dict[int, list[Completion]] = {}
        eos = self.model.generation_config.eos_token_id
        eos_ids = set(eos if isinstance(eos, list) else [eos]) | {self.tokenizer.eos_token_id}
        torch.manual_seed(sampling.seed)
        for start in tqdm(range(0, len(order), self.batch_size), desc="hf generate", unit="batch"):
            idx = order[start:start + self.batch_size]
            batch = self.tokenizer.pad({"input_ids": [encoded[i] for i in idx]}, return_tensors="pt")
            greedy = sampling.temperature == 0
            with torch.inference_mode():
                out = self.model.generate(
                    **batch, max_new_tokens=sampling.max_new_tokens, do_sample=not greedy,
                    temperature=None if greedy else sampling.temperature,
                    top_p=None if greedy else sampling.top_p, top_k=None,
                    pad_token_id=self.tokenizer.pad_token_id, stop_strings=list(sampling.stop) or None,
                    tokenizer=self.tokenizer, stopping_criteria=self._loop_criteria(sampling, batch),
                    num_return_sequences=sampling.n)
            rows = [self._completion(r, eos_ids, sampling) for r in out[:, batch["input_ids"].shape[1]:].tolist()]
            n = sampling.n  # a prompt's n rows are adjacent
            results.update({i: rows[j * n:(j + 1) * n] for j, i in enumerate(idx)})
        return [c for i in range(len(encoded)) for c in results[i]]

    def _loop_criteria(self, sampling: Sampling, batch):
        """transformers stops rows that loop (the same rule as vLLM) once every row is done."""
        from transformers import StoppingCriteria, StoppingCriteriaList

        rule, start, torch = sampling.repetition, batch["input_ids"].shape[1], self.torch
        if rule is None:
            return None

        class LoopStop(StoppingCriteria):
            def __call__(self, input_ids, scores, **kwargs):
                return torch.tensor([ends_in_loop(r[start:].tolist(), rule) for r in input_ids],
                                    dtype=torch.bool, device=input_ids.device)

        return StoppingCriteriaList([LoopStop()])

    def _completion(self, row: list[int], eos_ids: set, sampling: Sampling) -> Completion:
        """Where an answer ended, as vLLM decides it: EOS or a loop after each token, then stop strings."""
        end, reason = len(row), "length"
        for j, tok in enumerate(row):
            if tok in eos_ids:
                end, reason = j + 1, "stop"
                break
            if sampling.repetition and ends_in_loop(row[:j + 1], sampling.repetition):
                end, reason = j + 1, "repetition"
                break
        kept = row[:end - 1] if reason == "stop" else row[:end]  # EOS counts as a token, not as text
        for j in range(1, len(kept) + 1) if sampling.stop else ():
            text = self.tokenizer.decode(kept[:j], skip_special_tokens=True)
            found = [text.find(s) for s in sampling.stop if s in text]
            if found:
                return Completion(text[:min(found)], "stop", j)
        return Completion(self.tokenizer.decode(kept, skip_special_tokens=True), reason, end)

    def close(self) -> None:
        del self.model


_ENGINES: dict[tuple, Backend] = {}


def get_backend(model_dir: Path, dtype: str, settings: GenerationSettings, vllm: VllmSettings) -> Backend:
    """A (cached) engine for a model folder; one engine is kept at a time to bound memory."""
    name = settings.resolved().backend
    sampling = settings.temperature > 0  # a sampling engine may be set up differently (VllmBackend)
    key = (name, str(model_dir), dtype, vllm.model_dump_json(), settings.hf_batch_size, settings.seed, sampling)
    if key not in _ENGINES:
        release_backends()
        log.info("starting %s engine for %s", name, model_dir)
        if name == "vllm":
            _ENGINES[key] = VllmBackend(model_dir, dtype, vllm, settings.seed, sampling)
        else:
            _ENGINES[key] = HfBackend(model_dir, dtype, settings.hf_batch_size)
    return _ENGINES[key]


def release_backends() -> None:
    """Shut every cached engine down and free its memory."""
    for backend in _ENGINES.values():
        backend.close()
    _ENGINES.clear()
    gc.collect()
