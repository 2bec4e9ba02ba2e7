"""Target strategies and the paraphrase guard: the choice S3FT is about."""
import pytest

from tasks.judge import judge_generations
from tasks.core.records import Example, Generation, Verdict
from tasks.methods.evidence import Evidence
from tasks.methods.strategies import build_targets, get_strategy, source_counts

EX = Example(id="e", source="gsm8k", prompt_messages=[{"role": "user", "content": "2+2?"}], gold="2 + 2 = 4\n#### 4")


def _v(outcome):
    return Verdict(example_id="e", outcome=outcome, judge="math", judge_version="1")


def _g(text):
    return Generation(example_id="e", model_ref="m", text=text)


def _choose(arm, **kw):
    t = build_targets(get_strategy(arm), [Evidence(example=EX, **kw)])[0]
    return t.messages[-1]["content"], t.source


def test_s3ft_prefers_own_then_paraphrase_then_gold():
    assert _choose("s3ft", own=_g("own 4"), own_verdict=_v("correct")) == ("own 4", "self")
    assert _choose("s3ft", own=_g("own 5"), own_verdict=_v("incorrect"), paraphrase=_g("para 4"),
                   paraphrase_verdict=_v("correct")) == ("para 4", "paraphrase")
    assert _choose("s3ft", own=_g("own 5"), own_verdict=_v("incorrect"), paraphrase=_g("para 5"),
                   paraphrase_verdict=_v("incorrect")) == (EX.gold, "gold")
    # a judge error is never taken as correct
    assert _choose("s3ft", own=_g("own 4"), own_verdict=_v("error")) == (EX.gold, "gold")


def test_sft_always_trains_on_gold_and_paraphrases_nothing():
    assert _choose("sft", own=_g("own 4"), own_verdict=_v("correct")) == (EX.gold, "gold")
    assert not get_strategy("sft").paraphrase_when(Evidence(example=EX))


def test_s3ft_paraphrases_only_wrong_answers():
    s = get_strategy("s3ft")
    assert s.paraphrase_when(Evidence(example=EX, own_verdict=_v("incorrect")))
    assert not s.paraphrase_when(Evidence(example=EX, own_verdict=_v("correct")))


def test_targets_keep_the_prompt_and_count_sources():
    targets = build_targets(get_strategy("s3ft"), [Evidence(example=EX, own=_g("4"), own_verdict=_v("correct"))])
    assert targets[0].messages[:-1] == EX.prompt_messages and targets[0].messages[-1]["role"] == "assistant"
    assert source_counts(targets) == {"self": 1, "paraphrase": 0, "gold": 0}


def test_bare_answer_paraphrase_is_rejected_as_too_short():
    long_gold = EX.model_copy(update={"gold": "Tom has two apples. Ann gives him two more apples, so he now has 2 + 2 = 4 apples in total.\n#### 4"})
    verdicts = judge_generations([long_gold], [_g("The answer is: 4")], "math", min_length_ratio=0.3)
    assert verdicts[0].outcome == "incorrect" and verdicts[0].reason.startswith("too short")
    assert judge_generations([long_gold], [_g("The answer is: 4")], "math")[0].outcome == "correct"


def test_judge_crash_is_an_error_not_incorrect():
    broken = EX.model_copy(update={"gold": "no number"})  # gold_answer raises inside the judge
    v = judge_generations([broken], [_g("The answer is 4")], "math")[0]
    assert v.outcome == "error" and "ValueError" in v.reason


def test_truncated_answer_is_incorrect_even_if_its_last_number_matches():
    cut = Generation(example_id="e", model_ref="m", text="2 + 2 = 4, and then 4", finish_reason="length", n_tokens=9)
    v = judge_generations([EX], [cut], "math", reject_truncated=True)[0]
    assert (v.outcome, v.reason) == ("incorrect", "truncated: hit the 9-token cap before finishing")
    assert judge_generations([EX], [cut], "math")[0].outcome == "correct"  # the rule is a setting
    done = cut.model_copy(update={"finish_reason": "stop"})
    assert judge_generations([EX], [done], "math", reject_truncated=True)[0].outcome == "correct"
    looped = cut.model_copy(update={"finish_reason": "repetition"})  # generation.repetition_stop ended it
    v = judge_generations([EX], [looped], "math", reject_truncated=True)[0]
    assert (v.outcome, v.reason) == ("incorrect", "unfinished: stopped in a loop after 9 tokens")


def test_sdft_paraphrases_every_answer_and_ignores_the_own_one():
    s = get_strategy("sdft")
    assert not s.needs_generation
    assert s.paraphrase_when(Evidence(example=EX)) and s.paraphrase_when(Evidence(example=EX, own_verdict=_v("correct")))
    # even a correct own answer is not a target: SDFT trains on the (judged) rewrite of gold
    assert _choose("sdft", own=_g("own 4"), own_verdict=_v("correct"), paraphrase=_g("para 4"),
                   paraphrase_verdict=_v("correct")) == ("para 4", "paraphrase")
    assert _choose("sdft", paraphrase=_g("para 5"), paraphrase_verdict=_v("incorrect")) == (EX.gold, "gold")


# --- the methods over k samples, and ssr, on constructed evidence -------------------------------------------
from tasks.core.method_settings import RftSettings  # noqa: E402
from tasks.methods.evidence import Judged  # noqa: E402
from tasks.methods.sampled import dedupe_key, equations  # noqa: E402
from tasks.methods.strategies import target_counts  # noqa: E402


def _s(j, text, outcome):
    return Judged(Generation(example_id=f"e#s{j}", model_ref="m", text=text), _v(outcome))


def _all(arm, settings=None, **kw):
    return [(t.messages[-1]["content"], t.source)
            for t in build_targets(get_strategy(arm), [Evidence(example=EX, **kw)], settings)]


def test_ssr_keeps_correct_own_answers_else_gold_and_never_paraphrases():
    assert _all("ssr", own=_g("own 4"), own_verdict=_v("correct")) == [("own 4", "self")]
    wrong = dict(own=_g("own 5"), own_verdict=_v("incorrect"), paraphrase=_g("para 4"), paraphrase_verdict=_v("correct"))
    assert _all("ssr", **wrong) == [(EX.gold, "gold")]
    assert _all("ssr") == [(EX.gold, "gold")]  # no own answer at all
    assert not get_strategy("ssr").paraphrase_when(Evidence(example=EX, own_verdict=_v("incorrect")))


def test_rft_trains_on_distinct_correct_samples_and_drops_or_falls_back():
    samples = (_s(0, "2 + 2 = 4. The answer is 4", "correct"), _s(1, "The answer is 5", "incorrect"),
               _s(2, "2+2 = 4.  the answer is 4!", "correct"), _s(3, "Two and two: 2 + 2 = 4, so 4", "correct"),
               _s(4, "4", "error"))
    text = RftSettings(dedupe="text")
    assert _all("rft", text, samples=samples) == [(samples[0].answer.text, "self"), (samples[3].answer.text, "self")]
    eqs = RftSettings(dedupe="equations")  # the same equation: one target
    assert _all("rft", eqs, samples=samples) == [(samples[0].answer.text, "self")]
    none = (_s(0, "5", "incorrect"), _s(1, "4", "error"))
    assert _all("rft", RftSettings(fallback="drop"), samples=none) == []
    assert _all("rft", RftSettings(fallback="gold"), samples=none) == [(EX.gold, "gold")]
    made = build_targets(get_strategy("rft"), [Evidence(example=EX, samples=samples), Evidence(example=EX)], text)
    assert target_counts(made, 2) == {"self": 2, "paraphrase": 0, "gold": 0, "dropped": 1, "n": 2}


def test_equations_follow_calculator_annotations_else_written_equations():
    assert equations("He pays 3*4=<<3*4=12>>12 dollars, then <<12+1=13>>13") == ("3*4=12", "12+1=13")
    assert equations("So 1,200 + $300 = $1,500 in all") == ("1200+300=1500",)
    assert equations("no arithmetic here") == ()
    assert dedupe_key("No arithmetic, here!", "equations") == dedupe_key("no arithmetic here", "text")


def test_s3ft_k_keeps_the_most_familiar_correct_answer():
    samples = (_s(0, "sample a 4", "correct"), _s(1, "sample b 5", "incorrect"), _s(2, "sample c 4", "correct"))
    familiar = {"own 4": -1.2, "sample a 4": -0.9, "sample c 4": -0.4, "sample b 5": 0.0}
    assert _all("s3ft_k", own=_g("own 4"), own_verdict=_v("correct"), samples=samples,
                familiarity=familiar) == [("sample c 4", "self")]
    # the greedy answer wins when it is the most familiar; a wrong sample never does
    assert _all("s3ft_k", own=_g("own 4"), own_verdict=_v("correct"), samples=samples,
                familiarity={**familiar, "own 4": -0.1}) == [("own 4", "self")]
    # one correct answer needs no familiarity; several without it mean the inputs do not belong together
    assert _all("s3ft_k", own=_g("own 5"), own_verdict=_v("incorrect"), samples=samples[:2]) == [("sample a 4", "self")]
    with pytest.raises(KeyError, match="no familiarity"):
        _all("s3ft_k", own=_g("own 4"), own_verdict=_v("correct"), samples=samples)


def test_s3ft_k_tries_paraphrase_attempts_when_no_answer_is_correct():
    wrong = dict(own=_g("own 5"), own_verdict=_v("incorrect"), samples=(_s(0, "5", "incorrect"),))
    s = get_strategy("s3ft_k")
    assert s.paraphrase_when(Evidence(example=EX, **wrong)) and s.paraphrase_attempts
    assert not s.paraphrase_when(Evidence(example=EX, own_verdict=_v("incorrect"), samples=(_s(0, "4", "correct"),)))
    attempts = (_s(0, "para 5", "incorrect"), _s(1, "para 4", "correct"), _s(2, "para 4 again", "correct"))
    assert _all("s3ft_k", attempts=attempts, **wrong) == [("para 4", "paraphrase")]
    assert _all("s3ft_k", attempts=attempts[:1], **wrong) == [(EX.gold, "gold")]


def test_collect_evidence_groups_samples_by_question_in_order(tmp_path):
    from tasks.core.records import artifact_for, write_jsonl
    from tasks.methods.evidence import collect_evidence

    other = EX.model_copy(update={"id": "f"})
    ex = artifact_for(write_jsonl(tmp_path / "ex.jsonl", [EX, other]))
    gens = [Generation(example_id=f"{i}#s{j}", model_ref="m", text=f"{i}{j}") for i in ("e", "f") for j in range(2)]
    verdicts = [Verdict(example_id=g.example_id, outcome="correct" if g.text.endswith("1") else "incorrect",
                        judge="math", judge_version="1") for g in gens]
    files = {"samples": artifact_for(write_jsonl(tmp_path / "g.jsonl", gens)),
             "sample_verdicts": artifact_for(write_jsonl(tmp_path / "v.jsonl", verdicts))}
    ev = collect_evidence(ex, files)
    assert [[(s.answer.text, s.verdict.outcome) for s in e.samples] for e in ev] == [
        [("e0", "incorrect"), ("e1", "correct")], [("f0", "incorrect"), ("f1", "correct")]]
    with pytest.raises(KeyError, match="unknown evidence"):
        collect_evidence(ex, {"sample": files["samples"]})
