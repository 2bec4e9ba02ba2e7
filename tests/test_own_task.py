"""Your own task by configuration: data files in any of the usual formats with their own column names, a
prompt template, splits by file, column or hash, the judges chosen and tuned in YAML, and the gold check."""
import importlib.util
import json
from pathlib import Path

import pytest

from judges import get_judge
from tasks.core.config_file import load_config
from tasks.core.errors import ConfigError, DataError
from tasks.core.records import Example
from tasks.data.custom import hash_split, read_configured

ROOT = Path(__file__).resolve().parents[1]


def shop_module():
    spec = importlib.util.spec_from_file_location("shop", ROOT / "configs" / "examples" / "shop_arithmetic.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _config(path: Path, *overrides: str):
    return load_config(ROOT / "configs" / "examples" / "shop_arithmetic.yaml", [f"data.path={path}", *overrides])


@pytest.fixture(scope="module")
def shop_csv(tmp_path_factory) -> Path:
    return shop_module().write(tmp_path_factory.mktemp("own") / "shop.csv", 60)


def test_a_csv_with_its_own_columns_becomes_prompts_gold_and_hash_splits(shop_csv):
    cfg = _config(shop_csv, "data.train_size=null", "data.test_size=null")
    train, test = (read_configured(cfg.data, s, None, 0) for s in ("train", "test"))
    assert len(train) + len(test) == 60 and 0 < len(test) < 30
    assert not {e.id for e in train} & {e.id for e in test}  # no row in both
    row = shop_module().rows(60)[int(train[0].id.rsplit("-", 1)[-1])]
    assert train[0].id == f"file-train-{row['uid']}" and train[0].gold == row["total"]
    assert train[0].prompt_messages[-1]["content"] == (f"{row['name']} had {row['start']} {row['item']} and got "
                                                       f"{row['added']} more. How many {row['item']} does "
                                                       f"{row['name']} have now?")
    assert all(hash_split(e.id.split("-", 2)[2], 20) == "test" for e in test)  # the uid decides, not row order
    again = read_configured(_config(shop_csv, "data.train_size=5").data, "train", 5, 0)
    assert [e.id for e in again] == [e.id for e in read_configured(cfg.data, "train", 5, 0)]


@pytest.mark.parametrize("fmt", ["jsonl", "json", "parquet"])
def test_other_formats_and_split_columns_and_files(tmp_path, fmt):
    rows = [{"q": f"What is {i} + 1?", "a": [str(i + 1), f"{i + 1}.0"], "part": "dev" if i % 4 == 0 else "fit"}
            for i in range(12)]
    path = tmp_path / f"data.{fmt}"
    if fmt == "jsonl":
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    elif fmt == "json":
        path.write_text(json.dumps(rows))
    else:
        import pyarrow as pa
        import pyarrow.parquet as pq

        pq.write_table(pa.Table.from_pylist(rows), path)
    cfg = load_config(None, ["data.source=file", f"data.path={path}", "data.fields={question: q, answer: a}",
                             "data.split_column=part", "data.splits={train: fit, test: dev}",
                             "data.prompt='Compute: {question}'", "judge.name=numeric"])
    test = read_configured(cfg.data, "test", None, 0)
    assert [e.meta["question"] for e in test] == ["What is 0 + 1?", "What is 4 + 1?", "What is 8 + 1?"]
    assert test[1].meta["answers"] == ["5", "5.0"] and test[1].prompt_messages[-1]["content"] == "Compute: What is 4 + 1?"
    per_file = load_config(None, ["data.source=file", f"data.files={{train: {path}, test: {path}}}",
                                  "data.fields={question: q, answer: a}", "judge.name=numeric"])
    assert len(read_configured(per_file.data, "test", None, 0)) == 12


def _ex(gold: str, **meta) -> Example:
    return Example(id="x", source="t", prompt_messages=[{"role": "user", "content": "?"}], gold=gold, meta=meta)


JUDGE_CASES = [  # (judge, params, gold, meta, answer, correct)
    ("exact", {}, "Paris", {}, "paris.", True),
    ("exact", {}, "Paris", {}, "It is Paris.", False),
    ("exact", {"normalize": False}, "Paris", {}, "paris", False),
    ("contains", {}, "Paris", {}, "The capital is Paris, of course.", True),
    ("contains", {}, "Paris", {}, "Parisian food", False),
    ("numeric", {}, "42", {}, "6 times 7 is 42.", True),
    ("numeric", {}, "42", {}, "The answer is 41.", False),
    ("numeric", {"tolerance": 0.5}, "3.14", {}, "about 3.5", True),
    ("numeric", {"relative_tolerance": 0.01}, "1000", {}, "roughly 1,009 units", True),
    ("numeric", {"pattern": r"Total: (\S+)"}, "12", {}, "Step 1: 5 + 7. Total: 12. Then 3 more.", True),
    ("numeric", {}, "12", {}, "no idea", False),
    ("regex", {"pattern": r"(?i)answer:\s*(\w+)"}, "blue", {}, "I think... Answer: Blue", True),
    ("regex", {"pattern": r"(?i)answer:\s*(\w+)"}, "blue", {}, "Blue", False),
    ("regex", {}, "blue", {}, "Let me think.\nThe answer is: Blue.\nThanks!", True),  # the default pattern
    ("choice", {}, "B", {}, "The answer is (B) because...", True),
    ("choice", {}, "B", {}, "A. Because the sky is blue.", False),
    ("choice", {}, "C", {"options": ["red", "green", "blue"]}, "It must be blue", True),
    ("choice", {}, "blue", {"options": ["red", "green", "blue"]}, "C", True),
    ("choice", {}, "B", {}, "A cat sat on a mat", False),
]


@pytest.mark.parametrize("name,params,gold,meta,answer,correct", JUDGE_CASES)
def test_judges_chosen_by_name_and_tuned_by_settings(name, params, gold, meta, answer, correct):
    verdict = get_judge(name, params).judge(_ex(gold, **meta), answer)
    assert (verdict.outcome == "correct") is correct, verdict


def test_judge_settings_reach_the_judge_and_its_key():
    cfg = load_config(None, ["judge.name=numeric", "judge.numeric.tolerance=0.5"])
    assert cfg.judge.params() == {"pattern": None, "tolerance": 0.5, "relative_tolerance": 0.0}
    assert load_config(None, ["judge.name=math"]).judge.params() == {}
    with pytest.raises(ConfigError, match="judge.numeric.tolerance"):
        load_config(None, ["judge.name=numeric", "judge.numeric.tolerance=small"])
    with pytest.raises(ConfigError, match="judge.regex.pattern.*not a regular expression"):
        load_config(None, ["judge.name=regex", "judge.regex.pattern=(unclosed"])


def test_bad_data_is_one_error_that_names_the_setting(shop_csv, tmp_path):
    with pytest.raises(DataError, match=r"data.fields: column\(s\) \['price'\].*Fix"):
        read_configured(_config(shop_csv, "data.fields.answer=price").data, "train", None, 0)
    with pytest.raises(DataError, match=r"data.prompt: placeholder\(s\) \['\{colour\}'\].*Fix"):
        read_configured(_config(shop_csv, "data.prompt='{name} likes {colour}'").data, "train", None, 0)
    header_only = tmp_path / "empty.csv"
    header_only.write_text("uid,name,item,start,added,total\n")
    with pytest.raises(DataError, match="no rows.*Fix"):
        read_configured(_config(header_only).data, "train", None, 0)
    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"q": "1+1", "a": "2"}\n{"q": oops\n')
    with pytest.raises(DataError, match=r"broken.jsonl:2: not JSON.*Fix"):
        read_configured(_config(broken).data, "train", None, 0)
    with pytest.raises(ConfigError, match="data.path"):
        load_config(None, ["data.source=file"])


def test_the_llm_judge_sends_every_answer_to_its_rubric_and_reads_yes_or_no_strictly():
    from judges.qa import llm_verdict
    from tasks.core.records import Generation
    from tasks.llm_judge_prompts import judge_prompts

    rubric = "Question: {question}\nStudent: {answer}\nReference: {gold}\nIs the student right? yes or no."
    cfg = load_config(None, ["judge.name=llm", f"judge.llm.prompt={json.dumps(rubric)}"])
    judge = get_judge(cfg.judge.name, cfg.judge.params())
    examples = [_ex("Paris", question="Capital of France?").model_copy(update={"id": f"q{i}"}) for i in range(2)]
    gens = [Generation(example_id=e.id, model_ref="base", text=t) for e, t in zip(examples, ["Paris.", "Lyon"])]
    first = [judge.judge(e, g.text) for e, g in zip(examples, gens)]
    prompts = judge_prompts(examples, gens, first, cfg.judge.llm.prompt, None)
    assert [p.prompt_messages[-1]["content"] for p in prompts] == [
        rubric.format(question="Capital of France?", answer=a, gold="Paris") for a in ("Paris.", "Lyon")]
    assert [llm_verdict(v, r).outcome for v, r in zip(first, ["Yes.", "Maybe"])] == ["correct", "error"]
    with pytest.raises(ConfigError, match="judge.llm.enabled"):
        load_config(None, ["judge.name=llm", "judge.llm.enabled=false"])
    with pytest.raises(ConfigError, match="must contain \\{gold\\}"):
        load_config(None, ["judge.name=llm", "judge.llm.prompt='{question} {answer}'"])


def test_code_tasks_take_their_unit_tests_from_a_column(tmp_path):
    rows = [{"task": "Write add(a, b).", "solution": "def add(a, b):\n    return a + b",
             "checks": "assert add(1, 2) == 3\nassert add(-1, 1) == 0"}]
    path = tmp_path / "code.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows * 3))
    cfg = load_config(None, ["data.source=file", f"data.files={{train: {path}, test: {path}}}",
                             "data.fields={question: task, answer: solution, tests: checks}",
                             "data.prompt=" + json.dumps("{question}\n\nYour code must pass:\n{tests}"),
                             "judge.name=code"])
    (ex, *_) = read_configured(cfg.data, "train", None, 0)
    assert ex.meta["tests"] == ["assert add(1, 2) == 3", "assert add(-1, 1) == 0"]
    assert ex.prompt_messages[-1]["content"].endswith("pass:\nassert add(1, 2) == 3\nassert add(-1, 1) == 0")
    judge = get_judge("code")
    assert judge.judge(ex, ex.gold).outcome == "correct"
    assert judge.judge(ex, "def add(a, b):\n    return a - b").outcome == "incorrect"


def test_hub_datasets_by_id_config_and_split_names(monkeypatch):
    import tasks.data.custom as custom

    asked = []

    def fake_hub(dataset_id, config, split):  # the hub itself is not reachable from the test machines
        asked.append((dataset_id, config, split))
        return [{"question": f"{split} q{i}", "answer": str(i)} for i in range(10)]

    monkeypatch.setattr(custom, "hub_rows", fake_hub)
    cfg = load_config(None, ["data.source=hub", "data.dataset=someone/facts", "data.dataset_config=v2",
                             "data.splits={train: fit, test: holdout}", "judge.name=exact"])
    test = read_configured(cfg.data, "test", 3, 0)
    assert asked[-1] == ("someone/facts", "v2", "holdout") and len(test) == 3
    assert all(e.meta["question"].startswith("holdout q") for e in test)
    one = load_config(None, ["data.source=hub", "data.dataset=someone/facts", "data.splits={train: all, test: null}"])
    train, test = (read_configured(one.data, s, None, 0) for s in ("train", "test"))
    assert asked[-1] == ("someone/facts", None, "all") and len(train) + len(test) == 10
    assert {e.meta["question"] for e in test} == {f"all q{i}" for i in range(10) if hash_split(f"all q{i}", 20) == "test"}
    with pytest.raises(ConfigError, match="data.dataset"):
        load_config(None, ["data.source=hub"])
