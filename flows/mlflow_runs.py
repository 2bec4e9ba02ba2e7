"""What the flow tells MLflow (and Prefect) beyond stage runs: tags that line runs up, one run per arm with
uniform metric and param names, adapters in the model registry, and closing the runs of a killed attempt."""
from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

from flows.runner import StageRunner
from tasks.config import ExperimentConfig
from tasks.prepare import source_fingerprint
from tasks.records import Artifact, sha256_json
from tasks.report import ArmResult, general_drops
from tasks.tracking import Tracker


def arm_metrics(result: ArmResult) -> dict[str, float]:
    """The metrics of one arm under the names every arm uses (`indomain/accuracy`, `mmlu/acc`, ...)."""
    metrics = {"indomain/accuracy": result.accuracy, "indomain/stderr": result.stderr, "indomain/n": result.n}
    n_targets = sum(result.targets.values())
    for source in ("self", "paraphrase", "gold"):
        if n_targets:
            metrics[f"targets/{source}"] = result.targets.get(source, 0)
            metrics[f"targets/{source}_frac"] = result.targets.get(source, 0) / n_targets
    metrics.update({f"train/{k}": v for k, v in result.train.items()})
    metrics.update({k: v for k, v in result.general.items() if v == v})  # mmlu/acc, ... (NaN stderr left out)
    metrics.update(result.drops)  # mmlu/drop, ..., general/avg_drop
    metrics.update({f"familiarity/{s}": v for s, v in result.familiarity.items()})
    metrics.update({f"judge/{k}": v for k, v in result.judged.items()})  # judge/by_llm, judge/llm_unparseable
    for sr in result.seeds:  # several training seeds: each one's score next to the mean
        metrics[f"seed{sr.seed}/indomain_accuracy"] = sr.accuracy
        metrics.update({f"seed{sr.seed}/{k}": v for k, v in sr.general.items() if k.endswith("/acc")})
    return metrics


def log_arms(run: StageRunner, cfg: ExperimentConfig, model: Artifact, logged: list[tuple]) -> None:
    """One MLflow run per arm, all with the same metric and param names (NaN where an arm has no value:
    base has no targets), tagged arm/seed; each trained adapter registered with its base model."""
    per_arm = {arm: arm_metrics(result) for arm, result, *_ in logged}
    for arm, result, *_ in logged:
        if arm == "base":  # base's drop versus itself is 0, under the same names as the arms'
            per_arm[arm].update(general_drops(result.general, result.general))
    names = sorted(set().union(*per_arm.values()))
    seeds = ",".join(str(s) for s in (cfg.seeds or [cfg.training.seed]))
    for arm, result, targets, adapter, verdicts in logged:
        files = [Path(verdicts.path)] + ([Path(targets.path)] if targets else []) + ([Path(adapter.path)] if adapter else [])
        losses: list[float] = []
        log_file = Path(adapter.path).parent / "train_log.json" if adapter else None
        if log_file is not None and log_file.is_file():
            losses = json.loads(log_file.read_text()).get("loss_history", [])
            files.append(log_file)
        recipe = {"lora": cfg.lora.model_dump(), "training": cfg.training.model_dump()}
        params = {"arm": arm, **(recipe if adapter else json.loads(json.dumps(recipe), object_hook=_dashes))}
        metrics = {n: per_arm[arm].get(n, float("nan")) for n in names}
        tags = {"arm": arm, "seed": seeds if adapter else "-"}
        run_id = run.tracker.arm(arm, params, metrics, files, {"train/loss": losses} if losses else None, tags)
        if adapter is not None:
            version = run.tracker.register_adapter(
                f"s3ft-{cfg.name}-{arm}", run_id, adapter.sha256,
                {**tags, "base_model": cfg.model.ref, "base_model_fingerprint": model.sha256,
                 "config": cfg.name, "git_commit": run.tracker.tags.get("git_commit", "unknown")})
            run.log.info("adapter of arm %s registered in MLflow as s3ft-%s-%s version %s", arm, cfg.name, arm, version)


def _dashes(tree: dict[str, Any]) -> dict[str, Any]:
    """The recipe's keys with "-" values: base logs the same param names, untrained."""
    return {k: v if isinstance(v, dict) else "-" for k, v in tree.items()}


def git_commit() -> str:
    """The checkout's commit (`+dirty` with uncommitted changes), or `unknown` outside a git checkout."""
    root = Path(__file__).resolve().parents[1]
    try:
        head = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True,
                              timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return head + ("+dirty" if dirty else "")


def run_tags(cfg: ExperimentConfig, config_path: str | None) -> dict[str, str]:
    """Tags on every MLflow run of an experiment, for `search_runs` filters and the compare view."""
    data = [source_fingerprint(cfg.data, s) for s in ("train", "test")]
    return {"config": cfg.name, "config_file": Path(config_path).name if config_path else "-",
            "task": cfg.data.task, "model": cfg.model.ref, "git_commit": git_commit(),
            "data_hash": sha256_json([data, cfg.data.model_dump(mode="json", exclude={"mirror"})])[:16]}


def close_killed_attempts(tracker: Tracker, log: Any) -> None:
    """Runs of an attempt that was killed (SIGKILL, OOM) still say RUNNING: mark them failed, in MLflow and
    (for the flow run they belong to) in Prefect."""
    dead = tracker.fail_killed_runs()
    flow_runs = {r.data.tags.get("prefect_flow_run_id") for r in dead} - {None, ""}
    if dead:
        log.warning("marked %d MLflow run(s) of a killed attempt FAILED: %s", len(dead),
                    ", ".join(r.info.run_name or r.info.run_id for r in dead))
    for flow_run_id in flow_runs:
        try:
            from prefect.client.orchestration import get_client
            from prefect.states import Crashed

            with get_client(sync_client=True) as client:
                if client.read_flow_run(flow_run_id).state.is_running():
                    client.set_flow_run_state(flow_run_id, Crashed(message="its process was killed"), force=True)
                    log.warning("marked Prefect flow run %s of the killed attempt Crashed", flow_run_id)
        except Exception as err:  # another Prefect server's run: nothing to fix from here
            log.warning("could not mark Prefect flow run %s crashed: %s", flow_run_id, err)
