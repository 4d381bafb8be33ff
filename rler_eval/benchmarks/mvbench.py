"""MVBench: 20 temporal sub-tasks of 200 multiple-choice questions each.

Why this adapter exists: MVBench's release is 20 JSON files whose videos live in
different source-dataset folders, some as whole videos cut by start/end times and one
(episodic reasoning) as folders of JPEG frames at 3 fps. This module knows that map,
turns each row into a Sample, prompts the customary way, and scores with the official
`check_ans` rule (see `extract.mvbench_match`). Facts and sources: docs/FACTS.md.

Layout read (under the card's data root, e.g. $RLER_DATA/mvbench):

    json/<sub_task>.json                     a list of {video, question, candidates, answer[, start, end]}
    [video/]<prefix>/<video>                 prefix per sub-task, see SUBTASKS
    video/data0613/<prefix>/<video>          clips the HF release moved (data0613.zip: star/, clevrer/)

Two video layouts are recognised per sub-task, whichever folder exists:
- the official one of Ask-Anything's `mvbench.ipynb` (e.g. star/Charades_v1_480 with
  start/end, tvqa/frames_fps3_hq frame folders), and
- the pre-cut one on the Hugging Face `video` revision used by lmms-eval (e.g.
  star/Charades_segment): already cut, so start/end are not applied again.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from rler_eval import evidence
from rler_eval.benchmarks import base, extract
from rler_eval.benchmarks.rows import guard
from rler_eval.errors import InputError
from rler_eval.prompt import frame_parts, prompt_key
from rler_eval.tasks import TaskCard
from rler_eval.types import FrameSet, Prompt, Sample


@dataclass(frozen=True)
class SubTask:
    """Where one sub-task's videos live and how they are read."""

    prefix: str  # official folder (Ask-Anything mvbench.ipynb `data_list`)
    data_type: str  # "video" or "frame" (a folder of 00001.jpg, 00002.jpg, ...)
    bound: bool  # rows carry start/end seconds that cut the video
    segment_prefix: str  # pre-cut folder on the HF `video` revision (lmms-eval DATA_LIST)


UNKNOWN = "unknown"  # the sub-task of a scored row that does not name one
MOVED = "data0613"  # video/data0613.zip on the HF release: star/ and clevrer/ clips moved there
FRAME_FPS = 3.0  # the official reader treats frame folders as 3 fps, frames numbered from 1

# Sub-task JSON stem -> video location (notebook data_list; lmms-eval mvbench/utils.py DATA_LIST).
SUBTASKS: dict[str, SubTask] = {
    "action_sequence": SubTask("star/Charades_v1_480", "video", True, "star/Charades_segment"),
    "action_prediction": SubTask("star/Charades_v1_480", "video", True, "star/Charades_segment"),
    "action_antonym": SubTask("ssv2_video", "video", False, "ssv2_video_mp4"),
    "fine_grained_action": SubTask("Moments_in_Time_Raw/videos", "video", False, "Moments_in_Time_Raw/videos"),
    "unexpected_action": SubTask("FunQA_test/test", "video", False, "FunQA_test/test"),
    "object_existence": SubTask("clevrer/video_validation", "video", False, "clevrer/video_validation"),
    "object_interaction": SubTask("star/Charades_v1_480", "video", True, "star/Charades_segment"),
    "object_shuffle": SubTask("perception/videos", "video", False, "perception/videos"),
    "moving_direction": SubTask("clevrer/video_validation", "video", False, "clevrer/video_validation"),
    "action_localization": SubTask("sta/sta_video", "video", True, "sta/sta_video_segment"),
    "scene_transition": SubTask("scene_qa/video", "video", False, "scene_qa/video"),
    "action_count": SubTask("perception/videos", "video", False, "perception/videos"),
    "moving_count": SubTask("clevrer/video_validation", "video", False, "clevrer/video_validation"),
    "moving_attribute": SubTask("clevrer/video_validation", "video", False, "clevrer/video_validation"),
    "state_change": SubTask("perception/videos", "video", False, "perception/videos"),
    "fine_grained_pose": SubTask("nturgbd", "video", False, "nturgbd_convert"),
    "character_order": SubTask("perception/videos", "video", False, "perception/videos"),
    "egocentric_navigation": SubTask("vlnqa", "video", False, "vlnqa"),
    "episodic_reasoning": SubTask("tvqa/frames_fps3_hq", "frame", True, "tvqa/video_fps3_hq_segment"),
    "counterfactual_inference": SubTask("clevrer/video_validation", "video", False, "clevrer/video_validation"),
}

# The customary prompt (Ask-Anything mvbench.ipynb `infer_mvbench` call): a system text,
# "Question: ...\nOptions:\n(A) ...", then "\nOnly give the best option." and the answer
# prefill "Best option:(" (here appended to the user text: backends do not prefill).
SYSTEM = ("Carefully watch the video and pay attention to the cause and sequence of events, the detail "
          "and movement of objects, and the action and pose of persons. Based on your observations, "
          "select the best option that accurately addresses the question.")
QUESTION_SUFFIX = "Only give the best option."
ANSWER_PREFILL = "Best option:("


# ---------------------------------------------------------------- reading


def load_samples(card: TaskCard) -> list[Sample]:
    """Every row of every sub-task JSON (or only `card.args['subtasks']`), in file order."""
    root = extract.require(card.root, card, "the MVBench data root")
    json_dir = extract.require(root / "json", card, "MVBench's json/ folder of sub-task files")
    names = card.args.get("subtasks") or list(SUBTASKS)
    unknown = [n for n in names if n not in SUBTASKS]
    if unknown:
        raise InputError(f"task {card.name}: unknown MVBench sub-task(s) {unknown}; known: {list(SUBTASKS)}")
    samples = []
    for name in names:
        path = extract.require(json_dir / f"{name}.json", card, f"MVBench sub-task file {name}.json")
        rows = extract.read_json(path)
        if not isinstance(rows, list):
            raise InputError(f"{path}: expected a JSON list of questions, got {type(rows).__name__}")
        video_dir, segmented = _video_dir(root, SUBTASKS[name])
        for i, row in enumerate(rows):
            where = f"{path} row {i}"
            samples.append(guard(lambda: _to_sample(row, card, name, i, where, video_dir, segmented), card, where,
                                 row if isinstance(row, dict) else extract.BadRow(f"{where}: expected a JSON object")))
    return samples


def _video_dir(root: Path, sub: SubTask) -> tuple[Path, bool]:
    """The folder holding a sub-task's videos and whether it is the pre-cut layout.

    A missing folder is not fatal here: each of its samples then fails alone with a
    per-sample error naming the video path.
    """
    for base_dir in (root / "video", root):
        if (base_dir / sub.prefix).is_dir():
            return base_dir / sub.prefix, False
        if (base_dir / sub.segment_prefix).is_dir():
            return base_dir / sub.segment_prefix, True
    return root / "video" / sub.prefix, False


def _find_video(root: Path, sub: SubTask | None, video_dir: Path, video: str, segmented: bool) -> tuple[Path, bool]:
    """The row's video: in its sub-task folder, else in `video/data0613/<prefix>/`, where
    the HF release's data0613.zip puts the star/ and clevrer/ clips it moved."""
    path = video_dir / video
    if path.exists() or sub is None:
        return path, segmented
    for moved in (root / "video" / MOVED, root / MOVED):
        for prefix, cut in ((sub.prefix, False), (sub.segment_prefix, True)):
            if (moved / prefix / video).exists():
                return moved / prefix / video, cut
    return path, segmented


def doc_to_sample(doc: dict, card: TaskCard, index: int = 0) -> Sample:
    """One official row, with its sub-task name in `doc["task_type"]` (the JSON stem) when
    known; an official row as released has none (the file name says it), so a row without
    one is scored under the sub-task "unknown"."""
    where = f"doc {index}"
    name = doc.get("task_type") or UNKNOWN
    if name not in SUBTASKS and name != UNKNOWN:
        raise InputError(f"{where}: field 'task_type' is {name!r}; expected one of {list(SUBTASKS)} "
                         f"(the sub-task JSON file name without .json)")
    video_dir, segmented = _video_dir(card.root, SUBTASKS[name]) if name in SUBTASKS else (card.root, False)
    row = {k: v for k, v in doc.items() if k != "task_type"}
    return _to_sample(row, card, name, index, where, video_dir, segmented)


def _to_sample(row: dict, card: TaskCard, name: str, index: int, where: str,
               video_dir: Path, segmented: bool) -> Sample:
    video = extract.field(row, "video", where, str)
    question = extract.field(row, "question", where, str)
    candidates = extract.field(row, "candidates", where, list)
    answer = extract.field(row, "answer", where, str)
    if not candidates or not all(isinstance(c, str) for c in candidates):
        raise InputError(f"{where}: field 'candidates' should be a non-empty list of strings")
    if answer not in candidates:
        raise InputError(f"{where}: field 'answer' {answer!r} is not one of the candidates {candidates}")
    sub = SUBTASKS.get(name)
    path, segmented = _find_video(card.root, sub, video_dir, video, segmented)
    clip = None
    if sub is not None and sub.bound and not segmented and "start" in row and "end" in row:
        try:
            clip = (float(row["start"]), float(row["end"]))
        except (TypeError, ValueError):
            raise InputError(f"{where}: fields 'start'/'end' should be numbers, got "
                             f"{row['start']!r}/{row['end']!r}") from None
    return Sample(
        id=f"{name}/{index:04d}", task=card.name, question=question,
        answer=extract.LETTERS[candidates.index(answer)], answer_type="option", options=list(candidates),
        video=str(path), clip=clip, category={"task_type": name},
        doc={**row, "task_type": name},
    )


# ---------------------------------------------------------------- prompting


def build_prompt(sample: Sample, frameset: FrameSet | None, card: TaskCard | None = None) -> Prompt:
    """Frames, then the official question layout ("(A) text" options).

    With the evidence prompt the protocol instructions follow; with the plain prompt the
    official "Only give the best option." and "Best option:(" close it.
    """
    mode = card.frames.mode if card is not None else "images"
    content = frame_parts(frameset, mode) if frameset is not None and len(frameset) else []
    lines = [f"Question: {sample.question.strip()}", "Options:"]
    lines += [f"({extract.LETTERS[i]}) {c}" for i, c in enumerate(sample.options or [])]
    text = "\n".join(lines)
    if card is None or card.prompt == "evidence":
        text += "\n\n" + evidence.instructions("option")
    else:
        text += f"\n{QUESTION_SUFFIX}\n{ANSWER_PREFILL}"
    content.append({"type": "text", "text": text})
    n = len(frameset) if frameset is not None else 0
    return Prompt(content=content, system=SYSTEM, n_frames=n, key=prompt_key([{"type": "text", "text": SYSTEM}] + content, frameset))


# ---------------------------------------------------------------- scoring


def score(sample: Sample, response: str | None) -> dict:
    """The official `check_ans` against the gold letter, on the <answer> span if present."""
    text, _ = extract.answer_text(response)
    ok = extract.mvbench_match(text, sample.answer)
    letter = extract.mvbench_letter(text, len(sample.options or []))
    return {"score": float(ok), "extracted": letter or None}


def aggregate(rows: list[dict], card: TaskCard | None = None) -> dict:
    """Official "Avg" (all correct / all questions), per sub-task accuracy, and their mean.

    The notebook reports correct/total over all questions as "Avg"; with 200 questions
    per sub-task that equals the mean over sub-tasks, which is also reported because it
    differs on subsets (--limit, shards, a fixture).
    """
    out = base.aggregate(rows, card)
    per_task = out.get("by_task_type", {})
    out["mean_over_subtasks"] = base.mean(list(per_task.values()))
    out["n_subtasks"] = len(per_task)
    return out
