"""LVBench: hour-long videos, four-option questions, six overlapping capability categories.

Why this adapter exists: LVBench's release is one JSON-lines file with a line per video
and its questions nested inside, options written inline in the question text, and a list
of categories per question. This module flattens it into one Sample per question, reads
the options and the annotated time span (used as ground-truth evidence for grounding),
and scores with the official `polish_answer` + exact match and the official per-category
accuracy in which a question counts in every category it carries. Sources: docs/FACTS.md.

Layout read (under the card's data root, e.g. $RLER_DATA/lvbench):

    video_info.meta.jsonl        {"key", "type", "video_info": {...}, "qa": [{uid, question,
                                  answer, question_type: [...], time_reference}]}
    videos/<key>.mp4             one video per key (any sub-folder of videos/ is searched)

or, without the meta file, the flat mirror that lmms-eval reads (lmms-eval/LVBench): one
row per question {uid, video_path (or key), question (options inline, or an `options`
list), answer[, question_type, time_reference]} in *.parquet / *.jsonl / *.json at the
root or under data/; the video is `<root>/<video_path>` (or videos/<its file name>).
"""

from __future__ import annotations

import re
from pathlib import Path

from rler_eval.benchmarks import base, extract, tables
from rler_eval.benchmarks.rows import guard
from rler_eval.errors import InputError
from rler_eval.prompt import build_prompt as default_build_prompt
from rler_eval.prompt import prompt_key
from rler_eval.tasks import TaskCard
from rler_eval.types import FrameSet, Prompt, Sample

META = "video_info.meta.jsonl"
# Official short names of the categories (THUDM/LVBench scripts/test_acc.py `name_map`).
SHORT_NAMES = {"key information retrieval": "KIR", "event understanding": "EU", "summarization": "Sum",
               "entity recognition": "ER", "reasoning": "Rea", "temporal grounding": "TG"}
# The lmms-eval prompt suffix (lmms_eval/tasks/lvbench/utils.py): options stay inline.
POST_PROMPT = "Answer the question with the option letter."
_OPTION_LINE = re.compile(r"^\s*\(([A-Z])\)\s*(.*)$")


def load_samples(card: TaskCard) -> list[Sample]:
    root = extract.require(card.root, card, "the LVBench data root")
    videos = _video_index(root / "videos")
    if not (root / META).is_file() and flat_files(root):
        return _flat_samples(card, root, videos)
    meta = extract.require(root / META, card, f"LVBench's {META} (or the flat one-row-per-question mirror)")
    samples = []
    for lineno, video in enumerate(extract.read_jsonl(meta, lenient=True), 1):
        where = f"{meta}:{lineno}"
        try:
            key = str(extract.field(video, "key", where))
            qas = extract.field(video, "qa", where, list) if not isinstance(video, extract.BadRow) else None
        except InputError as e:
            samples.append(guard(lambda: None, card, where, extract.BadRow(str(e))))
            continue
        if qas is None:
            samples.append(guard(lambda: None, card, where, video))
            continue
        for j, qa in enumerate(qas):
            path = videos.get(key, root / "videos" / f"{key}.mp4")
            w = f"{where} qa[{j}]"
            samples.append(guard(lambda: _to_sample({**qa, "key": key}, card, w, path), card, w,
                                 qa if isinstance(qa, dict) else extract.BadRow(f"{w}: expected a JSON object")))
    return samples


def flat_files(root: Path) -> list[Path]:
    """The flat mirror lmms-eval reads (one row per question, with `video_path`):
    parquet shards or JSON(-lines) files at the root or under data/."""
    out = []
    for folder in (root, root / "data"):
        out += sorted(p for p in folder.glob("*") if p.suffix in (".parquet", ".jsonl", ".json") and p.name != META)
    return out


def _flat_samples(card: TaskCard, root: Path, videos: dict[str, Path]) -> list[Sample]:
    samples = []
    for f in flat_files(root):
        for i, row in enumerate(tables.read_rows(f)):
            where = f"{f} row {i}"
            samples.append(guard(lambda: _to_sample(_flat_row(row, f, i), card, where, _flat_video(row, root, videos, where)),
                                 card, where, row))
    return samples


def _flat_row(row: dict, path: Path, i: int) -> dict:
    """A flat row as a `qa` item: options given as a list are written inline, as lmms-eval
    prompts them; a row without uid or question_type gets a stable id and "unknown"."""
    row = dict(row)
    if isinstance(row.get("options"), list) and row["options"] and "\n(A)" not in str(row.get("question")):
        row["question"] = str(row.get("question", "")) + "\n" + "\n".join(
            f"({extract.LETTERS[k]}) {o}" for k, o in enumerate(row["options"]))
    if row.get("uid") is None:
        row["uid"] = row.get("id") if row.get("id") is not None else f"{path.stem}/{i:05d}"
    if row.get("question_type") is None:
        row["question_type"] = "unknown"
    return row


def _flat_video(row: dict, root: Path, videos: dict[str, Path], where: str) -> Path:
    rel = row.get("video_path") or row.get("video_name") or (f"{row['key']}.mp4" if row.get("key") else None)
    if not rel:
        raise InputError(f"{where}: missing field 'video_path' (or 'key')")
    for p in (root / str(rel), root / "videos" / Path(str(rel)).name):
        if p.exists():
            return p
    return videos.get(Path(str(rel)).stem, root / str(rel))


def _video_index(folder: Path) -> dict[str, Path]:
    """key -> video file, for videos named <key>.<ext> anywhere under videos/."""
    out: dict[str, Path] = {}
    if folder.is_dir():
        for p in sorted(folder.rglob("*")):
            if p.suffix.lower() in {".mp4", ".mkv", ".webm", ".avi", ".mov"}:
                out.setdefault(p.stem, p)
    return out


def doc_to_sample(doc: dict, card: TaskCard, index: int = 0) -> Sample:
    """One `qa` item with its video's `key` added, or a row of the flat mirror."""
    where = f"doc {index}"
    if doc.get("key") is None and doc.get("video_path") is not None:
        return _to_sample(_flat_row(doc, Path("doc"), index), card, where, card.root / str(doc["video_path"]))
    key = str(extract.field(doc, "key", where))
    return _to_sample(doc, card, where, card.root / "videos" / f"{key}.mp4")


def _to_sample(qa: dict, card: TaskCard, where: str, video: Path) -> Sample:
    uid = extract.field(qa, "uid", where)
    text = extract.field(qa, "question", where, str)
    answer = extract.field(qa, "answer", where, str).strip()
    types = extract.field(qa, "question_type", where, (list, str))
    types = [types] if isinstance(types, str) else [str(t) for t in types]
    question, options = split_options(text)
    if not options:
        raise InputError(f"{where}: field 'question' has no inline options like '(A) ...'")
    if answer not in extract.LETTERS[:len(options)]:
        raise InputError(f"{where}: field 'answer' {answer!r} is not a letter among the {len(options)} options")
    span = parse_time_reference(qa.get("time_reference"))
    return Sample(
        id=str(uid), task=card.name, question=question, answer=answer, answer_type="option",
        options=options, video=str(video), key_times=[span] if span else None,
        category={"question_type": types}, doc=dict(qa),
    )


def split_options(text: str) -> tuple[str, list[str]]:
    """("question stem", [option texts]) from LVBench's inline "\\n(A) ..." lines."""
    stem, options = [], []
    for line in text.split("\n"):
        m = _OPTION_LINE.match(line)
        if m and m.group(1) == extract.LETTERS[len(options)]:
            options.append(m.group(2).strip())
        elif options:
            options[-1] += " " + line.strip()  # an option text wrapped onto the next line
        else:
            stem.append(line)
    return "\n".join(stem).strip(), options


def parse_time_reference(value) -> tuple[float, float] | None:
    """'MM:SS-MM:SS' or 'HH:MM:SS-HH:MM:SS' -> (start, end) seconds; None if absent/unreadable."""
    if not isinstance(value, str) or "-" not in value:
        return None
    try:
        a, b = (sum(float(x) * 60 ** i for i, x in enumerate(reversed(part.strip().split(":"))))
                for part in value.split("-", 1))
    except ValueError:
        return None
    return (min(a, b), max(a, b))


def build_prompt(sample: Sample, frameset: FrameSet | None, card: TaskCard | None = None) -> Prompt:
    """The default layout; the plain prompt ends with lmms-eval's "Answer ... option letter"."""
    prompt = default_build_prompt(sample, frameset, card)
    if card is not None and card.prompt != "evidence":
        prompt.content[-1]["text"] += "\n" + POST_PROMPT
        prompt.key = prompt_key(prompt.content, frameset)
    return prompt


def score(sample: Sample, response: str | None) -> dict:
    """Official `polish_answer` on the <answer> span (or whole reply), exact letter match."""
    text, _ = extract.answer_text(response)
    letter = extract.lvbench_letter(text)
    return {"score": float(letter == sample.answer), "extracted": letter or None}


def aggregate(rows: list[dict], card: TaskCard | None = None) -> dict:
    """Overall accuracy, and accuracy per category counting a question in each of its
    categories (THUDM/LVBench compute_accuracy.py); also under the official short names."""
    out = base.aggregate(rows, card)
    by = out.get("by_question_type", {})
    out["by_question_type_short"] = {SHORT_NAMES.get(k, k): v for k, v in by.items()}
    return out
