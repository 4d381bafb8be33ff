"""Answering strategies behind one interface, and the RLER evidence-weighted election.

Why one module: the runner and offline replay both call `answer(spec, ...)`, so an
ablation only swaps the spec string (`greedy`, `majority@K`, `best_of@K`, `rler@K`,
`rler`) or a `--set key=value` override. Every strategy draws candidates from a source
(live backend or recorded candidates), parses them with the shared evidence protocol
(`rler_eval.evidence`), and returns a `Prediction` with a full audit trail, so that any
election can be replayed offline and reproduce the live answer exactly.

Scores and weight (DESIGN.md; each score in [0, 1]):
    E = frame_validity × cross_support (agreement is by answer *cluster*, see below)
    C = exp(mean answer-span log-prob), T = transparency, R = non_redundancy
    w = C^w_C · (w_E·E + w_T·T + w_R·R) / (w_E + w_T + w_R)   (0 for an invalid answer)
    then w = min(w, weight_cap · median of the positive weights).
Clusters ("same answer"): option letters and yes/no by equality; numbers by a relative
tolerance around successive weighted medians; free text by token-F1 leader clustering.
Clusters are computed from scores that do not depend on E (so E can use them), and all
tie-breaks use the answers' text, never candidate order: a fixed-K election is
order-independent.
"""

from __future__ import annotations

import re
import statistics
from collections import Counter
from dataclasses import asdict, dataclass, field, fields

from rler_eval import evidence
from rler_eval.errors import TaskError
from rler_eval.types import Candidate, Prediction, Sample

DEFAULT_TEMPERATURES = (0.0, 0.7, 0.8, 0.9, 1.0, 1.1, 1.2, 1.3)
REFUTE_QUESTION = ("Check: is the answer \"{answer}\" supported by what frames {frames} show? "
                   "Reply with yes or no only.")


@dataclass
class ElectionConfig:
    """Parameters of every strategy; each is settable by `--set key=value` or a card's `args.election`."""

    w_E: float = 1.0  # weight of evidence consistency E in the weight's sum
    w_C: float = 1.0  # exponent a of confidence C (0 removes C)
    w_T: float = 0.5  # weight of transparency T
    w_R: float = 0.25  # weight of non-redundancy R
    weight_cap: float = 3.0  # cap on a weight, as a multiple of the median positive weight (0 = no cap)
    k0: int = 2  # adaptive: candidates in the first round (greedy + sampled)
    k_max: int = 8  # adaptive: most candidates drawn
    delta: float = 0.2  # adaptive: stop when (leader - runner-up) / total weight >= delta ...
    min_support: int = 2  # ... and the leader has at least this many supporters
    temperatures: tuple = DEFAULT_TEMPERATURES  # candidate i uses temperatures[min(i, len - 1)]
    refute: bool | None = None  # refutation check; None = on for `rler`/`rler@K`, off otherwise
    refute_tokens: int = 8  # max new tokens of the refutation reply
    number_tol: float = 0.05  # numbers agree when |a - b| <= number_tol * max(|a|, |b|)
    text_f1: float = 0.5  # free-text answers agree when their token F1 >= text_f1
    frame_tol: int = 1  # frames within this distance count as the same in E

    def temperature(self, i: int) -> float:
        temps = list(self.temperatures) or [0.0]
        return float(temps[min(i, len(temps) - 1)])


def make_config(overrides: dict | None) -> ElectionConfig:
    """An ElectionConfig from overrides; unknown keys or bad values raise TaskError."""
    cfg = ElectionConfig()
    known = {f.name: f for f in fields(ElectionConfig)}
    for key, value in (overrides or {}).items():
        if key not in known:
            raise TaskError(f"unknown election setting '{key}'; known: {', '.join(sorted(known))}")
        default = getattr(cfg, key)
        try:
            if key == "temperatures":
                value = tuple(float(v) for v in (value if isinstance(value, (list, tuple)) else str(value).split(",")))
            elif key == "refute":
                value = None if value is None else _as_bool(value)
            elif isinstance(default, bool):
                value = _as_bool(value)
            elif isinstance(default, int):
                value = int(value)
            elif isinstance(default, float):
                value = float(value)
        except (TypeError, ValueError):
            raise TaskError(f"election setting '{key}': bad value {value!r}") from None
        setattr(cfg, key, value)
    if cfg.k0 < 1 or cfg.k_max < 1:
        raise TaskError("election settings k0 and k_max must be >= 1")
    return cfg


def _as_bool(value) -> bool:
    if isinstance(value, bool):
        return value
    s = str(value).strip().lower()
    if s in ("1", "true", "yes", "on"):
        return True
    if s in ("0", "false", "no", "off"):
        return False
    raise ValueError(value)


# ---------------------------------------------------------------- scoring and clustering


def token_f1(a: str, b: str) -> float:
    ta, tb = re.findall(r"\w+", a.lower()), re.findall(r"\w+", b.lower())
    if not ta or not tb:
        return float(ta == tb)
    common = sum((Counter(ta) & Counter(tb)).values())
    if common == 0:
        return 0.0
    p, r = common / len(ta), common / len(tb)
    return 2 * p * r / (p + r)


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
        for i in sorted(valid, key=lambda i: (-weights[i], answers[i])):
            lead = next((ld for ld in leaders if token_f1(answers[i], ld) >= cfg.text_f1), None)
            if lead is None:
                leaders.append(answers[i])
                lead = answers[i]
            labels[i] = lead
    else:
        for i in valid:
            labels[i] = answers[i]
    return labels


def _own_scores(c: Candidate, sample: Sample, n_frames: int) -> tuple:
    """(Evidence, row with answer, frames, C, T, R): what depends on one candidate alone."""
    ev = evidence.parse(c.text, n_frames, sample.answer_type, sample.options)
    return ev, {"answer": ev.answer, "frames": list(ev.frames),
                "C": evidence.confidence(c.token_logprobs, c.tokens, c.text, ev),
                "T": evidence.transparency(ev),
                "R": evidence.non_redundancy(evidence.redundancy_text(ev, c.text))}


def score_candidates(cands: list[Candidate], sample: Sample, n_frames: int, cfg: ElectionConfig,
                     memo: list | None = None) -> list[dict]:
    """Per candidate: parsed answer, cited frames, cluster, E C T R and the (capped) weight.

    `memo` (a list kept across adaptive rounds) holds `_own_scores` of earlier candidates.
    """
    memo = [] if memo is None else memo
    memo.extend(_own_scores(c, sample, n_frames) for c in cands[len(memo):])
    evs = [m[0] for m in memo]
    rows = [dict(m[1]) for m in memo]
    pre = [(r["C"] ** cfg.w_C) * (1.0 + r["T"] + r["R"]) if r["answer"] is not None else 0.0 for r in rows]
    labels = cluster([r["answer"] for r in rows], pre, sample.answer_type, cfg)
    frames = [r["frames"] for r in rows]
    jac = _jaccards(frames, cfg.frame_tol)
    bsum = cfg.w_E + cfg.w_T + cfg.w_R
    for i, (r, ev) in enumerate(zip(rows, evs)):
        r["cluster"] = labels[i]
        r["E"] = evidence.frame_validity(ev, n_frames) * _support(i, jac, labels)
        if labels[i] is None:
            r["weight"] = 0.0
        else:
            mix = (cfg.w_E * r["E"] + cfg.w_T * r["T"] + cfg.w_R * r["R"]) / bsum if bsum > 0 else 1.0
            r["weight"] = (r["C"] ** cfg.w_C) * mix
    positive = [r["weight"] for r in rows if r["weight"] > 0]
    if cfg.weight_cap > 0 and positive:
        cap = cfg.weight_cap * statistics.median(positive)
        for r in rows:
            r["raw_weight"] = r["weight"]
            r["weight"] = min(r["weight"], cap)
    for r in rows:
        for k in ("C", "T", "R", "E", "weight", "raw_weight"):
            if k in r:
                r[k] = round(float(r[k]), 6)
    return rows


def _jaccards(frames: list[list[int]], tol: int) -> list[list[float]]:
    """Pairwise evidence.frame_jaccard, each symmetric pair computed once (K=8: 28, not 56)."""
    n = len(frames)
    m = [[0.0] * n for _ in range(n)]
    for i in range(n):
        for j in range(i + 1, n):
            m[i][j] = m[j][i] = evidence.frame_jaccard(frames[i], frames[j], tol)
    return m


def _support(i: int, jac: list[list[float]], labels: list[str | None]) -> float:
    """evidence.cross_support's formula over precomputed Jaccards (a test checks they agree)."""
    same = [jac[i][j] for j in range(len(labels)) if j != i and labels[i] is not None and labels[j] == labels[i]]
    diff = [jac[i][j] for j in range(len(labels)) if j != i and not (labels[i] is not None and labels[j] == labels[i])]
    s = sum(same) / len(same) if same else 0.5
    d = sum(diff) / len(diff) if diff else 0.0
    return max(0.0, min(1.0, 0.5 + 0.5 * (s - d)))


# ---------------------------------------------------------------- the vote


@dataclass
class Vote:
    winner: str | None  # cluster label of the elected answer
    answer: str | None  # the elected answer (a candidate's own answer)
    totals: dict = field(default_factory=dict)  # cluster label -> total weight
    support: dict = field(default_factory=dict)  # cluster label -> number of candidates
    margin: float = 0.0  # (leader - runner-up) / total weight
    ranking: list = field(default_factory=list)  # cluster labels, best first
    note: str | None = None


def vote(rows: list[dict], answer_type: str, key: str = "weight") -> Vote:
    """Sum weights per cluster; ties by support, then by label. All-invalid gives winner None."""
    totals: dict[str, float] = {}
    support: Counter = Counter()
    for r in rows:
        if r["cluster"] is not None:
            totals[r["cluster"]] = totals.get(r["cluster"], 0.0) + float(r[key])
            support[r["cluster"]] += 1
    if not totals:
        return Vote(None, None, note="no candidate gave a valid answer")
    note = None
    if sum(totals.values()) <= 0:  # valid answers, all weighing 0: fall back to a plain count
        totals = {c: float(n) for c, n in support.items()}
        note = "all valid candidates weigh 0; fell back to counting"
    ranking = sorted(totals, key=lambda c: (-round(totals[c], 9), -support[c], c))
    total = sum(totals.values())
    second = totals[ranking[1]] if len(ranking) > 1 else 0.0
    margin = (totals[ranking[0]] - second) / total if total > 0 else 0.0
    return Vote(ranking[0], representative(rows, ranking[0], answer_type, key), totals, dict(support),
                margin, ranking, note)


def representative(rows: list[dict], label: str, answer_type: str, key: str = "weight") -> str:
    """The answer elected for a cluster: weighted median (numbers) or best-weighted member."""
    members = [r for r in rows if r["cluster"] == label]
    if answer_type == "number":
        value = weighted_median([float(r["answer"]) for r in members], [float(r[key]) for r in members])
        return evidence.format_number(value)
    best = sorted(members, key=lambda r: (-float(r[key]), r["answer"]))[0]
    return best["answer"]


# ---------------------------------------------------------------- strategies


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
    pred.election = election
    return pred


def _draw_fixed(source, k: int, cfg: ElectionConfig) -> list[Candidate]:
    return source.draw([cfg.temperature(i) for i in range(k)])


def greedy(spec, sample, source, n_frames, k, cfg) -> Prediction:
    """One greedy candidate; its parsed answer is the prediction."""
    cands = _draw_fixed(source, 1, cfg)
    rows = score_candidates(cands, sample, n_frames, cfg)
    for r in rows:
        r["vote_weight"] = 1.0
    v = vote(rows, sample.answer_type, "vote_weight")
    return _prediction(spec, cands, rows, v, source, drawn=len(cands), requested=1)


def majority(spec, sample, source, n_frames, k, cfg) -> Prediction:
    """Self-consistency: K candidates, one vote per valid answer (clusters as in RLER)."""
    cands = _draw_fixed(source, k, cfg)
    rows = score_candidates(cands, sample, n_frames, cfg)
    for r in rows:
        r["vote_weight"] = 1.0 if r["cluster"] is not None else 0.0
    v = vote(rows, sample.answer_type, "vote_weight")
    return _prediction(spec, cands, rows, v, source, drawn=len(cands), requested=k)


def best_of(spec, sample, source, n_frames, k, cfg) -> Prediction:
    """K candidates; the valid one with the highest confidence C wins (ties by answer)."""
    cands = _draw_fixed(source, k, cfg)
    rows = score_candidates(cands, sample, n_frames, cfg)
    valid = [r for r in rows if r["cluster"] is not None]
    if not valid:
        return _prediction(spec, cands, rows, vote(rows, sample.answer_type), source, drawn=len(cands), requested=k)
    best = sorted(valid, key=lambda r: (-r["C"], r["answer"]))[0]
    v = Vote(best["cluster"], best["answer"], {best["cluster"]: best["C"]}, {best["cluster"]: 1}, 1.0,
             [best["cluster"]])
    return _prediction(spec, cands, rows, v, source, drawn=len(cands), requested=k)


def rler_fixed(spec, sample, source, n_frames, k, cfg) -> Prediction:
    """RLER with a fixed K: evidence-weighted election, then the refutation check."""
    cands = _draw_fixed(source, k, cfg)
    rows = score_candidates(cands, sample, n_frames, cfg)
    v = vote(rows, sample.answer_type)
    ref = refutation(sample, source, rows, v, cfg) if _refute_on(cfg) else None
    pred = _prediction(spec, cands, rows, v, source, drawn=len(cands), requested=k)
    return _apply_refutation(pred, ref, source)


def rler_adaptive(spec, sample, source, n_frames, k, cfg) -> Prediction:
    """Adaptive RLER: greedy + sampled, then one more per round until confident or K_max."""
    k_max = k or cfg.k_max
    cands = list(_draw_fixed(source, min(cfg.k0, k_max), cfg))
    rounds, reason, memo = 1, None, []
    while True:
        rows = score_candidates(cands, sample, n_frames, cfg, memo)
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
    ref = refutation(sample, source, rows, v, cfg) if _refute_on(cfg, default=True) else None
    pred = _prediction(spec, cands, rows, v, source, drawn=len(cands), rounds=rounds, stop=reason, k_max=k_max)
    return _apply_refutation(pred, ref, source)


def _refute_on(cfg: ElectionConfig, default: bool = True) -> bool:
    return default if cfg.refute is None else bool(cfg.refute)


def refutation(sample, source, rows: list[dict], v: Vote, cfg: ElectionConfig) -> dict | None:
    """Ask whether the elected answer is supported by its cited frames; on "no", try the runner-up.

    Each check is one short greedy call (`source.ask`). The runner-up replaces the winner only
    if its own check says "yes". Checks whose reply is missing or unparseable keep the winner.
    """
    if v.winner is None:
        return None
    checks = []
    first = _check(source, rows, v.winner, v.answer, cfg)
    checks.append(first)
    outcome, elected = "kept", v.answer
    if first["verdict"] == "no":
        outcome = "refuted, no runner-up"
        if len(v.ranking) > 1:
            label = v.ranking[1]
            ans = representative(rows, label, sample.answer_type)
            second = _check(source, rows, label, ans, cfg)
            checks.append(second)
            if second["verdict"] == "yes":
                outcome, elected = "runner-up elected", ans
            else:
                outcome = "refuted, runner-up not supported; kept"
    return {"checks": checks, "outcome": outcome, "elected": elected}


def _check(source, rows, label, answer, cfg) -> dict:
    members = sorted((r for r in rows if r["cluster"] == label), key=lambda r: (-r["weight"], r["answer"]))
    frames = members[0]["frames"] if members else []
    question = REFUTE_QUESTION.format(answer=answer, frames=", ".join(map(str, frames)) or "(none cited)")
    reply = source.ask(question, cfg.refute_tokens)
    verdict = None
    if reply is not None:
        ev = evidence.parse(reply.text, None, "yesno")
        verdict = ev.answer or evidence.normalize_answer(reply.text, "yesno")
    return {"answer": answer, "question": question, "verdict": verdict,
            "reply": reply.to_dict() if reply is not None else None}


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


def answer(spec: str, sample: Sample, source, n_frames: int, overrides: dict | None = None) -> Prediction:
    """Run strategy `spec` on one sample; the Prediction carries the whole audit trail."""
    name, k = parse_spec(spec)
    cfg = make_config(overrides)
    if name == "rler":
        fn = rler_fixed if k else rler_adaptive
    else:
        fn = STRATEGIES[name]
    pred = fn(spec, sample, source, n_frames, k, cfg)
    pred.election["config"] = {k_: (list(v) if isinstance(v, tuple) else v) for k_, v in asdict(cfg).items()}
    if pred.answer is None and pred.abstain_reason is None:
        pred.abstain_reason = "no candidate gave a valid answer"
    return pred
