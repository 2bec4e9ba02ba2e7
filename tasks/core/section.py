"""The base of every config section: frozen, no unknown keys, and what a cache key sees of it.

A field marked `runtime` decides how a stage runs (threads, checkpoint interval, shard size, memory),
not what it computes: it is left out of every cache key, so changing it reuses finished stages.
"""
from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


def runtime(default: Any = None, **constraints: Any) -> Any:
    """A field that cannot change a stage's output: out of every cache key."""
    return Field(default=default, json_schema_extra={"runtime": True}, **constraints)


def one_of(value: str, names: list[str], kind: str) -> str:
    """`value` when it is a registered name, else an error listing the names."""
    if value not in names:
        raise ValueError(f"unknown {kind} {value!r}; choose one of {names}")
    return value


class Section(BaseModel):
    """A frozen block of settings; `key_dump` is what cache keys see of it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    def resolved(self) -> "Section":
        """The same settings with `auto` values decided for this machine (hashed and used by stages)."""
        return self

    def key_dump(self) -> dict[str, Any]:
        """The settings that can change an output, `auto` resolved; runtime fields left out."""
        me = self.resolved()
        out: dict[str, Any] = {}
        for name, field in type(me).model_fields.items():
            if (field.json_schema_extra or {}).get("runtime"):
                continue
            value = getattr(me, name)
            out[name] = value.key_dump() if isinstance(value, Section) else me.model_dump(
                mode="json", include={name})[name]
        return out
