"""`rler-eval score`: score model responses for a task without a model or a video.

Why it exists: it is how anyone checks this project's scoring against another
implementation. Feed it the official rows and the responses another harness produced;
it applies the task's official extraction and metric and prints the metrics JSON (the
official aggregate and its breakdowns) on stdout. Nothing here loads a model, decodes a
video or touches the data root: a doc only has to be a row in the official schema.

Input: a JSON-lines file, one object per line:

    {"doc": <one row in the benchmark's official schema>, "response": "<model text>"}

For LVBench a doc is one `qa` item with its video's `key` added (or a row of the flat
mirror); for MVBench a row of a sub-task file, with `task_type` set to the sub-task (the
JSON file name without .json) when known, else it is counted under "unknown"; for
Video-MMMU a row with `track`, or an id prefixed with it ("Perception/dev_Art_1"). A
question may appear on several lines (several models or candidates): each is scored.
Output (--out): one line per input line, in order, {"score": float, "extracted": ...}.

Example:
    rler-eval score --task videomme --input responses.jsonl --out scores.jsonl
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

from rler_eval.errors import InputError, RlerError


def add_arguments(p) -> None:
    p.add_argument("--task", required=True, help="task card name (tasks/<name>.yaml) or path")
    p.add_argument("--input", required=True, metavar="FILE.jsonl",
                   help='one {"doc": <official row>, "response": "<text>"} per line')
    p.add_argument("--out", default=None, metavar="scores.jsonl",
                   help='write one {"score", "extracted"} per input line, in input order')
    p.add_argument("--scorer", default=None, choices=("official", "lmms-eval"),
                   help="answer extraction: official, or lmms-eval's (MVBench, LVBench) [official]")


def cli(args) -> int:
    from rler_eval.multirun import load_groups

    group = load_groups().get(args.task)
    if group:  # a group's cards read different rows: which card a file belongs to must be said
        raise InputError(f"--task {args.task} is a task group ({', '.join(group)}); "
                         f"score takes one card: --task {group[0]}")
    metrics, scored = score_file(args.task, args.input, args.scorer)
    if args.out:
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_suffix(out.suffix + ".tmp")
        with open(tmp, "w", encoding="utf-8") as fh:
            for row in scored:
                fh.write(json.dumps({"score": row["score"], "extracted": row["extracted"]}, ensure_ascii=False) + "\n")
        tmp.replace(out)
    json.dump(metrics, sys.stdout, indent=2, ensure_ascii=False, default=str)
    sys.stdout.write("\n")
    return 0


def score_file(task: str, path: str | Path, scorer: str | None = None) -> tuple[dict, list[dict]]:
    """(metrics, per-line rows) for a responses file; InputError names file, line and field.

    Every line is scored on its own: several responses to one question (several models,
    candidates or prompt styles) are the normal case. The aggregate counts every line and
    says how many questions appear more than once (`duplicate_questions`). A question is
    its doc: two lines with the same official row are one question, whether or not the
    benchmark's rows carry an id (TempCompass's GitHub rows have none).
    """
    from collections import Counter

    from rler_eval import protocol
    from rler_eval.benchmarks import get_benchmark
    from rler_eval.tasks import load_task

    card = load_task(task)
    bench = protocol.wrap(get_benchmark(card.benchmark), card, scorer)
    path = Path(path)
    if not path.is_file():
        raise InputError(f"--input {path}: no such file")
    rows = []
    with open(path, encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            rows.append(score_line(bench, card, line, f"{path}:{lineno}", len(rows)))
    if not rows:
        raise InputError(f"{path}: no input lines")
    counts = Counter(r.pop("question_key") for r in rows)
    metrics = bench.aggregate(rows, card)
    metrics["lines"] = len(rows)
    metrics["questions"] = len(counts)
    metrics["duplicate_questions"] = sum(1 for c in counts.values() if c > 1)
    return metrics, rows


def score_line(bench, card, line: str, where: str, index: int) -> dict:
    """One scored row in the runner's record shape (id, status, score, extracted, category)."""
    try:
        obj = json.loads(line)
    except json.JSONDecodeError as e:
        raise InputError(f"{where}: invalid JSON ({e.msg} at column {e.colno})") from None
    if not isinstance(obj, dict):
        raise InputError(f"{where}: expected a JSON object with fields 'doc' and 'response'")
    for name in ("doc", "response"):
        if name not in obj:
            raise InputError(f"{where}: missing field '{name}'")
    doc, response = obj["doc"], obj["response"]
    if not isinstance(doc, dict):
        raise InputError(f"{where}: field 'doc' should be an object (one official row), got {type(doc).__name__}")
    if response is not None and not isinstance(response, str):
        raise InputError(f"{where}: field 'response' should be a string, got {type(response).__name__}")
    try:
        sample = bench.doc_to_sample(doc, card, index)
    except RlerError as e:
        raise InputError(f"{where}: {_strip_doc_prefix(str(e), index)}") from None
    result = bench.score(sample, response or "")
    return {"id": sample.id, "status": "ok", "score": float(result["score"]),
            "extracted": result.get("extracted"), "category": sample.category, "sample": sample.to_dict(),
            "question_key": hashlib.sha1(json.dumps(doc, sort_keys=True, default=str).encode()).hexdigest()}


def _strip_doc_prefix(message: str, index: int) -> str:
    """'doc 3: missing field x' -> 'doc: missing field x' (the file:line already says where)."""
    prefix = f"doc {index}: "
    return "doc: " + message[len(prefix):] if message.startswith(prefix) else message
