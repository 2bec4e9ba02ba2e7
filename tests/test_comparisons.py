"""Paired comparisons between arms, on constructed runs whose differences are computed by hand."""
import json
from pathlib import Path

import pytest

from flows.comparisons import comparisons
from flows.results import ArmRun, Evaluation, SeedRun, assemble
from tasks.core.records import Scores, Verdict, artifact_for, write_jsonl

IDS = ["e1", "e2", "e3", "e4"]


def _seed_run(tmp: Path, name: str, seed, correct: list[int], arc: list[int], kl: list[float] | None) -> SeedRun:
    folder = tmp / name
    verdicts = artifact_for(write_jsonl(folder / "verdicts.jsonl", [
        Verdict(example_id=i, outcome="correct" if c else "incorrect", judge="qa", judge_version="2")
        for i, c in zip(IDS, correct)]))
    (folder / "bench" / "samples").mkdir(parents=True)
    (folder / "bench" / "samples" / "arc_easy.jsonl").write_text(
        "".join(json.dumps({"doc_id": d, "acc": float(a)}) + "\n" for d, a in enumerate(arc)))
    (folder / "bench" / "metrics.json").write_text(json.dumps({"arc_easy/acc": sum(arc) / len(arc)}))
    drift = None
    if kl is not None:
        (folder / "drift").mkdir()
        (folder / "drift" / "drift_items.jsonl").write_text(
            "".join(json.dumps({"id": f"p{k}", "kl": v}) + "\n" for k, v in enumerate(kl)))
        (folder / "drift" / "drift.json").write_text("{}")
        drift = artifact_for(folder / "drift" / "drift.json", kl=sum(kl) / len(kl), logprob_delta=-0.5)
    acc = sum(correct) / len(correct)
    evaluation = Evaluation(verdicts=verdicts, judged={}, general={"arc_easy/acc": sum(arc) / len(arc)},
                            benchmark=artifact_for(folder / "bench" / "metrics.json"),
                            scores=Scores(model_ref=name, split="test", metrics={"accuracy": acc}, n=4,
                                          stderr={"accuracy": 0.1}))
    adapter = None if seed is None else artifact_for(folder / "bench" / "metrics.json")
    return SeedRun(seed, adapter, evaluation, drift)


@pytest.fixture
def runs(tmp_path):
    targets = artifact_for(write_jsonl(tmp_path / "t.jsonl", []))
    base = ArmRun("base", None, (_seed_run(tmp_path, "base", None, [1, 0, 0, 1], [1, 0, 1, 0], None),))
    sft = ArmRun("sft", targets, (_seed_run(tmp_path, "sft0", 0, [0, 0, 1, 1], [0, 0, 1, 0], [0.2, 0.4]),
                                  _seed_run(tmp_path, "sft1", 1, [0, 0, 1, 1], [0, 0, 1, 0], [0.2, 0.4])))
    s3ft = ArmRun("s3ft", targets, (_seed_run(tmp_path, "s3ft0", 0, [1, 1, 1, 1], [1, 0, 1, 0], [0.1, 0.1]),
                                    _seed_run(tmp_path, "s3ft1", 1, [0, 1, 1, 1], [1, 0, 1, 0], [0.1, 0.3])))
    return [base, sft, s3ft]


def _find(comps, arm, reference, seed):
    return next(c.deltas for c in comps if (c.arm, c.reference, c.seed) == (arm, reference, seed))


def test_each_arm_against_base_per_seed_by_hand(runs):
    comps = comparisons(runs)
    s3ft0 = _find(comps, "s3ft", "base", 0)
    assert s3ft0["indomain/accuracy"].estimate == pytest.approx(0.5)  # (0, +1, +1, 0) / 4
    assert s3ft0["indomain/accuracy"].p == pytest.approx(0.5)  # two discordant, both one way: 2 * 1/4
    sft0 = _find(comps, "sft", "base", 0)
    assert sft0["indomain/accuracy"].estimate == 0.0 and sft0["indomain/accuracy"].p == 1.0  # one flip each way
    assert sft0["arc_easy/acc"].estimate == pytest.approx(-0.25) and sft0["general/avg"].estimate == pytest.approx(-0.25)
    assert sft0["drift/kl"].estimate == pytest.approx(0.3)  # base's drift is 0: the arm's own KL


def test_s3ft_against_sft_is_paired_item_by_item(runs):
    d = _find(comparisons(runs), "s3ft", "sft", 0)
    assert d["indomain/accuracy"].estimate == pytest.approx(0.5)  # (+1, +1, 0, 0) / 4
    assert d["arc_easy/acc"].estimate == pytest.approx(0.25)
    kl = d["drift/kl"]  # per prompt (-0.1, -0.3): both resamples' means lie in [-0.3, -0.1]
    assert kl.estimate == pytest.approx(-0.2) and kl.low == pytest.approx(-0.3) and kl.high == pytest.approx(-0.1)
    assert not [c for c in comparisons(runs) if c.arm == "sft" and c.reference == "sft"]


def test_across_seeds_an_items_score_is_its_mean_over_seeds(runs):
    d = _find(comparisons(runs), "s3ft", "base", None)
    # s3ft per item over seeds (0.5, 1, 1, 1) against base (1, 0, 0, 1): (-0.5, +1, +1, 0) / 4
    assert d["indomain/accuracy"].estimate == pytest.approx(0.375) and d["indomain/accuracy"].p is None
    assert d["drift/kl"].estimate == pytest.approx(0.15)  # prompts (0.1, 0.2)
    rows = {r.arm: r for r in assemble(runs, {}, comparisons(runs))}
    assert rows["s3ft"].vs_base["indomain/accuracy"].estimate == pytest.approx(0.375)  # the across-seeds one
    assert rows["s3ft"].vs_sft["indomain/accuracy"].estimate == pytest.approx(0.375)  # (+0.5, +1, 0, 0) / 4
    assert rows["s3ft"].drift["kl"] == pytest.approx(0.15) and rows["s3ft"].drift["logprob_delta"] == -0.5
    assert rows["base"].vs_base == {} and rows["sft"].vs_sft == {}
