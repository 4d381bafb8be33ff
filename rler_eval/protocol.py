"""`--protocol official` and `--scorer lmms-eval`: figures comparable with published ones.

Why: a number is only comparable with a leaderboard row when it was produced the same way.
`--protocol official` sets the card's official prompt (`plain`), greedy decoding and the
card's frame count, and scores the model's raw reply with the benchmark's official
extractor (not the evidence protocol's <answer> span). Most public leaderboards were made
with lmms-eval, whose MVBench and LVBench extraction differs from the official one ("The
answer is C." is right in lmms-eval and wrong officially; docs/FACTS.md), so
`--scorer lmms-eval` offers that reading for those two benchmarks. Every metrics.json says
which protocol and scorer produced it; judge-scored tasks without a judge are labelled
`accuracy (rule fallback, not official)`.
"""

from __future__ import annotations

import re
from types import SimpleNamespace

from rler_eval.errors import InputError
from rler_eval.tasks import TaskCard

PROTOCOLS = ("default", "official")
SCORERS = ("official", "lmms-eval")
LMMS_EVAL_SCORERS = ("mvbench", "lvbench")  # benchmarks whose lmms-eval extraction differs
FALLBACK_METRIC = "accuracy (rule fallback, not official)"


def apply_protocol(card: TaskCard, protocol: str, strategy: str) -> str:
    """Set the card for `protocol`; returns the strategy to run."""
    if protocol not in PROTOCOLS:
        raise InputError(f"--protocol {protocol!r}: expected one of {PROTOCOLS}")
    card.args = dict(card.args or {}, protocol=protocol)
    if protocol != "official":
        return strategy
    card.prompt = "plain"
    card.frames.n = int((card.args or {}).get("official_frames") or card.frames.n)
    return "greedy"


def wrap(bench, card: TaskCard, scorer: str | None = None):
    """The benchmark module with `scorer` applied and its metrics labelled.

    The result has a `score_raw` flag: under the official protocol the runner scores the raw
    reply, not the elected <answer> span.
    """
    scorer = scorer or (card.args or {}).get("scorer") or "official"
    if scorer not in SCORERS:
        raise InputError(f"--scorer {scorer!r}: expected one of {SCORERS}")
    if scorer == "lmms-eval" and card.benchmark not in LMMS_EVAL_SCORERS:
        raise InputError(f"--scorer lmms-eval applies to {', '.join(LMMS_EVAL_SCORERS)}; task {card.name} "
                         f"({card.benchmark}) has one scorer")
    protocol = (card.args or {}).get("protocol") or "default"
    score = bench.score
    if scorer == "lmms-eval":
        score = mvbench_lmms_score if card.benchmark == "mvbench" else lvbench_lmms_score

    def aggregate(rows, c=None):
        out = bench.aggregate(rows, c)
        out["scorer"], out["protocol"] = scorer, protocol
        if fallback_in_use(card):
            out["metric_name"] = FALLBACK_METRIC
        return out

    attrs = {k: getattr(bench, k) for k in dir(bench) if not k.startswith("__")}
    return SimpleNamespace(**{**attrs, "score": score, "aggregate": aggregate, "score_raw": protocol == "official",
                              "__name__": getattr(bench, "__name__", "bench")})


# ---------------------------------------------------------------- lmms-eval readings

_PUNCT = ";/[]\"{}()=+\\_-><@`,?!"


def lmms_mcq_letter(text: str | None) -> str:
    """lmms-eval `mcq_acc`'s reading (tasks/mvbench/utils.py): an "X. text" reply gives X;
    else punctuation becomes spaces, periods not inside numbers go, and the first
    standalone letter A-E (any case) is the answer ("" when there is none)."""
    s = (text or "").strip()
    m = re.match(r"^([A-E])\.\s*(.+)$", s, re.IGNORECASE)
    if m:
        return m.group(1).upper()
    s = s.replace("\n", " ").replace("\t", " ")
    for p in _PUNCT:
        s = s.replace(p, " ")
    s = re.sub(r"(?<!\d)\.(?!\d)", "", s).strip().strip("'\"").lower()
    m = re.search(r"\b([a-e])\b", s)
    return m.group(1).upper() if m else ""


def mvbench_lmms_score(sample, response: str | None) -> dict:
    from rler_eval.benchmarks import extract

    text, _ = extract.answer_text(response)
    got = lmms_mcq_letter(text)
    return {"score": float(got == sample.answer), "extracted": got or None}


def lvbench_lmms_score(sample, response: str | None) -> dict:
    """lmms-eval LVBench `extract_characters_regex`: drop the answer prefixes ("The best
    answer is", ...), then the first capital A-D."""
    from rler_eval.benchmarks import extract

    text, _ = extract.answer_text(response)
    got = extract.videomme_letter(text, "ABCD")
    return {"score": float(got == sample.answer), "extracted": got or None}


# ---------------------------------------------------------------- judge fallback


def judge_scored(card: TaskCard) -> bool:
    """Tasks whose official metric is an LLM judge's: WildVideo, TempCompass captioning."""
    return card.benchmark == "wildvideo" or (card.benchmark == "tempcompass"
                                             and (card.args or {}).get("format") == "captioning")


def fallback_in_use(card: TaskCard) -> bool:
    if not judge_scored(card):
        return False
    from rler_eval.benchmarks import judge

    return judge.get_judge(card) is None


def judge_warning(card: TaskCard) -> str | None:
    if not fallback_in_use(card):
        return None
    return (f"warning: {card.name} is scored by an LLM judge, and none is configured: scores use the rule-based "
            f"fallback and are reported as '{FALLBACK_METRIC}' (set RLER_JUDGE_BASE_URL and/or RLER_JUDGE_MODEL, and RLER_JUDGE_API_KEY; README)")
