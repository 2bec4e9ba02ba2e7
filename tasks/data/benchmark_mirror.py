"""The data mirror's MMLU and TruthfulQA in the layout of the hub datasets lm-eval reads.

MMLU (`mmlu/test`, `mmlu/dev` CSVs) becomes `mmlu/<subject>/{test,dev}.jsonl` as in `cais/mmlu`, and
TruthfulQA v0 (the version lm-eval scores) `truthful_qa/multiple_choice/validation.jsonl` as in
`truthful_qa`, each with a README `configs:` block so `datasets.load_dataset(folder, subject)` works
offline.
"""
from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

from tasks.core.errors import BenchmarkDataError
from tasks.core.records import sha256_file, sha256_json, write_lines_atomic

MIRROR_FILES = {"mmlu": ("mmlu/test", "mmlu/dev"), "truthfulqa": ("truthfulqa/v0/mc_task.json",)}


def _write_jsonl(path: Path, rows: list[dict]) -> None:
    write_lines_atomic(path, (json.dumps(r, ensure_ascii=False) + "\n" for r in rows))


def mirror_files(mirror: Path) -> list[Path]:
    """The mirror files the converted copy is made from (their hash is the cache key)."""
    files: list[Path] = []
    for rel in MIRROR_FILES["mmlu"]:
        folder = mirror / rel
        if not folder.is_dir():
            raise BenchmarkDataError(f"{folder}: missing. Fix: point S3FT_DATA_MIRROR (data.mirror) at a mirror "
                                     f"with mmlu/test and mmlu/dev, or unset it to read the hub")
        files += sorted(folder.glob("*.csv"))
    tqa = mirror / MIRROR_FILES["truthfulqa"][0]
    if not tqa.is_file():
        raise BenchmarkDataError(f"{tqa}: missing. Fix: the mirror needs truthfulqa/v0/mc_task.json")
    return files + [tqa]


def _mmlu_rows(path: Path, subject: str) -> list[dict[str, Any]]:
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        need = {"question", "choice0", "choice1", "choice2", "choice3", "answer"}
        if not need <= set(reader.fieldnames or []):
            raise BenchmarkDataError(f"{path}: header {reader.fieldnames} lacks {sorted(need)}. Fix: use the "
                                     f"mirror's reformatted MMLU CSVs (see mmlu/SOURCE.md)")
        rows = [{"question": r["question"], "subject": subject, "choices": [r[f"choice{i}"] for i in range(4)],
                 "answer": int(r["answer"])} for r in reader]
    if not rows:
        raise BenchmarkDataError(f"{path}: no rows. Fix: restore the file from the mirror")
    return rows


def convert_mirror(mirror: Path, out: Path) -> dict[str, int]:
    """Write `out/mmlu/<subject>/{test,dev}.jsonl` and `out/truthful_qa/multiple_choice/validation.jsonl`."""
    configs, counts = [], {"mmlu_subjects": 0, "mmlu_test": 0, "truthfulqa": 0}
    subjects = sorted(p.name.removesuffix("_test.csv") for p in (mirror / "mmlu" / "test").glob("*_test.csv"))
    for subject in subjects:
        for split in ("test", "dev"):
            rows = _mmlu_rows(mirror / "mmlu" / split / f"{subject}_{split}.csv", subject)
            _write_jsonl(out / "mmlu" / subject / f"{split}.jsonl", rows)
            counts["mmlu_test"] += len(rows) if split == "test" else 0
        configs.append(f"- config_name: {subject}\n  data_files:\n  - split: test\n    path: {subject}/test.jsonl\n"
                       f"  - split: dev\n    path: {subject}/dev.jsonl\n")
    counts["mmlu_subjects"] = len(subjects)
    (out / "mmlu" / "README.md").write_text("---\nconfigs:\n" + "".join(configs) + "---\n")
    items = json.loads((mirror / MIRROR_FILES["truthfulqa"][0]).read_text(encoding="utf-8"))
    rows = []
    for i, item in enumerate(items):
        try:
            rows.append({"question": item["question"], **{
                k: {"choices": list(item[k]), "labels": [int(v) for v in item[k].values()]}
                for k in ("mc1_targets", "mc2_targets")}})
        except (KeyError, TypeError, AttributeError) as err:
            raise BenchmarkDataError(f"truthfulqa/v0/mc_task.json item {i}: {err!r}; expected question, "
                                     f"mc1_targets and mc2_targets maps. Fix: restore the mirror file") from err
    _write_jsonl(out / "truthful_qa" / "multiple_choice" / "validation.jsonl", rows)
    (out / "truthful_qa" / "README.md").write_text(
        "---\nconfigs:\n- config_name: multiple_choice\n  data_files:\n  - split: validation\n"
        "    path: multiple_choice/validation.jsonl\n---\n")
    counts["truthfulqa"] = len(rows)
    return counts


def mirror_hash(mirror: Path) -> str:
    """The content hash of the mirror files the conversion reads."""
    return sha256_json([(p.relative_to(mirror).as_posix(), sha256_file(p)) for p in mirror_files(mirror)])
