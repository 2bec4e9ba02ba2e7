"""The process an experiment runs in: checks before any work, offline defaults, preloaded libraries."""
from __future__ import annotations

import os
import sys
from pathlib import Path

from tasks.core.config import ExperimentConfig
from tasks.core.data_settings import MIRROR_ENV
from tasks.core.errors import ConfigError, ModelError
from tasks.engines.models import BUNDLED_PREFIX, bundled_gguf, local_model_dir


SHARED_MIRROR = Path(__file__).resolve().parents[2] / "shared" / "data"
"""The data mirror beside a checkout (`../shared/data`), which `make` and the README's commands use."""


def default_mirror() -> Path | None:
    """With S3FT_DATA_MIRROR unset, the mirror beside the checkout when there is one, so the README's commands
    work as typed, as under `make`. Set S3FT_DATA_MIRROR="" (or data.mirror) to read the hub instead."""
    if MIRROR_ENV not in os.environ and SHARED_MIRROR.is_dir():
        os.environ[MIRROR_ENV] = str(SHARED_MIRROR)
        return SHARED_MIRROR
    return None


def check_output_dir(cfg: ExperimentConfig) -> None:
    """Fail before any work when output_dir cannot hold run folders and the MLflow db, or the store its stages."""
    folders = {cfg.output_path(): ("output_dir", "--set output_dir=PATH")}
    folders.setdefault(cfg.store_root(), ("store.uri", "--set store.uri=PATH, or env S3FT_STORE_URI"))  # unset: output_dir
    for folder, (field, how) in folders.items():
        try:
            folder.mkdir(parents=True, exist_ok=True)
            probe = folder / f".write-probe-{os.getpid()}"
            probe.write_text("ok")
            probe.unlink()
        except OSError as err:
            raise ConfigError(f"{field} {folder}: not writable ({err.strerror or err}). Fix: point {field} "
                              f"({how}) at a folder you can write to") from None


def check_model_ref(ref: str) -> None:
    """A local or bundled model reference must exist before the flow starts (hub ids are resolved later)."""
    if ref.startswith(BUNDLED_PREFIX):
        bundled_gguf(ref.removeprefix(BUNDLED_PREFIX))
    elif Path(ref).expanduser().exists() or ref.startswith((".", "/", "~")):
        if not Path(ref).expanduser().is_dir():
            raise ModelError(f"model.ref {ref!r}: no such folder. Fix: point model.ref at a transformers model "
                             f"folder, a hub id, or bundled:smollm2-135m-instruct")
        local_model_dir(ref)  # raises when the folder holds no config.json


def check_parallelism(cfg: ExperimentConfig) -> None:
    """vLLM and accelerate asked for no more devices than this machine has (tasks/engines/devices.py)."""
    from tasks.engines.devices import parallelism_problems

    uses_vllm = cfg.generation.resolved().backend == "vllm" or cfg.benchmarks.backend == "vllm"
    problems = parallelism_problems(cfg.vllm.tensor_parallel_size, cfg.vllm.data_parallel_size, uses_vllm,
                                    cfg.training.launcher, cfg.training.accelerate_args)
    if problems:
        raise ConfigError("\n".join(problems))


def check_before_work(cfg: ExperimentConfig) -> None:
    """Everything that can be checked before a flow starts: the output folder and the store, the model
    references, and the parallelism asked of this machine."""
    check_output_dir(cfg)
    for ref in filter(None, (cfg.model.ref, cfg.judge.llm.model)):
        check_model_ref(ref)
    check_parallelism(cfg)


def prepare_environment(cfg: ExperimentConfig) -> None:
    """Defaults that make Prefect and the stack work offline on a small machine (env wins if set)."""
    defaults = {
        # Stage results persist next to the stage store, so a second run finds its cache records.
        "PREFECT_RESULTS_LOCAL_STORAGE_PATH": str(cfg.results_path()),
        "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "120",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
        "TOKENIZERS_PARALLELISM": "false",
    }
    if cfg.data.mirror_path() is not None and cfg.data.source != "hub":  # a mirror: datasets never from the hub
        defaults["HF_DATASETS_OFFLINE"] = "1"
        if local_model_dir(cfg.model.ref) is not None or cfg.model.ref.startswith(BUNDLED_PREFIX):
            defaults["HF_HUB_OFFLINE"] = "1"  # nothing to download (a hub model still may)
    for key, value in defaults.items():
        os.environ.setdefault(key, value)


# vLLM's CPU backend runs ~30% faster with tcmalloc and Intel OpenMP preloaded (measured here:
# 154 vs 118 tok/s); LD_PRELOAD only acts at process start, so the CLI re-executes itself once.
_PRELOAD_CANDIDATES = ("/usr/lib/x86_64-linux-gnu/libtcmalloc_minimal.so.4",
                       str(Path(sys.prefix) / "lib" / "libiomp5.so"))


_OPENMP_RUNTIMES = ("libgomp", "libiomp", "libomp")


def preload_libraries() -> list[str]:
    """Allocator/OpenMP libraries to preload on a CPU-only machine (none on GPU machines). Never a second OpenMP
    runtime: an LD_PRELOAD that already holds one (set by hand, or inherited from a process that imported vLLM,
    which adds torch's libgomp) keeps it; two make vLLM's multiprocess CPU executor refuse to start."""
    if os.environ.get("S3FT_NO_PRELOAD") or Path("/dev/nvidia0").exists() or os.environ.get("S3FT_PRELOADED"):
        return []
    current = os.environ.get("LD_PRELOAD", "")
    has_openmp = any(runtime in current for runtime in _OPENMP_RUNTIMES)
    return [p for p in _PRELOAD_CANDIDATES if Path(p).is_file() and p not in current
            and not (has_openmp and Path(p).name.startswith(_OPENMP_RUNTIMES))]


def reexec_with_preload(argv: list[str]) -> None:
    """Start this command again with the libraries preloaded (no return), or return when there are none."""
    libs = preload_libraries()
    if libs:
        env = dict(os.environ, S3FT_PRELOADED="1",
                   LD_PRELOAD=":".join(filter(None, [*libs, os.environ.get("LD_PRELOAD", "")])))
        os.execve(sys.executable, [sys.executable, "-m", "flows.cli", *argv], env)
