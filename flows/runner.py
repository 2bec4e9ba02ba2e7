"""Runs stage tasks inside a flow: cache-hit bookkeeping, stale-cache repair, MLflow per stage."""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from tasks.records import Artifact
from tasks.tracking import Tracker


@dataclass
class StageCall:
    label: str
    cached: bool
    seconds: float
    artifact: Artifact


@dataclass
class StageRunner:
    tracker: Tracker
    log: Any
    calls: list[StageCall] = field(default_factory=list)

    def __call__(self, label: str, task: Callable, files: tuple[str, ...] = (), **params: Any) -> Artifact:
        """Run (or reuse) one stage; `files` names output files to attach to its MLflow run."""
        start = time.perf_counter()
        state = task(**params, return_state=True)
        artifact = state.result()
        cached = state.name == "Cached"
        if cached and not artifact.exists():  # the cache record outlived its files: recompute
            self.log.warning("stage %s: cached output %s is gone; recomputing", label, artifact.path)
            state = task.with_options(refresh_cache=True)(**params, return_state=True)
            artifact, cached = state.result(), False
        seconds = time.perf_counter() - start
        self.log.info("stage %-28s %s in %.1f s", label, "cache hit  " if cached else "computed   ", seconds)
        self.calls.append(StageCall(label, cached, seconds, artifact))
        out = Path(artifact.path)
        folder = out if out.is_dir() else out.parent
        # A cache hit's files already sit in the MLflow run that computed them: log counts, not copies.
        self.tracker.stage(label, artifact, cached, seconds, [] if cached else [folder / f for f in files])
        return artifact

    def generations_performed(self) -> int:
        return int(sum(c.artifact.counts.get("generations", 0) for c in self.calls
                       if c.label.startswith("generate") and not c.cached))

    def summary(self) -> list[dict[str, Any]]:
        return [{"stage": c.label, "cached": c.cached, "seconds": round(c.seconds, 2),
                 "path": c.artifact.path, "sha256": c.artifact.sha256, "counts": c.artifact.counts}
                for c in self.calls]
