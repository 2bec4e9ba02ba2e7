"""The S3FT experiment flow: one config in, a cached and tracked comparison of arms out.

The DAG of stages is flows/dag.py; this module opens the run folder, MLflow's parent run and the stage
runner, then writes the report (flows/report.py), summary.json and the Prefect artifact.
"""
from __future__ import annotations

import contextlib
import json
import logging
import time
from pathlib import Path
from typing import Any

from prefect import flow
from prefect.artifacts import create_markdown_artifact
from prefect.logging import get_run_logger
from prefect.runtime import flow_run

from flows.dag import benchmark_dtype, run_experiment, training_bf16
from flows.environment import check_before_work, prepare_environment
from flows.mlflow_runs import close_killed_attempts, git_commit, log_arms, run_tags
from flows.report import markdown_table, write_report
from flows.comparisons import comparisons
from flows.results import ArmResult, Comparison, assemble
from flows.runner import StageRunner
from flows.services import lost_service
from flows.tracking import Tracker
from tasks.core.config import ExperimentConfig
from tasks.core.config_file import load_config
from tasks.core.errors import ConfigError, InputError, disk_full
from tasks.core.records import write_text_atomic
from tasks.engines.backends import release_backends


class _InputErrorsWithoutTraceback(logging.Filter):
    """Bad input (tasks.core.errors.InputError) is reported by its one-line message; a traceback adds only noise."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and isinstance(record.exc_info[1], InputError):
            record.exc_info = record.exc_text = None
        return True


for _name in ("prefect.task_runs", "prefect.flow_runs", "prefect.task_engine", "prefect.flow_engine"):
    logging.getLogger(_name).addFilter(_InputErrorsWithoutTraceback())


def precision_line(cfg: ExperimentConfig) -> str:
    """The report's first line: the dtypes its numbers were computed in (results differ between dtypes)."""
    dtype = cfg.model.resolved().dtype
    chosen = f"`model.dtype: auto` chose {dtype} on this machine" if cfg.model.dtype == "auto" else "set in the config"
    training = "bf16 autocast" if training_bf16(cfg) else "float32"
    return (f"Precision: generation {dtype} ({chosen}); training {training}; "
            f"benchmarks {benchmark_dtype(cfg)}; drift and familiarity float32 (bfloat16 on a GPU). Compare runs "
            f"only at equal precision.")


def new_run_dir(parent: Path) -> Path:
    """`parent/<timestamp>`, created; a second run started in the same second gets `<timestamp>-2`, not a share."""
    parent.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    for n in range(1, 1000):
        path = parent / (stamp if n == 1 else f"{stamp}-{n}")
        try:
            path.mkdir()
            return path
        except FileExistsError:
            continue
    raise FileExistsError(f"{parent}: 999 runs started in second {stamp}")


def _finish(cfg: ExperimentConfig, runner: StageRunner, results: list[ArmResult], comps: list[Comparison],
            run_dir: Path, parent_id: str, start: float) -> dict[str, Any]:
    """Report files, summary.json and the flow's own metrics, all attached to the parent MLflow run."""
    paths = write_report(cfg.data.source, results, run_dir, comps, precision_line(cfg))
    wall = time.perf_counter() - start
    summary = {"run_dir": str(run_dir), "mlflow_run_id": parent_id, "wall_seconds": round(wall, 1),
               "generations_performed": runner.generations_performed(),
               "stages": runner.summary(), "results": [r.model_dump() for r in results],
               "comparisons": [c.model_dump() for c in comps],
               "report": {k: str(v) for k, v in paths.items()},
               "config": cfg.model_dump(mode="json"), "git_commit": git_commit(),  # for `s3ft export`
               "dtype": cfg.model.resolved().dtype, "training_bf16": training_bf16(cfg),
               "benchmark_dtype": benchmark_dtype(cfg)}
    write_text_atomic(run_dir / "summary.json", json.dumps(summary, indent=1))
    runner.tracker.metrics({"flow/wall_seconds": wall, "flow/generations_performed": summary["generations_performed"],
                            "flow/cache_hits": sum(c.cached for c in runner.calls), "flow/stages": len(runner.calls)})
    for p in list(paths.values()) + [run_dir / "summary.json", run_dir / "stages.json"]:
        runner.tracker.log_path(p, "report")
    return summary


@flow(name="s3ft-experiment")
def experiment(config_path: str | None = None, overrides: list[str] | None = None,
               config: ExperimentConfig | None = None) -> dict[str, Any]:
    """Run one S3FT experiment: a validated `config` (the CLI passes it), or a YAML `config_path` plus
    `key=value` `overrides` (deployments and the UI)."""
    try:
        return _experiment(config_path, overrides, config)
    except InputError:
        raise  # one line in the flow run's log (the filter above drops its traceback)
    except Exception as err:
        known = lost_service(err) or disk_full(err, config.output_path() if config is not None else Path.cwd())
        if known is not None:
            raise known from None
        get_run_logger().error("internal error (a bug in s3ft, not your input): %s: %s. Please report it to the s3ft "
                               "maintainers with this flow run's log; the traceback follows", type(err).__name__, err)
        raise


def _experiment(config_path: str | None, overrides: list[str] | None,
                config: ExperimentConfig | None) -> dict[str, Any]:
    if config is not None and overrides:
        raise ConfigError("pass either `config` or `config_path` with `overrides`, not both. Fix: apply the "
                          "overrides when loading the config")
    cfg = config if config is not None else load_config(config_path, overrides)
    if config is None:  # a deployment's run (the CLI checks its config before it starts the flow)
        check_before_work(cfg)
    prepare_environment(cfg)  # a deployment's worker process did not come through the CLI
    log = get_run_logger()
    start = time.perf_counter()
    run_dir = new_run_dir(cfg.output_path() / cfg.name)
    tracker = Tracker(cfg.tracking_uri(), cfg.tracking.experiment, cfg.output_path() / "mlartifacts",
                      tags=run_tags(cfg, config_path))
    close_killed_attempts(tracker, log)
    runner = StageRunner(tracker, log, store=cfg.store_path(), results=cfg.results_path(), locks=cfg.locks_path())
    tags = {"prefect_flow_run_id": str(flow_run.get_id() or "")}
    with tracker.parent(f"{cfg.name}-{flow_run.get_name() or 'local'}", cfg.model_dump(mode="json"), tags) as parent:
        try:
            done = run_experiment(cfg, runner)
        except BaseException:
            release_backends()
            with contextlib.suppress(OSError):  # a full disk must not hide the stage error that says so
                write_text_atomic(run_dir / "stages.json", json.dumps(runner.summary(), indent=1))
            raise
        release_backends()
        write_text_atomic(run_dir / "stages.json", json.dumps(runner.summary(), indent=1))
        comps = comparisons(list(done.arms), seed=cfg.seed)
        results = assemble(list(done.arms), done.familiarity, comps)
        log_arms(tracker, log, cfg, done.base.folder, done.arms, results)
        summary = _finish(cfg, runner, results, comps, run_dir, parent, start)
    create_markdown_artifact(markdown=markdown_table(cfg.data.source, results, comps, precision_line(cfg)),
                             key="s3ft-report",
                             description=f"{cfg.name}: {run_dir}")
    hits = [c.label for c in runner.calls if c.cached]
    log.info("done in %.0f s; %d generations performed; cache hits: %s", summary["wall_seconds"],
             summary["generations_performed"], ", ".join(hits) or "none")
    return summary
