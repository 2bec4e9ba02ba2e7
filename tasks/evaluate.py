"""Evaluation stages: merge an adapter for fast generation, and score judged answers."""
from __future__ import annotations

import math
from pathlib import Path

from tasks.cache import stage_dir
from tasks.judge import outcome_counts
from tasks.records import Artifact, Scores, Verdict, read_jsonl, sha256_json
from tasks.stage import run_logger, stage


def merge_adapter(model_dir: Path, adapter_dir: Path, dtype: str, out: Path) -> Path:
    """Base weights + LoRA merged into a plain folder any engine loads at full speed."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    base = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    merged = PeftModel.from_pretrained(base, adapter_dir).merge_and_unload()
    merged.to(getattr(torch, dtype))
    tmp = out.with_name(out.name + ".tmp")
    merged.save_pretrained(tmp)
    AutoTokenizer.from_pretrained(model_dir).save_pretrained(tmp)
    if (model_dir / "generation_config.json").is_file():
        (tmp / "generation_config.json").write_bytes((model_dir / "generation_config.json").read_bytes())
    tmp.replace(out)
    return out


@stage("merge")
def merge(model: Artifact, adapter: Artifact, dtype: str, store: str) -> Artifact:
    """The base model with one arm's adapter merged in."""
    out = stage_dir(store, "merge", {"model": model, "adapter": adapter, "dtype": dtype}) / "model"
    if not (out / "config.json").is_file():
        merge_adapter(Path(model.path), Path(adapter.path), dtype, out)
    run_logger().info("merged adapter into %s", out)
    return Artifact(path=str(out), sha256=sha256_json([model.sha256, adapter.sha256, dtype]), counts={})


def accuracy_scores(model_ref: str, split: str, verdicts: list[Verdict]) -> Scores:
    """Accuracy with its standard error (sample std / sqrt(n), as lm-eval reports)."""
    counts = outcome_counts(verdicts)
    n = len(verdicts)
    p = counts["correct"] / n if n else float("nan")
    stderr = math.sqrt(p * (1 - p) / (n - 1)) if n > 1 else float("nan")
    return Scores(model_ref=model_ref, split=split, n=n, stderr={"accuracy": stderr},
                  metrics={"accuracy": p, **{k: float(v) for k, v in counts.items()}})


def score(model_ref: str, split: str, verdicts: Artifact) -> Scores:
    """In-domain scores of one model from its verdicts (cheap: recomputed every run)."""
    return accuracy_scores(model_ref, split, read_jsonl(Path(verdicts.path), Verdict))
