"""Stage `train`: one arm's LoRA adapter on its targets (tasks.engines.lora), in-process or under
`accelerate launch`; a killed run resumes from its last checkpoint, a finished adapter is never retrained."""
from __future__ import annotations

import json
from pathlib import Path

from tasks.core.records import Artifact, Target, artifact_for, read_jsonl
from tasks.core.settings import LoraSettings, TrainingSettings
from tasks.core.stage import run_logger, stage
from tasks.engines.lora import train_adapter, train_with_accelerate


# No outputs for the stage's MLflow run: the arm's run carries the adapter and train_log.json.
@stage("train", version="1")
def train(out: Path, model: Artifact, targets: Artifact, lora: LoraSettings, settings: TrainingSettings) -> Artifact:
    """Train one arm's LoRA adapter on its targets; the artifact is the adapter folder."""
    if (out / "train_log.json").is_file() and (out / "adapter").is_dir():  # finished before a kill: keep it
        stats = json.loads((out / "train_log.json").read_text())
    elif settings.launcher == "accelerate":
        stats = train_with_accelerate(Path(targets.path), Path(model.path), lora, settings, out)
    else:
        stats = train_adapter(Path(model.path), read_jsonl(Path(targets.path), Target), lora, settings, out)
    run_logger().info("trained %d steps in %.0f s (loss %.3f -> %.3f, %.0f tok/s)", stats["steps"],
                      stats["seconds"], stats["loss_history"][0] if stats["loss_history"] else float("nan"),
                      stats["final_loss"], stats["tokens_per_s"])
    counts = {k: v for k, v in stats.items() if isinstance(v, (int, float))}
    return artifact_for(out / "adapter", **counts)
