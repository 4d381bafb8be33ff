"""The answering strategies: greedy, majority@K, best_of@K, rler@K and adaptive rler.

Why one entry point (`answer`): the runner and offline replay both call it, so an ablation
only swaps the spec string or a `--set key=value` override. Every strategy draws candidates
from a source (sources.py), scores them (scoring.py), votes (vote.py) and returns a
`Prediction` with a full audit trail, so that any election replays offline exactly.
"""

from __future__ import annotations

from dataclasses import asdict

from rler_eval.election import refute as refute_mod
from rler_eval.election.config import ElectionConfig, make_config
from rler_eval.election.scoring import Extractor, score_candidates
from rler_eval.election.vote import Vote, vote
from rler_eval.errors import TaskError
from rler_eval.types import Candidate, Prediction, Sample


def _prediction(spec, cands, rows, v: Vote | None, source, **election) -> Prediction:
    pred = Prediction(answer=v.answer if v else None, candidates=list(cands), strategy=spec, scores=rows,
                      vote={k: round(x, 6) for k, x in (v.totals if v else {}).items()},
                      margin=round(v.margin, 6) if v and v.winner is not None else None,
                      abstain_reason=None if v and v.answer is not None else
                      ((v.note if v else None) or "no candidate gave a valid answer"),
                      model_calls=source.model_calls, generated_tokens=source.generated_tokens)
    election.setdefault("note", v.note if v else None)
    if v is not None:
        election.setdefault("support", v.support)
        election.setdefault("tie_break", v.tie_break)
    pred.election = election
    return pred


def _draw_fixed(source, k: int, cfg: ElectionConfig) -> list[Candidate]:
    return source.draw([cfg.temperature(i) for i in range(k)])


def greedy(spec, sample, source, n_frames, k, cfg, extract) -> Prediction:
    """One greedy candidate; its parsed answer is the prediction."""
    cands = _draw_fixed(source, 1, cfg)
    rows = score_candidates(cands, sample, n_frames, cfg, extract=extract)
    for r in rows:
        r["vote_weight"] = 1.0
    v = vote(rows, sample.answer_type, "vote_weight")
    return _prediction(spec, cands, rows, v, source, drawn=len(cands), requested=1)


def majority(spec, sample, source, n_frames, k, cfg, extract) -> Prediction:
    """Self-consistency: K candidates, one vote per valid answer (clusters as in RLER)."""
    cands = _draw_fixed(source, k, cfg)
    rows = score_candidates(cands, sample, n_frames, cfg, extract=extract)
    for r in rows:
        r["vote_weight"] = 1.0 if r["cluster"] is not None else 0.0
    v = vote(rows, sample.answer_type, "vote_weight")
    return _prediction(spec, cands, rows, v, source, drawn=len(cands), requested=k)


def best_of(spec, sample, source, n_frames, k, cfg, extract) -> Prediction:
    """K candidates; the valid one with the highest confidence C wins (earliest drawn on a tie).

    Without log-probs (e.g. an OpenAI-compatible server) every C is the same neutral value,
    so best-of degrades to "first drawn valid candidate", and the record says so."""
    cands = _draw_fixed(source, k, cfg)
    rows = score_candidates(cands, sample, n_frames, cfg, extract=extract)
    valid = [i for i, r in enumerate(rows) if r["cluster"] is not None]
    if not valid:
        return _prediction(spec, cands, rows, vote(rows, sample.answer_type), source, drawn=len(cands), requested=k)
    has_lp = any(c.token_logprobs for c in cands)
    i = min(valid, key=lambda j: (-rows[j]["C"], j)) if has_lp else valid[0]
    best = rows[i]
    v = Vote(best["cluster"], best["answer"], {best["cluster"]: best["C"]}, {best["cluster"]: 1}, 1.0,
             [best["cluster"]], None if has_lp else "no log-probs: best_of degrades to first drawn")
    return _prediction(spec, cands, rows, v, source, drawn=len(cands), requested=k, chosen=i)


def rler_fixed(spec, sample, source, n_frames, k, cfg, extract) -> Prediction:
    """RLER with a fixed K: evidence-weighted election, then the refutation check."""
    cands = _draw_fixed(source, k, cfg)
    rows = score_candidates(cands, sample, n_frames, cfg, extract=extract)
    v = vote(rows, sample.answer_type)
    ref = refute_mod.refutation(sample, source, cands, rows, v, cfg) if refute_on(cfg) else None
    pred = _prediction(spec, cands, rows, v, source, drawn=len(cands), requested=k)
    return _apply_refutation(pred, ref, source)


def rler_adaptive(spec, sample, source, n_frames, k, cfg, extract) -> Prediction:
    """Adaptive RLER: greedy + sampled, then one more per round until confident or K_max."""
    k_max = k or cfg.k_max
    cands = list(_draw_fixed(source, min(cfg.k0, k_max), cfg))
    rounds, reason, memo = 1, None, []
    while True:
        rows = score_candidates(cands, sample, n_frames, cfg, memo, extract)
        v = vote(rows, sample.answer_type)
        if v.winner is not None and v.support.get(v.winner, 0) >= cfg.min_support and v.margin >= cfg.delta - 1e-12:
            reason = "confident"
            break
        if len(cands) >= k_max:
            reason = "k_max"
            break
        new = source.draw([cfg.temperature(len(cands))])
        if not new:
            reason = "exhausted"  # replay ran out of recorded candidates
            break
        cands.extend(new)
        rounds += 1
    ref = refute_mod.refutation(sample, source, cands, rows, v, cfg) if refute_on(cfg) else None
    pred = _prediction(spec, cands, rows, v, source, drawn=len(cands), rounds=rounds, stop=reason, k_max=k_max)
    return _apply_refutation(pred, ref, source)


def refute_on(cfg: ElectionConfig) -> bool:
    return refute_mod.DEFAULT_ON if cfg.refute is None else bool(cfg.refute)


def _apply_refutation(pred: Prediction, ref: dict | None, source) -> Prediction:
    pred.refutation = ref
    if ref is not None:
        pred.answer = ref["elected"]
        pred.model_calls, pred.generated_tokens = source.model_calls, source.generated_tokens
    return pred


STRATEGIES = {"greedy": greedy, "majority": majority, "best_of": best_of, "rler": None}
NEEDS_K = ("majority", "best_of")


def parse_spec(spec: str) -> tuple[str, int | None]:
    """'majority@8' -> ('majority', 8); 'rler' -> ('rler', None)."""
    name, at, k = spec.partition("@")
    if name not in STRATEGIES:
        raise TaskError(f"unknown strategy '{spec}'; known: greedy, majority@K, best_of@K, rler@K, rler")
    if at and (not k.isdigit() or int(k) < 1):
        raise TaskError(f"strategy '{spec}': K must be a positive integer")
    if name in NEEDS_K and not at:
        raise TaskError(f"strategy '{spec}' needs a K, e.g. {name}@4")
    if name == "greedy" and at and int(k) != 1:
        raise TaskError("greedy takes no K")
    return name, int(k) if k else None


def answer(spec: str, sample: Sample, source, n_frames: int, overrides: dict | None = None,
           extract: Extractor | None = None) -> Prediction:
    """Run strategy `spec` on one sample; the Prediction carries the whole audit trail.

    `extract` (raw reply -> answer, the benchmark's own rule) reads replies that have no
    <answer> tag; without it they are read by the evidence parser's fallback."""
    name, k = parse_spec(spec)
    cfg = make_config(overrides)
    fn = (rler_fixed if k else rler_adaptive) if name == "rler" else STRATEGIES[name]
    pred = fn(spec, sample, source, n_frames, k, cfg, extract)
    pred.election["config"] = {k_: (list(v) if isinstance(v, tuple) else v) for k_, v in asdict(cfg).items()}
    if pred.answer is None and pred.abstain_reason is None:
        pred.abstain_reason = "no candidate gave a valid answer"
    return pred
