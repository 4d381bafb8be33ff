"""`rler-eval elect`: re-run a strategy offline on the candidates recorded in a run folder.

Why: drawing candidates is the expensive part of an evaluation. A run made with a large
fixed K (e.g. `rler@8`) records every candidate, so any strategy and weight setting can be
re-elected from it with no model. Candidates are consumed in their recorded order, so an
adaptive strategy's candidate count is simulated faithfully; refutation replies recorded
in the run are served back, so replaying a run's own strategy reproduces its answers.
(A check the run did not make has no reply in replay; it gives no verdict and keeps the vote.)
"""

from __future__ import annotations

import json
import time
from dataclasses import fields
from pathlib import Path

from rler_eval import election
from rler_eval.benchmarks import get_benchmark
from rler_eval.election.sources import ReplaySource
from rler_eval.errors import InputError
from rler_eval.runner import (compute_metrics, load_records, official_extractor, parse_sets, print_summary,
                              score_prediction, write_json_atomic)
from rler_eval.tasks import load_task
from rler_eval.types import Sample


def add_arguments(p) -> None:
    p.add_argument("--from", dest="run", required=True, help="run folder holding config.json and samples.jsonl")
    p.add_argument("--strategy", required=True, help="greedy | majority@K | best_of@K | rler@K | rler")
    p.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                   help="election setting override, repeatable (e.g. --set delta=0.3 --set w_E=0)")
    p.add_argument("--out", default=None, help="new run folder [<RUN>__elect_<strategy>]")


def cli(args) -> int:
    metrics, out = replay_run(args.run, args.strategy, parse_sets(args.sets), args.out)
    print_summary(metrics, out)
    return 0


def sample_from_dict(d: dict):
    keys = {f.name for f in fields(Sample)}
    kw = {k: v for k, v in d.items() if k in keys}
    if kw.get("clip") is not None:
        kw["clip"] = tuple(kw["clip"])
    if kw.get("key_times") is not None:
        kw["key_times"] = [tuple(t) for t in kw["key_times"]]
    return Sample(**kw)


def load_run(run_dir: str | Path) -> tuple[dict, list[dict]]:
    """(config, records) of a run folder; a clear error when it is not one."""
    run_dir = Path(run_dir)
    cfg_path = run_dir / "config.json"
    if not cfg_path.is_file() or not (run_dir / "samples.jsonl").is_file():
        raise InputError(f"{run_dir}: not a run folder (needs config.json and samples.jsonl)")
    try:
        config = json.loads(cfg_path.read_text())
    except json.JSONDecodeError as e:
        raise InputError(f"{cfg_path}: invalid JSON: {e}") from None
    return config, load_records(run_dir)


def load_card(config: dict, run_dir: Path):
    card = config.get("card")
    if card and Path(card).is_file():
        return load_task(card)
    return load_task(config["task"])


def elect_record(record: dict, strategy: str, overrides: dict, bench, card=None) -> dict:
    """A new record: `strategy` re-run on `record`'s candidates; errors carry over as errors."""
    new = {k: v for k, v in record.items() if k not in ("prediction", "answer", "score", "extracted")}
    if record.get("status") != "ok":
        new.update(score=0.0, extracted=None, answer=None)
        return new
    t0 = time.time()
    sample = sample_from_dict(record["sample"])
    source = ReplaySource.from_prediction(record["prediction"])
    pred = election.answer(strategy, sample, source, record.get("n_frames") or 0, overrides,
                           extract=official_extractor(bench, sample))
    pred.election["recorded_candidates"] = len(source.recorded)
    new.update(prediction=pred.to_dict(), answer=pred.answer, **score_prediction(bench, sample, pred, raw_reply=getattr(card, "prompt", None) == "plain"),
               timings={"elect_s": round(time.time() - t0, 6), "total_s": round(time.time() - t0, 6)})
    return new


def elect_records(records: list[dict], strategy: str, overrides: dict, bench, card=None) -> list[dict]:
    return [elect_record(r, strategy, overrides, bench, card) for r in records]


def replay_run(run: str | Path, strategy: str, overrides: dict | None = None,
               out: str | Path | None = None) -> tuple[dict, Path]:
    """Re-elect every record of `run` with `strategy`; writes and returns a new run folder."""
    election.parse_spec(strategy)
    election.make_config(overrides)  # fail early on unknown settings
    run = Path(run)
    config, records = load_run(run)
    card = load_card(config, run)
    card.args.update({k: config[k] for k in ("protocol", "scorer") if config.get(k)})  # as the run was scored
    from rler_eval import protocol

    bench = protocol.wrap(get_benchmark(card.benchmark), card)
    out = Path(out) if out else run.parent / f"{run.name}__elect_{strategy.replace('@', 'at')}"
    if out.resolve() == run.resolve():
        raise InputError("--out must differ from the source run folder")
    from rler_eval.preflight import check_enough_candidates
    check_enough_candidates(strategy, records)  # never label fewer draws as K
    out.mkdir(parents=True, exist_ok=True)
    new_records = elect_records(records, strategy, overrides or {}, bench, card)
    new_config = {**config, "strategy": strategy, "election": overrides or {}, "replayed_from": str(run),
                  "replayed_strategy": config.get("strategy")}
    write_json_atomic(out / "config.json", new_config)
    tmp = out / "samples.jsonl.tmp"
    with open(tmp, "w", encoding="utf-8") as fh:
        for r in new_records:
            fh.write(json.dumps(r, ensure_ascii=False, default=str) + "\n")
    tmp.replace(out / "samples.jsonl")
    metrics = compute_metrics(new_records, card, bench)
    metrics["run"] = {"task": card.name, "model": config.get("model_label", config.get("model")),
                      "strategy": strategy, "frames": card.frames.n, "replayed_from": str(run)}
    write_json_atomic(out / "metrics.json", metrics)
    return metrics, out
