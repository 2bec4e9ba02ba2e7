"""Benchmarks score each context once (tasks/engines/shared_context.py): the same log-probabilities and greedy
flags as lm-eval's own `hf` model on the same requests, grouped and batched in every way that matters."""
import pytest

from tasks.engines.shared_context import batches, context_groups, row_chunks


def test_requests_group_by_context_and_batches_respect_both_limits():
    reqs = [(("a", "x"), [1, 2, 3], [4]), (("a", "y"), [1, 2, 3], [5, 6]), (("b", "x"), [7], [4]),
            (("c", "x"), [1, 2], [9] * 10)]
    groups, too_long = context_groups(reqs, max_length=8)
    assert groups == {(1, 2, 3): [0, 1], (7,): [2]} and too_long == [3]  # 2 + 10 tokens > 8 + 1
    many = {(i,) * (i + 1): [i, 100 + i, 200 + i] for i in range(5)}  # contexts of 1..5 tokens, 3 rows each
    assert batches(many, budget=8, rows=100) == [[(4,) * 5], [(3,) * 4, (2,) * 3], [(1,) * 2, (0,)]]
    assert batches(many, budget=100, rows=5) == [[(4,) * 5], [(3,) * 4], [(2,) * 3], [(1,) * 2], [(0,)]]


def test_continuations_chunk_by_length_with_little_padding():
    lengths = [3, 40, 4, 38, 0, 4, 39]
    chunks = row_chunks(lengths, budget=256)
    assert chunks == [[1, 6, 3], [2, 5, 0], [4]]  # longest first; 40 and 3 never share a pass
    assert row_chunks(lengths, budget=64) == [[1], [6], [3], [2, 5], [0], [4]]  # 2 x 40 > 64 tokens; 2 rows


@pytest.fixture(scope="module")
def models(tiny_model_dir):
    from lm_eval.models.huggingface import HFLM

    from tasks.engines.shared_context import SharedContextHFLM

    kwargs = dict(pretrained=str(tiny_model_dir), dtype="float32", device="cpu", batch_size=3, max_length=64)
    return HFLM(**kwargs), SharedContextHFLM(**kwargs)


def _requests(lm, pairs):
    return [((c, x), *lm._encode_pair(c, x)) for c, x in pairs]


def test_the_same_loglikelihoods_as_lm_eval_hf(models):
    stock, shared = models
    questions = ["Question: what is the capital of France?\nAnswer:", "Q: 2+2?\nA:", "The sky is",
                 "A much longer context that goes on and on about nothing in particular, " * 3 + "so:"]
    answers = [" Paris", " four", " blue and wide", " 4", " B", " yes it is, quite certainly so", " C"]
    pairs = [(q, a) for k, q in enumerate(questions) for a in answers[k:k + 4]]  # 4 choices, lengths 1..8
    pairs.append(("One more: the answer is", " no"))  # a context with a single continuation
    # the greedy token of a context as a continuation, so some greedy flags are True
    first = stock.tok_decode([int(stock._model_call(__import__("torch").tensor(
        [stock.tok_encode(questions[2])]))[0, -1].argmax())])
    pairs.append((questions[2], first))
    reqs = _requests(stock, pairs)
    want = stock._loglikelihood_tokens(reqs, disable_tqdm=True)
    got = shared._loglikelihood_tokens(reqs, disable_tqdm=True)
    assert len(got) == len(want) == len(pairs)
    for (lp, greedy), (lp_want, greedy_want) in zip(got, want):
        assert lp == pytest.approx(lp_want, abs=1e-4)
        assert greedy == greedy_want
    assert any(g for _, g in want)  # the comparison covered a greedy match
    assert len({lp for lp, _ in want}) == len(want)  # and distinct scores, not a constant
    # its work count: each distinct context once, plus every continuation but its last token (from the cache)
    contexts = {tuple(r[1]) for r in reqs}
    assert shared.forward_tokens == sum(map(len, contexts)) + sum(len(r[2]) - 1 for r in reqs)
    assert shared.vocab_rows >= len(contexts) + sum(len(r[2]) - 1 for r in reqs)


def test_a_context_longer_than_the_model_takes_lm_eval_truncation(models):
    stock, shared = models
    long = " ".join(f"word{i}" for i in range(80))
    reqs = _requests(stock, [(long, " end"), (long, " stop"), ("Short:", " end")])
    want = stock._loglikelihood_tokens(reqs, disable_tqdm=True)
    got = shared._loglikelihood_tokens(reqs, disable_tqdm=True)
    assert [g for _, g in got] == [g for _, g in want]
    assert [lp for lp, _ in got] == pytest.approx([lp for lp, _ in want], abs=1e-4)
