"""NQ reading comprehension: the data source, the two-stage QA judge and its labelled agreement set."""
import gzip
import json
from collections import Counter
from pathlib import Path

import pytest

from judges.qa import NO_MATCH, QAJudge, llm_verdict, matched_alias, normalize, parse_yes_no
from flows.judge_check import DEFAULT_CASES, agreement, first_step, load_cases
from tasks.core.verdicts import decided_by_counts
from tasks.judge import judge_generations
from tasks.llm_judge_merge import merge_llm_verdicts
from tasks.llm_judge_prompts import judge_prompts
from tasks.core.records import Example, Generation
from tasks.core.errors import DataError
from tasks.data import read_examples
from tasks.data.nq import nq_example, nq_split_of


def _ex(answers, question="who wrote it") -> Example:
    return Example(id="q", source="nq", prompt_messages=[{"role": "user", "content": f"passage...\n\nQuestion: {question}"}],
                   gold=answers[0], meta={"answers": answers, "question": question})


@pytest.mark.parametrize("text,expected", [
    ("The Beatles!", "beatles"), ("  An  apple, a day ", "apple day"), ("U.S.A.", "usa"), ("Ｐａｒｉｓ", "paris")])
def test_squad_normalization(text, expected):
    assert normalize(text) == expected


@pytest.mark.parametrize("text,hit", [
    ("It was written by George Orwell in 1949.", "George Orwell"),
    ("george   orwell", "George Orwell"),
    ("Orwell", None),                       # a partial name is not an alias
    ("There are 110 players.", None),       # whole words only: 11 is not in 110
    ("There are 11 players.", "11"),
])
def test_alias_match_is_whole_word(text, hit):
    assert matched_alias(text, ["George Orwell", "11"]) == hit


@pytest.mark.parametrize("reply,said", [
    ("Yes.", "yes"), ("no", "no"), ("**No**", "no"), ("YES, it is", "yes"),
    ("The student's answer is correct.", "yes"), ("The student's answer is not correct.", "no"),
    ("The answer is wrong", "no"), ("Maybe", None), ("The student said Paris. It is correct", None), ("", None),
    ("Noted, the answer", None), ("The answer is: no", "no"), ("The answer to this question is: Yes.", "yes"),
    ("The student's answer is: \"yes\"", None), ("The answer is: The Astros did not play", None)])
def test_judge_replies_are_parsed_strictly(reply, said):
    assert parse_yes_no(reply) == said


def test_unparseable_judge_output_is_an_error_counted_never_a_guess():
    first = QAJudge().judge(_ex(["Canberra"]), "Sydney is the capital")
    assert first.outcome == "incorrect" and first.reason == NO_MATCH and QAJudge.defers(first)
    decided = [llm_verdict(first, r) for r in ("yes", "No.", "I think the capital is nice")]
    assert [v.outcome for v in decided] == ["correct", "incorrect", "error"]
    assert all(v.decided_by == "llm" for v in decided)
    assert decided[2].reason.startswith("unparseable")
    assert decided_by_counts(decided) == {"by_normalized": 0, "by_llm": 3, "by_precheck": 0, "llm_unparseable": 1}


def test_only_deferred_answers_reach_the_llm_and_only_they_change():
    examples = [_ex(["Canberra"]).model_copy(update={"id": f"e{i}"}) for i in range(4)]
    texts = ["Canberra is the capital.", "", "It is Sydney.", "The capital city of Australia"]
    gens = [Generation(example_id=e.id, model_ref="m", text=t) for e, t in zip(examples, texts)]
    first = judge_generations(examples, gens, "qa")
    assert [v.outcome for v in first] == ["correct", "incorrect", "incorrect", "incorrect"]
    assert [v.reason for v in first][1] == "empty answer"  # empty answers are decided without the LLM
    prompts = judge_prompts(examples, gens, first, "Q: {question} A: {answers} S: {candidate}", None)
    assert [p.id for p in prompts] == ["e2", "e3"]
    assert prompts[1].prompt_messages[-1]["content"] == "Q: who wrote it A: Canberra S: The capital city of Australia"
    replies = [Generation(example_id="e2", model_ref="j", text="No"), Generation(example_id="e3", model_ref="j", text="Yes")]
    final = merge_llm_verdicts(first, replies)
    assert final[:2] == first[:2]
    assert [v.outcome for v in final[2:]] == ["incorrect", "correct"] and all(v.decided_by == "llm" for v in final[2:])


def test_labelled_set_normalized_stage_agreement():
    """The deterministic stage against >= 60 human labels: it may miss paraphrases (the LLM stage's job)
    and accepts hedges that contain an alias (SQuAD-style containment), and makes no other mistake."""
    examples, gens, rows = load_cases(DEFAULT_CASES)
    assert len(rows) >= 60
    kinds = Counter(r["kind"] for r in rows)
    assert {"paraphrase", "partial", "wrong", "hedge", "empty", "non_answer"} <= set(kinds)
    verdicts = first_step(examples, gens)
    result = agreement(verdicts, rows)
    assert result["agreement"] >= 0.75, result
    wrong_kinds = {r["kind"] for v, r in zip(verdicts, rows) if (v.outcome == "correct") != r["label"]}
    assert wrong_kinds <= {"paraphrase", "hedge"}, result["by_kind"]
    missed = [v for v, r in zip(verdicts, rows) if r["label"] and v.outcome != "correct"]
    assert missed and all(QAJudge.defers(v) for v in missed)  # every miss goes on to the LLM judge


def test_nq_mirror_split_is_deterministic_disjoint_and_complete(mirror):
    if not (mirror / "nq" / "nq-open-oracle.jsonl.gz").is_file():
        pytest.skip("no NQ oracle file in the mirror")
    train = read_examples("nq", "train", None, 0, mirror, None)
    test = read_examples("nq", "test", None, 0, mirror, None)
    with gzip.open(mirror / "nq" / "nq-open-oracle.jsonl.gz", "rt") as fh:
        n_rows = sum(1 for line in fh if line.strip())
    assert len(train) + len(test) == n_rows == 2655
    assert 0.15 < len(test) / n_rows < 0.25
    assert not {e.meta["question"] for e in train} & {e.meta["question"] for e in test}
    assert all(nq_split_of(e.meta["question"]) == "test" for e in test)
    sample = read_examples("nq", "test", 5, 3, mirror, None)
    assert sample == read_examples("nq", "test", 5, 3, mirror, None) and len(sample) == 5
    e = test[0]
    assert e.meta["answers"] and e.gold == e.meta["answers"][0]
    assert "Passage (" in e.prompt_messages[-1]["content"] and e.meta["question"].rstrip("?") in e.prompt_messages[-1]["content"]


def test_nq_rows_from_the_hub_shape_and_bad_rows():
    hub_row = {"question": "who wrote 1984", "answers": ["George Orwell"], "title": "1984 (novel)",
               "text": "Nineteen Eighty-Four is a novel by George Orwell."}
    e = nq_example(hub_row, "nq-train-0", "Be brief.")
    assert e.prompt_messages[0] == {"role": "system", "content": "Be brief."}
    assert "Passage (1984 (novel)): Nineteen Eighty-Four" in e.prompt_messages[-1]["content"]
    with pytest.raises(DataError, match="no gold passage"):
        nq_example({"question": "q", "answers": ["a"]}, "nq-train-1", None)
    with pytest.raises(DataError, match="`answers`"):
        nq_example({"question": "q", "answers": [" "], "text": "t"}, "nq-train-2", None)


def test_labelled_cases_file_is_well_formed():
    rows = [json.loads(l) for l in Path(DEFAULT_CASES).read_text().splitlines() if l.strip()]
    assert all(isinstance(r["answers"], list) and r["answers"] and isinstance(r["label"], bool) for r in rows)
    assert sum(r["label"] for r in rows) >= 20 and sum(not r["label"] for r in rows) >= 20
