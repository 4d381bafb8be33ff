"""Uncertainty for accuracies: percentile bootstrap intervals, per cell and paired.

Why: an accuracy without its uncertainty misleads. On 40 questions one question moves the
accuracy by 2.5 points, and a 4-question fixture run says almost nothing; the reader must
see that next to the number. The percentile bootstrap needs no distributional assumption
and works for any per-question score (0/1, judge scores in [0, 1]) and for aggregates that
are not plain means (a benchmark's macro average over sub-tasks), by resampling questions.

Paired comparisons resample the *same* questions for both strategies, so the per-question
correlation (most questions are easy or hard for both) is kept and the interval of the
difference is much narrower than two independent intervals would suggest. A difference
"holds" when its 95 % interval excludes zero.

Caveat, stated where it is shown: with all questions right (or all wrong) the percentile
interval collapses to a point; that says nothing about the true accuracy being exactly 1.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np

N_BOOT = 2000
LEVEL = 0.95


@dataclass
class Interval:
    """A point estimate with its percentile bootstrap interval over `n` questions."""

    value: float
    low: float
    high: float
    n: int
    replicates: np.ndarray | None = field(default=None, repr=False)  # the bootstrap statistics

    def format(self, scale: float = 100.0, digits: int = 1) -> str:
        """'45.0 [38.1, 52.3]' (scaled to percent by default); 'n/a' when there is no data."""
        if self.n == 0 or np.isnan(self.value):
            return "n/a"
        f = f"{{:.{digits}f}}"
        v, lo, hi = (f.format(x * scale) for x in (self.value, self.low, self.high))
        return f"{v} [{lo}, {hi}]"

    def to_dict(self) -> dict:
        """JSON-ready: NaN (no data) becomes None."""
        clean = {k: None if np.isnan(v) else round(float(v), 6) for k, v in
                 (("value", self.value), ("low", self.low), ("high", self.high))}
        return {**clean, "n": self.n, "level": LEVEL, "method": "percentile bootstrap over questions"}


@dataclass
class PairedDiff:
    """Accuracy of A minus accuracy of B on the same `n` questions, with its interval."""

    diff: float
    low: float
    high: float
    n: int

    @property
    def holds(self) -> bool:
        """True when the interval excludes zero: the difference is not bootstrap noise."""
        return self.n > 0 and (self.low > 0 or self.high < 0)


def _indices(n: int, n_boot: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, n, size=(n_boot, n))


def _bounds(stats: np.ndarray, level: float) -> tuple[float, float]:
    alpha = (1.0 - level) / 2
    lo, hi = np.quantile(stats, [alpha, 1.0 - alpha])
    return float(lo), float(hi)


def bootstrap_ci(scores: Sequence[float], n_boot: int = N_BOOT, level: float = LEVEL, seed: int = 0) -> Interval:
    """Mean of per-question `scores` with its percentile bootstrap interval."""
    x = np.asarray(scores, dtype=float)
    if x.size == 0:
        return Interval(float("nan"), float("nan"), float("nan"), 0)
    means = x[_indices(x.size, n_boot, seed)].mean(axis=1)
    return Interval(float(x.mean()), *_bounds(means, level), int(x.size), means)


def bootstrap_statistic(items: Sequence, statistic: Callable[[list], float], n_boot: int = N_BOOT,
                        level: float = LEVEL, seed: int = 0) -> Interval:
    """Any statistic of a list of questions (e.g. a benchmark's own aggregate), bootstrapped
    by resampling the questions. Slower than `bootstrap_ci`: one Python call per resample."""
    items = list(items)
    if not items:
        return Interval(float("nan"), float("nan"), float("nan"), 0)
    stats = np.array([statistic([items[i] for i in row]) for row in _indices(len(items), n_boot, seed)])
    return Interval(float(statistic(items)), *_bounds(stats, level), len(items), stats)


def mean_of(intervals: Sequence[Interval], level: float = LEVEL) -> Interval:
    """The unweighted mean over tasks of their values, with an interval from the mean of their
    bootstrap replicates (each task's questions resampled on its own; the tasks are fixed)."""
    if not intervals or any(i.replicates is None or i.n == 0 for i in intervals):
        return Interval(float("nan"), float("nan"), float("nan"), 0)
    reps = np.mean(np.stack([i.replicates for i in intervals]), axis=0)
    return Interval(float(np.mean([i.value for i in intervals])), *_bounds(reps, level),
                    int(sum(i.n for i in intervals)), reps)


def accuracy_interval(records: list[dict], card, bench) -> Interval:
    """The benchmark's own headline accuracy over `records` with its bootstrap interval: a plain
    mean of scores is resampled directly, any other aggregate by re-running `bench.aggregate`."""
    scores = [float(r.get("score") or 0.0) for r in records]
    value = float(bench.aggregate(records, card).get("accuracy", float("nan"))) if records else float("nan")
    if not records or abs(value - float(np.mean(scores))) < 1e-9:
        return bootstrap_ci(scores)
    return bootstrap_statistic(records, lambda rs: float(bench.aggregate(rs, card)["accuracy"]))


def paired_bootstrap(a: Sequence[float], b: Sequence[float], n_boot: int = N_BOOT, level: float = LEVEL,
                     seed: int = 0) -> PairedDiff:
    """mean(a) - mean(b) where a[i] and b[i] score the same question i."""
    x, y = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if x.shape != y.shape:
        raise ValueError(f"paired bootstrap needs scores on the same questions ({x.size} vs {y.size})")
    if x.size == 0:
        return PairedDiff(float("nan"), float("nan"), float("nan"), 0)
    d = x - y
    diffs = d[_indices(d.size, n_boot, seed)].mean(axis=1)
    return PairedDiff(float(d.mean()), *_bounds(diffs, level), int(d.size))


def paired_scores(a: dict, b: dict) -> tuple[list[float], list[float], list[str]]:
    """Align two {question id: score} maps on their shared ids (sorted)."""
    ids = sorted(set(a) & set(b))
    return [a[i] for i in ids], [b[i] for i in ids], ids


def record_scores(records: list[dict]) -> dict[str, float]:
    """{id: score} of a run's records; error records score 0, as the benchmarks count them."""
    return {str(r["id"]): float(r.get("score") or 0.0) for r in records}
