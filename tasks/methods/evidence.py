"""What is known about each training example when targets are built, joined from the stages' records."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from tasks.core.records import Artifact, Example, Generation, Record, Verdict, read_jsonl, sampled_from


class Familiar(Record):
    """How familiar one candidate answer is to the base model: its mean per-token log-prob."""

    example_id: str
    text: str
    mean_logprob: float


@dataclass(frozen=True)
class Judged:
    """One of several answers to an example (a sample, a paraphrase attempt) and its verdict."""

    answer: Generation
    verdict: Verdict | None


@dataclass(frozen=True)
class Evidence:
    """One training example with what the base model made of it for one arm: its greedy answer and verdict,
    its k sampled answers with theirs, the paraphrase of its gold answer (or k paraphrase attempts) with
    theirs, and the familiarity of its correct answers (text -> mean token log-prob)."""

    example: Example
    own: Generation | None = None
    own_verdict: Verdict | None = None
    paraphrase: Generation | None = None
    paraphrase_verdict: Verdict | None = None
    samples: tuple[Judged, ...] = ()
    attempts: tuple[Judged, ...] = ()
    familiarity: dict[str, float] = field(default_factory=dict)


EVIDENCE_FILES = ("own", "own_verdicts", "paraphrases", "paraphrase_verdicts", "samples", "sample_verdicts",
                  "attempts", "attempt_verdicts", "familiarity")
"""The names of the artifacts `collect_evidence` joins (each optional)."""


def _by_id(artifact: Artifact | None, cls: type) -> dict:
    return {} if artifact is None else {r.example_id: r for r in read_jsonl(Path(artifact.path), cls)}


def _judged(answers: Artifact | None, verdicts: Artifact | None) -> dict[str, list[Judged]]:
    """Sampled answers grouped by the example they answer, in sample order, each with its verdict."""
    out: dict[str, list[Judged]] = {}
    if answers is None:
        return out
    said = _by_id(verdicts, Verdict)
    for g in read_jsonl(Path(answers.path), Generation):
        out.setdefault(sampled_from(g.example_id), []).append(Judged(g, said.get(g.example_id)))
    return out


def collect_evidence(examples: Artifact, files: dict[str, Artifact | None] | None = None) -> list[Evidence]:
    """Join the per-example records of the earlier stages (`files`, named as in EVIDENCE_FILES) by example id,
    in example order."""
    files = files or {}
    unknown = set(files) - set(EVIDENCE_FILES)
    if unknown:
        raise KeyError(f"unknown evidence {sorted(unknown)}; known: {EVIDENCE_FILES}")
    gens, verdicts = _by_id(files.get("own"), Generation), _by_id(files.get("own_verdicts"), Verdict)
    paras = _by_id(files.get("paraphrases"), Generation)
    para_verdicts = _by_id(files.get("paraphrase_verdicts"), Verdict)
    samples = _judged(files.get("samples"), files.get("sample_verdicts"))
    attempts = _judged(files.get("attempts"), files.get("attempt_verdicts"))
    familiar: dict[str, dict[str, float]] = {}
    if files.get("familiarity") is not None:
        for f in read_jsonl(Path(files["familiarity"].path), Familiar):
            familiar.setdefault(f.example_id, {})[f.text] = f.mean_logprob
    return [Evidence(example=e, own=gens.get(e.id), own_verdict=verdicts.get(e.id), paraphrase=paras.get(e.id),
                     paraphrase_verdict=para_verdicts.get(e.id), samples=tuple(samples.get(e.id, ())),
                     attempts=tuple(attempts.get(e.id, ())), familiarity=familiar.get(e.id, {}))
            for e in read_jsonl(Path(examples.path), Example)]
