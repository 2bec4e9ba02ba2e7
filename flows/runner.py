"""Runs stages inside a flow: the store they share, cache-hit bookkeeping, stale-cache repair, MLflow per stage."""
from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from flows.store_locks import StoreLocks
from flows.tracking import Tracker
from tasks.core.cache import STORE_PARAM, StageContract
from tasks.core.errors import CacheError
from tasks.core.records import Artifact, sha256_tree

# Record files and adapters are re-hashed on every cache hit; a merged model (gigabytes) is not.
VERIFY_MAX_BYTES = 64 << 20


def verify_cached(label: str, contract: StageContract, artifact: Artifact) -> None:
    """Refuse a cache hit whose output differs from what its stage wrote (corrupt or edited)."""
    path = Path(artifact.path)
    files = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]
    if contract.hashed_by == "inputs" or sum(f.stat().st_size for f in files) > VERIFY_MAX_BYTES:
        return
    if sha256_tree(path) != artifact.sha256:
        folder = path if path.is_dir() else path.parent
        raise CacheError(f"stage {label}: cached output {path} does not match the sha256 recorded when it was "
                         f"written (corrupt or edited). Fix: delete {folder} and re-run: that stage recomputes, "
                         f"the others stay cached unless its new output differs")


@dataclass(frozen=True)
class StageCall:
    label: str
    cached: bool
    seconds: float
    artifact: Artifact


@dataclass
class StageRunner:
    """Calls stages (`run(label, stage, **inputs)`) with the experiment's store and records each call."""

    tracker: Tracker
    log: Any
    store: Path
    results: Path | None = None
    """Folder of Prefect's cache records; set explicitly so that CLI runs and deployment runs (whose worker
    process never saw the CLI's environment) find the same records."""
    locks: Path | None = None
    """Folder of the stage keys' locks (flows/store_locks.py), shared by every run on this store; None: no locks."""
    calls: list[StageCall] = field(default_factory=list)
    _storage: str | None = None

    def __call__(self, label: str, stage: Any, **inputs: Any) -> Artifact:
        """Run (or reuse) one stage; its contract names the output files its MLflow run gets."""
        contract: StageContract = stage.contract
        start = time.perf_counter()
        task = self._in_store(stage)
        params = {**inputs, STORE_PARAM: str(self.store)}
        state = task(**params, return_state=True)
        artifact = state.result()
        cached = state.name == "Cached"
        if cached and not artifact.exists():  # the cache record outlived its files: recompute
            self.log.warning("stage %s: cached output %s is gone; recomputing", label, artifact.path)
            state = task.with_options(refresh_cache=True)(**params, return_state=True)
            artifact, cached = state.result(), False
        elif cached:
            verify_cached(label, contract, artifact)
        seconds = time.perf_counter() - start
        self.log.info("stage %-28s %s in %.1f s", label, "cache hit  " if cached else "computed   ", seconds)
        self.calls.append(StageCall(label, cached, seconds, artifact))
        out = Path(artifact.path)
        folder = out if out.is_dir() else out.parent
        # A cache hit's files already sit in the MLflow run that computed them: log counts, not copies.
        self.tracker.stage(label, artifact, cached, seconds, [] if cached else [folder / f for f in contract.outputs])
        return artifact

    def _in_store(self, stage: Any) -> Any:
        """The stage with its cache records in `results` and its key locked while it runs (flows/store_locks.py):
        a second run on the same store waits for a stage another run is computing, then reuses it."""
        if self.results is None:
            return stage
        if self.locks is None:
            return stage.with_options(result_storage=self._result_storage())
        policy = stage.cache_policy.configure(isolation_level="SERIALIZABLE", lock_manager=StoreLocks(self.locks))
        return stage.with_options(result_storage=self._result_storage(), cache_policy=policy)

    def _result_storage(self) -> str:
        """A saved LocalFileSystem block over `results` (Prefect refuses unsaved blocks), named by the path."""
        if self._storage is None:
            from prefect.filesystems import LocalFileSystem

            name = "s3ft-results-" + hashlib.sha256(str(self.results).encode()).hexdigest()[:12]
            LocalFileSystem(basepath=str(self.results)).save(name, overwrite=True)
            self._storage = f"local-file-system/{name}"
        return self._storage

    def generations_performed(self) -> int:
        return int(sum(c.artifact.counts.get("generations", 0) - c.artifact.counts.get("resumed", 0)
                       for c in self.calls if c.label.startswith("generate") and not c.cached))

    def summary(self) -> list[dict[str, Any]]:
        return [{"stage": c.label, "cached": c.cached, "seconds": round(c.seconds, 2),
                 "path": c.artifact.path, "sha256": c.artifact.sha256, "counts": c.artifact.counts}
                for c in self.calls]
