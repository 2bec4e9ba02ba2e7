"""Data sources: mirror loading, deterministic subsampling, clear errors for bad data."""
import json

import pytest

from tasks.core.errors import DataError
from tasks.data import read_examples
from tasks.data.sources import subsample


def test_gsm8k_from_mirror_is_deterministic_and_clean(mirror):
    a = read_examples("gsm8k", "train", 20, seed=3, mirror=mirror, system_prompt=None)
    b = read_examples("gsm8k", "train", 20, seed=3, mirror=mirror, system_prompt=None)
    c = read_examples("gsm8k", "train", 20, seed=4, mirror=mirror, system_prompt=None)
    assert [e.id for e in a] == [e.id for e in b] != [e.id for e in c]
    assert all("<<" not in e.gold and "####" in e.gold for e in a)  # calculator annotations stripped
    assert all(e.meta["final_answer"] for e in a)
    assert a[0].prompt_messages[-1]["role"] == "user"


def test_full_split_sizes(mirror):
    assert len(read_examples("gsm8k", "test", None, 0, mirror, None)) == 1319


def test_system_prompt_is_prepended(mirror):
    e = read_examples("gsm8k", "test", 1, 0, mirror, "Be brief.")[0]
    assert e.prompt_messages[0] == {"role": "system", "content": "Be brief."}


def test_subsample_is_sorted_subset():
    idx = subsample(100, 10, seed=1)
    assert idx == sorted(idx) and len(set(idx)) == 10 and subsample(5, 10, 1) == list(range(5))


def _mirror_with(tmp_path, rows):
    (tmp_path / "gsm8k").mkdir()
    (tmp_path / "gsm8k" / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return tmp_path


def test_missing_field_names_field_and_fix(tmp_path):
    mirror = _mirror_with(tmp_path, [{"question": "q?", "answer": "#### 1"}, {"question": "q2"}])
    with pytest.raises(DataError, match=r"row 1 lacks field\(s\) \['answer'\].*Fix"):
        read_examples("gsm8k", "train", None, 0, mirror, None)


def test_empty_split_and_missing_file(tmp_path):
    with pytest.raises(DataError, match="the split is empty"):
        read_examples("gsm8k", "train", None, 0, _mirror_with(tmp_path, []), None)
    with pytest.raises(DataError, match="does not exist.*S3FT_DATA_MIRROR"):
        read_examples("gsm8k", "test", None, 0, tmp_path, None)


@pytest.mark.parametrize("task, sizes", [
    ("mbpp", {"prompt": 10, "train": 374, "validation": 90, "test": 500}),
    ("mbpp_sanitized", {"prompt": 7, "train": 120, "validation": 43, "test": 257}),
])
def test_mbpp_official_splits_by_task_id(mirror, task, sizes):
    for split, n in sizes.items():
        examples = read_examples(task, split, None, 0, mirror, None)
        assert len(examples) == n, split
    test = read_examples(task, "test", None, 0, mirror, None)
    first = test[0]
    assert 11 <= first.meta["task_id"] <= 510 and len(first.meta["tests"]) >= 1
    prompt = first.prompt_messages[-1]["content"]
    assert prompt.startswith("You are an expert Python programmer") and first.meta["tests"][0] in prompt
    assert first.gold.startswith("```python\n") and "\r" not in first.gold


def test_humaneval_comes_from_the_package(mirror):
    examples = read_examples("humaneval", "test", None, 0, mirror, None)
    assert len(examples) == 164
    assert examples[0].meta["tests"][-1] == f"check({examples[0].meta['entry_point']})"


def test_mbpp_mirror_missing_task_id_is_named(tmp_path):
    (tmp_path / "mbpp").mkdir()
    (tmp_path / "mbpp" / "mbpp.jsonl").write_text(json.dumps({"text": "t", "code": "c", "test_list": ["x"]}) + "\n")
    with pytest.raises(DataError, match=r"task_id"):
        read_examples("mbpp", "test", None, 0, tmp_path, None)


def test_an_unreachable_hub_without_a_mirror_is_one_error_naming_the_mirror_setting(monkeypatch):
    import datasets

    def offline(*args, **kwargs):
        raise ConnectionError("Couldn't reach 'florin-hf/nq_open_gold' on the Hub (OfflineModeIsEnabled)")

    monkeypatch.setattr(datasets, "load_dataset", offline)
    with pytest.raises(DataError, match=r"data\.mirror: .*florin-hf/nq_open_gold.*Fix: set S3FT_DATA_MIRROR"):
        read_examples("nq", "train", 2, 0, None, None)
