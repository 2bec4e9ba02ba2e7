"""The data mirror's general benchmarks in the layout lm-eval reads, copied into one content-addressed folder.

MMLU (`mmlu/test`, `mmlu/dev` CSVs) becomes `mmlu/<subject>/{test,dev}.jsonl` as in `cais/mmlu`, and
TruthfulQA v0 (the version lm-eval scores) `truthful_qa/multiple_choice/validation.jsonl` as in
`truthful_qa`, each with a README `configs:` block so `datasets.load_dataset(folder, subject)` works
offline. ARC-Easy/Challenge, HellaSwag, Winogrande, PIQA, BoolQ and OpenBookQA are already JSONL in the
fields lm-eval's tasks use: they are copied as `<benchmark>/<split>.jsonl` (configs/benchmarks/*.yaml
point lm-eval's own task definitions at them).
"""
from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

from tasks.core.errors import BenchmarkDataError
from tasks.core.records import sha256_file, sha256_json, write_lines_atomic

MIRROR_FILES = {"mmlu": ("mmlu/test", "mmlu/dev"), "truthfulqa": ("truthfulqa/v0/mc_task.json",)}

# benchmark -> split -> mirror file (see ../shared/data/<name>/SOURCE.md); lm-eval scores the test split
# where there is one, else validation (EVALUATED_SPLIT).
JSONL_BENCHMARKS: dict[str, dict[str, str]] = {
    "arc_easy": {s: f"arc_easy/ARC-Easy-{s}.jsonl" for s in ("train", "validation", "test")},
    "arc_challenge": {s: f"arc_challenge/ARC-Challenge-{s}.jsonl" for s in ("train", "validation", "test")},
    "hellaswag": {"validation": "hellaswag/hellaswag_validation.jsonl"},
    "winogrande": {"validation": "winogrande/winogrande_xl_validation.jsonl"},
    "piqa": {"validation": "piqa/piqa_validation.jsonl"},
    # lm-eval's boolq reads super_glue/boolq: the mirror's reconstruction of it (boolq/SOURCE.md's caveat)
    "boolq": {"validation": "boolq/super_glue_boolq_validation_reconstructed.jsonl"},
    "openbookqa": {"validation": "openbookqa/openbookqa_main_validation.jsonl",
                   "test": "openbookqa/openbookqa_main_test.jsonl"},
}


def evaluated_split(name: str) -> str:
    """The split lm-eval scores for a JSONL benchmark."""
    return "test" if "test" in JSONL_BENCHMARKS[name] else "validation"


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
    # The JSONL benchmarks are optional here: a requested one that is missing fails in the benchmark stage.
    extra = [mirror / rel for splits in JSONL_BENCHMARKS.values() for rel in splits.values()]
    return files + [tqa] + [p for p in extra if p.is_file()]


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


def _convert_mmlu(mirror: Path, out: Path) -> dict[str, int]:
    configs, n_test = [], 0
    subjects = sorted(p.name.removesuffix("_test.csv") for p in (mirror / "mmlu" / "test").glob("*_test.csv"))
    for subject in subjects:
        for split in ("test", "dev"):
            rows = _mmlu_rows(mirror / "mmlu" / split / f"{subject}_{split}.csv", subject)
            _write_jsonl(out / "mmlu" / subject / f"{split}.jsonl", rows)
            n_test += len(rows) if split == "test" else 0
        configs.append(f"- config_name: {subject}\n  data_files:\n  - split: test\n    path: {subject}/test.jsonl\n"
                       f"  - split: dev\n    path: {subject}/dev.jsonl\n")
    (out / "mmlu" / "README.md").write_text("---\nconfigs:\n" + "".join(configs) + "---\n")
    return {"mmlu_subjects": len(subjects), "mmlu_test": n_test}


def _convert_truthfulqa(mirror: Path, out: Path) -> dict[str, int]:
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
    return {"truthfulqa": len(rows)}


def _copy_jsonl_benchmarks(mirror: Path, out: Path) -> dict[str, int]:
    """`out/<benchmark>/<split>.jsonl` for every JSONL benchmark the mirror holds; rows of the scored split."""
    counts = {}
    for name, splits in JSONL_BENCHMARKS.items():
        if not all((mirror / rel).is_file() for rel in splits.values()):
            continue
        for split, rel in splits.items():
            lines = [line for line in (mirror / rel).read_text(encoding="utf-8").splitlines(keepends=True)
                     if line.strip()]
            write_lines_atomic(out / name / f"{split}.jsonl", lines)
            if split == evaluated_split(name):
                counts[name] = len(lines)
    return counts


def convert_mirror(mirror: Path, out: Path) -> dict[str, int]:
    """Every benchmark the mirror holds, in lm-eval's layout under `out`; rows per benchmark."""
    return {**_convert_mmlu(mirror, out), **_convert_truthfulqa(mirror, out), **_copy_jsonl_benchmarks(mirror, out)}


def mirror_hash(mirror: Path) -> str:
    """The content hash of the mirror files the conversion reads."""
    return sha256_json([(p.relative_to(mirror).as_posix(), sha256_file(p)) for p in mirror_files(mirror)])
