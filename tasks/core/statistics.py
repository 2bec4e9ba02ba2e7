"""Statistics over items: bootstrap CIs of means and of paired differences, and McNemar's exact test.

Two arms scored on the same items differ mostly where a few items flip; an unpaired stderr treats every
item's noise as independent and overstates the uncertainty of the difference. Every interval here
resamples items (with replacement, the same resample for both sides), so it is the CI of the paired
difference. Deterministic: the resampling is seeded.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

N_BOOT = 10_000
LEVEL = 0.95


@dataclass(frozen=True)
class Interval:
    """A mean over items and its percentile-bootstrap CI."""

    estimate: float
    low: float
    high: float
    n: int

    def fmt(self, scale: float = 1.0, digits: int = 1) -> str:
        """`+1.2 [-0.4, +2.8]` (scaled, e.g. x100 for points)."""
        if self.n == 0 or math.isnan(self.estimate):
            return "n/a"
        e, lo, hi = (round(scale * v, digits) + 0.0 for v in (self.estimate, self.low, self.high))  # no "-0.0"
        return f"{e:+.{digits}f} [{lo:+.{digits}f}, {hi:+.{digits}f}]"

    def excludes_zero(self) -> bool:
        return self.n > 0 and (self.low > 0 or self.high < 0)


def _resampled_means(x, rng, n_boot: int):
    """`n_boot` means of `x` resampled with replacement (in chunks: bounded memory)."""
    import numpy as np

    means = np.empty(n_boot)
    for start in range(0, n_boot, 1000):
        stop = min(n_boot, start + 1000)
        means[start:stop] = x[rng.integers(0, x.size, size=(stop - start, x.size))].mean(axis=1)
    return means


def _interval(estimate: float, replicates, n: int, level: float) -> Interval:
    import numpy as np

    tail = (1 - level) / 2
    low, high = np.quantile(replicates, [tail, 1 - tail])
    return Interval(float(estimate), float(low), float(high), n)


def bootstrap_mean(values: Sequence[float], seed: int = 0, n_boot: int = N_BOOT, level: float = LEVEL) -> Interval:
    """The mean of per-item values with a percentile-bootstrap CI over items."""
    import numpy as np

    x = np.asarray(values, dtype=np.float64)
    if x.size == 0:
        return Interval(float("nan"), float("nan"), float("nan"), 0)
    return _interval(x.mean(), _resampled_means(x, np.random.default_rng(seed), n_boot), int(x.size), level)


def _differences(a: dict, b: dict) -> list[float]:
    return [b[i] - a[i] for i in sorted(set(a) & set(b), key=str)]


def paired_average(pairs: list[tuple[dict, dict]], seed: int = 0, n_boot: int = N_BOOT,
                   level: float = LEVEL) -> Interval:
    """The mean over several item sets (benchmarks) of each set's paired difference b - a. Every bootstrap
    replicate resamples each set's items on its own, so no set outweighs another, except that sets scored on
    the very same items (TruthfulQA MC1 and MC2) share one resample: they are not independent evidence.
    `n` counts the distinct items."""
    import numpy as np

    groups: dict[tuple, list] = {}
    for a, b in pairs:
        keys = tuple(sorted(set(a) & set(b), key=str))
        if keys:
            groups.setdefault(keys, []).append(np.asarray([b[k] - a[k] for k in keys], dtype=np.float64))
    if not groups:
        return Interval(float("nan"), float("nan"), float("nan"), 0)
    rng = np.random.default_rng(seed)
    total = np.zeros(n_boot)
    for keys, diffs in groups.items():
        for start in range(0, n_boot, 1000):
            stop = min(n_boot, start + 1000)
            idx = rng.integers(0, len(keys), size=(stop - start, len(keys)))
            total[start:stop] += sum(d[idx].mean(axis=1) for d in diffs)
    count = sum(len(d) for d in groups.values())
    estimate = sum(d.mean() for ds in groups.values() for d in ds) / count
    return _interval(estimate, total / count, sum(len(k) for k in groups), level)


def paired_difference(a: dict, b: dict, seed: int = 0) -> Interval:
    """Mean of b[item] - a[item] over the items both have, with its paired-bootstrap CI."""
    return bootstrap_mean(_differences(a, b), seed)


def mcnemar_exact(a: dict, b: dict) -> float:
    """Two-sided exact McNemar p for binary scores (1 = correct) of the same items: a binomial(n, 1/2)
    test on the discordant pairs; 1.0 when no item changed."""
    items = set(a) & set(b)
    only_a = sum(1 for i in items if a[i] >= 0.5 > b[i])
    only_b = sum(1 for i in items if b[i] >= 0.5 > a[i])
    n = only_a + only_b
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, k) for k in range(min(only_a, only_b) + 1)) / 2 ** n
    return min(1.0, 2 * tail)
