"""The evaluation loop: task card -> samples -> frames -> strategy -> scored records.

Why it is built this way:
- One JSON line per sample, flushed and fsynced as it finishes, so a run killed with
  SIGKILL loses at most the sample in flight; re-running the same command skips every
  recorded id (finished samples are never recomputed).
- A per-sample failure (bad video, bad row) becomes an error record and the run goes on;
  `--strict` fails fast instead.
- metrics.json is always recomputed from the records and written atomically, so an
  interrupted-then-resumed run ends with exactly the metrics of an uninterrupted one.
  Wall-clock figures live under "timing", apart from the deterministic metrics.
"""

from __future__ import annotations

import json
import os
import sys
import time
import traceback
from pathlib import Path

from rler_eval import __version__, evidence
from rler_eval.errors import InputError, RlerError, TaskError
from rler_eval.tasks import TaskCard, load_task
from rler_eval.types import Prediction, Sample

RESULTS_DIR = Path("results/runs")
BUNDLED_MODEL = Path(__file__).resolve().parent.parent / "checkpoints" / "rler-tiny"


def default_model() -> str:
    """$RLER_MODEL, else the bundled trained rler-tiny when present, else a tiny random model."""
    if os.environ.get("RLER_MODEL"):
        return os.environ["RLER_MODEL"]
    return str(BUNDLED_MODEL) if (BUNDLED_MODEL / "config.json").exists() else "tiny-random"


# config keys that must match for a run folder to be resumed
RESUME_KEYS = ("task", "model", "strategy", "election", "frames", "max_new_tokens", "seed", "shard")


# ---------------------------------------------------------------- CLI


def add_arguments(p) -> None:
    p.add_argument("--task", default="synthvid", help="task card name (tasks/<name>.yaml) or path [synthvid]")
    p.add_argument("--model", default=None,
                   help="local HF checkpoint folder, 'tiny-random', 'vllm:PATH' or 'openai:MODEL@URL' "
                        "[$RLER_MODEL, else the bundled checkpoints/rler-tiny, else tiny-random]")
    p.add_argument("--strategy", default=None, help="greedy | majority@K | best_of@K | rler@K | rler "
                                                    "[the task card's strategy]")
    p.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                   help="strategy parameter override, repeatable (e.g. --set delta=0.3)")
    p.add_argument("--frames", type=int, default=None, help="frames per video [the task card's frames.n]")
    p.add_argument("--limit", type=int, default=None, help="evaluate only the first N samples")
    p.add_argument("--shard", default=None, metavar="I/N", help="evaluate shard I of N (0-based), e.g. 0/4")
    p.add_argument("--out", default=None, help="run folder [results/runs/<task>__<model>__<strategy>__f<N>]")
    p.add_argument("--max-new-tokens", type=int, default=None, help="[the task card's max_new_tokens]")
    p.add_argument("--seed", type=int, default=0, help="base seed for sampled candidates [0]")
    p.add_argument("--strict", action="store_true", help="stop at the first per-sample error")
    p.add_argument("--retry-errors", action="store_true", help="re-run samples recorded as errors")
    p.add_argument("--cache-dir", default=None, help="frame cache folder [$RLER_CACHE or ~/.cache/rler-eval]")


def cli(args) -> int:
    card = load_task(args.task)
    if args.frames:
        card.frames.n = args.frames
    if args.max_new_tokens:
        card.max_new_tokens = args.max_new_tokens
    strategy = args.strategy or card.strategy
    overrides = {**(card.args.get("election") or {}), **parse_sets(args.sets)}
    metrics, out = run(card, args.model or default_model(), strategy, overrides, limit=args.limit, shard=args.shard,
                       out=args.out, seed=args.seed, strict=args.strict, retry_errors=args.retry_errors,
                       cache_dir=args.cache_dir)
    print_summary(metrics, out)
    return 0


def parse_sets(items: list[str]) -> dict:
    """['delta=0.3', 'refute=false'] -> {'delta': 0.3, 'refute': False} (values parsed as YAML)."""
    import yaml

    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise InputError(f"--set {item!r}: expected KEY=VALUE")
        out[key.strip()] = yaml.safe_load(value)
    return out


def parse_shard(shard: str | None) -> tuple[int, int] | None:
    if not shard:
        return None
    try:
        i, n = (int(x) for x in shard.split("/"))
    except ValueError:
        raise InputError(f"--shard {shard!r}: expected I/N, e.g. 0/4") from None
    if not 0 <= i < n:
        raise InputError(f"--shard {shard!r}: I must be in [0, N)")
    return i, n


# ---------------------------------------------------------------- the run


def run(card: TaskCard, model: str, strategy: str, overrides: dict | None = None, limit: int | None = None,
        shard: str | None = None, out: str | Path | None = None, seed: int = 0, strict: bool = False,
        retry_errors: bool = False, cache_dir: str | None = None, backend=None) -> tuple[dict, Path]:
    """Evaluate `model` on `card` with `strategy`; returns (metrics, run folder)."""
    from rler_eval import election
    from rler_eval.benchmarks import get_benchmark

    election.parse_spec(strategy)  # fail early on a bad strategy name
    bench = get_benchmark(card.benchmark)
    samples = select(bench.load_samples(card), limit, parse_shard(shard))
    config = run_config(card, model, strategy, overrides or {}, seed, shard, limit)
    out = Path(out) if out else default_out(config)
    records = prepare_folder(out, config, retry_errors)
    done = {r["id"] for r in records}
    pending = [s for s in samples if s.id not in done]
    start = time.time()
    if pending:
        backend = backend or load_model(model)
        config["model_label"] = getattr(backend, "name", model)
        write_json_atomic(out / "config.json", config)
        records += evaluate(pending, card, bench, backend, strategy, overrides or {}, out, seed, strict, cache_dir)
    metrics = compute_metrics(records, card, bench)
    metrics["run"] = {"task": card.name, "model": config.get("model_label", model), "strategy": strategy,
                      "frames": card.frames.n}
    metrics["timing"] = {"wall_s_this_invocation": round(time.time() - start, 3),
                         "sample_s_total": round(sum(r.get("timings", {}).get("total_s", 0) for r in records), 3)}
    write_json_atomic(out / "metrics.json", metrics)
    return metrics, out


def select(samples: list[Sample], limit: int | None, shard: tuple[int, int] | None) -> list[Sample]:
    ids = [s.id for s in samples]
    if len(set(ids)) != len(ids):
        dup = next(i for i in ids if ids.count(i) > 1)
        raise InputError(f"duplicate sample id {dup!r}: sample ids must be unique within a task")
    if limit is not None:
        samples = samples[:limit]
    if shard:
        i, n = shard
        samples = samples[i::n]
    return samples


def run_config(card, model, strategy, overrides, seed, shard, limit) -> dict:
    from dataclasses import asdict

    return {"task": card.name, "card": card.path, "benchmark": card.benchmark, "model": model,
            "strategy": strategy, "election": overrides, "frames": asdict(card.frames),
            "max_new_tokens": card.max_new_tokens, "seed": seed, "shard": shard, "limit": limit,
            "prompt": card.prompt, "rler_eval_version": __version__}


def default_out(config: dict) -> Path:
    model = Path(config["model"].rstrip("/")).name.replace(":", "-").replace("@", "-")
    name = f"{config['task']}__{model}__{config['strategy'].replace('@', 'at')}__f{config['frames']['n']}"
    if config.get("shard"):
        name += "__shard" + config["shard"].replace("/", "of")
    return RESULTS_DIR / name


def load_model(spec: str):
    from rler_eval.models import load_backend

    print(f"loading model {spec} ...", file=sys.stderr)
    return load_backend(spec)


def prepare_folder(out: Path, config: dict, retry_errors: bool) -> list[dict]:
    """Create or resume a run folder; refuse to mix records from different settings."""
    out.mkdir(parents=True, exist_ok=True)
    cfg_path = out / "config.json"
    if cfg_path.exists():
        old = json.loads(cfg_path.read_text())
        diff = [k for k in RESUME_KEYS if old.get(k) != config.get(k)]
        if diff:
            raise TaskError(f"{out} holds a run with different settings ({', '.join(diff)}); "
                            f"use another --out or delete the folder")
        config["model_label"] = old.get("model_label", config["model"])
    write_json_atomic(cfg_path, config)
    records = load_records(out)
    if retry_errors and any(r["status"] != "ok" for r in records):
        records = [r for r in records if r["status"] == "ok"]
        rewrite_records(out, records)
    return records


def evaluate(samples, card, bench, backend, strategy, overrides, out, seed, strict, cache_dir) -> list[dict]:
    from tqdm import tqdm

    records, correct = [], 0.0
    bar = tqdm(samples, desc=f"{card.name} [{strategy}]", unit="q", dynamic_ncols=True)
    with open(out / "samples.jsonl", "a", encoding="utf-8") as fh:
        for sample in bar:
            record = evaluate_one(sample, card, bench, backend, strategy, overrides, seed, strict, cache_dir)
            append_record(fh, record)
            records.append(record)
            correct += record.get("score") or 0.0
            bar.set_postfix(acc=f"{correct / len(records):.3f}",
                            errors=sum(r["status"] != "ok" for r in records))
    return records


def evaluate_one(sample, card, bench, backend, strategy, overrides, seed, strict, cache_dir) -> dict:
    from rler_eval import election
    from rler_eval.election.sources import LiveSource

    t0 = time.time()
    record = {"id": sample.id, "task": card.name, "status": "ok", "error": None,
              "category": sample.category, "sample": sample.to_dict()}
    try:
        frameset = load_sample_frames(sample, card, cache_dir)
        t1 = time.time()
        prompt = bench.build_prompt(sample, frameset, card)
        source = LiveSource(backend, prompt, card.max_new_tokens, seed, sample.id)
        pred = election.answer(strategy, sample, source, prompt.n_frames, overrides)
        t2 = time.time()
        key = frameset.key_frame_labels(sample.key_times) if frameset is not None else []
        record.update(prompt_hash=prompt.key, n_frames=prompt.n_frames, key_frames=key,
                      frame_times=list(frameset.timestamps) if frameset is not None else [],
                      prediction=pred.to_dict(), answer=pred.answer, **score_prediction(bench, sample, pred),
                      timings={"frames_s": round(t1 - t0, 4), "generate_s": round(t2 - t1, 4)})
    except Exception as e:  # noqa: BLE001 - a per-sample failure must not lose the run
        if strict:
            raise
        record.update(status="error", error=f"{type(e).__name__}: {e}", score=0.0, extracted=None,
                      answer=None, traceback=None if isinstance(e, RlerError) else traceback.format_exc(limit=5))
    record.setdefault("timings", {})["total_s"] = round(time.time() - t0, 4)
    return record


def load_sample_frames(sample: Sample, card: TaskCard, cache_dir: str | None):
    if not sample.video:
        return None
    from rler_eval.video import load_frames

    return load_frames(sample.video, card.frames, clip=sample.clip, cache_dir=cache_dir)


def score_prediction(bench, sample: Sample, prediction: Prediction) -> dict:
    """Score the elected answer with the benchmark's own scorer; an abstention is wrong."""
    if prediction.answer is None:
        return {"score": 0.0, "extracted": None}
    result = bench.score(sample, f"<answer>{prediction.answer}</answer>")
    return {"score": float(result["score"]), "extracted": result.get("extracted")}


# ---------------------------------------------------------------- records and metrics


def append_record(fh, record: dict) -> None:
    fh.write(json.dumps(record, ensure_ascii=False, default=str) + "\n")
    fh.flush()
    os.fsync(fh.fileno())


def load_records(run_dir: str | Path) -> list[dict]:
    """Records of a run folder, de-duplicated by id (last wins); a torn last line is cut off."""
    path = Path(run_dir) / "samples.jsonl"
    if not path.exists():
        return []
    raw = path.read_bytes()
    good_end, by_id = 0, {}
    for line in raw.splitlines(keepends=True):
        if not line.endswith(b"\n"):
            break
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            break
        by_id[rec["id"]] = rec
        good_end += len(line)
    if good_end < len(raw):  # killed mid-write: drop the torn tail so appends stay valid JSONL
        with open(path, "r+b") as fh:
            fh.truncate(good_end)
    return list(by_id.values())


def rewrite_records(run_dir: Path, records: list[dict]) -> None:
    tmp = Path(run_dir) / "samples.jsonl.tmp"
    with open(tmp, "w", encoding="utf-8") as fh:
        for r in records:
            fh.write(json.dumps(r, ensure_ascii=False, default=str) + "\n")
    os.replace(tmp, Path(run_dir) / "samples.jsonl")


def compute_metrics(records: list[dict], card: TaskCard, bench) -> dict:
    """Benchmark aggregate + cost and evidence figures, all derived from the records."""
    records = sorted(records, key=lambda r: str(r["id"]))
    metrics = dict(bench.aggregate(records, card))
    ok = [r for r in records if r["status"] == "ok"]
    metrics["errors"] = len(records) - len(ok)
    metrics["n"] = len(records)
    metrics.update(cost_metrics(ok))
    metrics.update(evidence_metrics(ok))
    from rler_eval.stats import accuracy_interval  # 95 % bootstrap interval of the headline accuracy

    metrics["accuracy_ci95"] = accuracy_interval(records, card, bench).to_dict()
    return metrics


def cost_metrics(records: list[dict]) -> dict:
    """Candidates, model calls and generated tokens per question (with the distribution)."""
    from collections import Counter

    preds = [r["prediction"] for r in records]
    if not preds:
        return {"candidates_per_question": 0.0}
    counts = [p["n_candidates"] for p in preds]
    return {"candidates_per_question": round(sum(counts) / len(counts), 4),
            "candidates_distribution": {str(k): v for k, v in sorted(Counter(counts).items())},
            "model_calls_per_question": round(sum(p["model_calls"] for p in preds) / len(preds), 4),
            "generated_tokens_per_question": round(sum(p["generated_tokens"] for p in preds) / len(preds), 2),
            "abstentions": sum(p["answer"] is None for p in preds)}


def evidence_metrics(records: list[dict]) -> dict:
    """Format, grounding and repetition figures of each sample's elected candidate."""
    if not records:
        return {}
    t_ok, reps, f1s = 0, [], []
    for r in records:
        s = r["sample"]
        text = elected_text(r)
        ev = evidence.parse(text, r.get("n_frames"), s["answer_type"], s["options"])
        t_ok += evidence.is_well_formed(ev)
        reps.append(1.0 - evidence.non_redundancy(evidence.redundancy_text(ev, text)))
        g = evidence.grounding_f1(ev.frames, r.get("key_frames") or [])
        if g is not None:
            f1s.append(g)
    out = {"transparency_rate": round(t_ok / len(records), 4),
           "repetition_rate": round(sum(reps) / len(reps), 4)}
    if f1s:
        out["grounding_f1"] = round(sum(f1s) / len(f1s), 4)
    return out


def elected_text(record: dict) -> str:
    """The text of the first candidate whose parsed answer is the elected answer."""
    pred = record["prediction"]
    cands = pred["candidates"]
    for cand, sc in zip(cands, pred.get("scores") or []):
        if sc.get("answer") is not None and sc.get("answer") == pred["answer"]:
            return cand["text"]
    return cands[0]["text"] if cands else ""


def write_json_atomic(path: str | Path, obj) -> None:
    path = Path(path)
    tmp = path.with_suffix(path.suffix + f".tmp{os.getpid()}")
    tmp.write_text(json.dumps(obj, indent=2, ensure_ascii=False, default=str) + "\n")
    os.replace(tmp, path)


def print_summary(metrics: dict, out: Path) -> None:
    run = metrics.get("run", {})
    print(f"\n{run.get('task')} | model: {run.get('model')} | strategy: {run.get('strategy')}")
    ci = metrics.get("accuracy_ci95") or {}
    ci_text = f" [{ci['low']:.4f}, {ci['high']:.4f}] 95% CI" if ci.get("n") else ""
    print(f"  accuracy: {metrics.get('accuracy', 0.0):.4f}{ci_text}  (n={metrics.get('n')}, errors={metrics.get('errors')})")
    print(f"  candidates per question: {metrics.get('candidates_per_question', 0.0):.2f}")
    if "grounding_f1" in metrics:
        print(f"  grounding F1: {metrics['grounding_f1']:.3f}  transparency rate: {metrics['transparency_rate']:.3f}")
    print(f"  run folder: {out}")
