"""Data sources by name: read a split from the local mirror or the Hugging Face hub, as Examples.

A source is light: `datasets` is imported only when the hub is used. The built-in sources (gsm8k,
mbpp, mbpp_sanitized, humaneval, nq) register themselves from their modules in this package.
"""
from __future__ import annotations

import gzip
import json
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from tasks.core.errors import DataError
from tasks.core.records import Example, sha256_file, sha256_json
from tasks.core.registry import Registry


@dataclass(frozen=True)
class Source:
    name: str
    splits: tuple[str, ...]
    required_fields: tuple[str, ...]
    mirror_file: Callable[[Path, str], Path]
    hub: tuple[str, str | None]  # (dataset id, config name)
    to_example: Callable[[dict[str, Any], str, str | None], Example]
    select: Callable[[list[dict[str, Any]], str], list[dict[str, Any]]] | None = None
    """For a mirror file that holds every split: the rows of one split."""
    reader: Callable[[str], tuple[list[dict[str, Any]], str]] | None = None
    """Rows from somewhere other than mirror/hub (a data file shipped in a package)."""


SOURCES: Registry[Source] = Registry("data source")


def register_source(source: Source) -> Source:
    return SOURCES.add(source.name, source)


def source_names() -> list[str]:
    return SOURCES.names()


def get_source(name: str) -> Source:
    return SOURCES.get(name)


def read_mirror_rows(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        raise DataError(f"mirror file {path} does not exist. Fix: point S3FT_DATA_MIRROR (or data.mirror) "
                        f"at the folder that holds <source>/ files, or unset it to use the hub")
    if path.suffix == ".json":  # one JSON array
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as err:
            raise DataError(f"{path}: not JSON ({err.msg}). Fix: restore the file") from None
        if not isinstance(data, list):
            raise DataError(f"{path}: expected a JSON array of rows. Fix: restore the file")
        return data
    return json_lines(path, "restore the file")


def json_lines(path: Path, fix: str) -> list[Any]:
    """One JSON value per non-blank line (`.gz` read as published); a bad line is an error naming it and `fix`."""
    rows = []
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError as err:
                    raise DataError(f"{path}:{lineno}: not JSON ({err.msg}). Fix: {fix}") from None
    return rows


def hub_rows(dataset_id: str, config: str | None, split: str) -> list[dict[str, Any]]:
    """A hub dataset's rows; an unreachable hub is one clear error that names the mirror setting."""
    import datasets

    try:
        return [dict(r) for r in datasets.load_dataset(dataset_id, config, split=split)]
    except ConnectionError as err:
        raise DataError(f"data.mirror: no data mirror is set and the hub cannot be reached for {dataset_id} "
                        f"({err}). Fix: set S3FT_DATA_MIRROR (or data.mirror) to a mirror folder such as "
                        f"../shared/data, or give the machine network access") from None


def read_hub_rows(source: Source, split: str) -> list[dict[str, Any]]:
    dataset_id, config = source.hub
    return hub_rows(dataset_id, config, split)


def load_rows(source: Source, split: str, mirror: Path | None) -> tuple[list[dict[str, Any]], str]:
    """Rows of a split and a description of where they came from."""
    if split not in source.splits:
        raise DataError(f"{source.name} has no split {split!r}; splits: {source.splits}")
    if source.reader is not None:
        return source.reader(split)
    if mirror is not None:
        path = source.mirror_file(mirror, split)
        rows = read_mirror_rows(path)
        if source.select is not None:
            check_fields(rows, source, str(path))
            rows = source.select(rows, split)
        return rows, f"{path} ({split} split)"
    return read_hub_rows(source, split), f"hub {source.hub[0]}/{source.hub[1]} ({split} split)"


def check_fields(rows: list[dict[str, Any]], source: Source, origin: str) -> None:
    if not rows:
        raise DataError(f"{origin}: the split is empty. Fix: point the mirror at the complete dataset")
    for i, row in enumerate(rows):
        missing = [f for f in source.required_fields if f not in row or row[f] in (None, "")]
        if missing:
            raise DataError(f"{origin}: row {i} lacks field(s) {missing} required by data source {source.name!r}. "
                            f"Fix: use the original dataset files (see shared/data/{source.name}/SOURCE.md)")


def subsample(n_rows: int, size: int | None, seed: int) -> list[int]:
    """Deterministic subset of row indices (sorted), the same for a given size and seed."""
    if size is None or size >= n_rows:
        return list(range(n_rows))
    return sorted(random.Random(seed).sample(range(n_rows), size))


def read_examples(name: str, split: str, size: int | None, seed: int, mirror: Path | None,
                  system_prompt: str | None) -> list[Example]:
    """A seeded sample of one split of the data source `name`, as Examples."""
    source = get_source(name)
    rows, origin = load_rows(source, split, mirror)
    check_fields(rows, source, origin)
    return [source.to_example(rows[i], f"{name}-{split}-{i}", system_prompt)
            for i in subsample(len(rows), size, seed)]


def split_fingerprint(name: str, split: str, mirror: Path | None) -> str:
    """Content identity of the data a split is read from: the mirror file's hash (hub data: its name)."""
    source = get_source(name)
    if mirror is None:
        return sha256_json({"hub": source.hub, "split": split})
    path = source.mirror_file(mirror, split)
    return sha256_file(path) if path.is_file() else f"missing:{path}"
