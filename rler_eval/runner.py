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
- A run holds its folder's lock (`records.RunLock`) and resumes only onto a folder made
  with the same data root, card, prompt, frames, judge, model and strategy (RESUME_KEYS).
- Untrusted rows are contained (`guards`: paths under the data root, regular files only,
  prompt size) and bounded (`--sample-timeout`); frames are decoded ahead in worker
  processes (`prefetch`) that can be abandoned when a decode hangs.
The run-folder file format (records, lock, metrics) lives in `rler_eval.records`.
"""

from __future__ import annotations

import json
import os
import sys
import time
import traceback
from dataclasses import dataclass
from pathlib import Path

from rler_eval import __version__
from rler_eval.errors import InputError, RlerError, TaskError
from rler_eval.tasks import TaskCard, load_task
from rler_eval.records import RunLock
from rler_eval.types import Prediction, Sample

RESULTS_DIR = Path("results/runs")
BUNDLED_MODEL = Path(__file__).resolve().parent.parent / "checkpoints" / "rler-tiny"


def default_model() -> str:
    """$RLER_MODEL, else the bundled trained rler-tiny when present, else a tiny random model."""
    if os.environ.get("RLER_MODEL"):
        return os.environ["RLER_MODEL"]
    return str(BUNDLED_MODEL) if (BUNDLED_MODEL / "config.json").exists() else "tiny-random"


# config keys that must match for a run folder to be resumed: what was evaluated (data root,
# card content, prompt variant, frame settings, judge) and how (model, strategy, seed, ...)
RESUME_KEYS = ("task", "model", "strategy", "election", "frames", "max_new_tokens", "seed", "shard",
               "data_root", "card_sha256", "prompt", "judge")
DEFAULT_SAMPLE_TIMEOUT = 600.0


def default_decode_workers() -> int:
    return max(1, (os.cpu_count() or 2) - 1)


@dataclass
class Limits:
    """Per-sample bounds and containment (see rler_eval.guards and rler_eval.prefetch)."""

    sample_timeout: float | None = DEFAULT_SAMPLE_TIMEOUT  # seconds; None or 0: no limit
    decode_workers: int = 1  # processes decoding ahead; 0 decodes inline (no prefetch)
    allow_outside_data_root: bool = False
    max_prompt_tokens: int | None = None  # cap below the model's context


# ---------------------------------------------------------------- CLI


def positive_int(text: str) -> int:
    import argparse

    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {value}")
    return value


def add_arguments(p) -> None:
    p.add_argument("--task", default="synthvid",
                   help="task card name (tasks/<name>.yaml) or path, a group, or a comma-separated list: "
                        "one model load, one run folder per task, plus a summary. Groups: tempcompass, "
                        "longvideobench, videommmu, wildvideo, all (tasks/groups/) [synthvid]")
    p.add_argument("--model", default=None,
                   help="local HF checkpoint folder, 'tiny-random', 'vllm:PATH' or 'openai:MODEL@URL' "
                        "[$RLER_MODEL, else the bundled checkpoints/rler-tiny, else tiny-random]")
    p.add_argument("--model-args", default=None, metavar="K=V,...",
                   help="backend options, e.g. dtype=bfloat16,attn_implementation=flash_attention_2,"
                        "device_map=auto (HF); tensor_parallel_size=2,gpu_memory_utilization=0.85 (vLLM); "
                        "timeout=120,concurrency=8 (OpenAI). Merged over the card's args.model")
    p.add_argument("--strategy", default=None, help="greedy | majority@K | best_of@K | rler@K | rler "
                                                    "[the task card's strategy]")
    p.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                   help="strategy parameter override, repeatable (e.g. --set delta=0.3)")
    p.add_argument("--frames", type=int, default=None, help="frames per video [the task card's frames.n]")
    p.add_argument("--limit", type=positive_int, default=None, help="evaluate only the first N samples (N > 0)")
    p.add_argument("--shard", default=None, metavar="I/N", help="evaluate shard I of N (0-based), e.g. 0/4")
    p.add_argument("--out", default=None, help="run folder [results/runs/<task>__<model>__<strategy>__f<N>]")
    p.add_argument("--max-new-tokens", type=int, default=None, help="[the task card's max_new_tokens]")
    p.add_argument("--seed", type=int, default=0, help="base seed for sampled candidates [0]")
    p.add_argument("--strict", action="store_true", help="stop at the first per-sample error")
    p.add_argument("--retry-errors", action="store_true",
                   help="re-run samples recorded as errors (including judge errors)")
    p.add_argument("--sample-timeout", type=float, default=DEFAULT_SAMPLE_TIMEOUT, metavar="S",
                   help="seconds one sample may take (decode + generation + scoring); past it the sample "
                        "becomes an error record and the run goes on; 0 = no limit [600]")
    p.add_argument("--decode-workers", type=int, default=None, metavar="N",
                   help="processes that decode the next samples' frames while the model generates; 0 decodes "
                        "inline, without prefetch [cores - 1, at least 1]")
    p.add_argument("--allow-outside-data-root", action="store_true",
                   help="read videos, images and subtitles that resolve outside the task's data root "
                        "(by default such a sample becomes an error record)")
    p.add_argument("--max-prompt-tokens", type=positive_int, default=None, metavar="T",
                   help="longest prompt sent to the model; longer ones become error records "
                        "[the model's context minus max_new_tokens]")
    p.add_argument("--ablate-frames", choices=("blank", "shuffle"), default=None,
                   help="control run: 'blank' replaces every frame with uniform grey (what the text alone "
                        "gives), 'shuffle' permutes the frame order under the same captions")
    p.add_argument("--cache-dir", default=None,
                   help="frame cache folder [$RLER_CACHE or ~/.cache/rler-eval]/frames; bounded by $RLER_CACHE_MAX_GB [20]")
    p.add_argument("--no-cache", action="store_true", help="decode every video afresh; read and write no frame cache")
    p.add_argument("--protocol", default="default", choices=("default", "official"),
                   help="official: the card's official prompt (plain), greedy decoding, the official frame count, "
                        "and the raw reply scored by the official extractor, for comparison with published "
                        "numbers (results/reference.yaml) [default]")
    p.add_argument("--scorer", default=None, choices=("official", "lmms-eval"),
                   help="answer extraction: the benchmark's official one, or lmms-eval's (MVBench, LVBench), "
                        "as most public leaderboards used [official]")


def cli(args) -> int:
    from rler_eval import multirun, preflight, protocol
    from rler_eval.models import parse_model_args

    if multirun.is_multi(args.task):
        return multirun.cli(args)
    parse_shard(args.shard)  # a bad --shard fails before any data is read or generated
    if args.decode_workers is not None and args.decode_workers < 0:
        raise InputError(f"--decode-workers must be 0 or more, got {args.decode_workers}")
    if args.sample_timeout < 0:
        raise InputError(f"--sample-timeout must be 0 (no limit) or more, got {args.sample_timeout:g}")
    card = load_task(args.task)
    strategy, overrides = apply_run_args(card, args)
    model = args.model or default_model()
    preflight.check_model(model)
    warning = protocol.judge_warning(card)
    if warning:
        print(warning, file=sys.stderr)
    metrics, out = run(card, model, strategy, overrides, limit=args.limit, shard=args.shard,
                       out=args.out, seed=args.seed, strict=args.strict, retry_errors=args.retry_errors,
                       cache_dir=False if args.no_cache else args.cache_dir, limits=limits_from_args(args),
                       model_args={**parse_model_args(card.args.get("model")), **parse_model_args(args.model_args)})
    print_summary(metrics, out)
    if warning:
        print(warning, file=sys.stderr)
    return 0


def apply_run_args(card: TaskCard, args) -> tuple[str, dict]:
    """The command line's card settings applied to `card`: (strategy, election overrides).

    Shared by single-task runs and task lists, so every task sees the same flags; the
    overrides are validated here, before any folder or sample (a typo is one line, exit 2)."""
    from rler_eval import preflight, protocol

    strategy = protocol.apply_protocol(card, args.protocol, args.strategy or card.strategy)
    if args.frames:
        card.frames.n = args.frames
    if args.max_new_tokens:
        card.max_new_tokens = args.max_new_tokens
    if args.ablate_frames:
        card.frames.ablate = args.ablate_frames
    if args.scorer:
        card.args["scorer"] = args.scorer
    overrides = {**(card.args.get("election") or {}), **parse_sets(args.sets)}
    preflight.validate_settings(overrides)
    return strategy, overrides


def limits_from_args(args) -> "Limits":
    return Limits(sample_timeout=args.sample_timeout or None,
                  decode_workers=default_decode_workers() if args.decode_workers is None else args.decode_workers,
                  allow_outside_data_root=args.allow_outside_data_root, max_prompt_tokens=args.max_prompt_tokens)


def parse_sets(items: list[str]) -> dict:
    """['delta=0.3', 'refute=false'] -> {'delta': 0.3, 'refute': False} (values parsed as YAML)."""
    import yaml

    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise InputError(f"--set {item!r}: expected KEY=VALUE")
        try:
            out[key.strip()] = yaml.safe_load(value)
        except yaml.YAMLError as e:
            first = " ".join(str(e).split())
            raise InputError(f"--set {item!r}: value is not valid YAML ({first})") from None
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
        retry_errors: bool = False, cache_dir: str | None = None, backend=None,
        limits: Limits | None = None, model_args: dict | None = None) -> tuple[dict, Path]:
    """Evaluate `model` on `card` with `strategy`; returns (metrics, run folder).

    `backend`: an already loaded backend (several tasks, one load); else `model` is loaded
    with `model_args` when there is work to do."""
    from rler_eval import election, protocol
    from rler_eval.benchmarks import get_benchmark

    if limit is not None and limit <= 0:
        raise InputError(f"--limit must be positive, got {limit}")
    limits = limits or Limits()
    election.parse_spec(strategy)  # fail early on a bad strategy name
    bench = protocol.wrap(get_benchmark(card.benchmark), card)
    samples = select(bench.load_samples(card), limit, parse_shard(shard))
    config = run_config(card, model, strategy, overrides or {}, seed, shard, limit)
    config["model_args"] = model_args or {}
    out = Path(out) if out else default_out(config)
    with RunLock(out):
        records = prepare_folder(out, config, retry_errors, card, bench)
        done = {r["id"] for r in records}
        pending = [s for s in samples if s.id not in done]
        start = time.time()
        if pending:
            with decode_pool(pending, card, cache_dir, limits) as pool:  # workers start before the model loads
                backend = backend or load_model(model, model_args)
                config["model_label"] = getattr(backend, "name", model)
                write_json_atomic(out / "config.json", config)
                records += evaluate(pending, card, bench, backend, strategy, overrides or {}, out, seed, strict,
                                    cache_dir, limits, pool=pool)
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

    from rler_eval import preflight
    from rler_eval.benchmarks import judge

    return {"task": card.name, "card": card.path, "benchmark": card.benchmark, "model": model,
            "strategy": strategy, "election": overrides, "frames": asdict(card.frames),
            "max_new_tokens": card.max_new_tokens, "seed": seed, "shard": shard, "limit": limit,
            "prompt": card.prompt, "data_root": str(card.root.resolve()) if card.data_root else "",
            "card_sha256": card_hash(card), "judge": judge.describe(card), "rler_eval_version": __version__,
            "protocol": (card.args or {}).get("protocol", "default"),
            "scorer": (card.args or {}).get("scorer", "official"), **preflight.provenance(card)}


def card_hash(card: TaskCard) -> str:
    """sha256 of the card file's bytes (of its fields when it has no file)."""
    import hashlib
    from dataclasses import asdict

    path = Path(card.path) if card.path else None
    if path is not None and path.is_file():
        blob = path.read_bytes()
    else:
        blob = json.dumps({k: v for k, v in asdict(card).items() if k != "path"}, sort_keys=True,
                          default=str).encode("utf-8")
    return hashlib.sha256(blob).hexdigest()


def default_out(config: dict) -> Path:
    model = Path(config["model"].rstrip("/")).name.replace(":", "-").replace("@", "-")
    name = f"{config['task']}__{model}__{config['strategy'].replace('@', 'at')}__f{config['frames']['n']}"
    if config["frames"].get("ablate"):
        name += "__" + config["frames"]["ablate"]
    if config.get("shard"):
        name += "__shard" + config["shard"].replace("/", "of")
    return RESULTS_DIR / name


def load_model(spec: str, model_args: dict | None = None):
    from rler_eval.models import load_backend

    print(f"loading model {spec} ...", file=sys.stderr)
    return load_backend(spec, **(model_args or {}))


def prepare_folder(out: Path, config: dict, retry_errors: bool, card=None, bench=None) -> list[dict]:
    """Create or resume a run folder (its lock held); refuse to mix records from different runs."""
    out.mkdir(parents=True, exist_ok=True)
    cfg_path = out / "config.json"
    if cfg_path.exists():
        old = json.loads(cfg_path.read_text())
        diff = [k for k in RESUME_KEYS if old.get(k) != config.get(k)]
        if diff:
            shown = "; ".join(f"{k}: {old.get(k)!r} there, {config.get(k)!r} now" for k in diff[:3])
            raise TaskError(f"{out} holds a run with different settings ({', '.join(diff)}: {shown}); "
                            f"use a new --out, or delete the folder")
        config["model_label"] = old.get("model_label", config["model"])
    write_json_atomic(cfg_path, config)
    records = load_records(out, quarantine=True)  # the run lock is held
    if retry_errors and any(r["status"] != "ok" for r in records):
        records = [r for r in records if r["status"] == "ok"]
        rewrite_records(out, records)
    elif bench is not None and any(r["status"] == "judge_error" for r in records):
        records = rejudge(out, records, card, bench)
    return records


def rejudge(out: Path, records: list[dict], card, bench) -> list[dict]:
    """Score judge-error records again from their recorded answers, once a judge answers."""
    from rler_eval.benchmarks import judge

    if judge.get_judge(card) is None:
        return records
    fixed = 0
    for r in records:
        if r["status"] == "judge_error":
            with judge.refreshed():  # the cached reply was the unusable one
                r.update(score_answer(bench, sample_from_dict(r["sample"]), r.get("answer")))
            if r["status"] == "ok":
                r["error"] = None
                fixed += 1
    if fixed:
        rewrite_records(out, records)
        print(f"re-judged {fixed} record(s) that had a judge error", file=sys.stderr)
    return records


def sample_from_dict(d: dict) -> Sample:
    from dataclasses import fields

    kw = {k: v for k, v in d.items() if k in {f.name for f in fields(Sample)}}
    if kw.get("clip") is not None:
        kw["clip"] = tuple(kw["clip"])
    if kw.get("key_times") is not None:
        kw["key_times"] = [tuple(t) for t in kw["key_times"]]
    return Sample(**kw)


def decode_pool(samples, card, cache_dir, limits: Limits):
    """A Prefetcher over the samples' decode jobs; `.refused` holds the path refusals."""
    from rler_eval.prefetch import Prefetcher

    jobs, refused = decode_jobs(samples, card, cache_dir, limits)
    if limits.decode_workers:
        import rler_eval.video  # noqa: F401  (imported once here, so forked workers start warm)
        warm_imports()
    pool = Prefetcher(jobs, decode_job, workers=limits.decode_workers)
    pool.refused = refused
    return pool


def warm_imports() -> None:
    """The decoders' heavy imports, done in the parent before it forks its workers."""
    import importlib

    for name in ("numpy", "av", "PIL.Image"):
        try:
            importlib.import_module(name)
        except ImportError:
            pass


def evaluate(samples, card, bench, backend, strategy, overrides, out, seed, strict, cache_dir,
             limits: Limits | None = None, pool=None) -> list[dict]:
    """Evaluate samples in order, decoding ahead in workers; one appended record per sample."""
    from contextlib import nullcontext

    from tqdm import tqdm

    limits = limits or Limits()
    records, correct = [], 0.0
    bar = tqdm(samples, desc=f"{card.name} [{strategy}]", unit="q", dynamic_ncols=True)
    with open(out / "samples.jsonl", "a", encoding="utf-8") as fh, \
            (nullcontext(pool) if pool is not None else decode_pool(samples, card, cache_dir, limits)) as frames:
        def frames_of(i):
            got = frames.get(i, remaining(limits))  # in order, even for a refused sample
            if frames.refused[i] is not None:
                raise frames.refused[i]
            return got

        for i, sample in enumerate(bar):
            record = evaluate_one(sample, card, bench, backend, strategy, overrides, seed, strict, cache_dir,
                                  limits=limits, frames=lambda i=i: frames_of(i))
            append_record(fh, record)
            records.append(record)
            correct += record.get("score") or 0.0
            bar.set_postfix(acc=f"{correct / len(records):.3f}",
                            errors=sum(r["status"] != "ok" for r in records))
    return records


def decode_jobs(samples, card, cache_dir, limits: Limits) -> tuple[list, list]:
    """Per sample: the decode job for a worker (None: nothing to decode) and a refusal, if any.

    Paths are checked here, in the runner, so a path outside the data root or a FIFO is
    never handed to a decoder.
    """
    from rler_eval.guards import check_paths

    jobs, refused = [], []
    for s in samples:
        try:
            check_paths(s, card.root, limits.allow_outside_data_root)
        except RlerError as e:
            jobs.append(None)
            refused.append(e)
            continue
        jobs.append((s, card, cache_dir) if s.video else None)
        refused.append(None)
    return jobs, refused


def decode_job(job):
    """A worker's task: the FrameSet of one sample."""
    sample, card, cache_dir = job
    return load_sample_frames(sample, card, cache_dir)


_SAMPLE_START = [0.0]


def remaining(limits: Limits) -> float | None:
    if not limits.sample_timeout:
        return None
    return limits.sample_timeout - (time.monotonic() - _SAMPLE_START[0])


def evaluate_one(sample, card, bench, backend, strategy, overrides, seed, strict, cache_dir,
                 limits: Limits | None = None, frames=None) -> dict:
    """One sample -> one record; `frames()` gives its FrameSet (default: decode it here)."""
    from rler_eval import election
    from rler_eval.election.sources import LiveSource
    from rler_eval.guards import check_prompt_size, time_limit

    limits = limits or Limits(decode_workers=0)
    t0 = time.time()
    _SAMPLE_START[0] = time.monotonic()
    record = {"id": sample.id, "task": card.name, "status": "ok", "error": None,
              "category": sample.category, "sample": sample.to_dict()}
    try:
        if sample.load_error:  # a row the adapter could not read (rows.guard): record it, touch no model
            raise InputError(sample.load_error)
        inline = frames is None or limits.decode_workers == 0  # a worker's decode has its own deadline
        with time_limit(remaining(limits) if inline else None, f"decoding sample {sample.id}"):
            frameset = frames() if frames is not None else load_sample_frames(sample, card, cache_dir)
        t1 = time.time()
        with time_limit(remaining(limits), f"sample {sample.id}"):
            prompt = bench.build_prompt(sample, frameset, card)
            check_prompt_size(prompt, backend, card.max_new_tokens, card.frames.max_pixels, limits.max_prompt_tokens)
            source = LiveSource(backend, prompt, card.max_new_tokens, seed, sample.id)
            pred = election.answer(strategy, sample, source, prompt.n_frames, overrides,
                                   extract=official_extractor(bench, sample))
            t2 = time.time()
            scored = score_prediction(bench, sample, pred, raw_reply=card.prompt == "plain")
        key = frameset.key_frame_labels(sample.key_times) if frameset is not None else []
        record.update(prompt_hash=prompt.key, n_frames=prompt.n_frames, key_frames=key,
                      frame_times=list(frameset.timestamps) if frameset is not None else [],
                      prediction=pred.to_dict(), answer=pred.answer, **scored,
                      timings={"frames_s": round(t1 - t0, 4), "generate_s": round(t2 - t1, 4)})
    except Exception as e:  # noqa: BLE001 - a per-sample failure must not lose the run
        if strict:
            raise e if isinstance(e, RlerError) else RlerError(f"sample {sample.id}: {type(e).__name__}: {e}")
        record.update(status="error", error=f"{type(e).__name__}: {e}", score=0.0, extracted=None,
                      answer=None, traceback=None if isinstance(e, RlerError) else traceback.format_exc(limit=5))
    if strict and record["status"] == "judge_error":
        raise RlerError(f"sample {sample.id}: {record['error']}")
    record.setdefault("timings", {})["total_s"] = round(time.time() - t0, 4)
    return record


def load_sample_frames(sample: Sample, card: TaskCard, cache_dir: str | None):
    if not sample.video:
        return None
    from rler_eval.ablation import ablate
    from rler_eval.video import load_frames

    frameset = load_frames(sample.video, card.frames, clip=sample.clip, cache_dir=cache_dir)
    return ablate(frameset, card.frames.ablate, sample.id)


def score_prediction(bench, sample: Sample, prediction: Prediction, raw_reply: bool = False) -> dict:
    """Score the elected answer with the benchmark's own scorer; an abstention is wrong.

    The raw reply of a greedy prediction goes to the official scorer as is under `--protocol
    official` (the benchmark is wrapped with `score_raw`) or with the `plain` prompt
    (`raw_reply`), so such a run is exactly the benchmark's official protocol."""
    raw = raw_reply and prediction.strategy == "greedy"
    if (raw or getattr(bench, "score_raw", False)) and prediction.candidates:
        return score_answer(bench, sample, None, raw=prediction.candidates[0].text)
    return score_answer(bench, sample, prediction.answer)


def official_extractor(bench, sample: Sample):
    """The benchmark's own answer rule (what its `score` extracts), as a plain callable the
    election uses for replies with no <answer> tag. None for free text, where the whole
    reply already is the answer and scoring may call a judge."""
    if sample.answer_type == "text":
        return None

    def extract(text: str):
        got = bench.score(sample, text).get("extracted")
        return got.get("answer") if isinstance(got, dict) else got
    return extract


def score_answer(bench, sample: Sample, answer: str | None, raw: str | None = None) -> dict:
    """{"score", "extracted", "status"[, "error"]}: a judge that failed gives status judge_error.
    `raw` scores a whole reply as it is (the official protocol) instead of an elected answer."""
    if answer is None and raw is None:
        return {"score": 0.0, "extracted": None, "status": "ok"}
    result = bench.score(sample, raw if raw is not None else f"<answer>{answer}</answer>")
    out = {"score": float(result["score"]), "extracted": result.get("extracted"), "status": "ok"}
    ex = out["extracted"]
    if isinstance(ex, dict) and ex.get("failed"):
        out.update(status="judge_error", score=0.0,
                   error=f"judge {ex.get('by')} gave no usable verdict (reply: {str(ex.get('verdict'))[:200]!r})")
    return out


# ---------------------------------------------------------------- records and metrics
# moved to rler_eval.records; these names stay importable from the runner
from rler_eval.records import (append_record, compute_metrics, cost_metrics, elected_text,  # noqa: E402,F401
                               evidence_metrics, load_records, rewrite_records, write_json_atomic)


def print_summary(metrics: dict, out: Path) -> None:
    run = metrics.get("run", {})
    print(f"\n{run.get('task')} | model: {run.get('model')} | strategy: {run.get('strategy')}")
    name = metrics.get("metric_name", "accuracy")  # e.g. "accuracy (rule fallback, not official)"
    ci = metrics.get("accuracy_ci95") or {}
    ci_text = f" [{ci['low']:.4f}, {ci['high']:.4f}] 95% CI" if ci.get("n") else ""
    print(f"  {name}: {metrics.get('accuracy', 0.0):.4f}{ci_text}  (n={metrics.get('n')}, errors={metrics.get('errors')})")
    print(f"  candidates per question: {metrics.get('candidates_per_question', 0.0):.2f}")
    if "grounding_f1" in metrics:
        print(f"  grounding F1: {metrics['grounding_f1']:.3f}  transparency rate: {metrics['transparency_rate']:.3f}")
    print(f"  run folder: {out}")
