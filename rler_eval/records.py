"""Run-folder I/O: the records file, its lock, atomic rewrites and the metrics derived from it.

Why one module: the runner, `merge`, `elect` and `sweep` all read and write run folders.
Keeping the file format in one place means one rule for damaged files, used everywhere:

- A record is never dropped because another line is damaged. An unreadable line (torn
  write, garbage, invalid UTF-8, a JSON value that is not a record) is moved, with its
  line number, to `samples.corrupt.jsonl`, a warning is printed, and every other line is
  kept byte for byte. Only the samples that are really missing get recomputed.
- A run folder has one writer: `RunLock` holds an exclusive `filelock` lock for the whole
  run. The kernel releases it when its process dies (even under SIGKILL), so a stale
  lock of a killed run is simply taken over; a live holder is named by its pid.
- Every write is one whole line, flushed and fsynced, and a torn last line is cut off
  before anything is appended after it.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from rler_eval import evidence
from rler_eval.errors import RlerError

SAMPLES = "samples.jsonl"
CORRUPT = "samples.corrupt.jsonl"
LOCK = ".run.lock"
LOCK_OWNER = ".run.lock.owner"


class RunFolderBusy(RlerError):
    """Another live process writes this run folder."""


# ---------------------------------------------------------------- the lock


class RunLock:
    """An exclusive lock on a run folder, held for the life of one run.

    `filelock` takes an OS lock (flock) that dies with its process, so a folder left by a
    killed run is never locked; the owner file only serves to name a live holder.
    """

    def __init__(self, run_dir: str | Path):
        from filelock import FileLock

        self.dir = Path(run_dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self._lock = FileLock(str(self.dir / LOCK))

    def __enter__(self) -> "RunLock":
        from filelock import Timeout

        try:
            self._lock.acquire(timeout=0)
        except Timeout:
            raise RunFolderBusy(f"{self.dir} is in use by another run (pid {holder_pid(self.dir) or '?'}); "
                                f"wait for it or use another --out") from None
        (self.dir / LOCK_OWNER).write_text(f"{os.getpid()}\n")
        return self

    def __exit__(self, *exc) -> None:
        try:
            (self.dir / LOCK_OWNER).unlink()
        except OSError:
            pass
        self._lock.release()


def holder_pid(run_dir: Path) -> int | None:
    try:
        return int((Path(run_dir) / LOCK_OWNER).read_text().strip())
    except (OSError, ValueError):
        return None


# ---------------------------------------------------------------- reading


def load_records(run_dir: str | Path, quarantine: bool = False) -> list[dict]:
    """The records of a run folder, de-duplicated by id (last wins).

    Unreadable lines are skipped with a warning. With `quarantine=True` (only the holder of
    the run lock: the rewrite must not race a writer) they are also moved, with their line
    numbers, to samples.corrupt.jsonl, and samples.jsonl keeps every other line.
    """
    path = Path(run_dir) / SAMPLES
    if not path.exists():
        return []
    raw = path.read_bytes()
    by_id, bad, kept = {}, [], []
    for number, line in enumerate(raw.splitlines(keepends=True), start=1):
        rec = parse_line(line)
        if rec is None:
            bad.append((number, line))
        else:
            by_id[rec["id"]] = rec
            kept.append(line)
    if bad:
        where = ", ".join(str(n) for n, _ in bad[:10]) + (" ..." if len(bad) > 10 else "")
        if quarantine:
            quarantine_lines(Path(run_dir), bad, kept)
            where += f"; moved to {Path(run_dir) / CORRUPT}"
        print(f"warning: {path}: {len(bad)} unreadable line(s) at line {where}", file=sys.stderr)
    return list(by_id.values())


def parse_line(line: bytes) -> dict | None:
    """A record, or None for a line that is torn, not UTF-8, not JSON or not a record."""
    if not line.endswith(b"\n"):
        return None  # killed mid-write
    try:
        rec = json.loads(line.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return None
    if not isinstance(rec, dict) or not isinstance(rec.get("id"), (str, int)) or "status" not in rec:
        return None
    return rec


def quarantine_lines(run_dir: Path, bad: list[tuple[int, bytes]], kept: list[bytes]) -> None:
    """Append the bad lines to samples.corrupt.jsonl, then rewrite samples.jsonl without them."""
    with open(run_dir / CORRUPT, "a", encoding="utf-8") as fh:
        for number, line in bad:
            text = line.decode("utf-8", errors="backslashreplace").rstrip("\n")
            fh.write(json.dumps({"line": number, "text": text}, ensure_ascii=False) + "\n")
        fh.flush()
        os.fsync(fh.fileno())
    replace_bytes(run_dir / SAMPLES, b"".join(kept))


# ---------------------------------------------------------------- writing


def record_line(record: dict) -> str:
    return json.dumps(record, ensure_ascii=False, default=str) + "\n"


def append_record(fh, record: dict) -> None:
    """One whole line, flushed and fsynced (the caller holds the run lock)."""
    fh.write(record_line(record))
    fh.flush()
    os.fsync(fh.fileno())


def rewrite_records(run_dir: str | Path, records: list[dict]) -> None:
    replace_bytes(Path(run_dir) / SAMPLES, "".join(record_line(r) for r in records).encode("utf-8"))


def replace_bytes(path: Path, data: bytes) -> None:
    """Atomic replace: a reader sees the old file or the new one, never a mix."""
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def write_json_atomic(path: str | Path, obj) -> None:
    path = Path(path)
    replace_bytes(path, (json.dumps(obj, indent=2, ensure_ascii=False, default=str) + "\n").encode("utf-8"))


# ---------------------------------------------------------------- metrics


def compute_metrics(records: list[dict], card, bench) -> dict:
    """Benchmark aggregate + cost and evidence figures, all derived from the records."""
    records = sorted(records, key=lambda r: str(r["id"]))
    metrics = dict(bench.aggregate(records, card))
    ok = [r for r in records if r["status"] == "ok"]
    metrics["errors"] = len(records) - len(ok)
    metrics["judge_errors"] = sum(r["status"] == "judge_error" for r in records)
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
