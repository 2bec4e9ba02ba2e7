"""General benchmarks: the mirror conversion, prompts byte-identical to lm-eval's built-in tasks,
seeded subsets, the drop arithmetic, and that an adapter really is applied (hf and vLLM)."""
import json
import math
import os

import pytest

from flows.report import markdown_table
from flows.results import ArmResult, general_drops
from tasks.core.errors import BenchmarkDataError
from tasks.data.benchmark_mirror import convert_mirror
from tasks.engines.harness import lm_eval_tasks_dir, metrics_from_results, render_task_yamls, sample_indices
from tasks.core.settings import BenchmarkSettings

os.environ.setdefault("HF_DATASETS_OFFLINE", "1")


@pytest.fixture(scope="module")
def bench_data(mirror, tmp_path_factory):
    out = tmp_path_factory.mktemp("bench-data")
    counts = convert_mirror(mirror, out)
    return out, counts


def test_mirror_converts_to_lm_eval_layout(bench_data):
    out, counts = bench_data
    assert counts == {"mmlu_subjects": 57, "mmlu_test": 14042, "truthfulqa": 817}
    first = json.loads((out / "truthful_qa/multiple_choice/validation.jsonl").open().readline())
    # the v0 file lm-eval scores: item 0 is the Nauru question with 4 MC2 choices, the true one first
    assert first["question"].startswith("What is the smallest country in the world")
    assert len(first["mc2_targets"]["choices"]) == 4 and first["mc1_targets"]["labels"] == [1, 0, 0, 0]
    row = json.loads((out / "mmlu/anatomy/test.jsonl").open().readline())
    assert set(row) == {"question", "subject", "choices", "answer"} and len(row["choices"]) == 4
    assert row["answer"] in range(4)


def test_a_malformed_mirror_file_is_named(tmp_path):
    (tmp_path / "mmlu/test").mkdir(parents=True)
    (tmp_path / "mmlu/dev").mkdir()
    (tmp_path / "mmlu/test/anatomy_test.csv").write_text("q,a\nx,y\n")
    (tmp_path / "mmlu/dev/anatomy_dev.csv").write_text("q,a\nx,y\n")
    with pytest.raises(BenchmarkDataError, match="anatomy_test.csv.*lacks"):
        convert_mirror(tmp_path, tmp_path / "out")


@pytest.fixture(scope="module")
def task_pairs(bench_data, tmp_path_factory):
    """(ours, lm-eval's built-in config) per task name; each task manager is built once (indexing is slow)."""
    from lm_eval.tasks import TaskManager

    data, _ = bench_data
    include = render_task_yamls(data, tmp_path_factory.mktemp("yamls"))
    ours = _task_objects(TaskManager(include_path=str(include)).load_task_or_group(
        ["s3ft_mmlu", "truthfulqa_mc1", "truthfulqa_mc2"]))
    index = TaskManager().task_index
    return {name: (ours[name], dict(index[name].cfg)) for name in
            ("mmlu_anatomy", "mmlu_high_school_us_history", "truthfulqa_mc1", "truthfulqa_mc2")}


def _task_objects(loaded) -> dict:
    out = {}
    for key, value in loaded.items():
        if isinstance(value, dict):
            out.update(_task_objects(value))
        else:
            out[key if isinstance(key, str) else getattr(key, "group_name", str(key))] = value
    return out


def _requests(task, samples: list[int]) -> list[tuple]:
    task.build_all_requests(samples=samples, rank=0, world_size=1)
    return [tuple(i.arguments) for i in task.instances]


@pytest.mark.parametrize("name", ["mmlu_anatomy", "mmlu_high_school_us_history", "truthfulqa_mc1",
                                  "truthfulqa_mc2"])
def test_local_prompts_are_byte_identical_to_lm_eval_builtin_tasks(bench_data, task_pairs, name):
    """Our YAMLs (built-in task included, data location overridden) give exactly the requests that
    lm-eval's own task definition gives on the same documents."""
    from lm_eval.api.task import ConfigurableTask

    data, _ = bench_data
    ours, builtin_cfg = task_pairs[name]  # builtin_cfg: lm-eval's definition, hub location
    assert builtin_cfg["dataset_path"] in ("cais/mmlu", "truthfulqa/truthful_qa")
    builtin_cfg["dataset_path"] = str(data / ("mmlu" if name.startswith("mmlu") else "truthful_qa"))
    builtin_cfg.pop("process_results", None)  # a metric, not the prompt
    builtin = ConfigurableTask(config=builtin_cfg)
    for key in ("doc_to_text", "doc_to_choice", "doc_to_target", "description", "dataset_name", "num_fewshot",
                "fewshot_split", "test_split", "validation_split"):
        assert getattr(ours.config, key) == getattr(builtin.config, key), key
    picks = [0, 3, 7]
    mine, theirs = _requests(ours, picks), _requests(builtin, picks)
    assert mine == theirs and len(mine) >= 3 * 4
    context, continuation = mine[0]
    if name.startswith("mmlu_anatomy"):
        assert context.startswith("The following are multiple choice questions (with answers) about anatomy.\n\n")
        assert context.endswith("\nA. paralysis of the facial muscles.\nB. paralysis of the facial muscles and "
                                "loss of taste.\nC. paralysis of the facial muscles, loss of taste and lacrimation."
                                "\nD. paralysis of the facial muscles, loss of taste, lacrimation and decreased "
                                "salivation.\nAnswer:") and continuation == " A"
    if name.startswith("truthfulqa"):
        assert context.startswith("Q: What is human life expectancy in the United States?\n")
        assert context.endswith("\n\nQ: What is the smallest country in the world that is at least one square "
                                "mile in area?\nA:")
        assert continuation == " Nauru is the smallest country in the world that is at least one square mile in area."


def test_builtin_yaml_paths_exist():
    for rel in ("truthfulqa/truthfulqa_mc1.yaml", "truthfulqa/truthfulqa_mc2.yaml", "mmlu/default/_mmlu.yaml"):
        assert (lm_eval_tasks_dir() / rel).is_file(), rel


def test_subsets_are_seeded_and_cover_every_subject(bench_data):
    data, _ = bench_data
    s = BenchmarkSettings(mmlu_per_subject=2, truthfulqa_limit=10, seed=3)
    a, b = sample_indices(data, s), sample_indices(data, s)
    assert a == b
    assert len([k for k in a if k.startswith("mmlu_")]) == 57 and all(len(v) == 2 for k, v in a.items()
                                                                       if k.startswith("mmlu_"))
    assert a["truthfulqa_mc1"] == a["truthfulqa_mc2"] and len(a["truthfulqa_mc1"]) == 10
    assert sample_indices(data, s.model_copy(update={"seed": 4})) != a
    assert sample_indices(data, BenchmarkSettings()) is None  # full sets


def test_metrics_drops_and_report():
    results = {"mmlu": {"acc,none": 0.30, "acc_stderr,none": 0.01}, "truthfulqa_mc2": {"acc,none": 0.40,
                                                                                      "acc_stderr,none": "N/A"}}
    m = metrics_from_results(results, ["mmlu", "truthfulqa_mc2"], local=True)
    assert m["mmlu/acc"] == 0.30 and math.isnan(m["truthfulqa_mc2/acc_stderr"])
    with pytest.raises(KeyError, match="truthfulqa_mc1"):
        metrics_from_results(results, ["truthfulqa_mc1"], local=True)
    arm = {"mmlu/acc": 0.25, "truthfulqa_mc2/acc": 0.41}
    drops = general_drops(m, arm)
    assert drops["mmlu/drop"] == pytest.approx(5.0) and drops["truthfulqa_mc2/drop"] == pytest.approx(-1.0)
    assert drops["general/avg_drop"] == pytest.approx(2.0)
    table = markdown_table("gsm8k", [ArmResult(arm="base", accuracy=0.1, stderr=0.01, n=10, general=m),
                                     ArmResult(arm="s3ft", accuracy=0.2, stderr=0.01, n=10, general=arm,
                                               drops=drops)])
    assert "avg drop" in table and "| s3ft | 25.0 ± nan | 41.0 ± nan | +5.0 | -1.0 | +2.0 |" in table
    fam = markdown_table("gsm8k", [ArmResult(arm="s3ft", accuracy=0.2, stderr=0.01, n=10,
                                             familiarity={"self": -0.41, "gold": -1.234})])
    assert "| s3ft | -0.410 |  | -1.234 |" in fam


def test_several_seeds_report_their_mean_and_spread():
    from flows.results import SeedResult, aggregate_seeds

    per_seed = [SeedResult(seed=s, accuracy=a, stderr=0.01, n=100, general={"mmlu/acc": m, "mmlu/acc_stderr": 0.02})
                for s, a, m in ((0, 0.10, 0.30), (1, 0.20, 0.32), (2, 0.30, 0.34))]
    r = aggregate_seeds("s3ft", per_seed, {"self": 1})
    assert r.accuracy == pytest.approx(0.2) and r.stderr == pytest.approx(0.1 / math.sqrt(3))
    assert r.general["mmlu/acc"] == pytest.approx(0.32) and r.general["mmlu/acc_stderr"] == pytest.approx(
        0.02 / math.sqrt(3))
    assert [s.seed for s in r.seeds] == [0, 1, 2] and "300" not in markdown_table("gsm8k", [r])
    assert "100 x 3 seeds" in markdown_table("gsm8k", [r])
    single = aggregate_seeds("sft", per_seed[:1], {"gold": 5})
    assert (single.accuracy, single.stderr, single.seeds) == (0.10, 0.01, [])
