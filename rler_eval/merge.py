"""`rler-eval merge`: combine the shard folders of one run into a single run folder.

Why: `--shard i/n` lets n processes (or nodes) split a task; the merged folder is an
ordinary run folder, so `report`, `elect` and `sweep` treat it like any other run.
Shards must agree on every setting except the shard itself.
"""

from __future__ import annotations

import json
from pathlib import Path

from rler_eval.errors import InputError
from rler_eval.records import RunLock, compute_metrics, load_records, rewrite_records, write_json_atomic
from rler_eval.runner import RESUME_KEYS


def add_arguments(p) -> None:
    p.add_argument("shards", nargs="+", help="shard run folders (made with --shard I/N)")
    p.add_argument("--out", required=True, help="the merged run folder to write")


def cli(args) -> int:
    metrics = merge([Path(s) for s in args.shards], Path(args.out))
    print(json.dumps({k: metrics[k] for k in ("accuracy", "n", "errors", "candidates_per_question")
                      if k in metrics}, indent=2))
    return 0


def merge(shards: list[Path], out: Path) -> dict:
    from rler_eval.benchmarks import get_benchmark
    from rler_eval.tasks import load_task

    configs = [read_config(s) for s in shards]
    base = configs[0]
    for s, cfg in zip(shards, configs):
        diff = [k for k in RESUME_KEYS if k != "shard" and cfg.get(k) != base.get(k)]
        if diff:
            raise InputError(f"{s}: settings differ from {shards[0]} in {', '.join(diff)}")
    records: dict[str, dict] = {}
    for s in shards:
        for r in load_records(s):  # the shards are only read
            records[r["id"]] = r
    with RunLock(out):
        rewrite_records(out, list(records.values()))
    from rler_eval import protocol

    card = load_task(base["card"] or base["task"])
    card.args.update({k: base[k] for k in ("protocol", "scorer") if base.get(k)})  # as the shards were scored
    bench = protocol.wrap(get_benchmark(card.benchmark), card)
    metrics = compute_metrics(list(records.values()), card, bench)
    metrics["run"] = {"task": base["task"], "model": base.get("model_label", base["model"]),
                      "strategy": base["strategy"], "frames": base["frames"]["n"], "merged_from": len(shards)}
    write_json_atomic(out / "config.json", {**base, "shard": None, "merged_from": [str(s) for s in shards]})
    write_json_atomic(out / "metrics.json", metrics)
    return metrics


def read_config(run_dir: Path) -> dict:
    path = run_dir / "config.json"
    if not path.is_file():
        raise InputError(f"{run_dir}: not a run folder (no config.json)")
    return json.loads(path.read_text())
