"""MLflow tracking: one parent run per flow run, a nested run per stage and per arm.

Metric names are the same in every arm (`indomain/accuracy`, `targets/self_frac`, ...) so MLflow's
compare view lines arms and experiments up.
"""
from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any, Iterator

from tasks.records import Artifact


def _flatten(prefix: str, value: Any, out: dict[str, Any]) -> None:
    if isinstance(value, dict):
        for k, v in value.items():
            _flatten(f"{prefix}.{k}" if prefix else str(k), v, out)
    else:
        out[prefix] = value


def flat_params(tree: dict[str, Any]) -> dict[str, str]:
    """Nested config -> `section.key` params (MLflow caps a value at 6000 characters)."""
    out: dict[str, Any] = {}
    _flatten("", tree, out)
    return {k: str(v)[:6000] for k, v in out.items()}


class Tracker:
    """Thin wrapper over the MLflow fluent API, scoped to one experiment run."""

    def __init__(self, tracking_uri: str, experiment: str, artifact_root: Path):
        import mlflow

        self.mlflow = mlflow
        mlflow.set_tracking_uri(tracking_uri)
        if mlflow.get_experiment_by_name(experiment) is None and tracking_uri.startswith("sqlite:"):
            artifact_root.mkdir(parents=True, exist_ok=True)
            mlflow.create_experiment(experiment, artifact_location=artifact_root.resolve().as_uri())
        mlflow.set_experiment(experiment)

    @contextlib.contextmanager
    def parent(self, run_name: str, params: dict[str, Any], tags: dict[str, str]) -> Iterator[str]:
        with self.mlflow.start_run(run_name=run_name, tags=tags) as run:
            self.mlflow.log_params(flat_params(params))
            yield run.info.run_id

    def stage(self, name: str, artifact: Artifact, cached: bool, seconds: float,
              files: list[Path] | None = None, tags: dict[str, str] | None = None) -> None:
        """A nested run for one stage call: its counts, timing, cache status and output files."""
        with self.mlflow.start_run(run_name=name, nested=True,
                                   tags={"stage": name.split(":")[0], "cache_hit": str(cached), **(tags or {})}):
            self.mlflow.log_params({"artifact.path": artifact.path, "artifact.sha256": artifact.sha256})
            metrics = {f"stage/{k}": float(v) for k, v in artifact.counts.items()}
            metrics["stage/wall_seconds"] = seconds
            metrics["stage/cache_hit"] = float(cached)
            self.mlflow.log_metrics(metrics)
            for f in files or []:
                self.log_path(f)

    def arm(self, arm: str, params: dict[str, Any], metrics: dict[str, float], files: list[Path],
            step_metrics: dict[str, list[float]] | None = None) -> None:
        """A nested run per arm with the uniform metric names."""
        with self.mlflow.start_run(run_name=f"arm:{arm}", nested=True, tags={"arm": arm}):
            self.mlflow.log_params(flat_params(params))
            self.mlflow.log_metrics({k: float(v) for k, v in metrics.items()})
            for name, values in (step_metrics or {}).items():
                for step, v in enumerate(values):
                    self.mlflow.log_metric(name, float(v), step=step)
            for f in files:
                self.log_path(f)

    def log_path(self, path: Path, artifact_path: str | None = None) -> None:
        path = Path(path)
        if path.is_dir():
            self.mlflow.log_artifacts(str(path), artifact_path=artifact_path or path.name)
        elif path.is_file():
            self.mlflow.log_artifact(str(path), artifact_path=artifact_path)

    def metrics(self, metrics: dict[str, float]) -> None:
        self.mlflow.log_metrics({k: float(v) for k, v in metrics.items()})
