"""LoRA training throughput: the pipeline's training stage versus a plain PEFT loop (the model's own
loss, AdamW, the same batches) on real GSM8K gold targets with the bundled model. Prints a table; not
a test. The pipeline should be no slower: it only adds the answer-only vocabulary projection.

    .venv/bin/python perf/training.py [--examples 48] [--batch-size 8] [--bf16] [--mirror ../shared/data]
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from perf.common import print_table  # noqa: E402
from tasks.core.records import Target  # noqa: E402
from tasks.core.settings import LoraSettings, TrainingSettings  # noqa: E402
from tasks.data import read_examples  # noqa: E402
from tasks.engines.lora import IGNORE, encode_target, train_adapter  # noqa: E402
from tasks.engines.models import materialize_model  # noqa: E402


def plain_peft_loop(model_dir: Path, targets: list[Target], lora: LoraSettings, settings: TrainingSettings) -> float:
    """Seconds for one epoch of the textbook loop: model(**batch).loss, backward, AdamW step."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer, DataCollatorForSeq2Seq

    torch.manual_seed(settings.seed)
    tok = AutoTokenizer.from_pretrained(model_dir)
    encoded = [e for t in targets if (e := encode_target(tok, t.messages, settings.max_seq_len))]
    encoded.sort(key=lambda e: len(e["input_ids"]))  # length-grouped, as the pipeline's sampler
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32),
                           LoraConfig(r=lora.r, lora_alpha=lora.alpha, lora_dropout=lora.dropout,
                                      target_modules=lora.target_modules, task_type="CAUSAL_LM"))
    model.train()
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=settings.learning_rate)
    pad = DataCollatorForSeq2Seq(tok, padding=True, label_pad_token_id=IGNORE)
    start = time.perf_counter()
    for i in range(0, len(encoded), settings.batch_size):
        loss = model(**pad(encoded[i:i + settings.batch_size])).loss
        loss.backward()
        opt.step()
        opt.zero_grad()
    return time.perf_counter() - start


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--examples", type=int, default=48)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--repeats", type=int, default=2, help="interleaved repetitions of each")
    p.add_argument("--bf16", action="store_true", help="also the pipeline with bf16 autocast (training.bf16)")
    p.add_argument("--mirror", default=os.environ.get("S3FT_DATA_MIRROR", str(ROOT.parent / "shared" / "data")))
    a = p.parse_args()
    import torch

    torch.set_num_threads(os.cpu_count() or 1)
    cache = ROOT / "runs" / "perf-model"  # converted once, git-ignored
    model_dir = materialize_model("bundled:smollm2-135m-instruct", cache)
    examples = read_examples("gsm8k", "train", a.examples, 0, Path(a.mirror), None)
    targets = [Target(example_id=e.id, source="gold",
                      messages=e.prompt_messages + [{"role": "assistant", "content": e.gold}]) for e in examples]
    lora, settings = LoraSettings(), TrainingSettings(batch_size=a.batch_size, epochs=1, max_seq_len=384,
                                                    group_by_length=True, bf16=False)  # as the quickstart, fp32
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir)
    tokens = sum(len(encode_target(tok, t.messages, 384)["input_ids"]) for t in targets)
    times: dict[str, list[float]] = {"pipeline (train_adapter)": [], "plain PEFT loop": []}
    if a.bf16:
        times["pipeline, bf16 autocast"] = []
    for _ in range(a.repeats):
        with tempfile.TemporaryDirectory() as tmp:
            times["pipeline (train_adapter)"].append(train_adapter(model_dir, targets, lora, settings,
                                                                   Path(tmp))["seconds"])
        times["plain PEFT loop"].append(plain_peft_loop(model_dir, targets, lora, settings))
        if a.bf16:
            with tempfile.TemporaryDirectory() as tmp:
                times["pipeline, bf16 autocast"].append(train_adapter(
                    model_dir, targets, lora, settings.model_copy(update={"bf16": True}), Path(tmp))["seconds"])
    base = min(times["plain PEFT loop"])
    print_table(f"LoRA training, {len(targets)} GSM8K gold targets ({tokens} tokens), batch {a.batch_size}, "
                f"{os.cpu_count()} cores; best of {a.repeats}", ["loop", "seconds", "tokens/s", "time vs plain PEFT"],
                [[name, f"{min(ts):.1f}", f"{tokens / min(ts):.0f}", f"{min(ts) / base:.2f}x"]
                 for name, ts in times.items()])

if __name__ == "__main__":
    main()
