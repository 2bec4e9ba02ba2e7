"""Stages that bring inputs in: the model folder and the examples of a split."""
from __future__ import annotations

from pathlib import Path

from tasks.cache import stage_dir
from tasks.config import DataSettings
from tasks.models import BUNDLED_PREFIX, ModelError, bundled_gguf, convert_gguf, local_model_dir
from tasks.records import Artifact, artifact_for, sha256_file, sha256_json, write_jsonl
from tasks.sources import load_examples
from tasks.stage import run_logger, stage


def model_fingerprint(ref: str) -> str:
    """Content identity of a model reference, cheap enough to compute on every run."""
    if ref.startswith(BUNDLED_PREFIX):
        return sha256_file(bundled_gguf(ref.removeprefix(BUNDLED_PREFIX)))
    local = local_model_dir(ref)
    if local is not None:  # names, sizes and times: hashing a 14 GB folder each run would be slow
        return sha256_json([(str(p.relative_to(local)), p.stat().st_size, p.stat().st_mtime_ns)
                            for p in sorted(local.rglob("*")) if p.is_file()])
    return sha256_json({"hub": ref})


def materialize_model(ref: str, out: Path) -> Path:
    """A local transformers folder for any model reference."""
    if ref.startswith(BUNDLED_PREFIX):
        target = out / "model"
        return target if (target / "config.json").is_file() else convert_gguf(
            bundled_gguf(ref.removeprefix(BUNDLED_PREFIX)), target)
    local = local_model_dir(ref)
    if local is not None:
        return local
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(ref, allow_patterns=["*.json", "*.safetensors", "*.model", "*.txt",
                                                            "*.jinja", "tokenizer*"]))
    except Exception as err:  # offline, gated or misspelled: say which
        raise ModelError(f"model.ref {ref!r}: could not download it ({err.__class__.__name__}: {err}). "
                         f"Fix: check the id and network/HF_TOKEN, or use a local folder") from err


@stage("prepare_model")
def prepare_model(ref: str, fingerprint: str, store: str) -> Artifact:
    """Resolve the model reference to a local folder (converting the bundled GGUF once)."""
    out = stage_dir(store, "prepare_model", {"ref": ref, "fingerprint": fingerprint})
    path = materialize_model(ref, out)
    run_logger().info("model %s -> %s", ref, path)
    # The fingerprint is the identity: rehashing gigabytes on every run would buy nothing.
    return Artifact(path=str(path), sha256=fingerprint, counts={})


@stage("load_examples")
def load_split(data: DataSettings, split: str, size: int | None, source_hash: str, store: str) -> Artifact:
    """Read, validate and subsample one split into `examples.jsonl`."""
    out = stage_dir(store, "load_examples", {"data": data, "split": split, "size": size,
                                             "source_hash": source_hash})
    examples = load_examples(data.task, split, size, data.seed, data.mirror_path(), data.system_prompt)
    path = write_jsonl(out / "examples.jsonl", examples)
    run_logger().info("%s/%s: %d examples", data.task, split, len(examples))
    return artifact_for(path, examples=len(examples))


def source_fingerprint(data: DataSettings, split: str) -> str:
    """Hash of the mirror file a split comes from (hub data: its name)."""
    from tasks.sources import get_source

    mirror = data.mirror_path()
    if mirror is None:
        return sha256_json({"hub": get_source(data.task).hub, "split": split})
    path = get_source(data.task).mirror_file(mirror, split)
    return sha256_file(path) if path.is_file() else f"missing:{path}"
