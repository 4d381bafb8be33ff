"""How much a GRPO stage that only sharpens the policy could add, read off recorded candidates.

Why: GRPO raises the probability of the completions it samples that earn more than their
group. On a question the greedy answer gets wrong, that can flip the greedy answer only if the
policy's own samples are mostly right there; where they are mostly wrong too, the error is
out of the sampler's reach, and where the greedy answer is right but most samples are wrong, a
sharper policy may lose it. So, per question, from a run that recorded 8 candidates (a
`majority@8` or `rler@8` run: the first candidate is drawn at temperature 0, the others on the
election's temperature ladder):
- sharpenable: greedy wrong, more than half of the sampled candidates right;
- fragile: greedy right, fewer than half of them right;
- out of reach: greedy wrong, at most half of them right.
Printed per family: "up to" = sharpenable / questions, what sharpening could add if every
sharpenable question flipped and nothing else moved; "net" = (sharpenable - fragile) /
questions, the change if the greedy answer became the samples' majority everywhere (a blind
guess that GRPO makes more likely flips both ways). Majority voting can add more than either:
it skips candidates whose answer matches no option, which greedy decoding cannot do.
GRPO trains on other questions than these, so both are estimates of what can transfer, not
bounds.

    python bench/headroom_tiny.py RUN_DIR [RUN_DIR ...]
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter, defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def candidate_right(record: dict) -> list[bool]:
    """Whether each recorded candidate's parsed answer is the gold answer, in drawing order."""
    from rler_eval import evidence

    sample = record["sample"]
    return [evidence.parse(c["text"], record["n_frames"], sample["answer_type"], sample.get("options")).answer
            == sample["answer"] for c in record["prediction"]["candidates"]]


def classify(right: list[bool]) -> str:
    greedy, sampled = right[0], right[1:]
    k, n = sum(sampled), len(sampled)
    if greedy:
        return "fragile" if 2 * k < n else "kept"
    return "sharpenable" if 2 * k > n else "out of reach"


def tally(records: list[dict]) -> dict:
    from rler_eval.training.tiny_report import family

    by = defaultdict(Counter)
    for r in records:
        if r.get("status") != "ok" or len(r["prediction"].get("candidates") or []) < 3:
            continue
        right = candidate_right(r)
        for f in (family(r), "all"):
            c = by[f]
            c["n"] += 1
            c["greedy"] += right[0]
            c["majority"] += (r.get("score") or 0) >= 1 if r["prediction"].get("strategy", "").startswith("majority") else 0
            c["sampled"] += sum(right[1:]) / len(right[1:])
            c[classify(right)] += 1
    return by


def main(argv=None) -> None:
    from rler_eval.training.tiny_report import load

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("runs", nargs="+", type=Path, help="run folders with 8 recorded candidates per question")
    args = p.parse_args(argv)
    for run in args.runs:
        records = load(run)
        by = tally(records)
        voted = any(r["prediction"].get("strategy", "").startswith("majority") for r in records if r.get("prediction"))
        print(f"{run}")
        print(f"  {'family':13s} {'n':>4s} {'greedy':>7s} {'majority':>8s} {'sampled':>7s} "
              f"{'sharpenable':>11s} {'fragile':>7s} {'out of reach':>12s} {'up to':>6s} {'net':>6s}")
        for f in sorted(by, key=lambda f: (f == "all", f)):
            c = by[f]
            n = c["n"]
            maj = f"{c['majority'] / n:.3f}" if voted else "-"
            print(f"  {f:13s} {n:4d} {c['greedy'] / n:7.3f} {maj:>8s} {c['sampled'] / n:7.3f} "
                  f"{c['sharpenable']:11d} {c['fragile']:7d} {c['out of reach']:12d} "
                  f"{c['sharpenable'] / n:+6.3f} {(c['sharpenable'] - c['fragile']) / n:+6.3f}")


if __name__ == "__main__":
    main()
