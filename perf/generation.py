"""Generation throughput: the pipeline's generation stage versus raw vLLM (`LLM.chat`, same prompts and
settings) versus transformers batched generate, on GSM8K train prompts with the bundled model. Output
tokens/s of each and the ratios, in one process, interleaved repetitions. Prints a table; not a test.

    .venv/bin/python perf/generation.py [--prompts 128] [--max-new-tokens 160] [--repeats 2]

Run it through the CLI's environment for vLLM's best CPU settings (tcmalloc/Intel OpenMP preloaded):
    LD_PRELOAD=/usr/lib/x86_64-linux-gnu/libtcmalloc_minimal.so.4:.venv/lib/libiomp5.so .venv/bin/python perf/generation.py
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from perf.common import print_table  # noqa: E402
from tasks.core.settings import GenerationSettings, VllmSettings  # noqa: E402
from tasks.data import read_examples  # noqa: E402
from tasks.engines.backends import HfBackend, Sampling, release_backends  # noqa: E402
from tasks.engines.models import materialize_model  # noqa: E402
from tasks.generate import generate_answers  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--prompts", type=int, default=128)
    p.add_argument("--max-new-tokens", type=int, default=160)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    p.add_argument("--no-hf", action="store_true", help="skip transformers (the slowest engine)")
    p.add_argument("--hf-prompts", type=int, default=32, help="transformers is slow: time it on fewer prompts")
    p.add_argument("--mirror", default=os.environ.get("S3FT_DATA_MIRROR", str(ROOT.parent / "shared" / "data")))
    a = p.parse_args()
    preload = "set" if os.environ.get("LD_PRELOAD") else "unset"  # read now: vLLM's CPU platform sets it for workers
    os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
    model_dir = materialize_model("bundled:smollm2-135m-instruct", ROOT / "runs" / "perf-model")
    examples = read_examples("gsm8k", "train", a.prompts, 0, Path(a.mirror), None)
    settings, v = GenerationSettings(backend="vllm"), VllmSettings()
    sampling = Sampling(max_new_tokens=a.max_new_tokens)
    from vllm import LLM, SamplingParams

    rates: dict[str, list[float]] = {"pipeline stage (vLLM)": [], "raw vLLM LLM.chat": [], "transformers generate": []}
    # The pipeline's engine (kept per process) and a raw engine with the same settings; both warm.
    generate_answers(model_dir, "m", a.dtype, examples[:4], settings, v, 8)
    raw = LLM(model=str(model_dir), dtype=a.dtype, seed=0, enforce_eager=v.enforce_eager,
              max_model_len=v.max_model_len, kv_cache_memory_bytes=int(v.kv_cache_gib * (1 << 30)))
    params = SamplingParams(max_tokens=a.max_new_tokens, temperature=0.0, seed=0)
    raw.chat([e.prompt_messages for e in examples[:4]], params, use_tqdm=False)
    hf = None if a.no_hf else HfBackend(model_dir, a.dtype, batch_size=16)
    if hf is None:
        del rates["transformers generate"]
    for _ in range(a.repeats):
        start = time.perf_counter()
        gens = generate_answers(model_dir, "m", a.dtype, examples, settings, v, a.max_new_tokens)
        rates["pipeline stage (vLLM)"].append(sum(g.n_tokens for g in gens) / (time.perf_counter() - start))
        start = time.perf_counter()
        outs = raw.chat([e.prompt_messages for e in examples], params, use_tqdm=False)
        rates["raw vLLM LLM.chat"].append(sum(len(o.outputs[0].token_ids) for o in outs) / (time.perf_counter() - start))
        if hf is None:
            continue
        start = time.perf_counter()
        done = hf.generate([e.prompt_messages for e in examples[:a.hf_prompts]], sampling)
        rates["transformers generate"].append(sum(c.n_tokens for c in done) / (time.perf_counter() - start))
    release_backends()
    best = {k: max(v) for k, v in rates.items()}
    print_table(f"generation, {len(examples)} GSM8K train prompts (transformers: {a.hf_prompts}), greedy, "
                f"max {a.max_new_tokens} new tokens, {a.dtype}, {os.cpu_count()} cores, LD_PRELOAD "
                f"{preload}; best of {a.repeats} interleaved",
                ["engine", "output tok/s", "pipeline / this"],
                [[name, f"{rate:.0f}", f"{best['pipeline stage (vLLM)'] / rate:.2f}x"] for name, rate in best.items()])

if __name__ == "__main__":
    main()
