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
MAX_CONFIG_BYTES = 1 << 20
"""A config is a few KiB of YAML; anything past 1 MiB is the wrong file (datasets go in data.path)."""
MAX_VALUES = 100_000
"""Values a config may expand to: YAML aliases can make a 1-KiB file expand to billions."""


def _text(path: Path) -> str:
    """A config file's text, or one error that says what the path is instead."""
    if path.is_dir():
        raise ConfigError(f"config {path} is a folder. Fix: pass a YAML file, e.g. configs/quickstart.yaml")
    if not path.exists():
        raise ConfigError(f"config file {path} does not exist. Fix: pass a path such as configs/quickstart.yaml")
    if not path.is_file():
        raise ConfigError(f"config {path} is not a regular file. Fix: pass a YAML file, e.g. configs/quickstart.yaml")
    size = path.stat().st_size
    if size > MAX_CONFIG_BYTES:
        raise ConfigError(f"config file {path} is {size / 2**20:.1f} MiB, a config is a few KiB of YAML. Fix: pass "
                          f"the experiment's YAML (a dataset goes in data.path)")
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as err:
        raise ConfigError(f"config file {path} is not UTF-8 text (byte {err.start} is 0x{err.object[err.start]:02x}). "
                          f"Fix: save it as UTF-8 YAML") from None
    except OSError as err:
        raise ConfigError(f"config file {path} cannot be read ({err.strerror}). Fix: check its permissions") from None
    return text


def parse_yaml(text: str, where: str) -> Any:
    """YAML values, refused (one ConfigError) when malformed, nested past the parser, or expanding past
    MAX_VALUES through anchors and aliases (a value that contains itself expands without end)."""
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise ConfigError(f"{where} is not valid YAML: {' '.join(str(err).split())}") from None
    except RecursionError:
        raise ConfigError(f"{where} nests its values too deeply for YAML. Fix: flatten it") from None
    seen, stack = 0, [value]
    while stack:
        item = stack.pop()
        seen += 1
        if seen > MAX_VALUES:
            raise ConfigError(f"{where} expands to more than {MAX_VALUES:,} values through YAML anchors and "
                              f"aliases (or a value contains itself). Fix: write the values out without aliases")
        if isinstance(item, dict):
            stack += [*item.keys(), *item.values()]
        elif isinstance(item, list):
            stack += item
    return value


def _merged(base: dict[str, Any], child: dict[str, Any]) -> dict[str, Any]:
    """`child` over `base`: sections merge key by key, any other value (lists too) replaces."""
    out = dict(base)
    for key, value in child.items():
        out[key] = _merged(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def read_tree(path: Path, seen: tuple[Path, ...] = ()) -> dict[str, Any]:
    """The values of one config file, with the file it extends (and so on) underneath."""
    text = _text(path)
    if path.resolve() in seen:
        raise ConfigError(f"config file {path}: `{EXTENDS}` loops back to itself. Fix: break the cycle")
    tree = parse_yaml(text, f"config file {path}")
    if tree is None:
        raise ConfigError(f"config file {path} holds no settings. Fix: start from configs/quickstart.yaml")
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
        value = parse_yaml(raw, f"--set {key.strip()}") if raw.strip() else ""
    except ConfigError as err:
        if "not valid YAML" not in str(err):
            raise
        value = raw  # not YAML: the plain string
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
        elif "Fix:" not in msg:  # a validator's own message names its fix
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
