"""Generation stage: a model answers every example's prompt; one Generation record each."""
from __future__ import annotations

import time
from pathlib import Path

from tasks.backends import Sampling, get_backend, resolve_backend_name
from tasks.cache import stage_dir
from tasks.config import GenerationSettings
from tasks.records import Artifact, Example, Generation, artifact_for, read_jsonl, write_jsonl
from tasks.stage import run_logger, stage


def generate_answers(model_dir: Path, model_ref: str, dtype: str, examples: list[Example],
                     settings: GenerationSettings, max_new_tokens: int) -> list[Generation]:
    """Greedy (by default) answers of one model to every example, in example order."""
    if not examples:
        return []
    backend = get_backend(model_dir, dtype, settings)
    sampling = Sampling(max_new_tokens=max_new_tokens, temperature=settings.temperature,
                        top_p=settings.top_p, seed=settings.seed)
    completions = backend.generate([e.prompt_messages for e in examples], sampling)
    return [Generation(example_id=e.id, model_ref=model_ref, text=c.text, finish_reason=c.finish_reason,
                       n_tokens=c.n_tokens) for e, c in zip(examples, completions)]


@stage("generate")
def generate(model: Artifact, model_ref: str, dtype: str, examples: Artifact, settings: GenerationSettings,
             max_new_tokens: int, store: str) -> Artifact:
    """Answer every example of `examples` with `model`; writes `generations.jsonl`."""
    out = stage_dir(store, "generate", {"model": model, "model_ref": model_ref, "dtype": dtype,
                                        "examples": examples, "settings": settings,
                                        "max_new_tokens": max_new_tokens})
    items = read_jsonl(Path(examples.path), Example)
    start = time.perf_counter()
    gens = generate_answers(Path(model.path), model_ref, dtype, items, settings, max_new_tokens)
    seconds = time.perf_counter() - start
    tokens = sum(g.n_tokens for g in gens)
    path = write_jsonl(out / "generations.jsonl", gens)
    truncated = sum(g.finish_reason == "length" for g in gens)
    run_logger().info("generated %d answers (%d tokens, %.0f tok/s, %d hit max_new_tokens) with %s",
                      len(gens), tokens, tokens / max(seconds, 1e-9), truncated,
                      resolve_backend_name(settings.backend))
    return artifact_for(path, generations=len(gens), tokens=tokens, seconds=round(seconds, 2),
                        truncated=truncated)
