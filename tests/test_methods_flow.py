"""Every method in one harness, whole flow: real Prefect, MLflow, vLLM, judges and PEFT on the bundled model
with tiny sizes (NQ, where the 135M model answers about half the questions correctly, so own answers, samples
and paraphrases all occur). Then adding `sdft` recomputes only its own stages."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tasks.core.records import Example, Generation, Target, Verdict, read_jsonl, sampled_from
from tasks.methods.evidence import Familiar
from tasks.methods.sampled import dedupe_key

ROOT = Path(__file__).resolve().parents[1]
ARMS = "[base, sft, s3ft, ssr, rft, s3ft_k]"
TINY = ["model.dtype=float32", "data.train_size=8", "data.test_size=4", "generation.samples=4",
        "generation.max_new_tokens=40", "paraphrase.max_new_tokens=40", "evaluation.max_new_tokens=40",
        "training.max_steps=1", "training.batch_size=4", "benchmarks.names=[]", "drift.prompts=4",
        "drift.max_new_tokens=12", "judge.llm.enabled=false", "diagnostics.familiarity=false",
        "rft.fallback=gold", "tracking.experiment=s3ft-methods-test"]
# The normalized-match judge alone (no LLM step) and no familiarity diagnostic keep the CI cost down; the LLM
# judge over samples is exercised by `make methods`, and its stages are tests/test_flow.py's.


def _run(out: Path, arms: str) -> dict:
    env = dict(os.environ, PREFECT_HOME=str(out / "prefect-home"), PYTHONUNBUFFERED="1")
    env.pop("MLFLOW_TRACKING_URI", None)
    args = [sys.executable, "-m", "flows.cli", "run", str(ROOT / "configs/methods_quickstart.yaml"),
            "--set", f"output_dir={out}", "--set", f"arms={arms}"]
    for item in TINY:
        args += ["--set", item]
    proc = subprocess.run(args, capture_output=True, text=True, cwd=ROOT, env=env, timeout=1500)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    line = next(l for l in proc.stdout.splitlines() if l.startswith("summary: "))
    return json.loads(Path(line.removeprefix("summary: ")).read_text())


def _stages(summary: dict) -> dict[str, dict]:
    return {s["stage"]: s for s in summary["stages"]}


def _records(summary: dict, label: str, cls: type) -> list:
    return read_jsonl(Path(_stages(summary)[label]["path"]), cls)


@pytest.fixture(scope="module")
def runs(tmp_path_factory, mirror) -> tuple[dict, dict]:
    out = tmp_path_factory.mktemp("methods")
    return _run(out, ARMS), _run(out, ARMS.replace("]", ", sdft]"))


def _correct(summary: dict, label: str) -> dict[str, list[str]]:
    """Correct answer texts per example, in answer order, by the final verdicts (the LLM judge's step included)."""
    out: dict[str, list[str]] = {}
    final = f"llm_judge_merge:{label}" if f"llm_judge_merge:{label}" in _stages(summary) else f"judge:{label}"
    for g, v in zip(_records(summary, f"generate:{label}", Generation), _records(summary, final, Verdict)):
        assert sampled_from(g.example_id) == sampled_from(v.example_id)
        if v.outcome == "correct":
            out.setdefault(sampled_from(g.example_id), []).append(g.text)
    return out


@pytest.mark.slow
def test_k_samples_per_question_and_every_arm_reported(runs):
    first, _ = runs
    samples = _records(first, "generate:samples:train", Generation)
    examples = _records(first, "load_examples:train", Example)
    assert [g.example_id for g in samples] == [f"{e.id}#s{j}" for e in examples for j in range(4)]
    assert len({g.text for g in samples}) > len(examples)  # sampled at temperature 0.7, not k greedy copies
    # Prefect's console (rich) turns `:name:` into an emoji: no stage label may contain one
    from rich._emoji_replace import _emoji_replace
    assert [s["stage"] for s in first["stages"] if _emoji_replace(s["stage"]) != s["stage"]] == []
    report = Path(first["report"]["markdown"]).read_text()
    methods = report.split("### Methods")[1].split("\n\n")[1].splitlines()[2:]
    assert [row.split(" | ")[0].strip("| ") for row in methods] == ["rft", "s3ft", "s3ft_k", "sft", "ssr"]


@pytest.mark.slow
def test_each_arm_trains_on_what_its_strategy_says(runs):
    first, _ = runs
    own = _correct(first, "train")
    sampled = _correct(first, "samples:train")
    targets = {arm: _records(first, f"targets:{arm}", Target) for arm in ("s3ft", "ssr", "rft", "s3ft_k")}
    text = {arm: {t.example_id: t.messages[-1]["content"] for t in ts} for arm, ts in targets.items()}
    # ssr = s3ft without paraphrases: the same own answers, gold elsewhere
    assert {t.example_id for t in targets["ssr"] if t.source == "self"} == set(own)
    assert all(t.source in ("self", "gold") for t in targets["ssr"])
    # rft: the distinct correct samples (text dedupe for NQ), gold where none (rft.fallback=gold)
    for eid, texts in sampled.items():
        distinct = list({dedupe_key(t, "text"): t for t in reversed(texts)}.values())
        assert sorted(t.messages[-1]["content"] for t in targets["rft"] if t.example_id == eid) == sorted(distinct)
    assert all(t.source == "gold" for t in targets["rft"] if t.example_id not in sampled)
    # s3ft_k: the most familiar of the correct greedy answer and samples; at least s3ft's own answers
    familiar = {(f.example_id, f.text): f.mean_logprob for f in _records(first, "answer_familiarity", Familiar)}
    for eid in set(own) | set(sampled):
        candidates = list(dict.fromkeys(own.get(eid, []) + sampled.get(eid, [])))
        best = max(candidates, key=lambda t: familiar.get((eid, t), 0.0)) if len(candidates) > 1 else candidates[0]
        assert text["s3ft_k"][eid] == best
    assert sum(t.source == "self" for t in targets["s3ft_k"]) >= sum(t.source == "self" for t in targets["s3ft"])
    # paraphrase attempts: k per example that has no correct answer at all (no stage when every one has)
    examples = _records(first, "load_examples:train", Example)
    unanswered = [e.id for e in examples if e.id not in own and e.id not in sampled]
    if unanswered:
        attempts = _records(first, "generate:paraphrase:s3ft_k", Generation)
        assert [g.example_id for g in attempts] == [f"{i}#s{j}" for i in unanswered for j in range(4)]
    else:
        assert "generate:paraphrase:s3ft_k" not in _stages(first)


@pytest.mark.slow
def test_adding_sdft_recomputes_only_its_paraphrases_training_and_evaluation(runs):
    first, second = runs
    before, after = _stages(first), _stages(second)
    assert all(after[label]["cached"] for label in before if label in after), [
        label for label in before if label in after and not after[label]["cached"]]
    new = {label for label in after if label not in before}
    assert all(label.endswith(":sdft") for label in new), sorted(new)
    # sdft's own work is computed; a new stage whose inputs equal an existing one's is a cache hit (the LLM
    # judge's replies when sdft's deferred paraphrases are s3ft's), which is content addressing at work
    assert not any(after[label]["cached"] for label in ("generate:paraphrase:sdft", "train:sdft", "generate:test:sdft"))
    assert new == {"paraphrase_prompts:sdft", "generate:paraphrase:sdft", "judge:paraphrase:sdft", "targets:sdft",
                   "train:sdft", "merge:sdft", "generate:test:sdft", "judge:test:sdft", "drift:sdft"}
    assert before.keys() <= after.keys()


@pytest.mark.slow
def test_mlflow_has_a_methods_row_per_arm(runs, tmp_path_factory):
    """Each arm's MLflow run carries the methods table's columns under the names every arm uses."""
    import mlflow

    first, _ = runs
    results = {r["arm"]: r for r in first["results"]}
    store = Path(first["report"]["markdown"]).parents[2]
    mlflow.set_tracking_uri(f"sqlite:///{store / 'mlflow.db'}")
    runs_ = mlflow.search_runs(experiment_names=["s3ft-methods-test"], output_format="list")
    arms = {r.data.tags["arm"]: r.data.metrics for r in runs_
            if r.data.tags.get("mlflow.parentRunId") == first["mlflow_run_id"] and "arm" in r.data.tags}
    assert set(arms) == {"base", "sft", "s3ft", "ssr", "rft", "s3ft_k"}
    for arm in ("sft", "s3ft", "ssr", "rft", "s3ft_k"):
        t = results[arm]["targets"]
        assert arms[arm]["targets/trained"] == t["n"] == t["self"] + t["paraphrase"] + t["gold"]
        assert arms[arm]["targets/dropped"] == t["dropped"]
        assert {"indomain/delta_pts", "indomain/delta_pts_ci_low", "drift/kl"} <= set(arms[arm])
    assert results["rft"]["targets"]["dropped"] == 0  # rft.fallback=gold here: no question is dropped
