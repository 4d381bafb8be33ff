"""Video-MME: 2,700 four-option questions on 900 videos, with and without subtitles.

Why this adapter exists: Video-MME is scored with its own first-capital-letter extraction
and reported by duration, domain, sub-category and task type; with subtitles, only the
subtitle lines at the sampled frames' times are shown. This module reads the release,
builds the official prompt (subtitles filtered by the actual frame timestamps of the
frame set), and scores with `extract.videomme_letter`. Sources: docs/FACTS.md.

Layout read (under the card's data root, e.g. $RLER_DATA/videomme), as on the Hugging
Face dataset lmms-lab/Video-MME after unzipping the video and subtitle archives:

    videomme/test-*.parquet       rows {video_id, duration, domain, sub_category, url, videoID,
                                  question_id, task_type, question, options ["A. ..."], answer}
    data/<videoID>.mp4            (.MP4 and .mkv are also accepted, as in lmms-eval)
    subtitle/<videoID>.srt        not every video has one (744 of 900)
"""

from __future__ import annotations

import re
from pathlib import Path

from rler_eval import evidence
from rler_eval.benchmarks import base, extract
from rler_eval.benchmarks.rows import guard
from rler_eval.errors import InputError
from rler_eval.prompt import frame_parts, prompt_key
from rler_eval.tasks import TaskCard
from rler_eval.types import FrameSet, Prompt, Sample

# Official prompt (MME-Benchmarks/Video-MME README, "Prompt").
SUBTITLE_HEADER = "This video's subtitles are listed below:"
INSTRUCTION = ("Select the best answer to the following multiple-choice question based on the video. "
               "Respond with only the letter (A, B, C, or D) of the correct option.")
INSTRUCTION_EVIDENCE = "Select the best answer to the following multiple-choice question based on the video."
POST_PROMPT = "The best answer is:"
NO_SUBTITLES = "No subtitles available"  # lmms-eval's text for a video without an .srt
CATEGORY_KEYS = ("duration", "domain", "sub_category", "task_type")
_OPTION = re.compile(r"^\s*([A-Z])\s*[\.\)]\s*(.*)$", re.S)


# ---------------------------------------------------------------- reading


def load_samples(card: TaskCard) -> list[Sample]:
    import pandas as pd

    root = extract.require(card.root, card, "the Video-MME data root")
    files = sorted((root / "videomme").glob("test-*.parquet"))
    if not files:
        extract.require(root / "videomme" / "test-00000-of-00001.parquet", card, "Video-MME's annotation parquet")
    samples = []
    for f in files:
        try:
            frame = pd.read_parquet(f)
        except Exception as e:  # noqa: BLE001 - pyarrow raises several types for a bad file
            raise InputError(f"{f}: cannot read parquet: {e}") from None
        for i, row in enumerate(frame.to_dict(orient="records")):
            where = f"{f} row {i}"
            samples.append(guard(lambda: _to_sample(_plain(row), card, where), card, where))
    return samples


def _plain(row: dict) -> dict:
    """Parquet values as JSON-friendly Python (numpy arrays of options become lists)."""
    out = {}
    for k, v in row.items():
        out[k] = v.tolist() if hasattr(v, "tolist") and not isinstance(v, (str, bytes)) else v
    return out


def doc_to_sample(doc: dict, card: TaskCard, index: int = 0) -> Sample:
    return _to_sample(doc, card, f"doc {index}")


def _to_sample(row: dict, card: TaskCard, where: str) -> Sample:
    video_id = str(extract.field(row, "videoID", where))
    qid = str(extract.field(row, "question_id", where))
    question = extract.field(row, "question", where, str)
    raw_options = extract.field(row, "options", where, list)
    answer = extract.field(row, "answer", where, str).strip()
    options = []
    for j, opt in enumerate(raw_options):
        m = _OPTION.match(str(opt))
        if not m or m.group(1) != extract.LETTERS[j]:
            raise InputError(f"{where}: field 'options'[{j}] {opt!r} should start with '{extract.LETTERS[j]}. '")
        options.append(m.group(2).strip())
    if answer not in extract.LETTERS[:len(options)]:
        raise InputError(f"{where}: field 'answer' {answer!r} is not a letter among the {len(options)} options")
    category = {k: str(extract.field(row, k, where)) for k in CATEGORY_KEYS}
    return Sample(
        id=qid, task=card.name, question=question, answer=answer, answer_type="option", options=options,
        video=str(_video_path(card.root, video_id)), subtitles=str(card.root / "subtitle" / f"{video_id}.srt"),
        category=category, doc=dict(row),
    )


def _video_path(root: Path, video_id: str) -> Path:
    path = root / "data" / f"{video_id}.mp4"
    for alt in (path, path.with_suffix(".MP4"), path.with_suffix(".mkv")):
        if alt.exists():
            return alt
    return path


# ---------------------------------------------------------------- subtitles


def parse_srt(text: str) -> list[tuple[float, float, str]]:
    """(start, end, text) per SRT block; Video-MME's <font ...> wrapper is removed."""
    out = []
    for block in re.split(r"\r?\n\s*\r?\n", text.strip()):
        lines = [ln for ln in block.strip().splitlines() if ln.strip()]
        for k, line in enumerate(lines):
            m = re.match(r"\s*(\d+):(\d+):(\d+)[,.](\d+)\s*-->\s*(\d+):(\d+):(\d+)[,.](\d+)", line)
            if m:
                v = [int(x) for x in m.groups()]
                start = v[0] * 3600 + v[1] * 60 + v[2] + v[3] / 1000
                end = v[4] * 3600 + v[5] * 60 + v[6] + v[7] / 1000
                body = " ".join(lines[k + 1:])
                body = re.sub(r"<[^>]+>", "", body).strip()
                if body:
                    out.append((start, end, body))
                break
    return out


def subtitles_at(lines: list[tuple[float, float, str]], times: list[float]) -> list[str]:
    """The subtitle lines shown at any of `times`: start <= t < end, in subtitle order.

    This is lmms-eval's frame-index rule (start_frame <= frame < end_frame) in seconds,
    following the README's "only use the subtitles corresponding to the sampled frames".
    lmms-eval loses the order (it passes the indices through a set); here they stay in order.
    """
    return [text for start, end, text in lines if any(start <= t < end for t in times)]


def subtitle_text(sample: Sample, frameset: FrameSet | None) -> str:
    path = Path(sample.subtitles) if sample.subtitles else None
    if path is None or not path.exists():
        return NO_SUBTITLES
    lines = parse_srt(path.read_text(encoding="utf-8", errors="replace"))
    offset = sample.clip[0] if sample.clip else 0.0
    times = [offset + t for t in (frameset.timestamps if frameset is not None else [])]
    return "\n".join(subtitles_at(lines, times))


# ---------------------------------------------------------------- prompting


def build_prompt(sample: Sample, frameset: FrameSet | None, card: TaskCard | None = None) -> Prompt:
    """Frames, [subtitles at those frames], the official instruction, question and options."""
    mode = card.frames.mode if card is not None else "images"
    use_evidence = card is None or card.prompt == "evidence"
    with_subs = bool(card is not None and card.args.get("subtitles"))
    content = frame_parts(frameset, mode) if frameset is not None and len(frameset) else []
    parts = []
    if with_subs:
        parts.append(f"{SUBTITLE_HEADER}\n{subtitle_text(sample, frameset)}")
    parts.append(INSTRUCTION_EVIDENCE if use_evidence else INSTRUCTION)
    parts.append(sample.question.strip())
    parts += [f"{extract.LETTERS[i]}. {o}" for i, o in enumerate(sample.options or [])]
    parts.append(evidence.instructions("option") if use_evidence else POST_PROMPT)
    content.append({"type": "text", "text": "\n".join(parts)})
    n = len(frameset) if frameset is not None else 0
    return Prompt(content=content, n_frames=n, key=prompt_key(content, frameset))


# ---------------------------------------------------------------- scoring


def score(sample: Sample, response: str | None) -> dict:
    """Official extraction (first capital A-D after removing answer prefixes) == answer."""
    text, _ = extract.answer_text(response)
    letter = extract.videomme_letter(text, "ABCD")
    return {"score": float(letter != "" and letter == sample.answer), "extracted": letter or None}


def aggregate(rows: list[dict], card: TaskCard | None = None) -> dict:
    """Accuracy over all questions (unparsed = wrong, as lmms-eval and the leaderboard), the
    official script's accuracy over questions with an extracted letter, and breakdowns by
    duration, domain, sub-category and task type."""
    out = base.aggregate(rows, card)
    answered = [r for r in rows if r.get("extracted")]
    out["accuracy_answered_only"] = base.mean([r.get("score") or 0.0 for r in answered])
    out["n_answered"] = len(answered)
    return out
