"""`rler-eval tasks`: list the task cards with their benchmark and data root."""

from __future__ import annotations

from rler_eval.tasks import list_tasks, load_task


def add_arguments(p) -> None:
    p.add_argument("--check", action="store_true", help="also say whether each task's data root exists")


def cli(args) -> int:
    for name in list_tasks():
        card = load_task(name)
        line = f"{name:32s} {card.benchmark:16s} {card.data_root}"
        if args.check:
            line += "  [found]" if card.root.exists() else "  [missing]"
        print(line)
    return 0
