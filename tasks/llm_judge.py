"""Stage 2 of a two-stage judge (QA): an LLM decides what the normalized match did not accept.

Three cached stages around the ordinary generation stage, so the judge model is served by the same
backend (one vLLM engine for base answers, paraphrases and judging when the judge is the base model):

    llm_judge_prompts(examples, generations, verdicts) -> examples.jsonl (one yes/no prompt per deferred answer)
    generate(judge model, those prompts)               -> generations.jsonl
    llm_judge_merge(verdicts, judge prompts, replies)  -> verdicts.jsonl (stage-2 decisions folded in)
"""
from __future__ import annotations

from pathlib import Path

from judges import get_judge
from judges.qa import aliases, llm_verdict
from tasks.cache import stage_dir
from tasks.judge import JudgeStageError, outcome_counts, stage_counts
from tasks.paraphrase import question_text
from tasks.records import Artifact, Example, Generation, Verdict, artifact_for, read_jsonl, write_jsonl
from tasks.sources import chat
from tasks.stage import run_logger, stage


def question_of(example: Example) -> str:
    """The bare question (without passage) an example asks: `meta.question`, else its last user message."""
    q = example.meta.get("question")
    return q.strip() if isinstance(q, str) and q.strip() else question_text(example)


def judge_prompts(examples: list[Example], generations: list[Generation], verdicts: list[Verdict],
                  template: str, system_prompt: str | None) -> list[Example]:
    """One yes/no prompt per answer that the judge's first stage defers to the LLM."""
    by_id = {e.id: e for e in examples}
    texts = {g.example_id: g.text for g in generations}
    out = []
    for v in verdicts:
        judge = get_judge(v.judge)
        if not getattr(judge, "defers", lambda _v: False)(v):
            continue
        ex = by_id[v.example_id]
        prompt = template.format(question=question_of(ex), answers="; ".join(aliases(ex)),
                                 candidate=texts[v.example_id].strip())
        out.append(Example(id=ex.id, task=f"{ex.task}:judge", prompt_messages=chat(system_prompt, prompt),
                           gold="yes"))
    return out


def merge_llm_verdicts(verdicts: list[Verdict], replies: list[Generation]) -> list[Verdict]:
    """The first stage's verdicts with every deferred one replaced by the LLM's decision."""
    said = {g.example_id: g.text for g in replies}
    return [llm_verdict(v, said[v.example_id]) if v.example_id in said else v for v in verdicts]


@stage("llm_judge_prompts")
def llm_judge_prompts(examples: Artifact, generations: Artifact, verdicts: Artifact, template: str,
                      system_prompt: str | None, store: str) -> Artifact:
    """Yes/no prompts for the answers the first judge stage deferred; writes `examples.jsonl`."""
    out = stage_dir(store, "llm_judge_prompts", {"examples": examples, "generations": generations,
                                                 "verdicts": verdicts, "template": template,
                                                 "system_prompt": system_prompt})
    prompts = judge_prompts(read_jsonl(Path(examples.path), Example), read_jsonl(Path(generations.path), Generation),
                            read_jsonl(Path(verdicts.path), Verdict), template, system_prompt)
    run_logger().info("%d answers go to the LLM judge", len(prompts))
    return artifact_for(write_jsonl(out / "examples.jsonl", prompts), n=len(prompts))


@stage("llm_judge_merge")
def llm_judge_merge(verdicts: Artifact, replies: Artifact, max_error_fraction: float, store: str) -> Artifact:
    """Fold the LLM judge's replies into the verdicts; writes `verdicts.jsonl`.

    Unparseable replies become `error` verdicts (counted as `llm_unparseable`, never guessed); the
    stage fails like the judge stage when they exceed `judge.max_error_fraction` of all verdicts.
    """
    out = stage_dir(store, "llm_judge_merge", {"verdicts": verdicts, "replies": replies,
                                               "max_error_fraction": max_error_fraction})
    merged = merge_llm_verdicts(read_jsonl(Path(verdicts.path), Verdict), read_jsonl(Path(replies.path), Generation))
    path = write_jsonl(out / "verdicts.jsonl", merged)  # kept even if the stage fails below
    counts, stages = outcome_counts(merged), stage_counts(merged)
    run_logger().info("judged %d: %s; decided by %s", len(merged), counts, stages)
    if merged and counts["error"] / len(merged) > max_error_fraction:
        raise JudgeStageError(f"{counts['error']} of {len(merged)} verdicts are errors, {stages['llm_unparseable']} "
                              f"of them unparseable LLM-judge replies (> judge.max_error_fraction="
                              f"{max_error_fraction}); see {path}. Fix: a stronger judge.llm.model, a stricter "
                              f"judge.llm.prompt, or raise the threshold knowingly")
    return artifact_for(path, n=len(merged), **counts, **stages)
