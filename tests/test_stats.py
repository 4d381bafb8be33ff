"""Bootstrap intervals (stats.py) and the sweep's paired marks: the intervals have the width
the binomial arithmetic says they should, and a paired difference "holds" only when it is
more than question-sampling noise."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rler_eval import stats


def test_interval_width_matches_the_binomial_standard_error():
    for n in (40, 400):
        scores = [1.0] * (n // 2) + [0.0] * (n // 2)
        ci = stats.bootstrap_ci(scores)
        half = 1.96 * math.sqrt(0.25 / n)  # normal approximation of the 95 % interval
        assert ci.value == 0.5 and ci.n == n
        assert abs((ci.high - ci.low) / 2 - half) < 0.25 * half
    # 40 questions: one question is 2.5 points, and the interval is far wider than that
    ci40 = stats.bootstrap_ci([1.0] * 20 + [0.0] * 20)
    assert ci40.high - ci40.low > 0.25
    assert ci40.format() .startswith("50.0 [")


@given(st.lists(st.sampled_from([0.0, 1.0, 0.5]), min_size=1, max_size=60))
@settings(max_examples=30, deadline=None)
def test_interval_brackets_the_mean(scores):
    ci = stats.bootstrap_ci(scores)
    assert ci.low - 1e-12 <= ci.value <= ci.high + 1e-12
    assert 0.0 <= ci.low and ci.high <= 1.0


def test_empty_is_not_a_number_and_says_so():
    ci = stats.bootstrap_ci([])
    assert ci.n == 0 and math.isnan(ci.value) and ci.format() == "n/a"


def test_paired_difference_holds_only_beyond_noise():
    rng = np.random.default_rng(1)
    base = rng.integers(0, 2, 200).astype(float)
    same = stats.paired_bootstrap(base, base)
    assert same.diff == 0 and not same.holds
    better = base.copy()
    better[np.flatnonzero(base == 0)[:40]] = 1.0  # 40 more questions right, none lost
    d = stats.paired_bootstrap(better, base)
    assert d.holds and d.low > 0 and abs(d.diff - 40 / 200) < 1e-12
    one = base.copy()
    one[np.flatnonzero(base == 0)[0]] = 1.0  # a single question: not a difference that holds
    assert not stats.paired_bootstrap(one, base).holds


def test_pairing_is_narrower_than_two_independent_intervals():
    rng = np.random.default_rng(2)
    a = rng.integers(0, 2, 300).astype(float)
    b = a.copy()
    flip = rng.choice(300, 20, replace=False)
    b[flip] = 1 - b[flip]  # the two strategies agree on most questions
    d = stats.paired_bootstrap(a, b)
    ia, ib = stats.bootstrap_ci(a), stats.bootstrap_ci(b)
    assert d.high - d.low < 0.6 * ((ia.high - ia.low) + (ib.high - ib.low)) / 2


def test_paired_needs_the_same_questions():
    with pytest.raises(ValueError, match="same questions"):
        stats.paired_bootstrap([1.0, 0.0], [1.0])
    a, b, ids = stats.paired_scores({"q1": 1.0, "q2": 0.0, "q3": 1.0}, {"q2": 1.0, "q3": 1.0, "q4": 0.0})
    assert ids == ["q2", "q3"] and a == [0.0, 1.0] and b == [1.0, 1.0]


def test_mean_over_tasks_resamples_each_task():
    t1 = stats.bootstrap_ci([1.0] * 30 + [0.0] * 10)
    t2 = stats.bootstrap_ci([1.0] * 5 + [0.0] * 15)
    m = stats.mean_of([t1, t2])
    assert m.value == pytest.approx((0.75 + 0.25) / 2) and m.n == 60
    assert m.low < m.value < m.high
    assert m.high - m.low < max(t1.high - t1.low, t2.high - t2.low)


def test_accuracy_interval_uses_the_benchmark_aggregate():
    class MacroBench:  # like VSI-Bench: the unweighted mean over question types
        @staticmethod
        def aggregate(rows, card=None):
            groups = {}
            for r in rows:
                groups.setdefault(r["category"]["t"], []).append(r["score"])
            return {"accuracy": float(np.mean([np.mean(v) for v in groups.values()]))}

    rows = [{"score": 1.0, "category": {"t": "a"}}] * 30 + [{"score": 0.0, "category": {"t": "b"}}] * 10
    ci = stats.accuracy_interval(rows, None, MacroBench)
    assert ci.value == pytest.approx(0.5)  # the macro mean, not the plain mean 0.75
    assert ci.n == 40 and ci.low <= 0.5 <= ci.high


def test_sweep_marks_paired_differences():
    from rler_eval.sweep import add_paired_marks, baseline_of

    ids = [f"q{i}" for i in range(100)]
    greedy = {i: float(k % 2) for k, i in enumerate(ids)}
    much_better = {i: 1.0 if k < 90 else greedy[i] for k, i in enumerate(ids)}
    one_better = {**greedy, "q0": 1.0}
    rows = [{"run": "r", "setting": "greedy", "_scores": greedy},
            {"run": "r", "setting": "rler@4", "_scores": much_better},
            {"run": "r", "setting": "majority@2", "_scores": one_better},
            {"run": "r", "setting": "best_of@8"}]  # needs more candidates than recorded: no scores
    add_paired_marks(rows, lambda label: "greedy")
    by = {r["setting"]: r for r in rows}
    assert by["greedy"]["vs"] == "" and by["greedy"]["ci95"].startswith("50.0 [")
    assert by["rler@4"]["vs"] == "greedy" and by["rler@4"]["holds"] == "yes"
    assert by["rler@4"]["diff_vs"].startswith("+45.0 [")
    assert by["majority@2"]["holds"] == "no" and by["majority@2"]["diff_vs"].startswith("+1.0 [")
    assert by["best_of@8"]["ci95"] == "" and by["best_of@8"]["holds"] == ""
    assert all("_scores" not in r for r in rows)
    assert baseline_of("rler@8 -E") == "rler@8 none" and baseline_of("rler -C") == "rler none"
