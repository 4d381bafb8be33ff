"""Training datasets: questions with labelled frames, in the row format TRL expects.

Why here: the model must see frames during training exactly as it sees them during
evaluation ("Frame k (mm:ss.s):" before each image, the same question layout and evidence
instructions), or a citation learnt in training would not mean the same frame at test
time. So rows are built with the evaluation's own `prompt.build_prompt` and `video.py`
(with its frame cache), then split into TRL's conversational `prompt` (image
placeholders) and an `images` column.

Sources:
- synthvid (any synthvid task card), with SFT targets from `synthvid.sft_target`;
- Video-R1-style JSON: a list of {problem, options, solution, problem_type, path,
  data_type, [key_times]}; `solution` holds "<answer>X</answer>" (Video-R1's
  Video-R1-260k.json convention), `key_times` are [[start, end], ...] seconds;
- temporal-grounding lines in the Charades-STA layout: `VIDEO START END##SENTENCE`
  (the official charades_sta_{train,test}.txt), turned into a question asking which
  frames show the sentence, rewarded by grounding.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

from rler_eval.errors import InputError
from rler_eval.types import Sample

REWARD_COLUMNS = ("answer", "answer_type", "options", "key_frames", "n_frames")


def sample_to_row(sample: Sample, frameset, card, target: str | None = None) -> dict:
    """One TRL row: conversational prompt with image placeholders, images, reward columns."""
    from rler_eval.prompt import build_prompt

    prompt = build_prompt(sample, frameset, card)
    content, images = [], []
    for part in prompt.content:
        if part["type"] == "image":
            content.append({"type": "image", "text": ""})
            images.append(part["image"])
        elif part["type"] == "text":
            content.append({"type": "text", "text": part["text"]})
    row = {"prompt": [{"role": "user", "content": content}], "images": images, "id": sample.id,
           "answer": sample.answer, "answer_type": sample.answer_type, "options": list(sample.options or []),
           "key_frames": frameset.key_frame_labels(sample.key_times) if frameset is not None else [],
           "n_frames": len(frameset) if frameset is not None else 0}
    if target is not None:
        row["completion"] = [{"role": "assistant", "content": [{"type": "text", "text": target}]}]
    return row


def build_rows(samples: list[Sample], card, with_targets: bool, cache_dir=None, workers: int | None = None,
               verdicts: str | None = None, moments: bool = False) -> list[dict]:
    """Rows for every sample whose frames decode; SFT targets need synthvid-style notes
    (`verdicts`: the change family's comparison layout, `synthvid.attribute_comparison`;
    None: its default; `moments`: restate asked moments as frames, `synthvid.sft_target`).

    The frames are decoded by `workers` forked processes (default: one per core, at most 4;
    0 decodes here), in order: on 2 cores that halved the time to prepare 24,000 synthvid
    questions. A video that fails to decode raises, naming the sample.
    """
    import functools

    from tqdm import tqdm

    from rler_eval.benchmarks.synthvid import DEFAULT_VERDICTS, sft_target
    from rler_eval.errors import RlerError
    from rler_eval.prefetch import Prefetcher

    workers = min(4, os.cpu_count() or 1) if workers is None else workers
    jobs = [(s.video, s.clip) if s.video else None for s in samples]
    decode = functools.partial(sample_frames, cfg=card.frames, cache_dir=cache_dir)
    rows = []
    with Prefetcher(jobs, decode, workers=workers if len(samples) >= 4 * workers else 0) as pool:
        for i, s in enumerate(tqdm(samples, desc=f"frames for {card.name}", unit="q", mininterval=5)):
            try:
                frameset = pool.get(i)
            except RlerError as e:
                raise type(e)(f"{card.name} sample {s.id}: {e}") from None
            target = sft_target(s, frameset, verdicts or DEFAULT_VERDICTS, moments) if with_targets else None
            rows.append({**sample_to_row(s, frameset, card, target), "family": s.doc.get("family")})
    return rows


def sample_frames(job, cfg, cache_dir):
    """A worker's task: the FrameSet of one (video, clip)."""
    from rler_eval.video import load_frames

    video, clip = job
    return load_frames(video, cfg, clip=clip, cache_dir=cache_dir)


def to_dataset(rows: list[dict]):
    from datasets import Dataset

    return Dataset.from_list(rows)


def oversampled(families: list, oversample: dict | None, stage: str) -> list[int]:
    """Row indices to draw from uniformly: a row of an oversampled family appears k times."""
    weights = {str(f): int(k) for f, k in (oversample or {}).items()}
    missing = set(weights) - set(families)
    if missing:
        raise ValueError(f"{stage} oversample: no training rows of family {sorted(missing)}")
    return [i for i, f in enumerate(families) for _ in range(weights.get(f, 1))]


def lazy_dataset(samples: list[Sample], card, cache_dir=None, oversample: dict | None = None):
    """A GRPO dataset that decodes a sample's frames only when a process reads that row.

    Why: under accelerate each process reads only its own share of the rows, so decoding
    everything up front made every rank decode every sample (Video-R1: 260k videos per
    rank) before the first step. The stored table holds sample indices; datasets'
    `with_transform` turns each accessed batch into full rows (prompt, images, reward
    columns) with `sample_to_row`, through the frame cache. `oversample: {family: k}` lists
    each sample of that family k times, so GRPO's prompts can dwell where the policy still errs.
    """
    from datasets import Dataset

    from rler_eval.video import load_frames

    def rows_for(batch: dict) -> dict:
        out: dict = {}
        for idx in batch["sample"]:
            s = samples[idx]
            frameset = load_frames(s.video, card.frames, clip=s.clip, cache_dir=cache_dir) if s.video else None
            for key, value in sample_to_row(s, frameset, card).items():
                out.setdefault(key, []).append(value)
        return out

    families = [(s.doc or {}).get("family") for s in samples]
    indices = oversampled(families, oversample, "grpo")
    return Dataset.from_dict({"sample": indices}).with_transform(rows_for)


# ---------------------------------------------------------------- readers


def synthvid_samples(card) -> list[Sample]:
    from rler_eval.benchmarks import get_benchmark

    return get_benchmark("synthvid").load_samples(card)


def video_r1_samples(path, card, video_root=None) -> list[Sample]:
    """Video-R1-style JSON (a list of objects) -> Samples; errors name file, row and field."""
    path = Path(path)
    try:
        rows = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise InputError(f"{path}: cannot read Video-R1 JSON ({e})") from None
    root = Path(video_root) if video_root else path.parent
    return [video_r1_row(row, i, path, root, card) for i, row in enumerate(rows)]


def video_r1_row(row: dict, i: int, path: Path, root: Path, card) -> Sample:
    where = f"{path}, row {i}"
    for field in ("problem", "solution", "problem_type", "path"):
        if field not in row:
            raise InputError(f"{where}: missing field '{field}'")
    kind = {"multiple choice": "option", "numerical": "number", "regression": "number",
            "yes/no": "yesno", "free-form": "text", "ocr": "text"}.get(str(row["problem_type"]).lower())
    if kind is None:
        raise InputError(f"{where}: field 'problem_type' has unknown value {row['problem_type']!r}")
    m = re.search(r"<answer>(.*?)</answer>", row["solution"], re.S)
    answer = (m.group(1) if m else row["solution"]).strip()
    options = [re.sub(r"^\s*[A-Z][\.\)]\s*", "", o) for o in row.get("options") or []] or None
    if kind == "option":
        answer = answer[:1].upper()
    return Sample(id=str(row.get("id", f"{path.stem}-{i}")), task=card.name, question=row["problem"],
                  answer=answer, answer_type=kind, options=options, video=str(root / row["path"]),
                  key_times=[tuple(k) for k in row["key_times"]] if row.get("key_times") else None,
                  category={"data_type": row.get("data_type", "video")}, doc=row)


def charades_sta_samples(path, card, video_root, suffix: str = ".mp4") -> list[Sample]:
    """`VID START END##SENTENCE` lines -> 'which frames show ...' questions with key times."""
    path = Path(path)
    out = []
    for i, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        head, sep, sentence = line.partition("##")
        parts = head.split()
        if not sep or len(parts) != 3:
            raise InputError(f"{path}, line {i}: expected 'VIDEO START END##SENTENCE'")
        try:
            start, end = float(parts[1]), float(parts[2])
        except ValueError:
            raise InputError(f"{path}, line {i}: START and END must be numbers") from None
        q = f"Which frames show this moment: \"{sentence.strip().rstrip('.')}\"? Answer with the moment's description."
        out.append(Sample(id=f"{parts[0]}-{i}", task=card.name, question=q, answer=sentence.strip().rstrip("."),
                          answer_type="text", video=str(Path(video_root) / (parts[0] + suffix)),
                          key_times=[(start, end)], category={"source": "charades_sta"}, doc={"line": line}))
    return out
