"""The vote: summed weight per answer cluster, with deterministic, meaningful tie-breaks.

Why these tie-breaks: an exact tie is common with small K and equal weights (majority@2,
or any vote without log-probs). Breaking it by the alphabet would lean every even-K vote
towards "A". Instead, a tie goes to the greater summed weight, then the greater summed
confidence C, then the cluster whose first member was drawn earliest: candidate 0 is the
greedy one, the model's own best guess. `Vote.tie_break` records which rule decided.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from rler_eval import evidence
from rler_eval.election.scoring import weighted_median

EPS = 9  # totals are compared rounded to this many decimals


@dataclass
class Vote:
    winner: str | None  # cluster label of the elected answer
    answer: str | None  # the elected answer (a candidate's own answer)
    totals: dict = field(default_factory=dict)  # cluster label -> total weight
    support: dict = field(default_factory=dict)  # cluster label -> number of candidates
    margin: float = 0.0  # (leader - runner-up) / total weight
    ranking: list = field(default_factory=list)  # cluster labels, best first
    note: str | None = None
    tie_break: str | None = None  # None, "confidence" or "first drawn": what separated the top two


def vote(rows: list[dict], answer_type: str, key: str = "weight") -> Vote:
    """Sum `key` per cluster; ties as the module says. All-invalid gives winner None."""
    totals: dict[str, float] = {}
    conf: dict[str, float] = {}
    first: dict[str, int] = {}
    support: Counter = Counter()
    for i, r in enumerate(rows):
        c = r["cluster"]
        if c is not None:
            totals[c] = totals.get(c, 0.0) + float(r[key])
            conf[c] = conf.get(c, 0.0) + float(r.get("C", 0.0))
            first.setdefault(c, i)
            support[c] += 1
    if not totals:
        return Vote(None, None, note="no candidate gave a valid answer")
    note = None
    if sum(totals.values()) <= 0:  # valid answers, all weighing 0: fall back to a plain count
        totals = {c: float(n) for c, n in support.items()}
        note = "all valid candidates weigh 0; fell back to counting"

    def rank(c):
        return (-round(totals[c], EPS), -round(conf[c], EPS), first[c])

    ranking = sorted(totals, key=rank)
    tie = None
    if len(ranking) > 1:
        a, b = rank(ranking[0]), rank(ranking[1])
        tie = None if a[0] != b[0] else ("confidence" if a[1] != b[1] else "first drawn")
    total = sum(totals.values())
    second = totals[ranking[1]] if len(ranking) > 1 else 0.0
    margin = (totals[ranking[0]] - second) / total if total > 0 else 0.0
    return Vote(ranking[0], representative(rows, ranking[0], answer_type, key), totals, dict(support),
                margin, ranking, note, tie)


def representative(rows: list[dict], label: str, answer_type: str, key: str = "weight") -> str:
    """The answer elected for a cluster: weighted median (numbers) or its best-weighted
    member, the earliest drawn on a tie."""
    members = [(i, r) for i, r in enumerate(rows) if r["cluster"] == label]
    if answer_type == "number":
        value = weighted_median([float(r["answer"]) for _, r in members], [float(r[key]) for _, r in members])
        return evidence.format_number(value)
    return min(members, key=lambda ir: (-float(ir[1][key]), ir[0]))[1]["answer"]


def best_member(rows: list[dict], label: str) -> int:
    """Index of the cluster's highest-weighted candidate (earliest drawn on a tie)."""
    members = [i for i, r in enumerate(rows) if r["cluster"] == label]
    return min(members, key=lambda i: (-float(rows[i]["weight"]), i))
