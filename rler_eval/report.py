"""`rler-eval report`: a leaderboard from run folders, as markdown, CSV and a plot.

Why pandas: a leaderboard is a pivot (one row per model+strategy+frames, one column per
task), and pandas writes both the CSV and the markdown from the same frame.
"""

from __future__ import annotations

import json
from pathlib import Path

from rler_eval.errors import InputError


def add_arguments(p) -> None:
    p.add_argument("runs", nargs="+", help="run folders (each with metrics.json), or folders holding them")
    p.add_argument("--out", default="results/leaderboard", help="output prefix [results/leaderboard]")
    p.add_argument("--metric", default="accuracy", help="the metric shown per task [accuracy]")
    p.add_argument("--details", action="store_true",
                   help="one row per run with its headline metrics (accuracy, cost, grounding, format) "
                        "instead of the task pivot")


DETAIL_COLUMNS = ["accuracy", "candidates_per_question", "model_calls_per_question", "generated_tokens_per_question",
                  "grounding_f1", "transparency_rate", "repetition_rate", "abstentions", "errors", "n"]


def cli(args) -> int:
    runs = [Path(r) for r in args.runs]
    table = details(runs) if args.details else leaderboard(runs, args.metric)
    paths = write(table, Path(args.out))
    print(table.to_markdown(floatfmt=".4f"))
    print("\nwrote " + ", ".join(str(p) for p in paths))
    return 0


def find_runs(paths: list[Path]) -> list[Path]:
    runs = []
    for p in paths:
        if (p / "metrics.json").is_file():
            runs.append(p)
        elif p.is_dir():
            runs.extend(sorted(m.parent for m in p.glob("*/metrics.json")))
        else:
            raise InputError(f"{p}: no such run folder")
    if not runs:
        raise InputError(f"no run folders with metrics.json under {', '.join(map(str, paths))}")
    return runs


def leaderboard(paths: list[Path], metric: str = "accuracy"):
    """One row per (model, strategy, frames); one column per task, plus mean cost."""
    import pandas as pd

    rows = []
    for run in find_runs(paths):
        m = json.loads((run / "metrics.json").read_text())
        info = m.get("run", {})
        rows.append({"model": info.get("model", "?"), "strategy": info.get("strategy", "?"),
                     "frames": info.get("frames"), "task": info.get("task", run.name),
                     metric: m.get(metric), "candidates/q": m.get("candidates_per_question"),
                     "n": m.get("n")})
    df = pd.DataFrame(rows)
    table = df.pivot_table(index=["model", "strategy", "frames"], columns="task", values=metric, aggfunc="last")
    table["mean"] = table.mean(axis=1)
    cost = df.groupby(["model", "strategy", "frames"])["candidates/q"].mean()
    table["candidates/q"] = cost
    return table.sort_values("mean", ascending=False)


def details(paths: list[Path]):
    """One row per run: task, model, strategy and the headline metrics of DETAIL_COLUMNS."""
    import pandas as pd

    rows = []
    for run in find_runs(paths):
        m = json.loads((run / "metrics.json").read_text())
        info = m.get("run", {})
        rows.append({"task": info.get("task"), "model": info.get("model"), "strategy": info.get("strategy"),
                     **{c: m.get(c) for c in DETAIL_COLUMNS}})
    table = pd.DataFrame(rows)
    table.index = [f"{r.task} / {r.model} / {r.strategy}" for r in table.itertuples()]
    return table.drop(columns=["task", "model", "strategy"])


def write(table, out: Path) -> list[Path]:
    out.parent.mkdir(parents=True, exist_ok=True)
    md, csv, png = out.with_suffix(".md"), out.with_suffix(".csv"), out.with_suffix(".png")
    md.write_text(table.to_markdown(floatfmt=".4f") + "\n")
    table.to_csv(csv)
    plot(table, png)
    return [md, csv, png]


def plot(table, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = [idx if isinstance(idx, str) else " / ".join(str(x) for x in idx) for idx in table.index]
    values = table["mean"] if "mean" in table else table["accuracy"]
    fig, ax = plt.subplots(figsize=(max(6, 1.2 * len(labels)), 4))
    ax.bar(range(len(labels)), values.fillna(0))
    ax.set_xticks(range(len(labels)), labels, rotation=30, ha="right", fontsize=8)
    ax.set_ylabel("accuracy (mean over tasks)")
    ax.set_title("rler-eval leaderboard")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
