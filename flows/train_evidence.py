"""Steps 1-4 of the DAG: what the base model makes of the train split, for every arm's strategy.

    greedy answers + judge            (arms that keep own answers: s3ft, ssr, s3ft_k)
    k samples (one request, n=k) + judge, each sample on its own   (rft, s3ft_k)
    paraphrases of gold + judge, per distinct set of examples an arm asks for (s3ft, sdft; k attempts: s3ft_k)
    familiarity of the correct answers where an arm chooses among several (s3ft_k)

Each part runs only when a configured arm needs it, and an arm's targets read only the parts its strategy
uses, so adding an arm recomputes nothing another arm made.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from flows.answering import Model, answer_and_judge
from flows.results import Answers
from flows.runner import StageRunner
from tasks.answer_familiarity import answer_familiarity
from tasks.core.config import ExperimentConfig
from tasks.core.records import Artifact
from tasks.engines.backends import release_backends
from tasks.methods.evidence import Evidence, collect_evidence
from tasks.methods.strategies import Strategy, get_strategy, paraphrase_ids
from tasks.paraphrase_prompts import paraphrase_prompts


def _files(answers: Answers | None, name: str, verdicts: str) -> dict[str, Artifact]:
    return {} if answers is None else {name: answers.generations, verdicts: answers.verdicts}


@dataclass(frozen=True)
class TrainEvidence:
    """The train split and what the base model made of it (None where no arm needed it)."""

    examples: Artifact
    own: Answers | None = None
    samples: Answers | None = None
    familiarity: Artifact | None = None
    paraphrases: dict[str, Answers] = field(default_factory=dict)
    """Per arm that paraphrases: its paraphrases (k attempts per example for s3ft_k) and their verdicts."""

    def files(self, arm: str) -> dict[str, Artifact]:
        """The evidence one arm's targets are built from: only the parts its strategy reads."""
        s = get_strategy(arm)
        out = _files(self.own, "own", "own_verdicts") if s.needs_generation else {}
        if s.needs_samples:
            out |= _files(self.samples, "samples", "sample_verdicts")
        if s.needs_familiarity and self.familiarity is not None:
            out["familiarity"] = self.familiarity
        para = ("attempts", "attempt_verdicts") if s.paraphrase_attempts else ("paraphrases", "paraphrase_verdicts")
        return out | _files(self.paraphrases.get(arm), *para)


def paraphrase(run: StageRunner, cfg: ExperimentConfig, arm: str, base: Model, examples: Artifact, ids: list[str],
               judge_model: Model | None, attempts: bool) -> Answers:
    """The base model restates the gold answers of `ids` (k sampled attempts each when `attempts`), judged."""
    prompts = run(f"paraphrase_prompts:{arm}", paraphrase_prompts, examples=examples, example_ids=ids,
                  template=cfg.paraphrase.prompt, system_prompt=cfg.data.system_prompt)
    return answer_and_judge(run, cfg, f"paraphrase:{arm}", base, prompts, cfg.paraphrase.max_new_tokens, judge_model,
                            cfg.paraphrase.min_length_ratio, samples=cfg.generation.samples if attempts else 1)


def paraphrase_arms(run: StageRunner, cfg: ExperimentConfig, base: Model, examples: Artifact,
                    evidence: list[Evidence], judge_model: Model | None,
                    strategies: dict[str, Strategy]) -> dict[str, Answers]:
    """Each paraphrasing arm's paraphrases; arms that ask for the same examples the same way share them."""
    made: dict[tuple, Answers] = {}
    out: dict[str, Answers] = {}
    for arm, s in strategies.items():
        ids = paraphrase_ids(arm, evidence)
        if not ids:
            continue
        group = (tuple(ids), s.paraphrase_attempts)
        if group not in made:
            made[group] = paraphrase(run, cfg, arm, base, examples, ids, judge_model, s.paraphrase_attempts)
        out[arm] = made[group]
    return out


def answer_train_split(run: StageRunner, cfg: ExperimentConfig, base: Model, examples: Artifact,
                       judge_model: Model | None) -> TrainEvidence:
    """Steps 1-4: the base model answers (greedy, and k samples), is judged, and paraphrases gold where a
    strategy asks for it; the familiarity of correct answers where a strategy chooses among them."""
    strategies = {a: get_strategy(a) for a in cfg.trained_arms()}
    own = samples = familiarity = None
    if any(s.needs_generation for s in strategies.values()):
        own = answer_and_judge(run, cfg, "train", base, examples, cfg.generation.max_new_tokens, judge_model)
    if any(s.needs_samples for s in strategies.values()):
        # "samples:train", not "train:samples": Prefect's console renders ":train:" as an emoji
        samples = answer_and_judge(run, cfg, "samples:train", base, examples, cfg.generation.max_new_tokens,
                                   judge_model, samples=cfg.generation.samples)
    answers = _files(own, "own", "own_verdicts") | _files(samples, "samples", "sample_verdicts")
    paraphrases = paraphrase_arms(run, cfg, base, examples, collect_evidence(examples, answers), judge_model,
                                  strategies)
    if any(s.needs_familiarity for s in strategies.values()):
        release_backends()  # the scoring model replaces the generation engine
        familiarity = run("answer_familiarity", answer_familiarity, model=base.folder, examples=examples,
                          answers=answers)
    return TrainEvidence(examples, own, samples, familiarity, paraphrases)
