"""Target strategies and the paraphrase guard: the choice S3FT is about."""
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
