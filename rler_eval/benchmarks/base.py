"""The benchmark contract and its defaults.

Why defaults: most benchmarks are multiple choice scored by exact letter with
per-category accuracy. An adapter only writes what its official protocol does
differently (its reader, its extraction quirks, its aggregate).
"""

from __future__ import annotations

from collections import defaultdict

from rler_eval import evidence
from rler_eval.errors import InputError
from rler_eval.prompt import build_prompt  # noqa: F401  (default prompt builder)
from rler_eval.tasks import TaskCard
from rler_eval.types import Sample


def doc_to_sample(doc: dict, card: TaskCard, index: int = 0) -> Sample:
    raise InputError(f"task {card.name}: this benchmark cannot score single docs")


def extract(sample: Sample, response: str | None) -> str | None:
    """The answer in a response: the <answer> span when present, else the whole text."""
    ev = evidence.parse(response or "", answer_type=sample.answer_type, options=sample.options)
    return ev.answer


def score(sample: Sample, response: str | None) -> dict:
    """Exact match of the normalised answer; numbers compare as floats."""
    got = extract(sample, response)
    if got is None:
        return {"score": 0.0, "extracted": None}
    if sample.answer_type == "number":
        gold = evidence.parse_number(sample.answer)
        ok = gold is not None and float(got) == gold
    elif sample.answer_type == "text":
        ok = got.strip().lower() == sample.answer.strip().lower()
    else:
        ok = got == sample.answer
    return {"score": float(ok), "extracted": got}


def aggregate(rows: list[dict], card: TaskCard | None = None) -> dict:
    """Accuracy over all rows plus accuracy per value of every category key.

    Each row has "score" (None for error records, which count as wrong) and "category".
    """
    scores = [r.get("score") or 0.0 for r in rows]
    out = {"accuracy": mean(scores), "n": len(rows)}
    breakdown: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for r in rows:
        for key, value in (r.get("category") or {}).items():
            values = value if isinstance(value, list) else [value]
            for v in values:
                breakdown[key][str(v)].append(r.get("score") or 0.0)
    for key, groups in breakdown.items():
        out[f"by_{key}"] = {v: mean(s) for v, s in sorted(groups.items())}
    return out


def mean(xs: list[float]) -> float:
    return float(sum(xs) / len(xs)) if xs else 0.0
