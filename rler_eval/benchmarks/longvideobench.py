"""LongVideoBench (validation split): referring questions on long videos, with subtitles.

Why this adapter exists: LongVideoBench is evaluated two ways, video only (`val_v`) and
with subtitles interleaved between the frames by time (`val_i`), and its official parser
falls back to a random option when it finds no letter. This module reads the release,
interleaves subtitles with the frame set exactly as the official dataloader does (using
the frame set's real timestamps), and scores with `extract.longvideobench_letter`, whose
random fallback is seeded per question so that scores are reproducible. Sources:
docs/FACTS.md.

Layout read (under the card's data root, e.g. $RLER_DATA/longvideobench), as after
`cat videos.tar.part.* > videos.tar; tar -xf videos.tar; tar -xf subtitles.tar`:

    lvb_val.json                  a list of {video_id, id, video_path, subtitle_path, duration,
                                  duration_group, question, candidates, correct_choice,
                                  question_category, topic_category, starting_timestamp_for_subtitles, ...}
    videos/<video_path>
    subtitles/<subtitle_path>     a list of {"start": "HH:MM:SS.fff", "end", "line"} or
                                  {"timestamp": [start, end], "text"}

Rows in the Hugging Face parquet form (option0..option4, "N/A" when unused) are accepted
too, e.g. by `rler-eval score`.
"""

from __future__ import annotations

import json
from pathlib import Path

from rler_eval import evidence
from rler_eval.benchmarks import base, extract
from rler_eval.benchmarks.rows import guard
from rler_eval.errors import InputError
from rler_eval.prompt import frame_parts, prompt_key
from rler_eval.tasks import TaskCard
from rler_eval.types import FrameSet, Prompt, Sample

ANNOTATION = "lvb_val.json"
# Official prompt tail (LongVideoBench longvideobench_dataset.py; lmms-eval post_prompt).
POST_PROMPT = "Answer with the option's letter from the given choices directly."
SEED = 0  # the random fallback for unparsable replies is seeded by f"{SEED}:{question id}"


# ---------------------------------------------------------------- reading


def load_samples(card: TaskCard) -> list[Sample]:
    root = extract.require(card.root, card, "the LongVideoBench data root")
    path = extract.require(root / card.args.get("annotation", ANNOTATION), card,
                           "LongVideoBench's validation annotations")
    rows = extract.read_json(path)
    if not isinstance(rows, list):
        raise InputError(f"{path}: expected a JSON list of questions, got {type(rows).__name__}")
    return [guard(lambda: _to_sample(row, card, f"{path} row {i}"), card, f"{path} row {i}",
                  row if isinstance(row, dict) else extract.BadRow(f"{path} row {i}: expected a JSON object"))
            for i, row in enumerate(rows)]


def doc_to_sample(doc: dict, card: TaskCard, index: int = 0) -> Sample:
    return _to_sample(doc, card, f"doc {index}")


def options_of(row: dict, where: str) -> list[str]:
    """The option texts: `candidates` (lvb_val.json) or option0..option4 up to the first "N/A"."""
    if "candidates" in row:
        cands = extract.field(row, "candidates", where, list)
        return [str(c) for c in cands]
    out = []
    for i in range(5):
        value = row.get(f"option{i}")
        if value is None or value == "N/A":
            break
        out.append(str(value))
    if not out:
        raise InputError(f"{where}: missing field 'candidates' (or 'option0'..'option4')")
    return out


def _to_sample(row: dict, card: TaskCard, where: str) -> Sample:
    qid = str(extract.field(row, "id", where))
    question = extract.field(row, "question", where, str)
    options = options_of(row, where)
    choice = extract.field(row, "correct_choice", where, int)
    if isinstance(choice, bool) or not 0 <= choice < len(options):
        raise InputError(f"{where}: field 'correct_choice' {choice!r} is not an index into the {len(options)} options")
    video = extract.field(row, "video_path", where, str)
    sub = row.get("subtitle_path")
    category = {"duration_group": str(extract.field(row, "duration_group", where)),
                "question_category": str(extract.field(row, "question_category", where))}
    return Sample(
        id=qid, task=card.name, question=question, answer=extract.LETTERS[choice], answer_type="option",
        options=options, video=str(card.root / "videos" / video),
        subtitles=str(card.root / "subtitles" / sub) if sub else None, category=category, doc=dict(row),
    )


# ---------------------------------------------------------------- subtitles


def _seconds(stamp: str) -> float:
    h, m, s = stamp.split(":")
    return int(h) * 3600 + int(m) * 60 + float(s)


def subtitle_spans(subtitles: list[dict], offset: float, duration: float) -> list[tuple[float, float, str]]:
    """(start, end, text) relative to the video, in the official dataloader's terms.

    Whisper-style entries {"timestamp": [s, e], "text"} take the video duration as the end
    when e is not a float (the official `isinstance(end, float)` test, kept as is);
    SRT-style entries {"start", "end", "line"} use HH:MM:SS.fff strings. Both are shifted
    by `starting_timestamp_for_subtitles`.
    """
    out = []
    for sub in subtitles:
        if "timestamp" in sub:
            start, end = sub["timestamp"]
            if not isinstance(end, float):
                end = duration
            text = sub.get("text", "")
        else:
            start, end = _seconds(sub["start"]), _seconds(sub["end"])
            text = sub.get("line", "")
        out.append((float(start) - offset, float(end) - offset, str(text)))
    return out


def interleave(times: list[float], spans: list[tuple[float, float, str]]) -> list[int | str]:
    """Frame indices and subtitle texts in the official interleaved order.

    For each subtitle in order: first every not-yet-placed frame whose time is at or before
    the subtitle's midpoint, then the subtitle itself if some frame lies strictly inside it
    (a subtitle shorter than 1 s is widened to midpoint ± 0.5 s for that test). Frames left
    over follow at the end. (LongVideoBench `insert_subtitles_into_frames`.)
    """
    out: list[int | str] = []
    cur = 0
    for start, end, text in spans:
        mid = (start + end) / 2
        while cur < len(times) and times[cur] <= mid:
            out.append(cur)
            cur += 1
        if end - start < 1:
            start, end = mid - 0.5, mid + 0.5
        if any(start < t < end for t in times):
            out.append(text)
    out.extend(range(cur, len(times)))
    return out


def load_subtitles(sample: Sample) -> list[tuple[float, float, str]]:
    if not sample.subtitles or not Path(sample.subtitles).exists():
        return []
    try:
        raw = json.loads(Path(sample.subtitles).read_text(encoding="utf-8"))
        duration = float(sample.doc.get("duration") or 0.0)
        offset = float(sample.doc.get("starting_timestamp_for_subtitles") or 0.0)
        return subtitle_spans(raw, offset, duration)
    except (ValueError, KeyError, TypeError) as e:
        raise InputError(f"{sample.subtitles}: unreadable subtitles for question {sample.id}: {e}") from None


# ---------------------------------------------------------------- prompting


def build_prompt(sample: Sample, frameset: FrameSet | None, card: TaskCard | None = None) -> Prompt:
    """Frames (interleaved with subtitles when the card sets `subtitles: true`), then
    "Question: ...", "A. ..." options, and the official instruction or the evidence one."""
    mode = card.frames.mode if card is not None else "images"
    with_subs = bool(card is not None and card.args.get("subtitles"))
    frames = frame_parts(frameset, mode) if frameset is not None and len(frameset) else []
    content: list[dict] = []
    if with_subs and frameset is not None and mode == "images":
        pairs = [frames[i:i + 2] for i in range(0, len(frames), 2)]  # caption + image per frame
        for item in interleave(list(frameset.timestamps), load_subtitles(sample)):
            content += pairs[item] if isinstance(item, int) else [{"type": "text", "text": item}]
    else:
        content += frames
        if with_subs and frameset is not None:  # native video input: subtitles at the frames, as one block
            kept = [t for t in interleave(list(frameset.timestamps), load_subtitles(sample)) if isinstance(t, str)]
            if kept:
                content.append({"type": "text", "text": "\n".join(kept)})
    lines = [f"Question: {sample.question.strip()}"]
    lines += [f"{extract.LETTERS[i]}. {o}" for i, o in enumerate(sample.options or [])]
    use_evidence = card is None or card.prompt == "evidence"
    lines.append(evidence.instructions("option") if use_evidence else POST_PROMPT)
    content.append({"type": "text", "text": "\n".join(lines)})
    n = len(frameset) if frameset is not None else 0
    return Prompt(content=content, n_frames=n, key=prompt_key(content, frameset))


# ---------------------------------------------------------------- scoring


def score(sample: Sample, response: str | None) -> dict:
    """Official parse (first capital A-E after the answer prefixes; seeded random option
    when none) == the correct letter."""
    text, _ = extract.answer_text(response)
    letter, fallback = extract.longvideobench_letter(text, len(sample.options or []), f"{SEED}:{sample.id}")
    return {"score": float(letter == sample.answer), "extracted": letter, "random_fallback": fallback}


def aggregate(rows: list[dict], card: TaskCard | None = None) -> dict:
    """Accuracy, and accuracy per duration group and per question category (lmms-eval
    `longvideobench_aggregate_results`; its "Overall" equals the plain accuracy)."""
    out = base.aggregate(rows, card)
    groups = out.get("by_duration_group", {})
    out["by_duration_group"] = dict(sorted(groups.items(), key=lambda kv: float(kv[0]) if _num(kv[0]) else 1e18))
    return out


def _num(s: str) -> bool:
    try:
        float(s)
        return True
    except ValueError:
        return False
