"""`model.dtype: auto` and training's bf16 autocast: decided by the machine's flags before hashing, followed
by every stage that computes, and named in the report; merged arms keep their base model's dtype."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from flows.answering import Model
from flows.dag import benchmark_dtype, train_inputs, training_bf16
from flows.experiment import precision_line
from tasks.core import settings as settings_module
from tasks.core.config_file import load_config
from tasks.core.records import Artifact, Target
from tasks.core.settings import LoraSettings, ModelSettings, TrainingSettings, machine_dtype
from tasks.engines.lora import train_adapter
from tasks.engines.models import stored_dtype

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def flags(monkeypatch):
    """Pretend this machine has the given CPU flags and no GPU."""
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)

    def use(*names: str) -> None:
        monkeypatch.setattr(settings_module, "cpu_flags", lambda: set(names))
    return use


@pytest.mark.parametrize("cpu, expected", [(("avx2", "fma"), "float32"), (("avx512f", "avx512_bf16"), "bfloat16"),
                                           (("avx2", "amx_bf16", "amx_tile"), "bfloat16"), ((), "float32")])
def test_auto_dtype_follows_the_cpu_flags(flags, cpu, expected):
    flags(*cpu)
    assert machine_dtype() == expected
    assert ModelSettings(dtype="auto").resolved().dtype == expected
    assert ModelSettings(dtype="auto").key_dump() == ModelSettings(dtype=expected).key_dump()  # hashed resolved
    assert ModelSettings(dtype="float32").resolved().dtype == "float32"  # an explicit dtype is kept


def test_a_gpu_gets_bfloat16(monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(settings_module, "cpu_flags", lambda: {"avx2"})
    assert machine_dtype() == "bfloat16"
    assert benchmark_dtype(load_config(ROOT / "configs/quickstart.yaml")) == "bfloat16"  # a GPU scores in it
    assert benchmark_dtype(load_config(ROOT / "configs/quickstart.yaml", ["benchmarks.dtype=float32"])) == "float32"


def test_this_machines_flags_are_read():
    text = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").is_file() else ""
    if "flags" not in text:
        pytest.skip("no /proc/cpuinfo flags here")
    got = settings_module.cpu_flags()
    assert "fpu" in got and (("avx512_bf16" in got) == (" avx512_bf16" in text))


@pytest.mark.parametrize("cpu, weights, autocast", [(("avx2",), "float32", False),
                                                    (("avx512_bf16",), "bfloat16", True)])
def test_the_quickstart_runs_in_the_machines_dtype_throughout(flags, cpu, weights, autocast):
    flags(*cpu)
    cfg = load_config(ROOT / "configs/quickstart.yaml")
    assert cfg.model.dtype == "auto" and cfg.training.bf16 == "auto"
    assert training_bf16(cfg) is autocast
    base = Artifact(path="m", sha256="0" * 64, counts={})
    assert train_inputs(cfg, Model(base, "m"), base, 0)["settings"].bf16 is autocast
    line = precision_line(cfg)
    assert f"generation {weights}" in line and ("bf16 autocast" in line) is autocast and "auto" in line
    assert "benchmarks float32" in line and benchmark_dtype(cfg) == "float32"  # CPU scoring stays fp32
    pinned = load_config(ROOT / "configs/quickstart.yaml", ["model.dtype=float32"])
    assert not training_bf16(pinned)  # pinning fp32 weights pins fp32 training too (auto follows it)
    assert "set in the config" in precision_line(pinned)


def test_training_auto_alone_follows_the_machine(flags):
    flags("avx512_bf16")
    assert TrainingSettings().resolved().bf16 is True
    assert TrainingSettings(bf16=False).resolved().bf16 is False
    flags("avx2")
    assert TrainingSettings().key_dump()["bf16"] is False


def test_merged_arms_keep_the_base_models_stored_dtype(tmp_path, tiny_model_dir):
    assert stored_dtype(tiny_model_dir) == json.loads((tiny_model_dir / "config.json").read_text()).get(
        "dtype", "float32")
    (tmp_path / "config.json").write_text(json.dumps({"torch_dtype": "bfloat16"}))
    assert stored_dtype(tmp_path) == "bfloat16"
    (tmp_path / "config.json").write_text(json.dumps({}))
    assert stored_dtype(tmp_path) == "float32"


def test_bf16_autocast_training_on_cpu_learns(tiny_model_dir, tmp_path):
    """The path an avx512_bf16 machine takes (CI machines may lack the flag): bf16 autocast, fp32 adapter."""
    msgs = [{"role": "user", "content": "Say the word."}, {"role": "assistant", "content": "banana banana"}]
    targets = [Target(example_id=str(i), source="gold", messages=msgs) for i in range(4)]
    stats = train_adapter(tiny_model_dir, targets, LoraSettings(), TrainingSettings(
        max_steps=3, batch_size=2, learning_rate=1e-2, bf16=True), tmp_path)
    assert stats["loss_history"][-1] < stats["loss_history"][0]
    from safetensors.torch import load_file

    weights = load_file(tmp_path / "adapter" / "adapter_model.safetensors")
    assert weights and all(str(w.dtype) == "torch.float32" for w in weights.values())  # master weights fp32
