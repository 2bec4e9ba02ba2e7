"""Bad input, one row each: the command fails with one clear `s3ft: error:` line (problem and fix), a
non-zero exit code, no traceback, and every file an earlier run computed is still there, unchanged."""
import json
import os
import shutil
from pathlib import Path

import pytest

from s3ft_cli import TINY_RANDOM, recomputed, run_s3ft, snapshot, summary_of


@pytest.fixture(scope="module")
def finished(tmp_path_factory, tiny_model_dir, mirror, prefect_server) -> Path:
    """An output folder holding one complete experiment: what bad input must not damage."""
    out = tmp_path_factory.mktemp("bad-input")
    summary_of(run_s3ft(out, tiny_model_dir, TINY_RANDOM, server=prefect_server))
    return out


def _mirror_with(tmp: Path, mirror: Path, train_rows: list[dict]) -> Path:
    bad = tmp / "mirror"
    (bad / "gsm8k").mkdir(parents=True)
    shutil.copy(mirror / "gsm8k" / "test.jsonl", bad / "gsm8k" / "test.jsonl")
    (bad / "gsm8k" / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in train_rows))
    return bad


def _rows(mirror: Path, n: int = 8) -> list[dict]:
    return [json.loads(l) for l in (mirror / "gsm8k" / "train.jsonl").read_text().splitlines()[:n]]


def _unknown_key(tmp, mirror, out):
    return ["training.learnin_rate=1e-4"]


def _wrong_type(tmp, mirror, out):
    return ["training.batch_size=eight"]


def _negative_size(tmp, mirror, out):
    return ["data.test_size=-5"]


def _missing_field(tmp, mirror, out):
    rows = [{k: v for k, v in r.items() if k != "answer"} for r in _rows(mirror)]
    return [f"data.mirror={_mirror_with(tmp, mirror, rows)}"]


def _empty_split(tmp, mirror, out):
    return [f"data.mirror={_mirror_with(tmp, mirror, [])}"]


def _missing_model(tmp, mirror, out):
    return [f"model.ref={tmp / 'no-such-model'}"]


def _unwritable_output(tmp, mirror, out):
    blocker = tmp / "a-file"
    blocker.write_text("not a folder")
    return [f"output_dir={blocker / 'runs'}"]


def _corrupt_cache_entry(tmp, mirror, out):
    gens = sorted((out / "store" / "generate").glob("*/generations.jsonl"))[0]
    gens.write_text(gens.read_text().replace('"text":"', '"text":"EDITED ', 1))
    return []


def _own(path: Path, *more: str) -> list[str]:
    """Your own data (a CSV with its own columns, tests/test_own_task.py) instead of GSM8K."""
    return ["data.source=file", f"data.path={path}", "data.fields={question: null, answer: total, id: uid}",
            "data.prompt='{name} had {start} {item} and got {added} more. How many {item} now?'",
            "judge.name=numeric", *more]


def _shop_csv(tmp: Path) -> Path:
    from test_own_task import shop_module

    return shop_module().write(tmp / "shop.csv", 40)


def _own_missing_column(tmp, mirror, out):
    return _own(_shop_csv(tmp), "data.fields.answer=price")


def _own_placeholder_not_a_column(tmp, mirror, out):
    return _own(_shop_csv(tmp), "data.prompt='{name} likes {colour}'")


def _own_judge_parameter_type(tmp, mirror, out):
    return _own(_shop_csv(tmp), "judge.numeric.tolerance=small")


def _own_empty_file(tmp, mirror, out):
    (tmp / "empty.csv").write_text("uid,name,item,start,added,total\n")
    return _own(tmp / "empty.csv")


def _own_file_not_parsed(tmp, mirror, out):
    (tmp / "broken.jsonl").write_text('{"uid": "a", "total": "3"}\n{"uid": oops\n')
    return _own(tmp / "broken.jsonl")


def _own_gold_rejected(tmp, mirror, out):
    return _own(_shop_csv(tmp), "data.fields.answer=name")  # names: the numeric judge finds no number


BAD_INPUTS = [  # (case, exit code, fragments the one error line must hold)
    (_unknown_key, 2, ["training.learnin_rate", "unknown key", "Fix: rename it to training.learning_rate"]),
    (_wrong_type, 2, ["training.batch_size", "valid integer", "got 'eight'", "Fix:"]),
    (_negative_size, 2, ["data.test_size", "greater than 0", "got -5", "Fix:"]),
    (_missing_field, 1, ["train.jsonl", "lacks field(s) ['answer']", "Fix:"]),
    (_empty_split, 1, ["train.jsonl", "the split is empty", "Fix:"]),
    (_missing_model, 1, ["model.ref", "no-such-model", "no such folder", "Fix:"]),
    (_unwritable_output, 2, ["output_dir", "not writable", "Fix:"]),
    (_corrupt_cache_entry, 1, ["generations.jsonl", "does not match the sha256", "Fix: delete"]),
    (_own_missing_column, 1, ["data.fields", "['price']", "shop.csv", "Fix:"]),
    (_own_placeholder_not_a_column, 1, ["data.prompt", "{colour}", "Fix:"]),
    (_own_judge_parameter_type, 2, ["judge.numeric.tolerance", "got 'small'", "Fix:"]),
    (_own_empty_file, 1, ["empty.csv", "no rows", "Fix:"]),
    (_own_file_not_parsed, 1, ["broken.jsonl:2", "not JSON", "Fix:"]),
    (_own_gold_rejected, 1, ["judge.name", "accepts 0 of", "gold answers", "Fix:", "allow_gold_failures"]),
]


@pytest.mark.slow
@pytest.mark.parametrize("case,code,fragments", BAD_INPUTS, ids=[c[0].__name__.strip("_") for c in BAD_INPUTS])
def test_bad_input_fails_with_one_clear_line_and_loses_nothing(case, code, fragments, finished, tiny_model_dir,
                                                                mirror, tmp_path, prefect_server):
    before = snapshot(finished)
    extra = case(tmp_path, mirror, finished)
    edited = {k for k, v in snapshot(finished).items() if before[k] != v}  # the corrupt-cache case's edit
    proc = run_s3ft(finished, tiny_model_dir, TINY_RANDOM + extra, server=prefect_server)
    errors = [l for l in proc.stderr.splitlines() if l.startswith("s3ft: error:")]
    assert proc.returncode == code, proc.stderr[-3000:]
    assert len(errors) == 1, proc.stderr[-3000:]
    for fragment in fragments:
        assert fragment in errors[0], errors[0]
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    after = snapshot(finished)
    lost_or_changed = {k for k, v in before.items() if after.get(k) != v} - edited
    assert not lost_or_changed, sorted(lost_or_changed)
    if case is _corrupt_cache_entry:  # the fix the line names works, and recomputes only that stage
        (edited_file,) = edited
        folder = finished / Path(edited_file).parent
        assert str(folder) in errors[0]
        shutil.rmtree(folder)
        redo = summary_of(run_s3ft(finished, tiny_model_dir, TINY_RANDOM, server=prefect_server))
        assert len(recomputed(redo)) == 1 and next(iter(recomputed(redo))).startswith("generate:"), recomputed(redo)
        store = {k: v for k, v in before.items() if k.startswith("store/")}
        assert snapshot(finished, ("store",)) == store  # the same bytes again: deterministic, content-addressed


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes through permission bits")
def test_read_only_output_dir_is_refused(tmp_path, tiny_model_dir):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    proc = run_s3ft(ro / "runs", tiny_model_dir, TINY_RANDOM)
    assert proc.returncode == 2 and "not writable" in proc.stderr and "Traceback" not in proc.stderr
