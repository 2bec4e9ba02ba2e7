"""Stage `prepare_model`: a model reference becomes a local transformers folder (the bundled GGUF is
converted once; a hub id is downloaded; a local folder is used in place)."""
from __future__ import annotations

from pathlib import Path

from tasks.core.records import Artifact
from tasks.core.stage import run_logger, stage
from tasks.engines.models import materialize_model


@stage("prepare_model", version="1", hashed_by="inputs")
def prepare_model(out: Path, ref: str, fingerprint: str) -> Artifact:
    """Resolve `ref` to a local folder; `fingerprint` (engines.models.model_fingerprint) is its identity."""
    path = materialize_model(ref, out)
    run_logger().info("model %s -> %s", ref, path)
    # The fingerprint is the identity: rehashing gigabytes on every run would buy nothing.
    return Artifact(path=str(path), sha256=fingerprint, counts={})
