"""The `rler-eval` command.

Why this shape: each subcommand lives in the module that owns its work and exposes two
plain functions, `add_arguments(parser)` and `cli(args) -> int`. This file only wires
them, so `rler-eval --help` stays fast (no torch import) and a new subcommand is one
line here. Errors meant for the user (RlerError) print one line and exit 2.
"""

from __future__ import annotations

import argparse
import importlib
import sys

# subcommand -> (module, one-line help)
SUBCOMMANDS = {
    "run": ("rler_eval.runner", "evaluate a model on a task (resumable, shardable)"),
    "merge": ("rler_eval.merge", "merge the shards of a sharded run into one run folder"),
    "report": ("rler_eval.report", "write a markdown + CSV leaderboard from run folders"),
    "synth": ("rler_eval.benchmarks.synthvid", "generate synthvid clips and annotations"),
    "score": ("rler_eval.scoring", "score model responses for a task without a model"),
    "elect": ("rler_eval.replay", "re-run a strategy offline on a run's recorded candidates"),
    "show": ("rler_eval.show", "write an HTML page showing each question's frames, candidates and election"),
    "sweep": ("rler_eval.sweep", "sweep strategies and weights over recorded runs"),
    "train": ("rler_eval.training.cli", "run a training recipe (SFT and/or GRPO)"),
    "tasks": ("rler_eval.tasks_cli", "list the task cards"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="rler-eval",
        description="Evaluate and train video LMMs with RLER: Reinforce to Learn, Elect to Reason.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module_name, help_text) in SUBCOMMANDS.items():
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as e:
            if e.name != module_name:
                raise
            continue  # a subcommand whose module is not built yet is simply absent
        p = sub.add_parser(name, help=help_text, description=(module.__doc__ or help_text).strip(),
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        module.add_arguments(p)
        p.set_defaults(_module=module)
    return parser


def main(argv: list[str] | None = None) -> int:
    from rler_eval.errors import RlerError

    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "_module", None):
        parser.print_help()
        return 1
    try:
        return int(args._module.cli(args) or 0)
    except RlerError as e:
        print(f"rler-eval {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; finished samples are saved, re-run the same command to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
