"""Several tasks in one `rler-eval run`: `--task mvbench,videomme`, groups, and `all`.

Why a module of its own: the evaluation loop (`runner.run`) stays about one task. This
module only expands the task list, loads the model once, calls `runner.run` per task with
that backend, and writes a summary. Each task keeps the run folder a single-task run would
use, so a multi-task run and single-task runs resume each other.

Groups are YAML files in `tasks/groups/` (`group: name`, `tasks: [...]`, members may be
groups); `all` is every card whose split is not `train`. On the command line a group name
wins over a card of the same name (`videommmu` is the three tracks; its all-tracks card
stays reachable by path, `tasks/videommmu.yaml`); inside a group a member is a card first.
A task that fails (its data missing, say) is reported in the
summary and the others still run; the exit status is then 1.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import yaml

from rler_eval.errors import RlerError, TaskError
from rler_eval.tasks import TASKS_DIR, list_tasks, load_task

GROUPS_DIR = TASKS_DIR / "groups"


def load_groups() -> dict[str, list[str]]:
    """Group name -> member names, from tasks/groups/*.yaml, plus the computed `all`."""
    groups = {}
    for path in sorted(GROUPS_DIR.glob("*.yaml")):
        raw = yaml.safe_load(path.read_text()) or {}
        if not isinstance(raw.get("group"), str) or not isinstance(raw.get("tasks"), list) or not raw["tasks"]:
            raise TaskError(f"{path}: a group file needs 'group: NAME' and a non-empty 'tasks: [...]' list")
        groups[raw["group"]] = [str(t) for t in raw["tasks"]]
    groups["all"] = [name for name in list_tasks() if load_task(name).split != "train"]
    return groups


def expand_tasks(spec: str, groups: dict[str, list[str]] | None = None) -> list[str]:
    """'tempcompass,mvbench' -> the four TempCompass cards then mvbench; duplicates dropped.

    A name the user gives is a group when one has that name; a group's member is a card
    when one has that name (so `all` lists the `videommmu` card, not its tracks)."""
    groups = load_groups() if groups is None else groups
    cards = set(list_tasks())
    out: list[str] = []

    def add(name: str, seen: tuple[str, ...]) -> None:
        expand = name in groups and name not in seen and (not seen or name not in cards)
        if expand:
            for member in groups[name]:
                add(member, seen + (name,))
        elif name not in out:
            out.append(name)

    for name in (part.strip() for part in spec.split(",")):
        if not name:
            raise TaskError(f"--task {spec!r}: empty task name in the list")
        add(name, ())
    return out


def is_multi(spec: str) -> bool:
    """True for a list or a group: those get one run folder per task and a summary."""
    return "," in spec or spec in load_groups()


# ---------------------------------------------------------------- the run


def cli(args) -> int:
    from rler_eval import runner
    from rler_eval.models import parse_model_args

    names = expand_tasks(args.task)
    cards = [load_task(n) for n in names]  # fail on an unknown name before loading the model
    model = args.model or runner.default_model()
    model_args = {**merged_card_model_args(cards), **parse_model_args(args.model_args)}
    root = Path(args.out) if args.out else None
    backend = runner.load_model(model, model_args)
    rows = []
    for card in cards:
        rows.append(run_one(card, args, model, model_args, backend, root))
    summary = write_summary(summary_path(args.task, model, args.strategy, root), args.task, model, rows)
    print_table(rows, summary)
    return 0 if all(r["status"] == "ok" for r in rows) else 1


def run_one(card, args, model: str, model_args: dict, backend, root: Path | None) -> dict:
    """One task of the list through `runner.run` with the shared backend; failures become a row."""
    from rler_eval import runner

    t0 = time.time()
    strategy = args.strategy or card.strategy  # named in the row even when the settings fail
    try:
        strategy, overrides = runner.apply_run_args(card, args)
        metrics, out = runner.run(card, model, strategy, overrides, limit=args.limit, shard=args.shard,
                                  out=(root / card.name) if root else None, seed=args.seed, strict=args.strict,
                                  retry_errors=args.retry_errors, backend=backend, model_args=model_args,
                                  cache_dir=False if args.no_cache else args.cache_dir,
                                  limits=runner.limits_from_args(args))
    except RlerError as e:
        print(f"{card.name}: error: {e}", file=sys.stderr)
        return {"task": card.name, "status": "error", "error": str(e), "strategy": strategy}
    return {"task": card.name, "status": "ok", "strategy": strategy, "run": str(out),
            "n": metrics.get("n"), "errors": metrics.get("errors"), "accuracy": metrics.get("accuracy"),
            "candidates_per_question": metrics.get("candidates_per_question"),
            "wall_s": round(time.time() - t0, 2)}


def merged_card_model_args(cards) -> dict:
    """The cards' `args.model`, merged; one model load cannot honour two different values."""
    from rler_eval.models import parse_model_args

    merged: dict = {}
    source: dict = {}
    for card in cards:
        for key, value in parse_model_args(card.args.get("model")).items():
            if key in merged and merged[key] != value:
                raise TaskError(f"tasks {source[key]} and {card.name} ask for different model argument "
                                f"{key} ({merged[key]!r} vs {value!r}); run them separately or set --model-args")
            merged[key], source[key] = value, card.name
    return merged


# ---------------------------------------------------------------- the summary


def summary_path(spec: str, model: str, strategy: str | None, root: Path | None) -> Path:
    if root:
        return root / "summary.json"
    from rler_eval import runner

    label = spec.replace(",", "+")[:80]
    model_name = Path(model.rstrip("/")).name.replace(":", "-").replace("@", "-")
    return runner.RESULTS_DIR / f"summary__{label}__{model_name}__{(strategy or 'card').replace('@', 'at')}.json"


def write_summary(path: Path, spec: str, model: str, rows: list[dict]) -> Path:
    """summary.json (machine) and summary.md (people) next to each other."""
    from rler_eval.runner import write_json_atomic

    path.parent.mkdir(parents=True, exist_ok=True)
    ok = [r for r in rows if r["status"] == "ok"]
    summary = {"task_spec": spec, "model": model, "tasks": rows,
               "tasks_ok": len(ok), "tasks_failed": len(rows) - len(ok),
               "mean_accuracy_over_ok_tasks": (round(sum(r["accuracy"] or 0.0 for r in ok) / len(ok), 4)
                                               if ok else None)}
    write_json_atomic(path, summary)
    path.with_suffix(".md").write_text(markdown(summary))
    return path


def markdown(summary: dict) -> str:
    lines = [f"# {summary['task_spec']} | {summary['model']}", "",
             "| task | strategy | n | errors | accuracy | candidates/q | run folder |",
             "|---|---|---|---|---|---|---|"]
    for r in summary["tasks"]:
        if r["status"] == "ok":
            lines.append(f"| {r['task']} | {r['strategy']} | {r['n']} | {r['errors']} | {r['accuracy']:.4f} | "
                         f"{r['candidates_per_question']:.2f} | {r['run']} |")
        else:
            lines.append(f"| {r['task']} | {r['strategy']} | - | - | failed: {r['error']} | - | - |")
    mean = summary["mean_accuracy_over_ok_tasks"]
    if mean is not None:
        lines += ["", f"Unweighted mean accuracy over the {summary['tasks_ok']} finished task(s): {mean:.4f} "
                      "(tasks differ in size; see n)."]
    return "\n".join(lines) + "\n"


def print_table(rows: list[dict], summary: Path) -> None:
    print()
    for r in rows:
        if r["status"] == "ok":
            print(f"  {r['task']:32s} acc {r['accuracy']:.4f}  n={r['n']}  errors={r['errors']}  {r['run']}")
        else:
            print(f"  {r['task']:32s} FAILED: {r['error']}")
    print(f"summary: {summary} and {summary.with_suffix('.md')}")
