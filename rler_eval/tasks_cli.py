"""`rler-eval tasks`: list the task cards with their benchmark and resolved data root.

The data root is printed as it resolves now (RLER_DATA expanded), so the line says where
the data is looked for. Output piped into `head` ends quietly.
"""

from __future__ import annotations

import os
import sys

from rler_eval.tasks import list_tasks, load_task


def add_arguments(p) -> None:
    p.add_argument("--check", action="store_true", help="also say whether each task's data root exists")


def cli(args) -> int:
    try:
        for name in list_tasks():
            card = load_task(name)
            line = f"{name:32s} {card.benchmark:16s} {card.root.absolute()}"
            if args.check:
                line += "  [found]" if card.root.exists() else "  [missing]"
            print(line, flush=True)
    except BrokenPipeError:  # `rler-eval tasks | head`: the reader left; stop without a traceback
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return 0
