"""What the flow tells MLflow (and Prefect) beyond stage runs: tags that line runs up, one run per arm with
uniform metric and param names, adapters in the model registry, and closing the runs of a killed attempt."""
from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

from flows.results import ArmResult, ArmRun, SeedRun, general_drops
from flows.tracking import Tracker
from tasks.core.config import ExperimentConfig
from tasks.core.records import Artifact, sha256_json
from tasks.data import split_fingerprint
from tasks.data.custom import configured_fingerprint


def arm_metrics(result: ArmResult) -> dict[str, float]:
    """The metrics of one arm under the names every arm uses (`indomain/accuracy`, `mmlu/acc`, ...)."""
    metrics = {"indomain/accuracy": result.accuracy, "indomain/stderr": result.stderr, "indomain/n": result.n}
    n_targets = sum(result.targets.get(s, 0) for s in ("self", "paraphrase", "gold"))
    for source in ("self", "paraphrase", "gold"):
        if n_targets:
            metrics[f"targets/{source}"] = result.targets.get(source, 0)
            metrics[f"targets/{source}_frac"] = result.targets.get(source, 0) / n_targets
    if n_targets:  # the methods table's columns: examples with no target, sequences trained on
        metrics["targets/dropped"] = result.targets.get("dropped", 0)
        metrics["targets/trained"] = n_targets
    metrics.update({f"train/{k}": v for k, v in result.train.items()})
    metrics.update({k: v for k, v in result.general.items() if v == v})  # mmlu/acc, ... (NaN stderr left out)
    metrics.update(result.drops)  # mmlu/drop, ..., general/avg_drop
    metrics.update({f"familiarity/{s}": v for s, v in result.familiarity.items()})
    metrics.update({f"judge/{k}": v for k, v in result.judged.items()})  # judge/by_llm, judge/llm_unparseable
    for name, d in result.vs_base.items():  # paired differences from base with their CIs
        if name == "drift/kl":
            continue  # drift/kl and its CI come with result.drift below
        key = {"indomain/accuracy": "indomain/delta_pts", "general/avg": "general/avg_delta_pts"}.get(
            name, name.removesuffix("/acc") + "/delta_pts")  # points (x100), like the drops
        metrics.update({key: 100 * d.estimate, f"{key}_ci_low": 100 * d.low, f"{key}_ci_high": 100 * d.high})
        if d.p is not None:
            metrics[f"{key}_mcnemar_p"] = d.p
    for name, d in result.vs_sft.items():  # accuracies in points, drift KL in nats
        key, scale = "vs_sft/" + name.replace("/", "_"), 1.0 if name == "drift/kl" else 100.0
        metrics.update({key: scale * d.estimate, f"{key}_ci_low": scale * d.low, f"{key}_ci_high": scale * d.high})
    metrics.update({f"drift/{k}": v for k, v in result.drift.items()})  # drift/kl, drift/kl_ci_low, ...
    for sr in result.seeds:  # several training seeds: each one's score next to the mean
        metrics[f"seed{sr.seed}/indomain_accuracy"] = sr.accuracy
        metrics.update({f"seed{sr.seed}/{k}": v for k, v in sr.general.items() if k.endswith("/acc")})
    return metrics


def _seed_artifacts(run: SeedRun, folder: str | None) -> tuple[list[tuple[Path, str | None]], list[float]]:
    """One seed's test verdicts, adapter and training log as (local path, artifact folder); its losses."""
    files: list[tuple[Path, str | None]] = [(Path(run.evaluation.verdicts.path), folder)]
    if run.adapter is None:
        return files, []
    files.append((Path(run.adapter.path), f"{folder}/adapter" if folder else None))
    log_file = Path(run.adapter.path).parent / "train_log.json"
    if not log_file.is_file():
        return files, []
    return files + [(log_file, folder)], json.loads(log_file.read_text()).get("loss_history", [])


def _arm_artifacts(arm: ArmRun) -> tuple[list[tuple[Path, str | None]], dict[str, list[float]]]:
    """What an arm's run carries: its targets and, per seed (in `seed<k>/` when there are several), the
    test verdicts, adapter and training log; and the loss curves (`train/loss`, or `seed<k>/train/loss`)."""
    several = len(arm.seeds) > 1
    files: list[tuple[Path, str | None]] = [(Path(arm.targets.path), None)] if arm.targets else []
    curves: dict[str, list[float]] = {}
    for run in arm.seeds:
        folder = f"seed{run.seed}" if several else None
        seed_files, losses = _seed_artifacts(run, folder)
        files += seed_files
        if losses:
            curves[f"{folder}/train/loss" if folder else "train/loss"] = losses
    return files, curves


def log_arms(tracker: Tracker, log: Any, cfg: ExperimentConfig, model: Artifact, arms: tuple[ArmRun, ...],
             results: list[ArmResult]) -> None:
    """One MLflow run per arm, all with the same metric and param names (NaN where an arm has no value:
    base has no targets), tagged arm/seed; every seed's adapter registered with its base model and seed."""
    per_arm = {r.arm: arm_metrics(r) for r in results}
    for r in results:
        if r.arm == "base":  # base's drop versus itself is 0, under the same names as the arms'
            per_arm[r.arm].update(general_drops(r.general, r.general))
    names = sorted(set().union(*per_arm.values()))
    recipe = {"lora": cfg.lora.model_dump(), "training": cfg.training.model_dump()}
    for arm, result in zip(arms, results):
        trained = arm.targets is not None
        files, curves = _arm_artifacts(arm)
        params = {"arm": arm.arm, **(recipe if trained else json.loads(json.dumps(recipe), object_hook=_dashes))}
        metrics = {n: per_arm[arm.arm].get(n, float("nan")) for n in names}
        tags = {"arm": arm.arm, "seed": ",".join(str(s.seed) for s in arm.seeds) if trained else "-"}
        run_id = tracker.arm(arm.arm, params, metrics, files, curves, tags)
        for seed_run in arm.seeds if trained else ():
            _register(tracker, log, cfg, model, arm.arm, seed_run, run_id, "adapter" if len(arm.seeds) == 1
                      else f"seed{seed_run.seed}/adapter")


def _register(tracker: Tracker, log: Any, cfg: ExperimentConfig, model: Artifact, arm: str, run: SeedRun,
              run_id: str, artifact: str) -> None:
    """Register one seed's adapter (the arm run's `artifact`) as a version of `s3ft-<config>-<arm>`."""
    name = f"s3ft-{cfg.name}-{arm}"
    version = tracker.register_adapter(name, run_id, artifact, run.adapter.sha256, {
        "arm": arm, "seed": str(run.seed), "base_model": cfg.model.ref, "base_model_fingerprint": model.sha256,
        "config": cfg.name, "git_commit": tracker.tags.get("git_commit", "unknown")})
    log.info("adapter of arm %s, seed %s registered in MLflow as %s version %s", arm, run.seed, name, version)


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
    data = [configured_fingerprint(cfg.data, s) if cfg.data.own_data() else
            split_fingerprint(cfg.data.source, s, cfg.data.mirror_path()) for s in ("train", "test")]
    return {"config": cfg.name, "config_file": Path(config_path).name if config_path else "-",
            "source": cfg.data.source, "model": cfg.model.ref, "git_commit": git_commit(),
            "data_hash": sha256_json([data, cfg.data.key_dump()])[:16]}


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
