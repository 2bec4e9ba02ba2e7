"""MLflow arm runs and the model registry, on constructed runs (no model): every seed's adapter is
registered with its own seed, and a re-run of the same adapters adds no version."""
import logging
from pathlib import Path

from flows.mlflow_runs import log_arms
from flows.results import ArmRun, Evaluation, SeedRun, assemble
from flows.tracking import Tracker
from tasks.core.config_file import load_config
from tasks.core.records import Artifact, Scores, Verdict, artifact_for, write_jsonl


def _evaluation(tmp: Path, name: str) -> Evaluation:
    verdicts = artifact_for(write_jsonl(tmp / name / "verdicts.jsonl", [
        Verdict(example_id="e1", outcome="correct", judge="math", judge_version="1")]))
    return Evaluation(verdicts=verdicts, judged={}, general={},
                      scores=Scores(model_ref=name, split="test", metrics={"accuracy": 1.0}, n=1,
                                    stderr={"accuracy": float("nan")}))


def _seed(tmp: Path, seed: int) -> SeedRun:
    folder = tmp / f"train-{seed}" / "adapter"
    folder.mkdir(parents=True)
    (folder / "adapter_config.json").write_text(f'{{"seed": {seed}}}')
    (folder.parent / "train_log.json").write_text('{"loss_history": [2.0, 1.0]}')
    return SeedRun(seed, artifact_for(folder, steps=2), _evaluation(tmp, f"s3ft-{seed}"))


def _log(tmp: Path, arms: tuple[ArmRun, ...], cfg) -> None:
    tracker = Tracker(f"sqlite:///{tmp / 'mlflow.db'}", "s3ft-test-registry", tmp / "mlartifacts")
    log_arms(tracker, logging.getLogger("test"), cfg, Artifact(path="/m", sha256="m0"), arms,
             assemble(list(arms), {}))


def test_every_seeds_adapter_is_registered_with_its_own_seed(tmp_path):
    import mlflow

    cfg = load_config("configs/tiny.yaml", ["seeds=[0, 1, 2]", "arms=[base, s3ft]"])
    targets = artifact_for(write_jsonl(tmp_path / "targets.jsonl", []), self=0, paraphrase=0, gold=0)
    arms = (ArmRun("base", None, (SeedRun(None, None, _evaluation(tmp_path, "base")),)),
            ArmRun("s3ft", targets, tuple(_seed(tmp_path, k) for k in (0, 1, 2))))
    _log(tmp_path, arms, cfg)
    client = mlflow.MlflowClient()
    versions = client.search_model_versions("name = 's3ft-tiny-s3ft'")
    by_seed = {v.tags["seed"]: v for v in versions}
    assert sorted(by_seed) == ["0", "1", "2"]
    for seed, version in by_seed.items():
        assert version.source.endswith(f"/seed{seed}/adapter")
        assert version.tags["adapter_sha256"] == arms[1].seeds[int(seed)].adapter.sha256
        local = Path(client.download_artifacts(version.run_id, f"seed{seed}/adapter", str(tmp_path / f"dl{seed}")))
        assert (local / "adapter_config.json").read_text() == f'{{"seed": {seed}}}'
    _log(tmp_path, arms, cfg)  # the same adapters again: no new versions
    assert len(client.search_model_versions("name = 's3ft-tiny-s3ft'")) == 3
