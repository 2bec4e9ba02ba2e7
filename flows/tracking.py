"""MLflow tracking: one parent run per flow run, a nested run per stage and per arm.

Metric names are the same in every arm (`indomain/accuracy`, `targets/self_frac`, ...) so MLflow's
compare view lines arms and experiments up.
"""
from __future__ import annotations

import contextlib
import logging
import os
import socket
from pathlib import Path
from typing import Any, Iterator

from tasks.core.records import Artifact


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


OWNER_TAG = "s3ft.owner"


def process_owner(pid: int | None = None) -> str:
    """`host:pid:start-time` of a process: a pid reused by another process does not match."""
    import psutil

    proc = psutil.Process(pid or os.getpid())
    return f"{socket.gethostname()}:{proc.pid}:{proc.create_time():.2f}"


def owner_alive(owner: str) -> bool:
    """False only when `owner` is a process of this host that is gone (another host's: assume alive)."""
    import psutil

    host, _, rest = owner.partition(":")
    pid, _, started = rest.partition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return True
    try:
        return f"{psutil.Process(int(pid)).create_time():.2f}" == started
    except psutil.NoSuchProcess:
        return False


class Tracker:
    """Thin wrapper over the MLflow fluent API, scoped to one experiment run.

    `tags` go on every run it opens (config, git commit, data hash...), so `mlflow.search_runs` filters
    and the compare view line runs up across experiments.
    """

    def __init__(self, tracking_uri: str, experiment: str, artifact_root: Path, tags: dict[str, str] | None = None):
        import mlflow

        self.mlflow = mlflow
        # MLflow logs a database error with its traceback, then raises it to us: reported once, in one line
        logging.getLogger("mlflow.store.db.utils").setLevel(logging.CRITICAL)
        mlflow.set_tracking_uri(tracking_uri)
        if tracking_uri.startswith("sqlite:///"):  # two runs at once must not both create the database's tables
            from flows.store_locks import exclusive

            db = Path(tracking_uri.removeprefix("sqlite:///"))
            with exclusive(db.parent, f"{db.name}-setup"):
                if mlflow.get_experiment_by_name(experiment) is None:
                    artifact_root.mkdir(parents=True, exist_ok=True)
                    mlflow.create_experiment(experiment, artifact_location=artifact_root.resolve().as_uri())
        self.experiment_id = mlflow.set_experiment(experiment).experiment_id
        self.tags = {**(tags or {}), OWNER_TAG: process_owner()}

    def fail_killed_runs(self) -> list[Any]:
        """Mark FAILED the runs still RUNNING whose process was killed (SIGKILL leaves them open)."""
        client = self.mlflow.MlflowClient()
        runs = client.search_runs([self.experiment_id], "attributes.status = 'RUNNING'", max_results=1000)
        dead = [r for r in runs if OWNER_TAG in r.data.tags and not owner_alive(r.data.tags[OWNER_TAG])]
        for r in dead:
            client.set_tag(r.info.run_id, "s3ft.failure", "its process died (killed) before the run ended")
            client.set_terminated(r.info.run_id, status="FAILED")
        return dead

    @contextlib.contextmanager
    def parent(self, run_name: str, params: dict[str, Any], tags: dict[str, str]) -> Iterator[str]:
        run = self.mlflow.start_run(run_name=run_name, tags={**self.tags, **tags})
        try:
            self.mlflow.log_params(flat_params(params))
            yield run.info.run_id
        except BaseException as err:
            self._end_failed(err)
            raise
        self.mlflow.end_run("FINISHED")

    def _end_failed(self, err: BaseException) -> None:
        """End the active run KILLED (a signal) or FAILED; if MLflow cannot (its server is gone, its disk is
        full), say so and let the run's own error through: the next run marks this one FAILED."""
        killed = isinstance(err, KeyboardInterrupt) or type(err).__name__ == "TerminationSignal"
        try:
            if killed:
                self.mlflow.set_tag("s3ft.failure", f"interrupted by a signal ({type(err).__name__} {err})")
            self.mlflow.end_run("KILLED" if killed else "FAILED")
        except Exception as end_error:  # noqa: BLE001 - never mask the error that ended the run
            logging.getLogger("s3ft").warning("could not end MLflow run as %s: %s", "KILLED" if killed else "FAILED",
                                              " ".join(str(end_error).split())[:200])

    def stage(self, name: str, artifact: Artifact, cached: bool, seconds: float,
              files: list[Path] | None = None, tags: dict[str, str] | None = None) -> None:
        """A nested run for one stage call: its counts, timing, cache status and output files."""
        with self.mlflow.start_run(run_name=name, nested=True, tags={
                **self.tags, "stage": name.split(":")[0], "cache_hit": str(cached), **(tags or {})}):
            self.mlflow.log_params({"artifact.path": artifact.path, "artifact.sha256": artifact.sha256})
            metrics = {f"stage/{k}": float(v) for k, v in artifact.counts.items()}
            metrics["stage/wall_seconds"] = seconds
            metrics["stage/cache_hit"] = float(cached)
            self.mlflow.log_metrics(metrics)
            for f in files or []:
                self.log_path(f)

    def arm(self, arm: str, params: dict[str, Any], metrics: dict[str, float], files: list[tuple[Path, str | None]],
            step_metrics: dict[str, list[float]] | None = None, tags: dict[str, str] | None = None) -> str:
        """A nested run per arm with the uniform metric names; `files` are (local path, artifact folder or
        None for the default place); returns its run id."""
        with self.mlflow.start_run(run_name=f"arm:{arm}", nested=True,
                                   tags={**self.tags, "arm": arm, **(tags or {})}) as run:
            self.mlflow.log_params(flat_params(params))
            self.mlflow.log_metrics({k: float(v) for k, v in metrics.items()})
            for name, values in (step_metrics or {}).items():
                for step, v in enumerate(values):
                    self.mlflow.log_metric(name, float(v), step=step)
            for path, folder in files:
                self.log_path(path, folder)
            return run.info.run_id

    def register_adapter(self, name: str, run_id: str, artifact: str, sha256: str, tags: dict[str, str]) -> str:
        """Register the run's `artifact` (an adapter folder) as a version of model `name`, once per adapter
        content: a re-run of the same adapter adds no version."""
        client = self.mlflow.MlflowClient()
        try:
            client.get_registered_model(name)
        except self.mlflow.exceptions.MlflowException:
            client.create_registered_model(name, description="LoRA adapters trained by s3ft; see each version's "
                                                             "base_model tag for the model they apply to")
        for v in client.search_model_versions(f"name = '{name}'"):
            if v.tags.get("adapter_sha256") == sha256:
                return v.version  # the same adapter (a cache hit): no new version
        source = f"{client.get_run(run_id).info.artifact_uri}/{artifact}"
        version = client.create_model_version(name, source=source, run_id=run_id,
                                              tags={**tags, "adapter_sha256": sha256},
                                              description=f"LoRA adapter for {tags.get('base_model', '?')}")
        return version.version

    def log_path(self, path: Path, artifact_path: str | None = None) -> None:
        path = Path(path)
        if path.is_dir():
            self.mlflow.log_artifacts(str(path), artifact_path=artifact_path or path.name)
        elif path.is_file():
            self.mlflow.log_artifact(str(path), artifact_path=artifact_path)

    def metrics(self, metrics: dict[str, float]) -> None:
        self.mlflow.log_metrics({k: float(v) for k, v in metrics.items()})
