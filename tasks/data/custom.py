"""Your own data by configuration (`data.source: file` or `hub`): rows from a data file or a hub dataset, the
columns named by `data.fields`, the prompt rendered from `data.prompt`, and the train/test splits from named
files, a split column, or a seeded hash of each row's id (or question) as NQ's single file is split.

Every problem is one DataError that names the setting or file and the fix: a mapped column missing, a
placeholder that is not a column, an empty split, a file that does not parse.
"""
from __future__ import annotations

import csv
import hashlib
import json
import string
from pathlib import Path
from typing import Any

from tasks.core.errors import DataError
from tasks.core.records import Example, sha256_file, sha256_json
from tasks.data.prompts import chat
from tasks.data.sources import hub_rows, json_lines, subsample

SPLIT_SALT = "s3ft-data-split-v1"
LETTERS = "ABCDEFGHIJ"


def read_data_file(path: str) -> list[dict[str, Any]]:
    """Rows of a CSV/TSV, JSON (array), JSONL (optionally .gz) or Parquet file; other locations (URLs,
    hf://, globs) through `datasets`."""
    p = Path(path).expanduser()
    suffixes = "".join(p.suffixes[-2:]).lower()
    if not p.is_file():
        if "://" in path or any(ch in path for ch in "*?["):
            return _datasets_rows(path)
        raise DataError(f"data.path: {path} does not exist. Fix: give the path of your data file (relative to "
                        f"where you run s3ft) or its URL")
    if suffixes.endswith((".csv", ".tsv")):
        with open(p, newline="", encoding="utf-8-sig") as fh:
            return [dict(r) for r in csv.DictReader(fh, delimiter="\t" if suffixes.endswith(".tsv") else ",")]
    if suffixes.endswith(".parquet"):
        import pyarrow.parquet as pq

        try:
            return pq.read_table(p).to_pylist()
        except Exception as err:  # pyarrow's errors have no common base
            raise DataError(f"{p}: not a Parquet file ({err}). Fix: export it again, or use CSV/JSONL") from None
    if suffixes.endswith(".json"):
        text = p.read_text(encoding="utf-8")
        if text.lstrip().startswith("["):
            try:
                rows = json.loads(text)
            except json.JSONDecodeError as err:
                raise DataError(f"{p}: not JSON (line {err.lineno}: {err.msg}). Fix: the file must be one JSON "
                                f"array of objects, or one object per line") from None
            return _objects(rows, p)
    return _objects(json_lines(p, "one JSON object per line (JSONL), or name the file .csv/.parquet for those "
                                  "formats"), p)


def _objects(rows: Any, p: Path) -> list[dict[str, Any]]:
    if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
        raise DataError(f"{p}: expected objects with named fields (one per row). Fix: a JSON array of objects "
                        f"or JSONL")
    return rows


def _datasets_rows(location: str) -> list[dict[str, Any]]:
    import datasets

    kind = next((k for k in ("csv", "parquet", "json") if k in location.lower()), "json")
    try:
        return [dict(r) for r in datasets.load_dataset(kind, data_files=location, split="train")]
    except Exception as err:  # datasets raises many kinds; each means this location cannot be read
        raise DataError(f"data.path: {location} could not be read by datasets ({err.__class__.__name__}: "
                        f"{err}). Fix: check the location, or download the file and give its local path") from None


def placeholders(template: str) -> list[str]:
    return [name for _, name, _, _ in string.Formatter().parse(template) if name]


def hash_split(key: str, test_percent: int) -> str:
    """`test` for ~test_percent % of keys, else `train`: a salted hash, stable under row order and sizes."""
    h = int(hashlib.sha256(f"{SPLIT_SALT}:{key.strip()}".encode()).hexdigest(), 16)
    return "test" if h % 100 < test_percent else "train"


def split_rows(settings: Any, split: str) -> tuple[list[dict[str, Any]], str]:
    """The rows of `split` and where they came from, by the data settings (see the module doc)."""
    if settings.source == "hub":
        name = settings.splits.get(split) or settings.splits["train"]
        rows, origin = hub_rows(settings.dataset, settings.dataset_config, name), f"hub {settings.dataset} ({name})"
        hashed = not settings.splits.get("test")
    elif settings.files:
        origin = settings.files.get(split) or settings.files["train"]
        rows, hashed = read_data_file(origin), "test" not in settings.files
    else:
        rows, origin, hashed = read_data_file(settings.path), settings.path, settings.split_column is None
        if not hashed:
            _require(rows, [settings.split_column], "data.split_column", origin)
            value = settings.splits.get(split, split)
            rows = [r for r in rows if str(r[settings.split_column]) == value]
            origin = f"{origin} ({settings.split_column} = {value})"
    if not rows:
        raise DataError(f"{origin}: no rows. Fix: point data.path / data.files / data.dataset at your data")
    if hashed:  # one split given: divided by a salted hash of each row's id (or question, or whole row)
        key = settings.fields.id or settings.fields.question  # neither: the whole row
        _require(rows, [key] if key else [], "data.fields", origin)
        rows = [r for r in rows if hash_split(str(r[key]) if key else json.dumps(r, sort_keys=True, default=str),
                                              settings.test_percent) == split]
        origin = f"{origin} ({split}: hash split, {settings.test_percent} % test)"
    if not rows:
        raise DataError(f"{origin}: the {split} split is empty. Fix: check data.files / data.split_column and "
                        f"data.splits, or add rows")
    return rows, origin


def _require(rows: list[dict[str, Any]], columns: list[str], setting: str, origin: str) -> None:
    have = set(rows[0]) if rows else set()
    missing = [c for c in columns if c not in have]
    if missing:
        raise DataError(f"{setting}: column(s) {missing} are not in {origin} (its columns: {sorted(have)}). "
                        f"Fix: map the setting to one of those columns")


def row_example(row: dict[str, Any], settings: Any, example_id: str) -> Example:
    """One row as an Example: the rendered prompt (or the row's chat messages), gold and its aliases."""
    f = settings.fields
    raw = row[f.answer]
    answers = [str(a).strip() for a in (raw if isinstance(raw, list) else [raw]) if str(a).strip()]
    if not answers:
        raise DataError(f"{example_id}: column {f.answer!r} (data.fields.answer) is empty. Fix: drop the row or "
                        f"map data.fields.answer to the answer column")
    values = {k: "" if v is None else v for k, v in row.items()}
    meta: dict[str, Any] = {"answers": answers}
    if f.question:
        values["question"] = str(row[f.question]).strip()
    if f.options:
        opts = row[f.options]
        meta["options"] = [str(o) for o in opts] if isinstance(opts, list) else [o.strip() for o in str(opts).split("|")]
        values["options"] = "\n".join(f"{LETTERS[i]}. {o}" for i, o in enumerate(meta["options"]))
    if f.tests:
        tests = row[f.tests]
        meta["tests"] = [str(t) for t in tests] if isinstance(tests, list) else \
            [t for t in str(tests).splitlines() if t.strip()]
        values["tests"] = "\n".join(meta["tests"])
    if f.messages:
        messages = list(row[f.messages])
        if settings.system_prompt and messages and messages[0].get("role") != "system":
            messages = [{"role": "system", "content": settings.system_prompt}, *messages]
    else:
        messages = chat(settings.system_prompt, settings.prompt.format_map(values))
    meta["question"] = values.get("question") or messages[-1]["content"]  # what the LLM judge is told was asked
    return Example(id=example_id, source=settings.source, prompt_messages=messages, gold=answers[0], meta=meta)


def read_configured(settings: Any, split: str, size: int | None, seed: int) -> list[Example]:
    """A seeded sample of one split of the configured data (`data.source: file | hub`), as Examples."""
    rows, origin = split_rows(settings, split)
    f = settings.fields
    _require(rows, [c for c in (f.question, f.answer, f.id, f.options, f.tests, f.messages) if c], "data.fields",
             origin)
    named = {"question": f.question, "options": f.options, "tests": f.tests}
    unknown = [p for p in placeholders(settings.prompt) if p not in rows[0] and not named.get(p)]
    if unknown and not f.messages:
        raise DataError(f"data.prompt: placeholder(s) {['{' + p + '}' for p in unknown]} are not columns of "
                        f"{origin} (its columns: {sorted(rows[0])}). Fix: use a column name, or {{question}} / "
                        f"{{options}} with data.fields.question / data.fields.options mapped")
    name = settings.source
    return [row_example(rows[i], settings, f"{name}-{split}-{rows[i][f.id] if f.id else i}")
            for i in subsample(len(rows), size, seed)]


def configured_fingerprint(settings: Any, split: str) -> str:
    """Content identity of the configured data: its files' hashes (a hub dataset or URL: its name)."""
    if settings.source == "hub":
        return sha256_json({"hub": settings.dataset, "config": settings.dataset_config, "splits": settings.splits})
    paths = sorted(set(settings.files.values())) if settings.files else [settings.path]
    return sha256_json([sha256_file(Path(p).expanduser()) if Path(p).expanduser().is_file() else f"location:{p}"
                        for p in paths])
