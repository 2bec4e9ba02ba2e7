"""Stage `paraphrase_prompts`: the base model is asked to restate the gold answer in its own words.

Which examples get one is the target strategies' business (S3FT: the wrongly answered ones). The
prompts are ordinary Examples (same id, gold and meta as the original), so the generation and
judging stages serve paraphrases unchanged and a paraphrase is judged exactly like an answer.
"""
from __future__ import annotations

from pathlib import Path

from tasks.core.records import Artifact, Example, artifact_for, read_jsonl, write_jsonl
from tasks.core.stage import run_logger, stage
from tasks.data.prompts import chat, question_text


def paraphrase_example(example: Example, template: str, system_prompt: str | None) -> Example:
    prompt = template.format(question=question_text(example), gold=example.gold)
    return example.model_copy(update={"prompt_messages": chat(system_prompt, prompt)})


@stage("paraphrase_prompts", version="1", outputs=("examples.jsonl",))
def paraphrase_prompts(out: Path, examples: Artifact, example_ids: list[str], template: str,
                       system_prompt: str | None) -> Artifact:
    """Write paraphrase prompts for the chosen examples; writes `examples.jsonl`."""
    chosen = set(example_ids)
    prompts = [paraphrase_example(e, template, system_prompt)
               for e in read_jsonl(Path(examples.path), Example) if e.id in chosen]
    run_logger().info("%d paraphrase prompts", len(prompts))
    return artifact_for(write_jsonl(out / "examples.jsonl", prompts), examples=len(prompts))
