"""General benchmarks: the mirror conversion, prompts byte-identical to lm-eval's built-in tasks,
seeded subsets, the drop arithmetic, and that an adapter really is applied (hf and vLLM)."""
import json
import math
import os

import pytest

from flows.report import markdown_table
from flows.results import ArmResult, general_drops
from tasks.core.errors import BenchmarkDataError
from tasks.data.benchmark_mirror import JSONL_BENCHMARKS, convert_mirror
from tasks.engines.harness import (YAML_DIR, lm_eval_tasks_dir, metrics_from_results, render_task_yamls,
                                  sample_indices, task_manager_for)
from tasks.core.measure_settings import BenchmarkSettings

os.environ.setdefault("HF_DATASETS_OFFLINE", "1")


@pytest.fixture(scope="module")
def bench_data(mirror, tmp_path_factory):
    out = tmp_path_factory.mktemp("bench-data")
    counts = convert_mirror(mirror, out)
    return out, counts


def test_mirror_converts_to_lm_eval_layout(bench_data):
    out, counts = bench_data
    assert counts == {"mmlu_subjects": 57, "mmlu_test": 14042, "truthfulqa": 817, "arc_easy": 2376,
                      "arc_challenge": 1172, "hellaswag": 10042, "winogrande": 1267, "piqa": 1838, "boolq": 3270,
                      "openbookqa": 500}  # rows of the split lm-eval scores, as in each SOURCE.md
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


JSONL_NAMES = ["arc_easy", "arc_challenge", "hellaswag", "winogrande", "piqa", "boolq", "openbookqa"]
PAIRS = ["mmlu_anatomy", "mmlu_high_school_us_history", "truthfulqa_mc1", "truthfulqa_mc2", *JSONL_NAMES]


@pytest.fixture(scope="module")
def task_pairs(bench_data, tmp_path_factory):
    """(ours, lm-eval's built-in config) per task name; each task manager is built once (indexing is slow)."""
    from lm_eval.tasks import TaskManager

    data, _ = bench_data
    include = render_task_yamls(data, tmp_path_factory.mktemp("yamls"))
    every = BenchmarkSettings(names=["mmlu", "truthfulqa_mc1", "truthfulqa_mc2", *JSONL_NAMES])
    ours = _task_objects(task_manager_for(include, every).load_task_or_group(  # the pipeline's own (small) index
        ["s3ft_mmlu", "truthfulqa_mc1", "truthfulqa_mc2", *JSONL_NAMES]))
    from lm_eval.tasks._yaml_loader import load_yaml

    index = TaskManager().task_index  # lm-eval's own YAML per task, its !function tags resolved to functions
    builtin = {name: {k: v for k, v in load_yaml(index[name].yaml_path).items() if k not in ("tag", "group")}
               for name in PAIRS if not name.startswith("mmlu")}
    builtin |= {name: dict(index[name].cfg) for name in PAIRS if name.startswith("mmlu")}
    return {name: (ours[name], builtin[name]) for name in PAIRS}


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


def _builtin_over_the_same_files(name: str, cfg: dict, data) -> dict:
    """lm-eval's own definition of `name`, with only the dataset location pointed at the converted copy."""
    if name.startswith(("mmlu", "truthfulqa")):
        assert cfg["dataset_path"] in ("cais/mmlu", "truthfulqa/truthful_qa")
        return {**cfg, "dataset_path": str(data / ("mmlu" if name.startswith("mmlu") else "truthful_qa"))}
    splits = JSONL_BENCHMARKS[name]
    return {**cfg, "dataset_path": "json", "dataset_name": None,
            "dataset_kwargs": {"data_files": {s: str(data / name / f"{s}.jsonl") for s in splits}},
            "training_split": cfg.get("training_split") if "train" in splits else None,
            "test_split": cfg.get("test_split") if "test" in splits else None}


FIRST_PROMPTS = {  # (start of the first scored document's context, its gold continuation)
    "arc_easy": ("Question: Which statement best explains why photosynthesis is the foundation of most food webs?"
                 "\nAnswer:", " Sunlight is the source of energy for nearly all ecosystems."),
    "hellaswag": ("Roof shingle removal: A man is sitting on a roof. He", " starts pulling up roofing on a roof."),
}


@pytest.mark.parametrize("name", PAIRS)
def test_local_prompts_are_byte_identical_to_lm_eval_builtin_tasks(bench_data, task_pairs, name):
    """Our YAMLs (built-in task included, data location overridden) give exactly the requests that
    lm-eval's own task definition gives on the same documents."""
    from lm_eval.api.task import ConfigurableTask

    data, _ = bench_data
    ours, builtin_cfg = task_pairs[name]  # builtin_cfg: lm-eval's definition, hub location
    builtin_cfg = _builtin_over_the_same_files(name, builtin_cfg, data)
    builtin_cfg.pop("process_results", None)  # a metric, not the prompt
    builtin = ConfigurableTask(config=builtin_cfg)
    for key in ("doc_to_text", "doc_to_choice", "doc_to_target", "description", "num_fewshot", "fewshot_split",
                "test_split", "validation_split", "process_docs"):
        assert getattr(ours.config, key) == getattr(builtin.config, key), key
    picks = [0, 3, 7]
    mine, theirs = _requests(ours, picks), _requests(builtin, picks)
    assert mine == theirs and len(mine) >= 3 * 2
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
    if name in FIRST_PROMPTS:
        assert context.startswith(FIRST_PROMPTS[name][0])
        assert FIRST_PROMPTS[name][1] in {c for _, c in mine[:4]}  # among the first document's choices


def test_builtin_yaml_paths_exist():
    import re

    included = [re.search(r"include: \{lm_eval_tasks\}/(\S+)", p.read_text()) for p in YAML_DIR.glob("*.yaml")]
    rels = {m.group(1) for m in included if m} | {"mmlu/default/_mmlu.yaml"}
    assert len(rels) == 10  # truthfulqa mc1/mc2, the seven JSONL benchmarks, and MMLU's group
    for rel in rels:
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


def test_the_other_benchmarks_are_subsampled_by_their_own_limits(bench_data):
    data, _ = bench_data
    s = BenchmarkSettings(names=["mmlu", "arc_easy", "hellaswag"], mmlu_per_subject=1,
                          limits={"arc_easy": 50, "piqa": 20})
    a = sample_indices(data, s)
    assert len(a["arc_easy"]) == 50 and a["arc_easy"] == sorted(set(a["arc_easy"])) and max(a["arc_easy"]) < 2376
    assert "hellaswag" not in a and "piqa" not in a  # hellaswag in full; piqa is not benchmarked
    other = sample_indices(data, s.model_copy(update={"mmlu_per_subject": 2}))
    assert other["arc_easy"] == a["arc_easy"]  # one benchmark's subset does not depend on another's settings


def test_metrics_drops_and_report():
    from flows.results import Delta

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
    vs_base = {"indomain/accuracy": Delta(estimate=0.1, low=0.02, high=0.18, n=10, p=0.04),
               "mmlu/acc": Delta(estimate=-0.05, low=-0.08, high=-0.01, n=114, p=0.2),
               "truthfulqa_mc2/acc": Delta(estimate=0.01, low=-0.02, high=0.03, n=16),
               "general/avg": Delta(estimate=-0.02, low=-0.04, high=0.0, n=130)}
    mix = {"self": 4, "paraphrase": 3, "gold": 2, "dropped": 1, "n": 9}
    table = markdown_table("gsm8k", [ArmResult(arm="base", accuracy=0.1, stderr=0.01, n=10, general=m),
                                     ArmResult(arm="s3ft", accuracy=0.2, stderr=0.01, n=10, general=arm,
                                               drops=drops, vs_base=vs_base, targets=mix)])
    assert "| s3ft | 25.0 ± n/a | 41.0 ± n/a |" in table  # scores (no stderr given: n/a)
    assert "| s3ft | +5.0 [+1.0, +8.0] | -1.0 [-3.0, +2.0] | +2.0 [+0.0, +4.0] |" in table  # paired drops
    assert "| s3ft | 20.0 | 1.0 | +10.0 [+2.0, +18.0] | 0.040 | 10 | 4 | 3 | 2 |" in table  # in-domain, paired
    # the methods row: target mix, examples dropped, sequences trained, in-domain change, drop (no drift here)
    assert "| s3ft | 4 | 3 | 2 | 1 | 9 | +10.0 [+2.0, +18.0] | +2.0 [+0.0, +4.0] |  |" in table
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
