"""The election's measured figures on synthvid, and the recorded candidate-set fixture.

Why a script: every figure the README quotes about the election must come back with one
command when the bundled model changes (`make results-election`, `make election-fixture`).

    python bench/election_results.py report RUNS_DIR OUT.md
        RUNS_DIR holds live runs `rler8` (rler@8, refutation on) and `rler` (adaptive, refutation
        on); the other strategies are replayed from `rler8`'s recorded candidates. Writes the
        results table and the refutation figures (verdict rate, overturns and their direction).
    python bench/election_results.py fixture RUN_DIR OUT_DIR [N]
        Trims the first N records of a live rler@8 run into a committed fixture (samples.jsonl.gz
        and config.json) plus summary.json: what each strategy scores on it when replayed.
"""

from __future__ import annotations

import gzip
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from rler_eval.benchmarks import get_benchmark  # noqa: E402
from rler_eval.replay import elect_records, load_card, load_run  # noqa: E402
from rler_eval.types import Sample  # noqa: E402

REPLAYED = [("greedy", "greedy", {}), ("majority@3", "majority@3", {}), ("majority@8", "majority@8", {}),
            ("best_of@8", "best_of@8", {}), ("rler@8, no refutation", "rler@8", {"refute": False}),
            ("rler (adaptive), no refutation", "rler", {"refute": False})]
FIXTURE_STRATEGIES = REPLAYED + [("rler@8, refutation (recorded)", "rler@8", {"refute": True})]


def correct(bench, sample: dict, answer: str | None) -> bool:
    from rler_eval.replay import sample_from_dict

    if answer is None:
        return False
    s: Sample = sample_from_dict(sample)
    return bench.score(s, f"<answer>{answer}</answer>")["score"] > 0


def refutation_stats(records: list[dict], bench) -> dict:
    """Verdict rate of the checks, and how often (and which way) refutation changed the vote."""
    checks = verdicts = refuted = overturns = w2r = r2w = 0
    by_source: dict[str, int] = {}
    for r in records:
        ref = (r.get("prediction") or {}).get("refutation")
        if r.get("status") != "ok" or not ref:
            continue
        for c in ref["checks"]:
            checks += 1
            verdicts += c.get("verdict") in ("yes", "no")
            by_source[str(c.get("verdict_from"))] = by_source.get(str(c.get("verdict_from")), 0) + 1
        refuted += ref["checks"][0].get("verdict") == "no"
        if ref["outcome"] == "runner-up elected":
            overturns += 1
            before, after = correct(bench, r["sample"], ref["checks"][0]["answer"]), correct(bench, r["sample"], ref["elected"])
            w2r += (not before) and after
            r2w += before and not after
    n = sum(1 for r in records if r.get("status") == "ok")
    return {"questions": n, "checks": checks, "verdict_rate": verdicts / checks if checks else float("nan"),
            "verdict_from": by_source, "winner_refuted": refuted, "overturns": overturns,
            "wrong_to_right": w2r, "right_to_wrong": r2w}


def row(label: str, records: list[dict], bench, card) -> dict:
    ok = [r for r in records if r.get("status") == "ok"]
    preds = [r["prediction"] for r in ok]
    n = max(len(preds), 1)
    agg = bench.aggregate(records, card)
    out = {"strategy": label, "accuracy": round(float(agg["accuracy"]), 4),
           "candidates/q": round(sum(p["n_candidates"] for p in preds) / n, 3),
           "model calls/q": round(sum(p["model_calls"] for p in preds) / n, 3),
           "abstentions": sum(p["answer"] is None for p in preds), "n": len(records)}
    st = refutation_stats(records, bench)
    if st["checks"]:
        out.update({"verdict rate": round(st["verdict_rate"], 4), "overturns": st["overturns"],
                    "wrong→right": st["wrong_to_right"], "right→wrong": st["right_to_wrong"]})
    return out


def report(runs: Path, out: Path) -> None:
    import pandas as pd

    config, rec8 = load_run(runs / "rler8")
    card = load_card(config, runs / "rler8")
    bench = get_benchmark(card.benchmark)
    rows = [row(label, elect_records(rec8, s, o, bench, card), bench, card) for label, s, o in REPLAYED]
    rows.append(row("rler@8, refutation (live)", rec8, bench, card))
    stats = {"rler@8": refutation_stats(rec8, bench)}
    if (runs / "rler" / "config.json").is_file():
        _, rec = load_run(runs / "rler")
        rows.append(row("rler (adaptive), refutation (live)", rec, bench, card))
        stats["rler"] = refutation_stats(rec, bench)
    table = pd.DataFrame(rows).to_markdown(index=False, floatfmt=".4f")
    text = (f"# Election on {card.name} with {rel_model(config.get('model'))}\n\n"
            f"Live runs: rler@8 and adaptive rler with refutation; the other rows are replays of the "
            f"rler@8 run's recorded candidates (`rler-eval elect`).\n\n{table}\n\n"
            f"## Refutation checks\n\n```json\n{json.dumps(stats, indent=2)}\n```\n")
    out.write_text(text)
    print(text)


def rel_model(model: str | None) -> str | None:
    """A checkpoint path inside the repository, relative to it (no machine paths in results)."""
    repo = Path(__file__).resolve().parent.parent
    if model and Path(model).resolve().is_relative_to(repo):
        return str(Path(model).resolve().relative_to(repo))
    return model


def trim_candidate(c: dict) -> dict:
    """Candidates are kept whole: rounding log-probs could flip a near-tie, and replay must be exact."""
    return dict(c)


def trim(r: dict) -> dict:
    """What replay needs: the question (without the official row), candidates, checks."""
    sample = {k: v for k, v in r["sample"].items() if k != "doc"}
    p = r.get("prediction") or {}
    pred = {"strategy": p.get("strategy"), "answer": p.get("answer"),
            "candidates": [trim_candidate(c) for c in p.get("candidates") or []],
            "refutation": p.get("refutation"), "n_candidates": p.get("n_candidates")}
    return {"id": r["id"], "task": r["task"], "status": r["status"], "error": r.get("error"),
            "category": r.get("category"), "sample": sample, "n_frames": r.get("n_frames"),
            "key_frames": r.get("key_frames"), "prediction": pred, "answer": r.get("answer"), "score": r.get("score")}


def fixture(run: Path, out: Path, n: int = 300) -> None:
    config, records = load_run(run)
    records = [trim(r) for r in records[:n]]
    out.mkdir(parents=True, exist_ok=True)
    keep = ("task", "benchmark", "model", "strategy", "election", "frames", "max_new_tokens", "seed", "prompt")
    kept = {k: config.get(k) for k in keep}
    kept["model"] = rel_model(kept.get("model"))
    (out / "config.json").write_text(json.dumps(kept, indent=2) + "\n")
    with gzip.open(out / "samples.jsonl.gz", "wt", encoding="utf-8") as fh:
        for r in records:
            fh.write(json.dumps(r, ensure_ascii=False) + "\n")
    (out / "summary.json").write_text(json.dumps(summarise(kept, records), indent=2) + "\n")
    print((out / "summary.json").read_text())


def summarise(config: dict, records: list[dict]) -> dict:
    """Accuracy of each strategy replayed on the fixture's records (what the tests re-check)."""
    from rler_eval.tasks import load_task

    card = load_task(config["task"])
    bench = get_benchmark(card.benchmark)
    out = {"model": config.get("model"), "questions": len(records), "accuracy": {}}
    for label, s, o in FIXTURE_STRATEGIES:
        new = elect_records(records, s, o, bench, card)
        out["accuracy"][label] = round(float(bench.aggregate(new, card)["accuracy"]), 4)
    out["refutation"] = refutation_stats(records, bench)
    return out


if __name__ == "__main__":
    cmd, *args = sys.argv[1:] or ["help"]
    if cmd == "report" and len(args) == 2:
        report(Path(args[0]), Path(args[1]))
    elif cmd == "fixture" and len(args) in (2, 3):
        fixture(Path(args[0]), Path(args[1]), int(args[2]) if len(args) == 3 else 300)
    else:
        print(__doc__)
        sys.exit(2)
