"""Stage `llm_judge_prompts`, step 2 of a two-step judge (QA), part 1: a yes/no prompt for every answer
the normalized match did not accept.

Step 2 is three cached stages around the ordinary generation stage, so the judge model is served by the
same backend (one vLLM engine for base answers, paraphrases and judging when the judge is the base model):

    llm_judge_prompts(examples, generations, verdicts) -> examples.jsonl (one yes/no prompt per deferred answer)
    generate(judge model, those prompts)               -> generations.jsonl
    llm_judge_merge(verdicts, replies)                 -> verdicts.jsonl (step-2 decisions folded in)
"""
from __future__ import annotations

from pathlib import Path

from judges import get_judge
from judges.qa import aliases
from tasks.core.records import Artifact, Example, Generation, Verdict, artifact_for, read_jsonl, write_jsonl
from tasks.core.stage import run_logger, stage
from tasks.data.prompts import chat, question_of


def judge_prompts(examples: list[Example], generations: list[Generation], verdicts: list[Verdict],
                  template: str, system_prompt: str | None) -> list[Example]:
    """One yes/no prompt per answer that the judge's first step defers to the LLM."""
    by_id = {e.id: e for e in examples}
    texts = {g.example_id: g.text for g in generations}
    out = []
    for v in verdicts:
        judge = get_judge(v.judge)
        if not getattr(judge, "defers", lambda _v: False)(v):
            continue
        ex = by_id[v.example_id]
        answer = texts[v.example_id].strip()  # {candidate} in the QA judge's prompt, {answer} in a rubric's
        prompt = template.format(question=question_of(ex), answers="; ".join(aliases(ex)), candidate=answer,
                                 answer=answer, gold=ex.gold)
        out.append(Example(id=ex.id, source=f"{ex.source}:judge", prompt_messages=chat(system_prompt, prompt),
                           gold="yes"))
    return out


@stage("llm_judge_prompts", version="1", outputs=("examples.jsonl",))
def llm_judge_prompts(out: Path, examples: Artifact, generations: Artifact, verdicts: Artifact, template: str,
                      system_prompt: str | None) -> Artifact:
    """Yes/no prompts for the answers the judge's first step deferred; writes `examples.jsonl`."""
    prompts = judge_prompts(read_jsonl(Path(examples.path), Example), read_jsonl(Path(generations.path), Generation),
                            read_jsonl(Path(verdicts.path), Verdict), template, system_prompt)
    run_logger().info("%d answers go to the LLM judge", len(prompts))
    return artifact_for(write_jsonl(out / "examples.jsonl", prompts), n=len(prompts))
