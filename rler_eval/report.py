"""`rler-eval report`: an honest leaderboard from run folders, as markdown, CSV and a plot.

Why it is built this way (each point answers a way a leaderboard misleads):
- Rows are model × strategy; frames are a column. A model evaluated at 8 frames on one task
  and 16 on another stays one row. Only when one model × strategy has the *same task* at
  two frame counts are its rows split by frames, since those are two different settings.
- Every cell shows its accuracy, 95 % bootstrap interval and n (`stats.py`), so a
  4-question fixture run cannot pass for a 500-question run. Fixture data and scores from
  the rule-based judge fallback are marked in the cell.
- The mean is taken only over the tasks every measured row has, and says which tasks.
- Two runs of one cell are never merged silently: the one with more questions is shown and
  a note names the one left out.
- Published figures (results/reference.yaml) appear as rows marked "reported, not
  reproduced here", with their sources listed below the table.
- The plot is the same table: accuracy against candidates per question, one point per
  model × strategy with its interval as error bars and n in the legend, one panel per task.

Why pandas: the CSV and the markdown are written from the same frames.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

from rler_eval.errors import InputError

REFERENCE = Path(__file__).resolve().parent.parent / "results" / "reference.yaml"
REPORTED = "reported, not reproduced here"
FIXTURE_MARK, FALLBACK_MARK = "ᶠ", "ʳ"


def add_arguments(p) -> None:
    p.add_argument("runs", nargs="+", help="run folders (each with metrics.json), or folders holding them")
    p.add_argument("--out", default="results/leaderboard", help="output prefix [results/leaderboard]")
    p.add_argument("--metric", default="accuracy", help="the metric shown per task [accuracy]")
    p.add_argument("--reference", default=str(REFERENCE),
                   help="YAML of published figures shown as 'reported' rows, or 'none' [results/reference.yaml]")
    p.add_argument("--details", action="store_true",
                   help="one row per run with its headline metrics (accuracy, cost, grounding, format) "
                        "instead of the task pivot")


DETAIL_COLUMNS = ["accuracy", "candidates_per_question", "model_calls_per_question", "generated_tokens_per_question",
                  "grounding_f1", "transparency_rate", "repetition_rate", "abstentions", "errors", "n"]


def cli(args) -> int:
    runs = [Path(r) for r in args.runs]
    if args.details:
        table = details(runs)
        paths = write_details(table, Path(args.out))
        print(table.to_markdown(floatfmt=".4f"))
    else:
        board = leaderboard(runs, args.metric, None if args.reference == "none" else args.reference)
        paths = write(board, Path(args.out))
        print(board.markdown(Path(args.out).parent))
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


# ---------------------------------------------------------------- one cell = one run


@dataclass
class Cell:
    run: Path
    model: str
    strategy: str
    task: str
    frames: int | None
    interval: object  # stats.Interval
    cand_per_q: float | None
    fixture: bool = False
    fallback: int = 0  # questions scored by the rule-based fallback instead of a judge
    mtime: float = 0.0

    @property
    def n(self) -> int:
        return self.interval.n

    def text(self) -> str:
        marks = (FIXTURE_MARK if self.fixture else "") + (f"{FALLBACK_MARK}{self.fallback}" if self.fallback else "")
        return f"{self.interval.format()} n={self.n}" + (f" {marks}" if marks else "")


def short_model(model: str) -> str:
    """A checkpoint path shown by its last two parts ('checkpoints/rler-tiny'), anything else as is."""
    parts = Path(str(model).rstrip("/")).parts
    return "/".join(parts[-2:]) if len(parts) > 2 else str(model)


def is_fixture(config: dict, records: list[dict]) -> bool:
    """A run on fixture data: its card or its videos live under a 'fixtures' folder, or the run says so."""
    data = config.get("data") if isinstance(config.get("data"), dict) else {}
    if config.get("fixture") or data.get("fixture"):
        return True
    paths = [config.get("card") or ""] + [str((r.get("sample") or {}).get("video") or "") for r in records[:50]]
    return any("fixtures" in Path(p).parts for p in paths if p)


def load_cell(run: Path, metric: str) -> Cell:
    from rler_eval import stats
    from rler_eval.benchmarks.judge import FALLBACK
    from rler_eval.runner import load_records

    try:
        m = json.loads((run / "metrics.json").read_text())
    except json.JSONDecodeError as e:
        raise InputError(f"{run / 'metrics.json'}: invalid JSON: {e}") from None
    config = json.loads((run / "config.json").read_text()) if (run / "config.json").is_file() else {}
    info = m.get("run", {})
    records = load_records(run)
    interval = cell_interval(run, m, config, records, metric)
    fallback = sum(isinstance(r.get("extracted"), dict) and r["extracted"].get("by") == FALLBACK for r in records)
    return Cell(run=run, model=short_model(info.get("model") or config.get("model_label") or "?"),
                strategy=info.get("strategy", config.get("strategy", "?")), task=info.get("task", run.name),
                frames=info.get("frames"), interval=interval, cand_per_q=m.get("candidates_per_question"),
                fixture=is_fixture(config, records), fallback=int(fallback), mtime=(run / "metrics.json").stat().st_mtime)


def cell_interval(run: Path, metrics: dict, config: dict, records: list[dict], metric: str):
    """The metric with its bootstrap interval, from the records (the benchmark's own aggregate
    where it is not a plain mean). Without records, the value alone (interval n/a)."""
    from rler_eval import stats

    value = metrics.get(metric)
    if metric != "accuracy" or not records:
        v = float(value) if isinstance(value, (int, float)) else math.nan
        return stats.Interval(v, math.nan, math.nan, int(metrics.get("n") or 0))
    scores = [float(r.get("score") or 0.0) for r in records]
    if isinstance(value, (int, float)) and abs(float(value) - sum(scores) / len(scores)) < 1e-9:
        return stats.bootstrap_ci(scores)
    try:
        from rler_eval.benchmarks import get_benchmark
        from rler_eval.replay import load_card

        card = load_card(config, run)
        return stats.accuracy_interval(records, card, get_benchmark(card.benchmark))
    except Exception as e:  # noqa: BLE001 - a moved card must not hide the run; say why there is no interval
        print(f"report: {run}: no interval for the benchmark's aggregate ({type(e).__name__}: {e})")
        return stats.Interval(float(value), math.nan, math.nan, len(records))


# ---------------------------------------------------------------- the board


@dataclass
class Board:
    rows: list[dict]  # key, model, strategy, frames, cells {task: Cell}, mean Interval
    tasks: list[str]
    shared: list[str]
    notes: list[str] = field(default_factory=list)
    reference: list[dict] = field(default_factory=list)

    def frame(self):
        """The display table (strings), measured rows first, then reported ones."""
        import pandas as pd

        mean_col = mean_label(self.shared)
        out = []
        for r in self.rows:
            row = {"model": r["model"], "strategy": r["strategy"], "frames": r["frames_text"],
                   "candidates/q": fmt_float(r["cand_per_q"])}
            row.update({t: r["cells"][t].text() if t in r["cells"] else "" for t in self.tasks})
            row[mean_col] = r["mean"].format() if r["mean"].n else ""
            out.append(row)
        for model, figures in reference_rows(self.reference, self.tasks).items():
            row = {"model": model, "strategy": REPORTED, "frames": "", "candidates/q": ""}
            row.update({t: f"{figures[t]:.1f}" if t in figures else "" for t in self.tasks})
            have = [figures[t] for t in self.shared if t in figures]
            row[mean_col] = f"{sum(have) / len(have):.1f}" if self.shared and len(have) == len(self.shared) else ""
            out.append(row)
        return pd.DataFrame(out)

    def long(self):
        """One CSV row per cell (measured and reported), with the interval bounds and flags."""
        import pandas as pd

        out = []
        for r in self.rows:
            for t, c in r["cells"].items():
                out.append({"kind": "measured", "model": r["model"], "strategy": r["strategy"], "frames": c.frames,
                            "task": t, "accuracy": pct(c.interval.value), "ci95_low": pct(c.interval.low),
                            "ci95_high": pct(c.interval.high), "n": c.n, "candidates_per_question": c.cand_per_q,
                            "fixture": c.fixture, "rule_fallback_scored": c.fallback, "run": str(c.run), "source": ""})
            if r["mean"].n:
                out.append({"kind": "measured", "model": r["model"], "strategy": r["strategy"],
                            "task": mean_label(self.shared), "accuracy": pct(r["mean"].value),
                            "ci95_low": pct(r["mean"].low), "ci95_high": pct(r["mean"].high), "n": r["mean"].n})
        for ref in self.reference:
            out.append({"kind": REPORTED, "model": ref["model"], "strategy": REPORTED, "task": ref.get("task") or "",
                        "benchmark": ref["benchmark"], "accuracy": ref["accuracy"], "setting": ref.get("setting", ""),
                        "source": ref["source"]})
        return pd.DataFrame(out)

    def markdown(self, base: Path = Path(".")) -> str:
        parts = ["# Leaderboard", "",
                 "Each cell: accuracy (%) [95 % bootstrap interval] n=questions. "
                 f"{FIXTURE_MARK} = fixture data (a schema check, not a benchmark score); "
                 f"{FALLBACK_MARK}k = k answers scored by the rule-based fallback, not an LLM judge. "
                 f"The mean is over the tasks every measured row has ({', '.join(self.shared) or 'none'}).", "",
                 self.frame().to_markdown(index=False), ""]
        if self.notes:
            parts += ["## Notes", ""] + [f"- {n}" for n in self.notes] + [""]
        if self.reference:
            parts += [f"## Published figures ({REPORTED})", "", "| model | benchmark | accuracy | setting | source |",
                      "|---|---|---|---|---|"]
            parts += [f"| {r['model']} | {r['benchmark']} | {r['accuracy']:.1f} | {r.get('setting', '')} | {r['source']} |"
                      for r in self.reference]
            parts.append("")
        parts += ["## Runs", "", "Evidence viewer: `rler-eval show RUN` writes RUN/show/index.html.", ""]
        for r in self.rows:
            for t, c in sorted(r["cells"].items()):
                viewer = c.run / "show" / "index.html"
                link = f"[viewer]({os.path.relpath(viewer, base)})" if viewer.is_file() else f"`rler-eval show {c.run}`"
                parts.append(f"- {r['model']} · {r['strategy']} · {t} (n={c.n}): {c.run} — {link}")
        return "\n".join(parts) + "\n"


def mean_label(shared: list[str]) -> str:
    return f"mean ({len(shared)} shared tasks)" if shared else "mean (no shared task)"


def pct(x) -> float | None:
    return None if x is None or (isinstance(x, float) and math.isnan(x)) else round(100 * x, 2)


def fmt_float(x) -> str:
    return "" if x is None else f"{x:.2f}"


def load_reference(path) -> list[dict]:
    import yaml

    if path is None:
        return []
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such reference file (use --reference none to leave published figures out)")
    rows = yaml.safe_load(path.read_text()) or []
    for i, r in enumerate(rows):
        missing = [k for k in ("model", "benchmark", "accuracy", "source") if r.get(k) in (None, "")]
        if missing:
            raise InputError(f"{path}: entry {i + 1} lacks {', '.join(missing)}")
    return rows


def reference_rows(reference: list[dict], tasks: list[str]) -> dict[str, dict[str, float]]:
    """{model: {task: accuracy}} for the reported figures that fall in this board's task columns."""
    out: dict[str, dict[str, float]] = {}
    for r in reference:
        if r.get("task") in tasks:
            out.setdefault(r["model"], {})[r["task"]] = float(r["accuracy"])
    return out


def leaderboard(paths: list[Path], metric: str = "accuracy", reference=REFERENCE) -> Board:
    """Rows model × strategy (split by frames only where one task was run at two frame counts)."""
    from rler_eval import stats

    cells = [load_cell(run, metric) for run in find_runs(paths)]
    notes: list[str] = []
    groups: dict[tuple, list[Cell]] = {}
    for c in cells:
        groups.setdefault((c.model, c.strategy), []).append(c)
    keyed: dict[tuple, list[Cell]] = {}
    for (model, strategy), cs in groups.items():
        split = any(len({c.frames for c in cs if c.task == t}) > 1 for t in {c.task for c in cs})
        for c in cs:
            keyed.setdefault((model, strategy, c.frames if split else None), []).append(c)
    rows = []
    for (model, strategy, frames), cs in keyed.items():
        chosen: dict[str, Cell] = {}
        for t in sorted({c.task for c in cs}):
            same = sorted((c for c in cs if c.task == t), key=lambda c: (c.n, c.mtime), reverse=True)
            chosen[t] = same[0]
            for other in same[1:]:
                notes.append(f"{model} · {strategy} · {t}: {len(same)} runs of this setting; shown {same[0].run} "
                             f"(n={same[0].n}), left out {other.run} (n={other.n}, accuracy {other.interval.format()})")
        fr = sorted({c.frames for c in chosen.values()}, key=str)
        frames_text = str(fr[0]) if len(fr) == 1 else ", ".join(f"{c.frames} ({t})" for t, c in chosen.items())
        costs = [c.cand_per_q for c in chosen.values() if c.cand_per_q is not None]
        rows.append({"model": model, "strategy": strategy, "frames_text": frames_text, "cells": chosen,
                     "cand_per_q": sum(costs) / len(costs) if costs else None})
    tasks = sorted({t for r in rows for t in r["cells"]})
    shared = [t for t in tasks if all(t in r["cells"] for r in rows)]
    if len(shared) < len(tasks):
        notes.append(f"tasks not run by every row are left out of the mean: "
                     f"{', '.join(t for t in tasks if t not in shared)}")
    for r in rows:
        r["mean"] = stats.mean_of([r["cells"][t].interval for t in shared]) if shared else stats.Interval(
            math.nan, math.nan, math.nan, 0)
    if any(c.fixture for r in rows for c in r["cells"].values()):
        notes.append(f"cells marked {FIXTURE_MARK} ran on fixture data: they check the pipeline, not the model")
    rows.sort(key=lambda r: (-(r["mean"].value if r["mean"].n else -1), r["model"], r["strategy"]))
    return Board(rows=rows, tasks=tasks, shared=shared, notes=notes, reference=load_reference(reference))


# ---------------------------------------------------------------- writing


def write(board: Board, out: Path) -> list[Path]:
    out.parent.mkdir(parents=True, exist_ok=True)
    md, csv, png = out.with_suffix(".md"), out.with_suffix(".csv"), out.with_suffix(".png")
    md.write_text(board.markdown(out.parent))
    board.long().to_csv(csv, index=False)
    plot(board, png)
    return [md, csv, png]


def plot(board: Board, path: Path) -> None:
    """One panel per task: accuracy against candidates per question, one point per row with
    its 95 % interval; reported figures for the task as dashed lines."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks = board.tasks or ["(none)"]
    cols = min(3, len(tasks))
    nrows = math.ceil(len(tasks) / cols)
    fig, axes = plt.subplots(nrows, cols, figsize=(5.2 * cols, 4.2 * nrows), squeeze=False)
    refs = reference_rows(board.reference, board.tasks)
    for ax, task in zip(axes.flat, tasks):
        for r in board.rows:
            c = r["cells"].get(task)
            if c is None or math.isnan(c.interval.value):
                continue
            v, lo, hi = (100 * x for x in (c.interval.value, c.interval.low, c.interval.high))
            yerr = [[v - lo], [hi - v]] if not math.isnan(lo) else None
            ax.errorbar([c.cand_per_q or 0], [v], yerr=yerr, fmt="o", capsize=4,
                        label=f"{r['model']} · {r['strategy']} (n={c.n}{', fixture' if c.fixture else ''})")
        for model, figures in refs.items():
            if task in figures:
                ax.axhline(figures[task], ls="--", lw=1, color="gray")
                ax.annotate(f"{model} ({REPORTED})", (0.01, figures[task]), xycoords=("axes fraction", "data"),
                            fontsize=6, color="gray", va="bottom")
        ax.set_title(task)
        ax.set_xlabel("candidates per question")
        ax.set_ylabel("accuracy (%) with 95 % bootstrap interval")
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
    for ax in list(axes.flat)[len(tasks):]:
        ax.axis("off")
    fig.suptitle("rler-eval leaderboard")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def details(paths: list[Path]):
    """One row per run: task, model, strategy and the headline metrics of DETAIL_COLUMNS, with the
    accuracy's 95 % bootstrap interval."""
    import pandas as pd

    rows = []
    for run in find_runs(paths):
        m = json.loads((run / "metrics.json").read_text())
        info = m.get("run", {})
        cell = load_cell(run, "accuracy")
        rows.append({"task": info.get("task"), "model": short_model(info.get("model")), "strategy": info.get("strategy"),
                     **{c: m.get(c) for c in DETAIL_COLUMNS},
                     "accuracy_ci95": cell.interval.format(), "fixture": cell.fixture})
    table = pd.DataFrame(rows)
    table.index = [f"{r.task} · {r.model} · {r.strategy}" for r in table.itertuples()]
    return table.drop(columns=["task", "model", "strategy"])


def write_details(table, out: Path) -> list[Path]:
    out.parent.mkdir(parents=True, exist_ok=True)
    md, csv = out.with_suffix(".md"), out.with_suffix(".csv")
    md.write_text(table.to_markdown(floatfmt=".4f") + "\n")
    table.to_csv(csv)
    return [md, csv]
