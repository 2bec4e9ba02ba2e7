"""Generation stops: what `generation.stop` and `generation.repetition_stop` save and whether they change any
verdict. The base model answers a task's prompts (the pipeline's generate path, vLLM) once without stops and
once per stop setting; each set is judged by the task's judge as the flow judges it (`judge.reject_truncated`
of the config). Prints output tokens, wall time, accuracy and how many answers and verdicts changed. Not a test.

    .venv/bin/python perf/stops.py --config configs/gsm8k_quickstart.yaml --split test \\
        --repetition 32:3 --stop "\\n\\n\\n"

Run it through the CLI's environment (tcmalloc/Intel OpenMP preloaded) for the flow's speed:
    LD_PRELOAD=/usr/lib/x86_64-linux-gnu/libtcmalloc_minimal.so.4:.venv/lib/libiomp5.so .venv/bin/python perf/stops.py
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
from tasks.core.config_file import load_config  # noqa: E402
from tasks.core.settings import RepetitionStop  # noqa: E402
from tasks.data import read_examples  # noqa: E402
from tasks.engines.backends import release_backends  # noqa: E402
from tasks.engines.models import materialize_model  # noqa: E402
from tasks.generate import generate_answers  # noqa: E402
from tasks.judge import judge_generations  # noqa: E402


def variants(a: argparse.Namespace) -> dict[str, dict]:
    """Name -> generation-settings update, the first without any stop."""
    out: dict[str, dict] = {"no stop": {"stop": [], "repetition_stop": None}}
    for spec in a.repetition:
        pattern, count = (int(x) for x in spec.split(":"))
        out[f"repetition {pattern}:{count}"] = {"repetition_stop": RepetitionStop(max_pattern=pattern, min_count=count)}
    for stop in a.stop:
        out[f"stop {stop!r}"] = {"stop": [stop.encode().decode("unicode_escape")]}
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", default=str(ROOT / "configs" / "gsm8k_quickstart.yaml"))
    p.add_argument("--split", default="test", choices=["train", "test"])
    p.add_argument("--repetition", nargs="*", default=["32:3", "16:4"], help="MAX_PATTERN:MIN_COUNT settings")
    p.add_argument("--stop", nargs="*", default=[], help="stop strings (Python escapes allowed)")
    p.add_argument("--mirror", default=os.environ.get("S3FT_DATA_MIRROR", str(ROOT.parent / "shared" / "data")))
    a = p.parse_args()
    os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
    cfg = load_config(Path(a.config), [])
    d = cfg.data
    n = d.train_size if a.split == "train" else d.test_size
    examples = read_examples(d.source, a.split, n, d.seed, Path(a.mirror), None)
    model_dir = materialize_model(cfg.model.ref, ROOT / "runs" / "perf-model")
    dtype, cap = cfg.model.resolved().dtype, cfg.generation.max_new_tokens
    generate_answers(model_dir, "m", dtype, examples[:4], cfg.generation.model_copy(update={"samples": 1}), cfg.vllm, 8)  # engine warm
    runs = {}
    for name, update in variants(a).items():
        settings = cfg.generation.model_copy(update={**update, "samples": 1})
        start = time.perf_counter()
        gens = generate_answers(model_dir, "m", dtype, examples, settings, cfg.vllm, cap)
        seconds = time.perf_counter() - start
        verdicts = judge_generations(examples, gens, cfg.judge.name, reject_truncated=cfg.judge.reject_truncated)
        runs[name] = (gens, verdicts, seconds)
    release_backends()
    base_gens, base_verdicts, _ = runs["no stop"]
    base_tokens = sum(g.n_tokens for g in base_gens)
    rows = []
    for name, (gens, verdicts, seconds) in runs.items():
        tokens = sum(g.n_tokens for g in gens)
        reasons = {r: sum(g.finish_reason == r for g in gens) for r in ("stop", "length", "repetition")}
        changed = sum(g.text != b.text for g, b in zip(gens, base_gens))
        flipped = sum(v.outcome != b.outcome for v, b in zip(verdicts, base_verdicts))
        correct = sum(v.outcome == "correct" for v in verdicts)
        rows.append([name, f"{tokens}", f"{1 - tokens / base_tokens:.1%}", f"{seconds:.1f}",
                     f"{reasons['stop']} / {reasons['length']} / {reasons['repetition']}", f"{correct}/{len(gens)}",
                     f"{changed}", f"{flipped}"])
    print_table(f"generation stops, {cfg.data.source} {a.split} ({len(examples)} prompts), base model "
                f"{cfg.model.ref}, {dtype}, greedy, cap {cap} tokens, judge {cfg.judge.name} (reject_truncated "
                f"{cfg.judge.reject_truncated}), {os.cpu_count()} cores",
                ["setting", "output tokens", "saved", "wall s", "ended by eos / cap / loop", "correct",
                 "answers changed", "verdicts changed"], rows)


if __name__ == "__main__":
    main()
