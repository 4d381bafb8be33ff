"""Benchmark adapters: one module per benchmark family.

Each module reads its benchmark's official release format from local disk and scores
with the official metric. A module provides plain functions (see `base.py` for the
contract and the defaults a module may leave out):

    load_samples(card) -> list[Sample]          raises DataMissingError with a clear message
    doc_to_sample(doc, card, index) -> Sample   one official row -> Sample (used by `score`)
    score(sample, response) -> dict             {"score": float, "extracted": ...}
    aggregate(rows, card) -> dict               official aggregate + breakdowns
    build_prompt(sample, frameset, card)        optional; defaults to rler_eval.prompt
"""

from __future__ import annotations

import importlib
from types import ModuleType

from rler_eval.errors import TaskError

# name -> module; imported lazily so the core never pays for adapters it does not use.
MODULES = {
    "synthvid": "rler_eval.benchmarks.synthvid",
    "mvbench": "rler_eval.benchmarks.mvbench",
    "lvbench": "rler_eval.benchmarks.lvbench",
    "tempcompass": "rler_eval.benchmarks.tempcompass",
    "videomme": "rler_eval.benchmarks.videomme",
    "videommmu": "rler_eval.benchmarks.videommmu",
    "longvideobench": "rler_eval.benchmarks.longvideobench",
    "vsibench": "rler_eval.benchmarks.vsibench",
    "wildvideo": "rler_eval.benchmarks.wildvideo",
}


def get_benchmark(name: str) -> ModuleType:
    """The adapter module for `name`, with base.py's defaults for anything it omits."""
    if name not in MODULES:
        raise TaskError(f"unknown benchmark '{name}'; known: {sorted(MODULES)}")
    try:
        module = importlib.import_module(MODULES[name])
    except ModuleNotFoundError as e:
        if e.name == MODULES[name]:
            raise TaskError(f"benchmark '{name}' is not implemented yet (no module {MODULES[name]})") from None
        raise
    from rler_eval.benchmarks import base
    for fn in ("build_prompt", "score", "aggregate", "doc_to_sample"):
        if not hasattr(module, fn):
            setattr(module, fn, getattr(base, fn))
    return module
