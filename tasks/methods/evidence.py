"""What is known about each training example when targets are built, joined from the stages' records."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from tasks.core.records import Artifact, Example, Generation, Verdict, read_jsonl


@dataclass(frozen=True)
class Evidence:
    """One training example, the base model's own answer and its verdict, and the paraphrase of its gold
    answer with its verdict (when one was made)."""

    example: Example
    own: Generation | None = None
    own_verdict: Verdict | None = None
    paraphrase: Generation | None = None
    paraphrase_verdict: Verdict | None = None


def _by_id(artifact: Artifact | None, cls: type) -> dict:
    return {} if artifact is None else {r.example_id: r for r in read_jsonl(Path(artifact.path), cls)}


def collect_evidence(examples: Artifact, own: Artifact | None = None, own_verdicts: Artifact | None = None,
                     paraphrases: Artifact | None = None,
                     paraphrase_verdicts: Artifact | None = None) -> list[Evidence]:
    """Join the per-example records of the earlier stages by example id, in example order."""
    gens, verdicts = _by_id(own, Generation), _by_id(own_verdicts, Verdict)
    paras, para_verdicts = _by_id(paraphrases, Generation), _by_id(paraphrase_verdicts, Verdict)
    return [Evidence(example=e, own=gens.get(e.id), own_verdict=verdicts.get(e.id), paraphrase=paras.get(e.id),
                     paraphrase_verdict=para_verdicts.get(e.id))
            for e in read_jsonl(Path(examples.path), Example)]
