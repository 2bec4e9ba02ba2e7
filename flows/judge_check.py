"""How well the QA judge agrees with human labels: `s3ft judge-check CONFIG`.

The labelled set (`tests/data/qa_judge_cases.jsonl`: question, gold aliases, candidate answer,
label, kind) covers exact and sentence answers, paraphrases without the alias string, partial
answers, wrong entities, hedges, and empty or non-answers. Step 1 (normalized match) is
deterministic and asserted in the tests; the full judge (step 1, then the configured LLM judge on
what step 1 did not accept) is measured here with the same code the pipeline runs.
"""
from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

from tasks.core.config import ExperimentConfig
from tasks.core.records import Example, Generation, Verdict

DEFAULT_CASES = Path(__file__).resolve().parents[1] / "tests" / "data" / "qa_judge_cases.jsonl"


def load_cases(path: Path = DEFAULT_CASES) -> tuple[list[Example], list[Generation], list[dict[str, Any]]]:
    rows = [json.loads(line) for line in Path(path).read_text(encoding="utf-8").splitlines() if line.strip()]
    for i, r in enumerate(rows):
        missing = {"question", "answers", "candidate", "label"} - set(r)
        if missing:
            raise ValueError(f"{path}:{i + 1}: missing field(s) {sorted(missing)}")
    examples = [Example(id=f"case-{i}", source="nq", prompt_messages=[{"role": "user", "content": r["question"]}],
                        gold=r["answers"][0], meta={"answers": r["answers"], "question": r["question"]})
                for i, r in enumerate(rows)]
    gens = [Generation(example_id=e.id, model_ref="labelled", text=r["candidate"]) for e, r in zip(examples, rows)]
    return examples, gens, rows


def agreement(verdicts: list[Verdict], rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Agreement with the labels (an `error` verdict counts as a disagreement), overall and per kind."""
    hits = [(v.outcome == "correct") == bool(r["label"]) for v, r in zip(verdicts, rows)]
    kinds: dict[str, list[bool]] = {}
    for hit, r in zip(hits, rows):
        kinds.setdefault(r.get("kind", "?"), []).append(hit)
    return {"n": len(hits), "agreement": sum(hits) / max(len(hits), 1),
            "by_kind": {k: f"{sum(v)}/{len(v)}" for k, v in sorted(kinds.items())},
            "decided_by": dict(Counter(v.decided_by or "precheck" for v in verdicts)),
            "errors": sum(v.outcome == "error" for v in verdicts)}


def first_step(examples: list[Example], gens: list[Generation]) -> list[Verdict]:
    """The QA judge's normalized match alone."""
    from tasks.judge import judge_generations

    return judge_generations(examples, gens, "qa")


def full_judge(examples: list[Example], gens: list[Generation], cfg: ExperimentConfig, model_dir: Path,
               model_ref: str) -> list[Verdict]:
    """Step 1 then the LLM judge, as the flow runs them (without the cache)."""
    from flows.answering import generation_vllm
    from tasks.generate import generate_answers
    from tasks.llm_judge_merge import merge_llm_verdicts
    from tasks.llm_judge_prompts import judge_prompts

    first = first_step(examples, gens)
    prompts = judge_prompts(examples, gens, first, cfg.judge.llm.prompt, cfg.judge.llm.system_prompt)
    replies = generate_answers(model_dir, model_ref, cfg.model.resolved().dtype, prompts,
                               cfg.generation.model_copy(update={"temperature": 0.0, "samples": 1}),
                               generation_vllm(cfg),
                               cfg.judge.llm.max_new_tokens)
    return merge_llm_verdicts(first, replies)


def run_check(cfg: ExperimentConfig, cases: Path = DEFAULT_CASES) -> dict[str, Any]:
    from tasks.engines.backends import release_backends
    from tasks.engines.models import materialize_model, model_fingerprint
    from tasks.prepare_model import prepare_model

    examples, gens, rows = load_cases(cases)
    ref = cfg.judge.llm.model or cfg.model.ref
    # The folder the flow's prepare_model stage uses for this model: a converted model is reused, not redone.
    out = prepare_model.contract.folder(cfg.store_path(), {"ref": ref, "fingerprint": model_fingerprint(ref)})
    model_dir = materialize_model(ref, out)
    try:
        full = full_judge(examples, gens, cfg, model_dir, ref)
    finally:
        release_backends()
    return {"cases": str(cases), "judge_model": ref, "normalized": agreement(first_step(examples, gens), rows),
            "full": agreement(full, rows),
            "unparseable": sum(v.reason.startswith("unparseable") for v in full)}
