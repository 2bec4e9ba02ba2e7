"""Content addressing, defined in one place.

A stage's cache key = hash(stage name, stage version, the content hashes of its input Artifacts,
the config subset it uses). Prefect uses it as the task's cache key (results persisted on disk),
and the stage writes its files under `store/<stage>/<key>/`, so equal inputs share outputs and a
changed training hyper-parameter leaves generation, judging and paraphrasing untouched.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel

from tasks.records import Artifact, sha256_json

# Bump a stage's version when its code changes what it writes.
STAGE_VERSIONS: dict[str, str] = {
    "prepare_model": "1",
    "load_examples": "1",
    "generate": "2",  # 2: written in resumable shards
    "judge": "3",  # 3: verdicts say which judge stage decided (decided_by)
    "paraphrase_prompts": "1",
    "targets": "1",
    "train": "1",
    "merge": "1",
    "benchmark_data": "1",
    "benchmark": "1",
    "familiarity": "1",
    "llm_judge_prompts": "1",
    "llm_judge_merge": "1",
}

# Parameters that locate outputs rather than define them.
_LOCATION_PARAMS = {"store", "run_dir"}


def _fingerprint(value: Any) -> Any:
    if isinstance(value, Artifact):
        return value.sha256  # content, not location
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if isinstance(value, (list, tuple)):
        return [_fingerprint(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _fingerprint(v) for k, v in value.items()}
    if isinstance(value, Path):
        return str(value)
    return value


def stage_key(stage: str, params: dict[str, Any]) -> str:
    """The content address of one stage call."""
    if stage not in STAGE_VERSIONS:
        raise KeyError(f"stage {stage!r} has no version in tasks/cache.py STAGE_VERSIONS")
    fp = {k: _fingerprint(v) for k, v in sorted(params.items()) if k not in _LOCATION_PARAMS}
    return sha256_json({"stage": stage, "version": STAGE_VERSIONS[stage], "params": fp})[:32]


def stage_dir(store: str | Path, stage: str, params: dict[str, Any]) -> Path:
    """Where a stage call writes its files (created)."""
    d = Path(store) / stage / stage_key(stage, params)
    d.mkdir(parents=True, exist_ok=True)
    return d


def prefect_cache_key(stage: str):
    """A Prefect `cache_key_fn` for a stage."""

    def key_fn(_context: Any, parameters: dict[str, Any]) -> str:
        return f"{stage}-{stage_key(stage, parameters)}"

    return key_fn
