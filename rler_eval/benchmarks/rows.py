"""Per-row validation: one bad annotation row costs one sample, never the benchmark.

Why: the official releases are large and not always clean (a null field, a row missing
its answer, a line with broken bytes). Raising while loading would abort the whole task
with zero records; instead a row that cannot become a Sample becomes a placeholder Sample
that carries the error (`Sample.load_error`), and the runner writes it as an error record
naming the file, row and field, while every other row runs. `--strict` still stops on it.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from rler_eval.benchmarks.extract import BadRow
from rler_eval.errors import InputError
from rler_eval.tasks import TaskCard
from rler_eval.types import Sample


def guard(make: Callable[[], Sample], card: TaskCard, where: str, row=None) -> Sample:
    """`make()`, or a placeholder Sample carrying the InputError it raised.

    `where` names the file and row ("<file> row 3"); it becomes the placeholder's id
    (relative to the data root), which is unique and stable across runs, so resume and
    `--retry-errors` treat the bad row like any other sample.
    """
    if isinstance(row, BadRow):
        return bad_sample(card, row.message, where)
    try:
        return make()
    except InputError as e:
        return bad_sample(card, str(e), where)


def bad_sample(card: TaskCard, message: str, where: str) -> Sample:
    return Sample(id=f"invalid-row:{_relative(where, card)}", task=card.name, question="", answer="",
                  load_error=message)


def _relative(where: str, card: TaskCard) -> str:
    root = str(card.root)
    try:
        root = str(Path(root).resolve()) if not where.startswith(root) else root
    except OSError:
        pass
    return where[len(root):].lstrip("/") if where.startswith(root) else where
