"""Paired statistics on constructed cases, against values computed by hand."""
import math

import pytest

from tasks.core.statistics import Interval, bootstrap_mean, mcnemar_exact, paired_average, paired_difference


def test_mcnemar_exact_matches_the_binomial_by_hand():
    # 3 items right only for a, 1 right only for b: p = 2 * (C(4,0) + C(4,1)) / 2^4 = 0.625
    a = {1: 1, 2: 1, 3: 1, 4: 0, 5: 0, 6: 1}
    b = {1: 0, 2: 0, 3: 0, 4: 0, 5: 1, 6: 1}
    assert mcnemar_exact(a, b) == pytest.approx(0.625)
    # 10 discordant, all one way: p = 2 / 2^10
    assert mcnemar_exact({i: 1 for i in range(10)}, {i: 0 for i in range(10)}) == pytest.approx(2 / 1024)
    assert mcnemar_exact({1: 1, 2: 0}, {1: 1, 2: 0}) == 1.0  # nothing changed
    assert mcnemar_exact({1: 1, 2: 0}, {1: 0, 2: 1}) == 1.0  # one each way: capped at 1


def test_paired_difference_uses_only_common_items_and_pairs_them():
    a = {"x": 0.0, "y": 1.0, "z": 1.0, "only_a": 5.0}
    b = {"x": 1.0, "y": 1.0, "z": 1.0, "only_b": -5.0}
    d = paired_difference(a, b)
    assert (d.estimate, d.n) == (pytest.approx(1 / 3), 3)
    # bootstrap means of the differences {1, 0, 0} are k/3 with k ~ Binomial(3, 1/3): P(k=0) = 8/27 > 2.5 %
    # and P(k=3) = 1/27 > 2.5 %, so the 95 % interval runs from 0 to 1
    assert d.low == 0.0 and d.high == 1.0


def test_equal_differences_have_a_zero_width_interval_and_pairing_removes_shared_noise():
    a = {i: float(i % 7) for i in range(50)}  # large item-to-item spread ...
    b = {i: v + 0.02 for i, v in a.items()}  # ... but every item moved by the same amount
    d = paired_difference(a, b)
    assert d.estimate == pytest.approx(0.02) and d.low == pytest.approx(0.02) and d.high == pytest.approx(0.02)
    unpaired = 1.96 * math.sqrt(2) * (sum((v - 3) ** 2 for v in a.values()) / 49) ** 0.5 / math.sqrt(50)
    assert d.high - d.low < unpaired  # an unpaired stderr would report ±1 where there is no noise at all


def test_bootstrap_of_two_values_covers_both_ends():
    i = bootstrap_mean([0.0, 1.0], seed=1)
    assert i.estimate == 0.5 and i.low == 0.0 and i.high == 1.0 and i.n == 2  # P(0)=P(1)=1/4 > 2.5%


def test_bootstrap_is_deterministic_for_a_seed():
    values = [0.1 * k for k in range(40)]
    assert bootstrap_mean(values, seed=3) == bootstrap_mean(values, seed=3) != bootstrap_mean(values, seed=4)


def test_paired_average_weights_every_set_equally():
    small = ({0: 0.0}, {0: 1.0})  # one item, difference 1
    large = ({i: 0.0 for i in range(100)}, {i: 0.0 for i in range(100)})  # 100 items, difference 0
    avg = paired_average([small, large])
    assert avg.estimate == pytest.approx(0.5) and avg.n == 101 and avg.low == avg.high == pytest.approx(0.5)
    assert math.isnan(paired_average([({1: 1.0}, {2: 1.0})]).estimate)  # no common item


def test_interval_formats_points_and_says_whether_zero_is_excluded():
    assert Interval(0.012, -0.004, 0.028, 100).fmt(100) == "+1.2 [-0.4, +2.8]"
    assert not Interval(0.012, -0.004, 0.028, 100).excludes_zero() and Interval(0.1, 0.05, 0.2, 9).excludes_zero()


def test_sets_scored_on_the_same_items_share_one_resample():
    """TruthfulQA MC1 and MC2 score the same questions: averaging their differences must resample the
    questions once. Here the two differences cancel item by item, so every replicate's average is 0."""
    keys = range(40)
    mc1 = ({k: 0.0 for k in keys}, {k: float(k % 3) for k in keys})
    mc2 = ({k: 0.0 for k in keys}, {k: -float(k % 3) for k in keys})
    joint = paired_average([mc1, mc2])
    assert joint.estimate == pytest.approx(0.0) and joint.low == pytest.approx(0.0) and joint.high == pytest.approx(0.0)
    assert joint.n == 40  # distinct items
    other = ({k + 100: 0.0 for k in keys}, {k + 100: -float(k % 3) for k in keys})  # other items: independent
    independent = paired_average([mc1, other])
    assert independent.low < -0.1 < 0.1 < independent.high
