"""`s3ft export RUN_DIR --arm s3ft [--merged | --adapter] OUT`: one arm of a finished run as a model to serve.

- `--merged` (default): the arm's merged model folder (safetensors, config, tokenizer with its chat template,
  generation config), as the `merge` stage wrote it; it loads with transformers and with vLLM.
- `--adapter`: the PEFT adapter, its `base_model_name_or_path` set to the run's `model.ref` (a hub id or
  folder PEFT can load; a bundled model's converted folder otherwise).

Both get a model card (README.md): the run's report (in-domain score with paired CIs, benchmark drops, drift,
target mix), the config, the git commit and where it came from. Nothing in the run is changed.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from tasks.core.errors import InputError
from tasks.core.records import write_text_atomic


class ExportError(InputError):
    """The run folder, arm or output cannot be exported; the message says the fix."""


def read_summary(run_dir: Path) -> dict[str, Any]:
    path = run_dir / "summary.json"
    if not path.is_file():
        raise ExportError(f"RUN_DIR {run_dir}: no summary.json, so no finished run. Fix: give a folder "
                          f"runs/<name>/<timestamp> that `s3ft run` completed (it prints it as `summary:`)")
    try:
        return json.loads(path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ExportError(f"RUN_DIR {run_dir}: summary.json is not the JSON `s3ft run` writes ({err}). Fix: give "
                          f"a run folder that `s3ft run` completed, or run the experiment again") from None


def arm_folders(summary: dict[str, Any], arm: str, seed: int | None) -> tuple[Path, Path]:
    """(merged model folder, adapter folder) of `arm` (and training `seed` in a several-seed run)."""
    stages = {s["stage"]: s for s in summary["stages"]}
    tag = arm if seed is None else f"{arm}:seed{seed}"
    if f"merge:{tag}" not in stages:
        trained = sorted(s.removeprefix("merge:") for s in stages if s.startswith("merge:"))
        raise ExportError(f"--arm {tag}: not a trained arm of this run (it has {trained}). Fix: --arm one of "
                          f"those (with several seeds: --seed N)")
    merged = Path(stages[f"merge:{tag}"]["path"])
    adapter = Path(stages[f"train:{tag}"]["path"])
    for folder in (merged, adapter):
        if not folder.is_dir():
            raise ExportError(f"{folder}: gone from the stage store. Fix: run the same config again (it "
                              f"recomputes only what is missing), then export")
    return merged, adapter


def model_card(summary: dict[str, Any], arm: str, kind: str, run_dir: Path) -> str:
    """README.md of an exported model: what it is, how it was made, and how it measured."""
    cfg = summary.get("config") or {}
    report = Path(summary["report"]["markdown"])
    table = report.read_text() if report.is_file() else "(report.md missing)"
    ref = cfg.get("model", {}).get("ref", "unknown")
    loading = ("from transformers import AutoModelForCausalLM\nmodel = AutoModelForCausalLM.from_pretrained(\".\")"
               if kind == "merged" else
               "from peft import AutoPeftModelForCausalLM\nmodel = AutoPeftModelForCausalLM.from_pretrained(\".\")")
    return "\n".join([
        f"# {cfg.get('name', 'model')}: arm `{arm}` ({kind})", "",
        f"Fine-tuned from `{ref}` with LoRA by the s3ft pipeline (arm `{arm}`: "
        + ("S3FT: the model's own correct answers, else its judged paraphrases, else gold" if arm == "s3ft"
           else f"`{arm}`") + ").",
        f"Source run: `{run_dir}` (MLflow run `{summary.get('mlflow_run_id')}`), git commit "
        f"`{summary.get('git_commit', 'unknown')}`. The run generated in `{summary.get('dtype', 'float32')}` "
        f"(the weights here are stored as the base model's); load in that dtype to reproduce its answers.", "",
        "```python", loading, "```", "", "`vllm serve .` serves the merged folder as it is." if kind == "merged"
        else "vLLM: `vllm serve BASE --enable-lora --lora-modules arm=.`", "",
        "## How it measured (the run's report)", "", table, "",
        "## Config", "", "```json", json.dumps(cfg, indent=1), "```", ""])


def export(run_dir: Path, arm: str, out: Path, kind: str = "merged", seed: int | None = None) -> Path:
    """Write `arm` of the finished run in `run_dir` to `out` (see the module doc)."""
    summary = read_summary(run_dir)
    merged, adapter = arm_folders(summary, arm, seed)
    if out.exists() and any(out.iterdir()):
        raise ExportError(f"OUT {out}: exists and is not empty. Fix: give a new folder")
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(merged if kind == "merged" else adapter, tmp)
    if kind == "adapter":
        config_path = tmp / "adapter_config.json"
        config = json.loads(config_path.read_text())
        ref = (summary.get("config") or {}).get("model", {}).get("ref", "")
        base = next((s["path"] for s in summary["stages"] if s["stage"] == "prepare_model"), None)
        config["base_model_name_or_path"] = base if ref.startswith("bundled:") or not ref else ref
        config_path.write_text(json.dumps(config, indent=2))
    write_text_atomic(tmp / "README.md", model_card(summary, arm if seed is None else f"{arm}:seed{seed}", kind,
                                                    run_dir))
    if out.exists():
        out.rmdir()
    tmp.replace(out)
    return out
