"""Content addressing, defined in one place: what a stage call's key is made of.

A key = hash(stage name, stage version, the arguments' fingerprints). An Artifact's fingerprint is its
content hash, not its path; a settings section's is the part that can change an output (`auto`
resolved, runtime fields left out); parameters that locate inputs or outputs (the store, a mirror
folder) are not hashed at all. Prefect uses the key as the task's cache key and the stage writes
its files under `store/<stage>/<key>/`, so equal inputs share outputs.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel

from tasks.core.records import Artifact, sha256_json
from tasks.core.section import Section

STORE_PARAM = "store"
"""Every stage's keyword argument naming the store folder (a location: never hashed)."""


def fingerprint(value: Any) -> Any:
    """What a cache key sees of one argument."""
    if isinstance(value, Artifact):
        return value.sha256  # content, not location
    if isinstance(value, Section):
        return value.key_dump()
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if isinstance(value, (list, tuple)):
        return [fingerprint(v) for v in value]
    if isinstance(value, dict):
        return {str(k): fingerprint(v) for k, v in value.items()}
    if isinstance(value, Path):
        return str(value)
    return value


def resolved(value: Any) -> Any:
    """Settings with their `auto` values decided; anything else unchanged."""
    return value.resolved() if isinstance(value, Section) else value


@dataclass(frozen=True)
class StageContract:
    """A stage's declaration, written once in its `@stage(...)` line."""

    name: str
    version: str
    """Bump when the stage's code changes what it writes."""
    outputs: tuple[str, ...] = ()
    """Files (or folders) in the stage folder that its MLflow run gets as artifacts."""
    hashed_by: Literal["output", "inputs"] = "output"
    """`inputs`: the artifact's hash names its inputs (a model fingerprint, the mirror's files), so a
    cache hit is not re-hashed (gigabytes of weights); `output`: its files are, on every cache hit."""
    locations: tuple[str, ...] = ()
    """Parameters that say where inputs lie (a mirror folder), not what they hold: never hashed."""

    def key(self, arguments: dict[str, Any]) -> str:
        """The content address of one call of this stage."""
        unhashed = {STORE_PARAM, *self.locations}
        fp = {k: fingerprint(v) for k, v in sorted(arguments.items()) if k not in unhashed}
        return sha256_json({"stage": self.name, "version": self.version, "params": fp})[:32]

    def folder(self, store: str | Path, arguments: dict[str, Any]) -> Path:
        """Where one call writes its files (created)."""
        d = Path(store) / self.name / self.key(arguments)
        d.mkdir(parents=True, exist_ok=True)
        return d
