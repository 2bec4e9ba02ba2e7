"""The whole experiment through real Prefect, real MLflow, real vLLM/transformers, on the bundled model.

One first run (everything computed) is shared by the tests below; then an identical re-run (all cache
hits, zero generations), a re-run with settings that only say how stages run (cache hits too), a changed
training hyper-parameter (only training, merging, arm evaluation and benchmarks rerun) and a second
training seed (only that seed's stages run).
"""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tasks.core.records import Generation, Target, Verdict, read_jsonl

ROOT = Path(__file__).resolve().parents[1]
TINY = ["name=tiny", "data.train_size=6", "data.test_size=4", "generation.max_new_tokens=48",
        "paraphrase.max_new_tokens=48", "evaluation.max_new_tokens=48", "training.max_steps=2",
        "training.batch_size=2", "tracking.experiment=s3ft-test",
        "judge.reject_truncated=false",  # 48-token caps cut every answer: keep self/paraphrase targets possible
        "benchmarks.names=[truthfulqa_mc1, truthfulqa_mc2]", "benchmarks.truthfulqa_limit=2",
        "drift.prompts=10", "drift.max_new_tokens=24"]


def _run(out: Path, extra: list[str], config: str = "configs/gsm8k_quickstart.yaml",
         tiny: list[str] = TINY) -> tuple[dict, str]:
    env = dict(os.environ, PREFECT_HOME=str(out / "prefect-home"), PYTHONUNBUFFERED="1")
    env.pop("MLFLOW_TRACKING_URI", None)
    args = [sys.executable, "-m", "flows.cli", "run", str(ROOT / config), "--set", f"output_dir={out}"]
    # fp32 on every machine: which targets the tiny runs produce (hence which stages share a cache key) was
    # calibrated in fp32, and `dtype: auto` is bf16 on CI machines with avx512_bf16 (tests/test_precision.py)
    for item in ["model.dtype=float32", *tiny, *extra]:
        args += ["--set", item]
    proc = subprocess.run(args, capture_output=True, text=True, cwd=ROOT, env=env, timeout=1500)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    line = next(l for l in proc.stdout.splitlines() if l.startswith("summary: "))
    return json.loads(Path(line.removeprefix("summary: ")).read_text()), proc.stdout + proc.stderr


def _stage(summary: dict, label: str) -> dict:
    return next(s for s in summary["stages"] if s["stage"] == label)


@pytest.fixture(scope="module")
def flow_out(tmp_path_factory, mirror) -> Path:
    return tmp_path_factory.mktemp("flow")


@pytest.fixture(scope="module")
def first(flow_out) -> tuple[dict, str]:
    """The tiny quickstart, computed from scratch: (summary.json, the CLI's output)."""
    return _run(flow_out, [])


def _records(summary: dict, label: str, cls: type) -> list:
    return read_jsonl(Path(_stage(summary, label)["path"]), cls)


@pytest.mark.slow
def test_a_first_run_computes_every_stage_and_prints_the_report(first):
    summary, log = first
    assert "| s3ft |" in log and "| sft |" in log and "General benchmarks" in log
    assert summary["generations_performed"] >= 6 + 4 * 3
    # Nothing is cached on a first run, except an arm whose targets equal an earlier arm's (identical
    # training inputs share one adapter: that is the content-addressed cache working).
    same_targets = _stage(summary, "targets:s3ft")["sha256"] == _stage(summary, "targets:sft")["sha256"]
    allowed = ({"train:s3ft", "merge:s3ft", "generate:test:s3ft", "judge:test:s3ft", "benchmark:s3ft"}
               if same_targets else set())
    assert {s["stage"] for s in summary["stages"] if s["cached"]} <= allowed
    assert Path(summary["report"]["plot"]).stat().st_size > 10_000


@pytest.mark.slow
def test_s3ft_targets_are_own_answers_when_correct_then_correct_paraphrases_then_gold(first):
    summary, _ = first
    own_v = _records(summary, "judge:train", Verdict)
    targets = _records(summary, "targets:s3ft", Target)
    assert len(own_v) == len(targets) == 6
    n_correct = sum(v.outcome == "correct" for v in own_v)
    counts = {src: sum(t.source == src for t in targets) for src in ("self", "paraphrase", "gold")}
    assert counts["self"] == n_correct
    if n_correct < 6:
        para_v = _records(summary, "judge:paraphrase:s3ft", Verdict)
        assert len(para_v) == 6 - n_correct and counts["paraphrase"] == sum(v.outcome == "correct" for v in para_v)
    own_text = {g.example_id: g.text for g in _records(summary, "generate:train", Generation)}
    assert all(t.messages[-1]["content"] == own_text[t.example_id] for t in targets if t.source == "self")
    assert all(t.source == "gold" for t in _records(summary, "targets:sft", Target))
    results = {r["arm"]: r for r in summary["results"]}
    assert set(results) == {"base", "sft", "s3ft"} and results["s3ft"]["targets"] == {**counts, "dropped": 0, "n": 6}


@pytest.mark.slow
def test_each_arm_trains_an_adapter_and_is_judged_on_the_test_split(first):
    summary, _ = first
    for arm in ("sft", "s3ft"):
        assert (Path(_stage(summary, f"train:{arm}")["path"]) / "adapter_config.json").is_file()
        assert len(_records(summary, f"judge:test:{arm}", Verdict)) == 4


@pytest.mark.slow
def test_every_arm_is_benchmarked_over_the_mirror_with_its_drop_versus_base(first):
    summary, _ = first
    results = {r["arm"]: r for r in summary["results"]}
    for arm in ("base", "sft", "s3ft"):
        general = results[arm]["general"]
        assert set(general) == {f"{t}/{m}" for t in ("truthfulqa_mc1", "truthfulqa_mc2") for m in ("acc", "acc_stderr")}
        assert 0 <= general["truthfulqa_mc2/acc"] <= 1
        bench = Path(_stage(summary, f"benchmark:{arm}")["path"]).parent
        assert (bench / "results.json").is_file()
        assert len((bench / "samples" / "truthfulqa_mc1.jsonl").read_text().splitlines()) == 2
    assert results["s3ft"]["drops"]["general/avg_drop"] == pytest.approx(
        50 * sum(results["base"]["general"][f"{t}/acc"] - results["s3ft"]["general"][f"{t}/acc"]
                 for t in ("truthfulqa_mc1", "truthfulqa_mc2")))


@pytest.mark.slow
def test_familiarity_scores_every_target_of_both_arms_under_the_base_model(first):
    summary, _ = first
    results = {r["arm"]: r for r in summary["results"]}
    fam = {arm: json.loads(Path(_stage(summary, f"familiarity:{arm}")["path"]).read_text())[arm] for arm in ("sft", "s3ft")}
    counts = {s: n for s, n in results["s3ft"]["targets"].items() if n and s in ("self", "paraphrase", "gold")}
    assert {s: v["n"] for s, v in fam["s3ft"].items() if v["n"]} == counts
    assert fam["sft"]["gold"]["n"] == 6 and results["sft"]["familiarity"]["gold"] == fam["sft"]["gold"]["mean_logprob"]


@pytest.mark.slow
def test_mlflow_holds_the_parent_run_a_run_per_stage_and_per_arm(first, flow_out):
    import mlflow

    summary, _ = first
    results = {r["arm"]: r for r in summary["results"]}
    mlflow.set_tracking_uri(f"sqlite:///{flow_out / 'mlflow.db'}")
    runs = mlflow.search_runs(experiment_names=["s3ft-test"], output_format="list")
    parent = next(r for r in runs if r.info.run_id == summary["mlflow_run_id"])
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    arms = {r.data.tags["arm"]: r for r in children if "arm" in r.data.tags}
    assert set(arms) == {"base", "sft", "s3ft"} and parent.data.tags["source"] == "gsm8k"
    assert arms["s3ft"].data.metrics["indomain/accuracy"] == pytest.approx(results["s3ft"]["accuracy"])
    assert arms["s3ft"].data.metrics["targets/self"] == results["s3ft"]["targets"]["self"]
    assert len([r for r in children if "stage" in r.data.tags]) == len(summary["stages"])
    names = {a.path for a in mlflow.MlflowClient().list_artifacts(arms["s3ft"].info.run_id)}
    assert {"targets.jsonl", "verdicts.jsonl", "adapter"} <= names
    assert arms["s3ft"].data.metrics["general/avg_drop"] == pytest.approx(results["s3ft"]["drops"]["general/avg_drop"])
    assert "truthfulqa_mc2/acc" in arms["base"].data.metrics
    assert arms["sft"].data.metrics["familiarity/gold"] == pytest.approx(results["sft"]["familiarity"]["gold"])


@pytest.mark.slow
def test_an_identical_rerun_is_all_cache_hits_and_generates_nothing(first, flow_out):
    again, log = _run(flow_out, [])
    assert again["generations_performed"] == 0
    assert all(s["cached"] for s in again["stages"]), [s["stage"] for s in again["stages"] if not s["cached"]]
    assert again["results"] == first[0]["results"] and "cache hit" in log


@pytest.mark.slow
def test_settings_that_only_say_how_stages_run_are_cache_hits(first, flow_out):
    """threads, checkpoint interval, launcher, shard size and engine memory: out of every cache key."""
    again, _ = _run(flow_out, ["training.threads=1", "training.save_steps=7", "training.launcher=accelerate",
                               "generation.shard_size=2", "vllm.kv_cache_gib=0.5"])
    assert again["generations_performed"] == 0
    assert all(s["cached"] for s in again["stages"]), [s["stage"] for s in again["stages"] if not s["cached"]]


@pytest.mark.slow
def test_a_training_hyperparameter_reruns_training_and_arm_evaluation_only(first, flow_out):
    third, _ = _run(flow_out, ["training.learning_rate=5e-4"])
    recomputed = {s["stage"] for s in third["stages"] if not s["cached"]}
    assert recomputed == {"train:sft", "train:s3ft", "merge:sft", "merge:s3ft", "generate:test:sft",
                          "generate:test:s3ft", "judge:test:sft", "judge:test:s3ft", "benchmark:sft",
                          "benchmark:s3ft", "drift:sft", "drift:s3ft"}  # familiarity depends on targets only: a cache hit
    assert third["generations_performed"] == 2 * 4  # only the two arms' test answers


@pytest.mark.slow
def test_a_second_training_seed_runs_only_that_seeds_stages(first, flow_out):
    fourth, log = _run(flow_out, ["seeds=[0, 1]"])
    recomputed = {s["stage"] for s in fourth["stages"] if not s["cached"]}
    seed1 = {f"{stage}:{arm}:seed1" for stage in ("train", "merge", "generate:test", "judge:test", "benchmark", "drift")
             for arm in ("sft", "s3ft")}
    if _stage(fourth, "train:s3ft:seed1")["sha256"] == _stage(fourth, "train:sft:seed1")["sha256"]:
        seed1 -= {"merge:s3ft:seed1", "benchmark:s3ft:seed1", "drift:s3ft:seed1"}  # equal adapters (all-gold targets) share these
    assert recomputed == seed1
    results = {r["arm"]: r for r in first[0]["results"]}
    r4 = {r["arm"]: r for r in fourth["results"]}
    accs = [s["accuracy"] for s in r4["s3ft"]["seeds"]]
    assert [s["seed"] for s in r4["s3ft"]["seeds"]] == [0, 1] and accs[0] == results["s3ft"]["accuracy"]
    assert r4["s3ft"]["accuracy"] == pytest.approx(sum(accs) / 2)
    assert "x 2 seeds" in log


TINY_NQ = ["name=tiny-nq", "data.train_size=4", "data.test_size=3", "training.max_steps=2", "training.batch_size=2",
           "tracking.experiment=s3ft-test-nq", "arms=[base, s3ft]", "benchmarks.names=[]", "drift.enabled=false",
           "judge.max_error_fraction=0.5"]


@pytest.mark.slow
def test_nq_flow_runs_the_llm_judge_step(tmp_path, mirror):
    """Reading comprehension end to end: every answer the normalized match does not accept is judged
    by the LLM through the generation stage, and the verdicts say which judge step decided."""
    first, log = _run(tmp_path, [], "configs/quickstart.yaml", TINY_NQ)
    labels = [s["stage"] for s in first["stages"]]
    for label in ("train", "test:base", "test:s3ft"):
        assert {f"judge:{label}", f"llm_judge_prompts:{label}", f"generate:judge:{label}",
                f"llm_judge_merge:{label}"} <= set(labels), label
        step1 = read_jsonl(Path(_stage(first, f"judge:{label}")["path"]), Verdict)
        final = read_jsonl(Path(_stage(first, f"llm_judge_merge:{label}")["path"]), Verdict)
        asked = _stage(first, f"llm_judge_prompts:{label}")["counts"]["n"]
        deferred = [v for v in step1 if v.decided_by == "normalized" and v.reason == "no gold alias in the answer"]
        assert asked == len(deferred)
        assert sum(v.decided_by == "llm" for v in final) == asked  # each deferred answer got an LLM decision
        kept = {v.example_id: v for v in step1 if v not in deferred}
        assert all(kept[v.example_id] == v for v in final if v.example_id in kept)  # the rest are unchanged
        replies = read_jsonl(Path(_stage(first, f"generate:judge:{label}")["path"]), Generation)
        assert all(r.model_ref == "bundled:smollm2-135m-instruct" for r in replies)  # the base model judges
    results = {r["arm"]: r for r in first["results"]}
    counts = _stage(first, "llm_judge_merge:test:s3ft")["counts"]
    assert results["s3ft"]["judged"]["by_llm"] == counts["by_llm"]
    assert sum(results["base"]["judged"].get(k, 0) for k in ("by_normalized", "by_llm", "by_precheck")) == 3
    assert "### Judge: test verdicts decided by each judge step" in log

    again, _ = _run(tmp_path, [], "configs/quickstart.yaml", TINY_NQ)
    assert again["generations_performed"] == 0 and all(s["cached"] for s in again["stages"])
