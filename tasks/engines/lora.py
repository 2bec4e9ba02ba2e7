"""LoRA training: PEFT + the transformers Trainer, with the loss on answer tokens only.

The same recipe and seed serve every arm. `training.launcher: accelerate` runs this module under
`accelerate launch` instead of in-process: DDP over several GPUs, or over gloo on CPU (`--multi_gpu`, accelerate's
torchrun launcher). It checkpoints every `training.save_steps` and resumes from the last complete checkpoint.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import sys
import time
import zipfile
from pathlib import Path
from typing import Any

from tasks.core.errors import TrainingLaunchError
from tasks.core.records import Target, read_jsonl, write_text_atomic
from tasks.core.settings import LoraSettings, TrainingSettings
from tasks.core.stage import run_logger
from tasks.engines.orphans import STAGE_PID_ENV, dying_with_parent

IGNORE = -100


def encode_target(tokenizer, messages: list[dict[str, str]], max_len: int) -> dict[str, list[int]] | None:
    """Token ids of a conversation with labels masked to the final assistant answer.

    Uses the chat template exactly as generation does. Returns None when the prompt alone does not fit.
    """
    prompt = tokenizer.apply_chat_template(messages[:-1], add_generation_prompt=True, tokenize=False)
    full = tokenizer.apply_chat_template(messages, tokenize=False)
    if not full.startswith(prompt):
        raise ValueError("the chat template renders the prompt differently inside the full conversation; "
                         "answer-only loss masking needs a prefix-stable template")
    prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    answer_ids = tokenizer(full[len(prompt):], add_special_tokens=False)["input_ids"]
    if len(prompt_ids) >= max_len:
        return None
    ids = (prompt_ids + answer_ids)[:max_len]
    labels = ([IGNORE] * len(prompt_ids) + answer_ids)[:max_len]
    return {"input_ids": ids, "attention_mask": [1] * len(ids), "labels": labels}


def answer_window(model, input_ids, attention_mask, labels) -> tuple[Any, Any]:
    """Next-token logits from the first answer position on, and the tokens they predict (IGNORE elsewhere).

    Prompt positions have masked labels, so their logits are never used; projecting them onto the
    49k-token vocabulary anyway costs ~15-20 % of a step on the bundled model. The call still goes
    through the (possibly wrapped) model's forward, so accelerate/FSDP/DeepSpeed see a normal forward.
    """
    import torch

    start = answer_start(labels)
    keep = torch.arange(start, labels.shape[1] - 1, device=input_ids.device)
    logits = model(input_ids=input_ids, attention_mask=attention_mask, logits_to_keep=keep).logits
    return logits, labels[:, start + 1:].to(logits.device)


def answer_start(labels) -> int:
    """The first position of a batch whose next token is labelled (the answer window's start)."""
    answer = (labels[:, 1:] != IGNORE).any(dim=0).nonzero()
    return int(answer[0]) if len(answer) else labels.shape[1] - 2


def answer_only_loss(model, inputs: dict, num_items_in_batch=None):
    """The causal-LM loss over answer tokens, projected onto the vocabulary only there (answer_window).
    Equal to the model's own loss (tests/test_train.py): sum over answer tokens divided by
    `num_items_in_batch` when the Trainer passes it (gradient accumulation), else their mean.
    """
    import torch.nn.functional as F

    logits, targets = answer_window(model, inputs["input_ids"], inputs.get("attention_mask"), inputs["labels"])
    logits = logits.float()
    loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), ignore_index=IGNORE,
                           reduction="sum")
    if num_items_in_batch is None:
        return loss / (targets != IGNORE).sum().clamp(min=1)
    return loss / num_items_in_batch


def total_steps(n_examples: int, settings: TrainingSettings, world_size: int = 1) -> int:
    per_step = settings.batch_size * settings.grad_accum * world_size
    return settings.max_steps or max(1, math.ceil(settings.epochs * math.ceil(n_examples / per_step)))


def last_complete_checkpoint(folder: Path, world_size: int = 1) -> Path | None:
    """The newest checkpoint written to its end: rank 0 saves trainer_state.json last, and under DDP every rank
    has saved its RNG state (rng_state_<rank>.pth, which no barrier orders before rank 0's last file)."""
    best: tuple[int, Path] | None = None
    rng = ["rng_state.pth"] if world_size <= 1 else [f"rng_state_{i}.pth" for i in range(world_size)]
    for d in folder.glob("checkpoint-*") if folder.is_dir() else []:
        try:
            step = int(json.loads((d / "trainer_state.json").read_text())["global_step"])
            if not all(zipfile.is_zipfile(d / f) for f in rng):  # torch.save writes a zip, its directory last
                continue
        except (OSError, ValueError, KeyError, TypeError):
            continue  # killed while saving: an older checkpoint (save_total_limit=2) is still whole
        if best is None or step > best[0]:
            best = (step, d)
    return best[1] if best else None


def _encoded(tokenizer, targets: list[Target], max_len: int) -> list[dict[str, Any]]:
    encoded = [e for t in targets if (e := encode_target(tokenizer, t.messages, max_len))]
    for e in encoded:
        e["length"] = len(e["input_ids"])  # read by the length-grouped sampler
    return encoded


def _trainer(model_dir: Path, tokenizer, encoded: list[dict[str, Any]], lora: LoraSettings,
             settings: TrainingSettings, steps: int, out: Path):
    """A Trainer of a fresh LoRA on the base model, with the answer-only loss, and the (unwrapped) PEFT model."""
    import torch
    from datasets import Dataset
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, DataCollatorForSeq2Seq, Trainer, TrainingArguments

    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    model = get_peft_model(model, LoraConfig(r=lora.r, lora_alpha=lora.alpha, lora_dropout=lora.dropout,
                                             target_modules=lora.target_modules, task_type="CAUSAL_LM"))
    args = TrainingArguments(
        output_dir=str(out / "checkpoints"), per_device_train_batch_size=settings.batch_size,
        gradient_accumulation_steps=settings.grad_accum, learning_rate=settings.learning_rate,
        max_steps=steps, lr_scheduler_type=settings.lr_scheduler,
        warmup_steps=int(settings.warmup_ratio * steps), weight_decay=settings.weight_decay,
        logging_steps=1, save_strategy="steps" if settings.save_steps else "no", save_steps=settings.save_steps or 1,
        save_total_limit=2, report_to="none", seed=settings.seed, data_seed=settings.seed,
        bf16=bool(settings.resolved().bf16), use_cpu=not torch.cuda.is_available(), remove_unused_columns=False,
        train_sampling_strategy="group_by_length" if settings.group_by_length else "random",
        disable_tqdm=False)

    class AnswerLossTrainer(Trainer):
        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            loss = answer_only_loss(model, inputs, num_items_in_batch)
            if self.args.average_tokens_across_devices and num_items_in_batch is not None:
                loss = loss * (self.accelerator.num_processes // self.get_tp_size())  # as Trainer.compute_loss
            return (loss, None) if return_outputs else loss

    pad = DataCollatorForSeq2Seq(tokenizer, padding=True, label_pad_token_id=IGNORE)
    trainer = AnswerLossTrainer(model=model, args=args, train_dataset=Dataset.from_list(encoded),
                                data_collator=lambda b: pad([{k: v for k, v in f.items() if k != "length"} for f in b]))
    return trainer, model


def train_adapter(model_dir: Path, targets: list[Target], lora: LoraSettings, settings: TrainingSettings,
                  out: Path) -> dict:
    """Fine-tune a LoRA adapter; saves it (PEFT format) to `out/adapter` and returns training stats."""
    import torch
    from transformers import AutoTokenizer, set_seed

    if not targets:
        raise ValueError("no training targets: the train split is empty. Fix: raise data.train_size")
    if not torch.cuda.is_available():
        torch.set_num_threads(process_threads(settings))
    set_seed(settings.seed)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    encoded = _encoded(tokenizer, targets, settings.max_seq_len)
    world = int(os.environ.get("WORLD_SIZE", "1"))
    steps = total_steps(len(encoded), settings, world)
    trainer, model = _trainer(model_dir, tokenizer, encoded, lora, settings, steps, out)
    resume = last_complete_checkpoint(out / "checkpoints", world)
    resumed_from = int(resume.name.split("-")[-1]) if resume else 0
    if resume:
        run_logger().info("resuming training from %s (step %d of %d)", resume, resumed_from, steps)
    start = time.perf_counter()
    result = trainer.train(resume_from_checkpoint=str(resume) if resume else None)
    seconds = time.perf_counter() - start
    if trainer.is_world_process_zero():
        model.save_pretrained(out / "adapter.tmp")
        tokenizer.save_pretrained(out / "adapter.tmp")
        shutil.rmtree(out / "adapter", ignore_errors=True)
        (out / "adapter.tmp").replace(out / "adapter")  # a folder that exists is a whole adapter
    mean_len = sum(len(e["input_ids"]) for e in encoded) / len(encoded)
    tokens = mean_len * (steps - resumed_from) * settings.batch_size * settings.grad_accum * world  # padding aside
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    stats = {"steps": steps, "examples": len(encoded), "dropped_too_long": len(targets) - len(encoded),
             "seconds": round(seconds, 2), "train_loss": float(result.training_loss),
             "final_loss": losses[-1] if losses else float("nan"),
             "tokens_per_s": round(tokens / max(seconds, 1e-9), 1), "resumed_from_step": resumed_from,
             "world_size": world, "loss_history": losses}
    trainer.accelerator.wait_for_everyone()  # every rank has finished its last checkpoint before rank 0 removes them
    if trainer.is_world_process_zero():  # one writer: rank 0's losses, its adapter, its log
        write_text_atomic(out / "train_log.json", json.dumps(stats, indent=1))
        shutil.rmtree(out / "checkpoints", ignore_errors=True)  # the adapter is saved; resuming is moot
    return stats


def process_threads(settings: TrainingSettings) -> int:
    """torch threads of one training process on CPU: `training.threads`, else the cores shared out among the
    processes of this machine (two DDP processes on 2 cores get one each: more would spin against each other)."""
    local = int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
    from tasks.engines.devices import cpu_cores

    return settings.threads or max(1, cpu_cores() // local)


def accelerate_command(targets: Path, model_dir: Path, lora: LoraSettings, settings: TrainingSettings,
                       out: Path) -> list[str]:
    """The `accelerate launch` command that runs this module's entry point on every device."""
    from tasks.engines.devices import launch_args

    return [sys.executable, "-m", "accelerate.commands.launch",
            *launch_args(settings.accelerate_args, bool(settings.resolved().bf16)), "-m", "tasks.engines.lora_rank",
            "--targets", str(targets), "--model", str(model_dir), "--out", str(out),
            "--lora", lora.model_dump_json(), "--training", settings.model_dump_json()]


def train_with_accelerate(targets: Path, model_dir: Path, lora: LoraSettings, settings: TrainingSettings,
                          out: Path) -> dict:
    """Train under `accelerate launch` (every device runs `main` below); returns rank 0's training stats.

    The launcher and its workers form one process group: an interrupted stage (Ctrl-C, a cancelled flow run)
    takes all of them down, and the checkpoints they wrote let the next run resume."""
    import signal
    import subprocess

    cmd = accelerate_command(targets, model_dir, lora, settings, out)
    run_logger().info("launching: %s", " ".join(cmd))
    # its own session, so that an interrupt ends it as a group; and it ends with this process (tasks/engines/orphans)
    proc = subprocess.Popen(cmd, start_new_session=True, preexec_fn=dying_with_parent(),
                            env={**os.environ, STAGE_PID_ENV: str(os.getpid())})  # the ranks' grandparent
    try:
        code = proc.wait()
    except BaseException:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
        raise
    if code != 0:
        raise TrainingLaunchError.of(code, cmd)
    return json.loads((out / "train_log.json").read_text())


def main(argv: list[str] | None = None) -> None:
    """One rank's training (`accelerate launch -m tasks.engines.lora_rank`, which first ties the rank to its launcher)."""
    p = argparse.ArgumentParser(description="Train a LoRA adapter on a targets.jsonl")
    p.add_argument("--targets", type=Path, required=True)
    p.add_argument("--model", type=Path, required=True)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--lora", required=True)
    p.add_argument("--training", required=True)
    a = p.parse_args(argv)
    train_adapter(a.model, read_jsonl(a.targets, Target), LoraSettings.model_validate_json(a.lora),
                  TrainingSettings.model_validate_json(a.training), a.out)


if __name__ == "__main__":
    main()
