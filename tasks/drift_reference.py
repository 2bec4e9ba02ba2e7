"""Stage `drift_reference`: the base model's side of drift, computed once for all arms.

Drift teacher-forces the base model and each arm on the same replies (tasks/drift.py). The base model's part
is the same for every arm, so this stage runs its body once and keeps, per batch, the input of its output
embedding at the answer positions (`reference.safetensors`: ~18 MB for the quickstart's 96 replies on the
bundled model, ~120 MB for a 7B model). Each `drift:<arm>` projects it onto the vocabulary again instead of
running the base model's transformer body once per arm.
"""
from __future__ import annotations

from pathlib import Path

from tasks.core.records import Artifact, artifact_for
from tasks.core.stage import run_logger, stage
from tasks.engines.scoring import Work, base_reference, drift_conversations


@stage("drift_reference", version="1", outputs=("reference.safetensors",))
def drift_reference(out: Path, base: Artifact, prompts: Artifact, replies: Artifact, batch_size: int) -> Artifact:
    """The base model's final hidden states over its own `replies` to `prompts`, batched as `drift` batches."""
    from safetensors.torch import save_file

    work = Work()
    _, conversations = drift_conversations(Path(prompts.path), Path(replies.path))
    tensors = base_reference(Path(base.path), conversations, batch_size, work=work)
    tmp = out / "reference.safetensors.tmp"
    save_file(tensors, str(tmp))
    tmp.replace(out / "reference.safetensors")
    run_logger().info("drift reference: %d batches, %d answer rows", len(tensors), work.vocab_rows)
    return artifact_for(out / "reference.safetensors", batches=len(tensors), forward_tokens=work.forward_tokens,
                        vocab_rows=work.vocab_rows)
