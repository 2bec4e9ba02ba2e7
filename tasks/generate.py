"""Stage `generate`: a model answers every example's prompt; one Generation record each."""
from __future__ import annotations

import time
from pathlib import Path

from tasks.core.records import Artifact, Example, Generation, artifact_for, read_jsonl, sample_id, write_jsonl
from tasks.core.settings import GenerationSettings, VllmSettings
from tasks.core.stage import run_logger, stage
from tasks.engines.backends import Sampling, get_backend


def generate_answers(model_dir: Path, model_ref: str, dtype: str, examples: list[Example],
                     settings: GenerationSettings, vllm: VllmSettings | None, max_new_tokens: int) -> list[Generation]:
    """Greedy (by default) answers of one model to every example, in example order; with `settings.samples`
    = k > 1, k answers per example from one request each, as `<id>#s0` ... `<id>#s{k-1}`."""
    if not examples:
        return []
    backend = get_backend(model_dir, dtype, settings, vllm or VllmSettings())
    sampling = Sampling(max_new_tokens=max_new_tokens, temperature=settings.temperature, top_p=settings.top_p,
                        seed=settings.seed, stop=tuple(settings.stop), repetition=settings.repetition_stop,
                        n=settings.samples)
    completions = backend.generate([e.prompt_messages for e in examples], sampling)
    return [Generation(example_id=gid, model_ref=model_ref, text=c.text, finish_reason=c.finish_reason,
                       n_tokens=c.n_tokens) for gid, c in zip(answer_ids(examples, settings.samples), completions)]


def answer_ids(examples: list[Example], samples: int) -> list[str]:
    """The ids of the answers to `examples`, in order: the examples' own, or each one's k sample ids."""
    return [e.id for e in examples] if samples == 1 else [sample_id(e.id, j) for e in examples for j in range(samples)]


def prompt_tokens(model_dir: Path, examples: list[Example]) -> int:
    """Tokens of the examples' chat-templated prompts (the prefill work; perf/quickstart.py's FLOPs)."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    return sum(len(tokenizer.apply_chat_template(e.prompt_messages, add_generation_prompt=True, tokenize=True,
                                                 return_dict=True)["input_ids"]) for e in examples)


def shard_path(out: Path, index: int) -> Path:
    return out / "shards" / f"shard-{index:05d}.jsonl"


def finished_shard(path: Path, chunk: list[Example], samples: int) -> list[Generation] | None:
    """A shard written by an earlier (killed) attempt, if it answers exactly this chunk."""
    if not path.is_file():
        return None
    done = read_jsonl(path, Generation)
    return done if [g.example_id for g in done] == answer_ids(chunk, samples) else None


@stage("generate", version="2", outputs=("generations.jsonl",))  # 2: written in resumable shards
def generate(out: Path, model: Artifact, model_ref: str, dtype: str, examples: Artifact,
             settings: GenerationSettings, vllm: VllmSettings | None, max_new_tokens: int) -> Artifact:
    """Answer every example of `examples` with `model`; writes `generations.jsonl`.

    `vllm` is the engine's settings when `settings.backend` is vllm, else None. Work goes in shards of
    `settings.shard_size` prompts (k answers each when `settings.samples` = k > 1), each written atomically
    under `shards/`: a run killed mid-stage
    resumes from its last finished shard (same stage folder, same content address).
    """
    log = run_logger()
    items = read_jsonl(Path(examples.path), Example)
    chunks = [items[i:i + settings.shard_size] for i in range(0, len(items), settings.shard_size)]
    gens: list[Generation] = []
    resumed = tokens = 0
    seconds = 0.0
    for index, chunk in enumerate(chunks):
        done = finished_shard(shard_path(out, index), chunk, settings.samples)
        if done is not None:
            resumed += len(done)
        else:
            start = time.perf_counter()
            done = generate_answers(Path(model.path), model_ref, dtype, chunk, settings, vllm, max_new_tokens)
            seconds += time.perf_counter() - start
            tokens += sum(g.n_tokens for g in done)
            write_jsonl(shard_path(out, index), done)
            if len(chunks) > 1:
                log.info("shard %d/%d written (%d answers)", index + 1, len(chunks), len(done))
        gens += done
    if resumed:
        log.info("resumed: %d of %d answers came from shards of an earlier, interrupted attempt", resumed, len(gens))
    path = write_jsonl(out / "generations.jsonl", gens)
    truncated = sum(g.finish_reason == "length" for g in gens)
    looped = sum(g.finish_reason == "repetition" for g in gens)
    log.info("generated %d answers (%d tokens, %.0f tok/s, %d hit max_new_tokens, %d stopped in a loop) with %s",
             len(gens) - resumed, tokens, tokens / max(seconds, 1e-9), truncated, looped, settings.backend)
    return artifact_for(path, generations=len(gens), resumed=resumed, tokens=sum(g.n_tokens for g in gens),
                        prompt_tokens=prompt_tokens(Path(model.path), items), seconds=round(seconds, 2),
                        truncated=truncated, looped=looped)
