"""`rler-eval sweep`: the compute–quality curve and score ablations, from recorded runs only.

Why: a run that recorded enough candidates per question (e.g. `rler@8`) can answer "what
would strategy S with settings W have scored, and at how many candidates per question?"
for every S and W at no model cost, by replaying the election (`rler_eval.replay`). This
module runs a grid of settings over one or more runs and writes:

    sweep.csv / sweep.md      accuracy and mean candidates per question for each setting
    ablation.csv / .md        adaptive RLER with each score (E, C, T, R) removed in turn
    sweep.png                 accuracy against mean candidates per question (matplotlib, Agg)

    scores.csv / .md          per score (E, C, T, R): how often it is constant across a
                              question's valid candidates, so an inert score shows

Refutation replies are only recorded for the checks the original run made, so the grid's
RLER settings run without refutation (`refute=false`); the ablation adds refutation on/off,
and a refutation setting whose checks the run did not record is marked "refutation replies
not recorded" rather than scored. A setting that needs more candidates than a run recorded
for some question is marked "needs more candidates than recorded" and gets no accuracy,
never a silent number.
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path

import matplotlib
import pandas as pd
from tqdm import tqdm

from rler_eval import election
from rler_eval.benchmarks import get_benchmark
from rler_eval.errors import InputError
from rler_eval.replay import elect_records, load_card, load_run

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

NO_REFUTE = {"refute": False}
ABLATIONS = {"none": {}, "-E": {"w_E": 0.0}, "-C": {"c_exponent": 0.0}, "-T": {"w_T": 0.0}, "-R": {"w_R": 0.0}}
SCORES = ("E", "C", "T", "R")


def default_grid() -> list[tuple[str, str, dict]]:
    """(label, strategy, overrides) for the compute–quality sweep."""
    grid = [("greedy", "greedy", {})]
    grid += [(f"majority@{k}", f"majority@{k}", {}) for k in (2, 3, 4, 8)]
    grid += [(f"best_of@{k}", f"best_of@{k}", {}) for k in (2, 4, 8)]
    grid += [(f"rler@{k}", f"rler@{k}", NO_REFUTE) for k in (2, 3, 4, 8)]
    grid += [(f"rler delta={d}", "rler", {**NO_REFUTE, "delta": d}) for d in (0.1, 0.2, 0.3, 0.5, 0.7)]
    return grid


def ablation_grid() -> list[tuple[str, str, dict]]:
    """Each score removed in turn, and refutation on/off, for adaptive rler and rler@8."""
    grid = [(f"rler {name}", "rler", {**NO_REFUTE, **o}) for name, o in ABLATIONS.items()]
    grid += [(f"rler@8 {name}", "rler@8", {**NO_REFUTE, **o}) for name, o in ABLATIONS.items()]
    return grid + [("rler +refute", "rler", {"refute": True}), ("rler@8 +refute", "rler@8", {"refute": True})]


def add_arguments(p) -> None:
    p.add_argument("runs", nargs="+", help="run folders, or folders holding run folders (e.g. results/runs)")
    p.add_argument("--out", default="results/sweeps", help="output folder [results/sweeps]")


def cli(args) -> int:
    tables = sweep(args.runs, args.out)
    print(tables["sweep_md"])
    print(tables["ablation_md"])
    print(tables["scores_md"])
    print(f"wrote {args.out}/sweep.csv, sweep.md, ablation.csv, ablation.md, scores.csv, scores.md, sweep.png")
    return 0


def find_runs(paths: list[str]) -> list[Path]:
    """Run folders among `paths`; a folder without config.json contributes its run subfolders
    (replays written by `rler-eval elect` are left out there, being derived data)."""
    runs = []
    for p in map(Path, paths):
        if (p / "config.json").is_file():
            runs.append(p)
        elif p.is_dir():
            for sub in sorted(p.iterdir()):
                cfg = sub / "config.json"
                if cfg.is_file() and (sub / "samples.jsonl").is_file():
                    try:
                        if json.loads(cfg.read_text()).get("replayed_from"):
                            continue
                    except json.JSONDecodeError:
                        continue
                    runs.append(sub)
        else:
            raise InputError(f"{p}: no such run folder")
    if not runs:
        raise InputError(f"no run folders found in {', '.join(paths)} (a run folder holds config.json)")
    return runs


def needed(strategy: str, overrides: dict) -> int | None:
    """Candidates a fixed-K setting needs per question; None for adaptive (checked per question)."""
    name, k = election.parse_spec(strategy)
    if name == "greedy":
        return 1
    if name == "rler" and k is None:
        return None
    return k


def evaluate_setting(records, strategy, overrides, bench, card) -> dict:
    ok = [r for r in records if r.get("status") == "ok"]
    recorded = [len(r["prediction"]["candidates"]) for r in ok]
    need = needed(strategy, overrides)
    if need is not None and recorded and min(recorded) < need:
        short = sum(n < need for n in recorded)
        return {"status": f"needs more candidates than recorded ({short} questions)"}
    new = elect_records(records, strategy, overrides, bench, card)
    preds = [r["prediction"] for r in new if r.get("status") == "ok"]
    exhausted = sum(p.get("election", {}).get("stop") == "exhausted" for p in preds)
    if exhausted:
        return {"status": f"needs more candidates than recorded ({exhausted} questions)"}
    unrecorded = sum(any(c.get("reply") is None for c in (p.get("refutation") or {}).get("checks") or [])
                     for p in preds)
    if unrecorded:
        return {"status": f"refutation replies not recorded ({unrecorded} questions)"}
    agg = bench.aggregate(new, card)
    n = max(len(preds), 1)
    return {"status": "ok", "accuracy": float(agg.get("accuracy", 0.0)),
            "_scores": {str(r["id"]): float(r.get("score") or 0.0) for r in new},
            "candidates_per_question": sum(p["n_candidates"] for p in preds) / n,
            "model_calls_per_question": sum(p["model_calls"] for p in preds) / n,
            "abstentions": sum(p["answer"] is None for p in preds)}


def score_spread(run_name: str, records: list[dict]) -> list[dict]:
    """Per score: the share of questions (with >= 2 valid candidates) where it is the same for
    every valid candidate, its mean within-question spread, and its overall mean."""
    per = {k: {"constant": 0, "spread": [], "values": []} for k in SCORES}
    n = 0
    for r in records:
        if r.get("status") != "ok":
            continue
        rows = [x for x in r["prediction"].get("scores") or [] if x.get("answer") is not None]
        if len(rows) < 2:
            continue
        n += 1
        for k in SCORES:
            vals = [float(x[k]) for x in rows]
            per[k]["constant"] += max(vals) - min(vals) < 1e-9
            per[k]["spread"].append(statistics.pstdev(vals))
            per[k]["values"] += vals
    return [{"run": run_name, "score": k, "questions": n,
             "constant_share": per[k]["constant"] / n if n else float("nan"),
             "mean_within_sd": statistics.fmean(per[k]["spread"]) if n else float("nan"),
             "mean": statistics.fmean(per[k]["values"]) if n else float("nan")} for k in SCORES]


def sweep(paths: list[str], out: str | Path) -> dict:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    runs = find_runs(paths)
    rows = {"sweep": [], "ablation": []}
    jobs = [(run, kind, s) for run in runs for kind, grid in (("sweep", default_grid()), ("ablation", ablation_grid()))
            for s in grid]
    loaded, spread = {}, []
    for run, kind, (label, strategy, overrides) in tqdm(jobs, desc="sweep", unit="setting", dynamic_ncols=True):
        if run not in loaded:
            config, records = load_run(run)
            card = load_card(config, run)
            loaded[run] = (config, records, card, get_benchmark(card.benchmark))
            spread += score_spread(run.name, records)
        config, records, card, bench = loaded[run]
        res = evaluate_setting(records, strategy, overrides, bench, card)
        rows[kind].append({"run": run.name, "task": config.get("task"), "recorded_with": config.get("strategy"),
                           "setting": label, "strategy": strategy,
                           "overrides": ",".join(f"{k}={v}" for k, v in overrides.items()), **res})
    tables = {}
    for kind in ("sweep", "ablation"):
        add_paired_marks(rows[kind], baseline_of if kind == "ablation" else lambda label: "greedy")
        df = pd.DataFrame(rows[kind])
        for col in ("accuracy", "candidates_per_question", "model_calls_per_question", "abstentions"):
            if col not in df:
                df[col] = float("nan")
        df = df[["run", "task", "recorded_with", "setting", "strategy", "overrides", "accuracy", "ci95",
                 "vs", "diff_vs", "holds", "candidates_per_question", "model_calls_per_question", "abstentions",
                 "status"]]
        df.to_csv(out / f"{kind}.csv", index=False)
        md = df.drop(columns=["strategy", "overrides"]).to_markdown(index=False, floatfmt=".4f")
        (out / f"{kind}.md").write_text(f"# {kind}\n\n{PAIRED_NOTE}\n\n{md}\n")
        tables[kind] = df
        tables[f"{kind}_md"] = md
    df = pd.DataFrame(spread)
    df.to_csv(out / "scores.csv", index=False)
    tables["scores"] = df
    tables["scores_md"] = df.to_markdown(index=False, floatfmt=".4f")
    (out / "scores.md").write_text(f"# scores: how often each is constant within a question\n\n{tables['scores_md']}\n")
    plot(tables["sweep"], out / "sweep.png", plt)
    return tables


PAIRED_NOTE = ("ci95: accuracy (%) with its 95 % percentile bootstrap interval over the run's questions. "
               "diff_vs: accuracy minus that of the setting in `vs`, on the same questions, with its paired "
               "bootstrap 95 % interval; holds = yes when that interval excludes 0 (the difference is not "
               "question-sampling noise).")


def baseline_of(label: str) -> str:
    """The ablation's reference: the same strategy with no score removed."""
    return label.rsplit(" ", 1)[0] + " none"


def add_paired_marks(rows: list[dict], baseline) -> None:
    """Per row: its accuracy interval, and a paired bootstrap against its baseline setting of
    the same run (same questions). Rows without scores (short runs) get empty marks."""
    from rler_eval import stats

    by_key = {(r["run"], r["setting"]): r.get("_scores") for r in rows}
    for r in rows:
        scores = r.pop("_scores", None)
        r.update(ci95="", vs="", diff_vs="", holds="")
        if scores is None:
            continue
        r["ci95"] = stats.bootstrap_ci(list(scores.values())).format()
        base = baseline(r["setting"])
        ref = by_key.get((r["run"], base))
        if base == r["setting"] or ref is None:
            continue
        a, b, _ = stats.paired_scores(scores, ref)
        d = stats.paired_bootstrap(a, b)
        r.update(vs=base, diff_vs=f"{100 * d.diff:+.1f} [{100 * d.low:+.1f}, {100 * d.high:+.1f}]",
                 holds="yes" if d.holds else "no")


def plot(df, path: Path, plt) -> None:
    """Accuracy against mean candidates per question, one line per strategy family and run."""
    fig, ax = plt.subplots(figsize=(7, 4.5))
    ok = df[df["status"] == "ok"]
    for run, per_run in ok.groupby("run"):
        fam = per_run["setting"].str.extract(r"^(greedy|majority|best_of|rler@|rler delta)")[0]
        for name, g in per_run.groupby(fam):
            g = g.sort_values("candidates_per_question")
            ax.plot(g["candidates_per_question"], g["accuracy"], marker="o",
                    label=f"{name.replace('rler delta', 'rler (adaptive)').rstrip('@')} [{run}]"
                    if len(ok["run"].unique()) > 1 else name.replace("rler delta", "rler (adaptive)").rstrip("@"))
    ax.set_xlabel("mean candidates per question")
    ax.set_ylabel("accuracy")
    ax.set_title("compute–quality curve (replayed elections)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
