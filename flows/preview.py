"""`s3ft preview CONFIG [-n 5]`: what a run would train and judge on, before any model is loaded (only its
tokenizer is read): the first rendered prompts with their gold answers, token lengths against the config's
caps, and the judge's verdict on every gold answer of the train split. The judge must accept gold: a wrong
field, template or judge shows up here, in seconds. `s3ft run` on your own data makes the same gold check
first and stops below GOLD_PASS_RATE unless `judge.allow_gold_failures` is set.
"""
from __future__ import annotations

from dataclasses import dataclass

from judges import get_judge
from tasks.core.config import ExperimentConfig
from tasks.core.errors import DataError
from tasks.core.records import Example, Verdict
from tasks.data import read_examples
from tasks.data.custom import read_configured, split_rows

GOLD_PASS_RATE = 0.95


@dataclass(frozen=True)
class GoldCheck:
    passed: int
    total: int
    failures: list[tuple[Example, Verdict]]
    deferred: int = 0
    """Gold answers only a judge model could decide (the `llm` judge): not checked before a run."""

    @property
    def rate(self) -> float:
        checked = self.total - self.deferred
        return self.passed / checked if checked else 1.0


def examples_of(cfg: ExperimentConfig, split: str, size: int | None) -> list[Example]:
    """The examples a run reads for `split` (the same function as the load_examples stage)."""
    if cfg.data.own_data():
        return read_configured(cfg.data, split, size, cfg.data.seed)
    return read_examples(cfg.data.source, split, size, cfg.data.seed, cfg.data.mirror_path(), cfg.data.system_prompt)


def gold_check(cfg: ExperimentConfig, examples: list[Example]) -> GoldCheck:
    """The configured judge on each example's own gold answer."""
    judge = get_judge(cfg.judge.name, cfg.judge.params())
    verdicts = []
    for e in examples:
        try:
            verdicts.append(judge.judge(e, e.gold))
        except Exception as err:  # a gold answer the judge cannot even read is a failed gold answer
            verdicts.append(Verdict(example_id=e.id, outcome="error", reason=f"{err.__class__.__name__}: {err}",
                                    judge=judge.name, judge_version=judge.version))
    defers = getattr(judge, "defers", lambda _v: False)
    failures = [(e, v) for e, v in zip(examples, verdicts) if v.outcome != "correct" and not defers(v)]
    deferred = sum(defers(v) for v in verdicts)
    return GoldCheck(len(examples) - len(failures) - deferred, len(examples), failures, deferred)


def gold_message(cfg: ExperimentConfig, check: GoldCheck, shown: int = 3) -> str:
    """The warning (preview) and error (run, one line) when the judge rejects too many gold answers."""
    rejected = "; ".join(f"{e.id}: gold {e.gold[:40]!r} -> {v.outcome} ({(v.reason or str(v.extracted))[:100]})"
                         for e, v in check.failures[:shown])
    return (f"judge.name: the {cfg.judge.name} judge accepts {check.passed} of {check.total} gold answers of the "
            f"train split ({100 * check.rate:.0f} % < {100 * GOLD_PASS_RATE:.0f} %); rejected: {rejected}. Fix: "
            f"check data.fields.answer, data.prompt and the judge's settings (s3ft preview shows them), or set "
            f"judge.allow_gold_failures")


def check_gold(cfg: ExperimentConfig) -> None:
    """Your own data: stop before any compute when the judge rejects gold (see the module doc)."""
    if not cfg.data.own_data() or cfg.judge.allow_gold_failures:
        return
    check = gold_check(cfg, examples_of(cfg, "train", cfg.data.train_size))
    if check.rate < GOLD_PASS_RATE:
        raise DataError(gold_message(cfg, check))


def _tokenizer(cfg: ExperimentConfig):
    from transformers import AutoTokenizer

    from tasks.engines.models import BUNDLED_PREFIX, bundled_gguf

    ref = cfg.model.ref
    if ref.startswith(BUNDLED_PREFIX):
        gguf = bundled_gguf(ref.removeprefix(BUNDLED_PREFIX))
        return AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    return AutoTokenizer.from_pretrained(ref)


def _lengths(tokenizer, examples: list[Example]) -> tuple[list[int], list[int]]:
    """Prompt tokens (chat template applied) and prompt + gold answer tokens, per example."""
    prompts, whole = [], []
    for e in examples:
        p = tokenizer.apply_chat_template(e.prompt_messages, add_generation_prompt=True, return_dict=True)
        w = tokenizer.apply_chat_template(e.prompt_messages + [{"role": "assistant", "content": e.gold}],
                                          return_dict=True)
        prompts.append(len(p["input_ids"]))
        whole.append(len(w["input_ids"]))
    return prompts, whole


def preview(cfg: ExperimentConfig, n: int = 5) -> str:
    """The preview text (see the module doc)."""
    train = examples_of(cfg, "train", cfg.data.train_size)
    test = examples_of(cfg, "test", cfg.data.test_size)
    tokenizer = _tokenizer(cfg)
    out = [f"data: {cfg.data.source}: {len(train)} train / {len(test)} test examples"]
    if cfg.data.own_data():
        f = cfg.data.fields
        out.append(f"fields: question={f.question!r} answer={f.answer!r} id={f.id!r} options={f.options!r} "
                   f"messages={f.messages!r}; from {split_rows(cfg.data, 'train')[1]}")
    for e in train[:n]:
        rendered = tokenizer.apply_chat_template(e.prompt_messages, add_generation_prompt=True, tokenize=False)
        out += [f"--- {e.id}", rendered.rstrip(), f">>> gold: {e.gold}"]
    prompts, whole = _lengths(tokenizer, train + test)
    room = cfg.vllm.max_model_len - cfg.generation.max_new_tokens
    out.append(f"tokens: prompts max {max(prompts)} mean {sum(prompts) / len(prompts):.0f} (room "
               f"{room} = vllm.max_model_len - generation.max_new_tokens: {sum(p > room for p in prompts)} over); "
               f"prompt + gold max {max(whole)} (training.max_seq_len {cfg.training.max_seq_len}: "
               f"{sum(w > cfg.training.max_seq_len for w in whole)} cut)")
    check = gold_check(cfg, train)
    out.append(f"judge {cfg.judge.name}: accepts {check.passed} of {check.total - check.deferred} gold answers of "
               f"the train split" + (f" ({check.deferred} only its judge model decides: not checked here)"
                                     if check.deferred else ""))
    if check.rate < GOLD_PASS_RATE:
        out.append("WARNING: " + gold_message(cfg, check))
    return "\n".join(out)
