"""Reading a config: YAML files (one may `extends:` another), `--set a.b=c` overrides, one validation.

Every problem becomes one line that names the field and the fix; all of them are reported at once.
"""
from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from tasks.core.config import RENAMED, ExperimentConfig
from tasks.core.errors import ConfigError

EXTENDS = "extends"
"""A config file's key naming the file (relative to it) whose values it starts from."""


def _merged(base: dict[str, Any], child: dict[str, Any]) -> dict[str, Any]:
    """`child` over `base`: sections merge key by key, any other value (lists too) replaces."""
    out = dict(base)
    for key, value in child.items():
        out[key] = _merged(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def read_tree(path: Path, seen: tuple[Path, ...] = ()) -> dict[str, Any]:
    """The values of one config file, with the file it extends (and so on) underneath."""
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist. Fix: pass a path such as configs/quickstart.yaml")
    if path.resolve() in seen:
        raise ConfigError(f"config file {path}: `{EXTENDS}` loops back to itself. Fix: break the cycle")
    try:
        tree = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise ConfigError(f"config file {path} is not valid YAML: {' '.join(str(err).split())}") from None
    if not isinstance(tree, dict):
        raise ConfigError(f"config file {path} must hold a mapping of sections, not {type(tree).__name__}")
    parent = tree.pop(EXTENDS, None)
    if parent is None:
        return tree
    if not isinstance(parent, str):
        raise ConfigError(f"config file {path}: `{EXTENDS}` must be a file name, e.g. base/paper.yaml")
    return _merged(read_tree(path.parent / parent, (*seen, path.resolve())), tree)


def parse_override(item: str) -> tuple[str, Any]:
    """`a.b=c` -> ("a.b", c) with c parsed as YAML (numbers, booleans, lists, null)."""
    if "=" not in item:
        raise ConfigError(f"--set {item!r}: expected KEY=VALUE, e.g. training.learning_rate=1e-4")
    key, raw = item.split("=", 1)
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    return key.strip(), value


def _set_dotted(tree: dict[str, Any], dotted: str, value: Any) -> None:
    keys = dotted.split(".")
    node = tree
    for key in keys[:-1]:
        child = node.setdefault(key, {})
        if not isinstance(child, dict):
            raise ConfigError(f"--set {dotted}: {key!r} is a value, not a section. Fix: check the key path.")
        node = child
    node[keys[-1]] = value


def _spelling_fix(loc: tuple) -> str:
    """`rename it to training.learning_rate` for a renamed key or a near miss, else `remove it ...`."""
    dotted = ".".join(map(str, loc))
    if dotted in RENAMED:
        return f"rename it to {RENAMED[dotted]} (renamed)"
    section: Any = ExperimentConfig
    for key in loc[:-1]:
        field = getattr(section, "model_fields", {}).get(str(key))
        if field is None or not isinstance(field.annotation, type) or not issubclass(field.annotation, BaseModel):
            return "remove it or correct its spelling"
        section = field.annotation
    close = difflib.get_close_matches(str(loc[-1]), list(section.model_fields), n=1, cutoff=0.5)
    return (f"rename it to {'.'.join(map(str, (*loc[:-1], close[0])))}" if close
            else "remove it or correct its spelling")


def format_errors(err: ValidationError, source: str) -> str:
    """One self-contained line per bad field or failed cross-field check: where, what, and the fix."""
    lines = []
    for e in err.errors():
        field = ".".join(str(p) for p in e["loc"])
        msg = e["msg"].removeprefix("Value error, ")
        if not field:  # cross-field checks: each line already names its field and the fix
            lines += [f"invalid config ({source}): {line}" for line in msg.splitlines()]
            continue
        if e["type"] == "extra_forbidden":
            msg = f"unknown key. Fix: {_spelling_fix(e['loc'])} (schema: tasks/core/settings.py)"
        else:
            msg += f" (got {e.get('input')!r}). Fix: set a valid value for {field}"
        lines.append(f"invalid config ({source}): {field}: {msg}")
    return "\n".join(lines)


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> ExperimentConfig:
    """Read YAML (if any), apply `key=value` overrides, validate once; the result is frozen."""
    tree = read_tree(Path(path)) if path is not None else {}
    for item in overrides or []:
        key, value = parse_override(item)
        _set_dotted(tree, key, value)
    try:
        return ExperimentConfig.model_validate(tree)
    except ValidationError as err:
        raise ConfigError(format_errors(err, str(path) if path is not None else "defaults")) from None
