"""Golden cases for the GSM8K judge: final-number extraction from free text."""
import pytest

from judges import get_judge, judge_names
from judges.math import extract_answer, gold_answer, normalize_number
from tasks.core.records import Example

CASES = [
    ("Natalia sold 48/2 = 24 clips in May.\n#### 72", "72"),
    ("#### 1,234", "1234"),
    ("The answer is: 18", "18"),
    ("The answer is 18.", "18"),
    ("the answer is $18.00", "18"),
    ("So the answer is: -5", "-5"),
    ("The answer is: 3.50", "3.5"),
    ("The answer is: 0.25 hours", "0.25"),
    ("Final answer: 42", "42"),
    ("The final answer is 7 apples.", "7"),
    ("Answer: 1,000,000", "1000000"),
    ("He pays $1,250 in total.", "1250"),
    ("She has 3 cats and 4 dogs, so 7 pets.", "7"),
    ("We get \\boxed{128}.", "128"),
    ("The answer is: **16**", "16"),
    ("First 5 + 6 = 11. The answer is 11. Check: 11 - 6 = 5.", "11"),  # marker beats the last number
    ("#### 72\n\nThe answer is: 70", "72"),  # '####' is the most explicit marker
    ("It costs 18.0 dollars", "18"),
    ("Total: 2,5 is not a number but 25 is", "25"),
    ("The answer is: .5", "0.5"),
    ("No numbers here at all.", None),
    ("", None),
    ("The answer is: 100%", "100"),
    ("It takes 3 hours. The answer is: 3 hours", "3"),
    ("So 12 x 7 = 84\nThe answer is: 84", "84"),
    ("The answer is: 5,000.", "5000"),
    ("He ends with -12 dollars", "-12"),
    ("The answer is:\n\n 9", "9"),
]


@pytest.mark.parametrize("text,expected", CASES)
def test_extract_answer(text, expected):
    assert extract_answer(text) == expected


@pytest.mark.parametrize("raw,expected", [("18.0", "18"), ("$1,000", "1000"), ("-0.50", "-0.5"), ("007", "7"),
                                          ("abc", None)])
def test_normalize_number(raw, expected):
    assert normalize_number(raw) == expected


def _example(gold: str) -> Example:
    return Example(id="x", source="gsm8k", prompt_messages=[{"role": "user", "content": "q"}], gold=gold)


def test_judge_verdicts_keep_reason_and_extraction():
    judge = get_judge("math")
    ok = judge.judge(_example("3 + 4 = 7\n#### 7"), "3 plus 4 is 7. The answer is: 7.0")
    assert (ok.outcome, ok.extracted, ok.judge) == ("correct", "7", "math")
    wrong = judge.judge(_example("#### 7"), "The answer is 8")
    assert wrong.outcome == "incorrect" and wrong.reason == "expected 7"
    empty = judge.judge(_example("#### 7"), "I cannot tell.")
    assert empty.outcome == "incorrect" and empty.extracted is None and "no number" in empty.reason


def test_gold_without_final_number_is_an_error():
    with pytest.raises(ValueError, match="no final number"):
        gold_answer("no number")


def test_registry_knows_math_and_rejects_unknown():
    assert "math" in judge_names()
    with pytest.raises(KeyError, match="unknown judge"):
        get_judge("nope")
