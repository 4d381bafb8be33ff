"""Per-candidate scores and answer clusters: what the vote weighs.

Why apart from the strategies: every strategy (greedy, majority, best-of, RLER) parses and
scores its candidates the same way, so that their audit trails are comparable and an
offline replay can re-weigh them with other settings.

Scores (DESIGN.md; each in [0, 1]):
    E = frame_validity × evidence.cross_support over the answer clusters (invalid
        candidates take no part; a lone dissenter has no corroboration)
    C = exp(mean answer-span log-prob), T = evidence.transparency, R = evidence.non_redundancy
    w = C^c_exponent · (w_E·E + w_T·T + w_R·R) / (w_E + w_T + w_R)   (0 for an invalid answer)
    then w = min(w, weight_cap · median of the other candidates' positive weights).
Answers: the evidence protocol's <answer> tag; a reply without one is read by the benchmark's
own extractor when the caller passes it (`extract`), so a non-protocol reply is not an
abstention the official scorer would not make.
Clusters ("same answer"): option letters and yes/no by equality; numbers by a relative
tolerance around successive weighted medians; free text by token-F1 leader clustering.
"""

from __future__ import annotations

import statistics
from typing import Callable

from rler_eval import evidence
from rler_eval.election.config import ElectionConfig
from rler_eval.types import Candidate, Sample

Extractor = Callable[[str], "str | None"]  # raw reply -> the benchmark's extracted answer


def _num_agree(a: float, b: float, tol: float) -> bool:
    return abs(a - b) <= tol * max(abs(a), abs(b)) + 1e-12


def weighted_median(values: list[float], weights: list[float]) -> float:
    """The lower weighted median: an actual value, independent of input order."""
    pairs = sorted(zip(values, weights))
    total = sum(w for _, w in pairs)
    if total <= 0:
        return pairs[(len(pairs) - 1) // 2][0]
    acc = 0.0
    for v, w in pairs:
        acc += w
        if acc >= total / 2 - 1e-12:
            return v
    return pairs[-1][0]


def cluster(answers: list[str | None], weights: list[float], answer_type: str, cfg: ElectionConfig) -> list[str | None]:
    """A cluster label per candidate (None for invalid answers); same label = same answer."""
    labels: list[str | None] = [None] * len(answers)
    valid = [i for i, a in enumerate(answers) if a is not None]
    if answer_type == "number":
        rest = sorted(valid, key=lambda i: (float(answers[i]), answers[i]))
        while rest:
            centre = weighted_median([float(answers[i]) for i in rest], [weights[i] for i in rest])
            members = [i for i in rest if _num_agree(float(answers[i]), centre, cfg.number_tol)]
            for i in members:
                labels[i] = evidence.format_number(centre)
            rest = [i for i in rest if i not in members]
    elif answer_type == "text":
        leaders: list[str] = []
        for i in sorted(valid, key=lambda i: (-weights[i], i)):
            lead = next((ld for ld in leaders if evidence.token_f1(answers[i], ld) >= cfg.text_f1), None)
            if lead is None:
                leaders.append(answers[i])
                lead = answers[i]
            labels[i] = lead
    else:
        for i in valid:
            labels[i] = answers[i]
    return labels


def own_scores(c: Candidate, sample: Sample, n_frames: int, extract: Extractor | None = None) -> tuple:
    """(Evidence, row): what depends on one candidate alone (answer, frames, C, T, R)."""
    ev = evidence.parse(c.text, n_frames, sample.answer_type, sample.options)
    answer, source = ev.answer, "protocol"
    if ev.answer_raw is None and extract is not None:  # no <answer> tag: the official rule reads it
        got = extract(c.text)
        answer = evidence.normalize_answer(str(got), sample.answer_type, sample.options) if got is not None else None
        source = "official"
    row = {"answer": answer, "answer_from": source, "frames": list(ev.frames),
           "C": evidence.confidence(c.token_logprobs, c.tokens, c.text, ev),
           "T": evidence.transparency(ev, sample.options),
           "R": evidence.non_redundancy(evidence.redundancy_text(ev, c.text))}
    return ev, row


def score_candidates(cands: list[Candidate], sample: Sample, n_frames: int, cfg: ElectionConfig,
                     memo: list | None = None, extract: Extractor | None = None) -> list[dict]:
    """Per candidate, in draw order: parsed answer, cited frames, cluster, E C T R, weight.

    `memo` (a list kept across adaptive rounds) holds `own_scores` of earlier candidates.
    """
    memo = [] if memo is None else memo
    memo.extend(own_scores(c, sample, n_frames, extract) for c in cands[len(memo):])
    evs = [m[0] for m in memo]
    rows = [dict(m[1]) for m in memo]
    pre = [(r["C"] ** cfg.c_exponent) * (1.0 + r["T"] + r["R"]) if r["answer"] is not None else 0.0 for r in rows]
    labels = cluster([r["answer"] for r in rows], pre, sample.answer_type, cfg)
    frames = [r["frames"] for r in rows]
    jac = evidence.jaccard_matrix(frames, cfg.frame_tol)
    bsum = cfg.w_E + cfg.w_T + cfg.w_R
    for i, (r, ev) in enumerate(zip(rows, evs)):
        r["cluster"] = labels[i]
        r["E"] = evidence.frame_validity(ev, n_frames) * evidence.cross_support(i, frames, labels, cfg.frame_tol, jac)
        if labels[i] is None:
            r["weight"] = 0.0
        else:
            mix = (cfg.w_E * r["E"] + cfg.w_T * r["T"] + cfg.w_R * r["R"]) / bsum if bsum > 0 else 1.0
            r["weight"] = (r["C"] ** cfg.c_exponent) * mix
    apply_cap(rows, cfg.weight_cap)
    for r in rows:
        for k in ("C", "T", "R", "E", "weight", "raw_weight"):
            if k in r:
                r[k] = round(float(r[k]), 6)
    return rows


def apply_cap(rows: list[dict], cap: float) -> None:
    """Cap each weight at `cap` × the median of the *other* positive weights.

    Leave-one-out, so that the cap can bind at K = 2 and 3 too (a median that includes the
    outlier itself never lets it exceed 3× the median at K = 2)."""
    if cap <= 0:
        return
    raw = [r["weight"] for r in rows]
    for i, r in enumerate(rows):
        others = [w for j, w in enumerate(raw) if j != i and w > 0]
        r["raw_weight"] = raw[i]
        if others and raw[i] > 0:
            r["weight"] = min(raw[i], cap * statistics.median(others))
