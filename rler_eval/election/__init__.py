"""Answering strategies behind one interface.

A strategy is a function `(sample, source, n_frames, config) -> Prediction`. The runner
and offline replay both call `answer(spec, ...)`; an ablation only swaps the spec:
`greedy`, `majority@K`, `best_of@K`, `rler@K`, `rler`.
"""

from __future__ import annotations

from rler_eval import evidence
from rler_eval.errors import TaskError
from rler_eval.types import Prediction, Sample


def greedy(sample: Sample, source, n_frames: int, config=None) -> Prediction:
    """One greedy candidate; its parsed answer is the prediction."""
    cands = source.draw([0.0])
    ev = evidence.parse(cands[0].text if cands else "", n_frames, sample.answer_type, sample.options)
    return Prediction(answer=ev.answer, candidates=cands, strategy="greedy",
                      scores=[{"answer": ev.answer}],
                      abstain_reason=None if ev.answer is not None else "no valid answer in the greedy candidate",
                      model_calls=source.model_calls, generated_tokens=source.generated_tokens)


STRATEGIES = {"greedy": greedy}


def parse_spec(spec: str) -> tuple[str, int | None]:
    """'majority@8' -> ('majority', 8); 'rler' -> ('rler', None)."""
    name, _, k = spec.partition("@")
    if name not in STRATEGIES:
        raise TaskError(f"unknown strategy '{spec}'; known: {sorted(STRATEGIES)} (append @K where it applies)")
    if k and not k.isdigit():
        raise TaskError(f"strategy '{spec}': K must be a positive integer")
    return name, int(k) if k else None


def answer(spec: str, sample: Sample, source, n_frames: int, overrides: dict | None = None) -> Prediction:
    name, k = parse_spec(spec)
    pred = STRATEGIES[name](sample, source, n_frames, None)
    pred.strategy = spec
    return pred
