"""Stage `merge`: the base model with one arm's LoRA adapter merged in, a plain folder any engine loads
at full speed (vLLM on CPU cannot apply LoRA to prompt log-probs; merged weights need no LoRA path)."""
from __future__ import annotations

from pathlib import Path

from tasks.core.records import Artifact, sha256_json
from tasks.core.stage import run_logger, stage


def merge_adapter(model_dir: Path, adapter_dir: Path, dtype: str, out: Path) -> Path:
    """Base weights + LoRA merged (in fp32, then cast to `dtype`) and saved to `out` atomically."""
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


@stage("merge", version="1", hashed_by="inputs")
def merge(out: Path, model: Artifact, adapter: Artifact, dtype: str) -> Artifact:
    """The merged model folder; its identity is its inputs' (weights are not re-hashed on cache hits)."""
    folder = out / "model"
    if not (folder / "config.json").is_file():
        merge_adapter(Path(model.path), Path(adapter.path), dtype, folder)
    run_logger().info("merged adapter into %s", folder)
    return Artifact(path=str(folder), sha256=sha256_json([model.sha256, adapter.sha256, dtype]), counts={})
