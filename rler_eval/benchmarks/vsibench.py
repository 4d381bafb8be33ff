"""VSI-Bench: visual-spatial intelligence on indoor scans, multiple choice and numbers.

Why this adapter exists: VSI-Bench mixes two kinds of question with two metrics. Six
multiple-choice types are scored by exact letter; four numeric types (distance, counting,
size, room size) by mean relative accuracy (MRA) over ten thresholds. The headline is not
a plain accuracy: it is the unweighted mean of the per-type scores, with the three
rel_direction difficulty levels first merged into one. Both rules come from the official
code (vision-x-nyu/thinking-in-space `lmms_eval/tasks/vsibench/utils.py`, identical in
lmms-eval) and are reproduced exactly, including the reading of a reply: its first
space-separated word with trailing dots removed. Facts and sources: docs/FACTS.md.

Layout read (under the card's data root, e.g. $RLER_DATA/vsibench), as on the Hugging Face
dataset nyu-visionx/VSI-Bench:

    test-*.parquet | test.parquet | test.jsonl   rows {id, dataset, scene_name, question_type,
                                                 question, options (list or null), ground_truth}
    test_debiased.parquet                        the debiased subset (VSI-Bench-Debiased);
                                                 else test rows whose `pruned` column is false
                                                 (current dataset card), else rows whose id is
                                                 not in pruned_ids.txt
    <dataset>/<scene_name>.mp4                   arkitscenes/, scannet/, scannetpp/

`card.args.subset`: "full" (default) or "debiased".
`card.args.number_reading`: "first_word" (official thinking-in-space, default) or
"first_number" (current lmms-eval `extract_number`: first digits or number words).
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

from rler_eval import evidence
from rler_eval.benchmarks import extract, judge, tables
from rler_eval.benchmarks.rows import guard
from rler_eval.errors import InputError
from rler_eval.prompt import frame_parts, prompt_key
from rler_eval.tasks import TaskCard
from rler_eval.types import FrameSet, Prompt, Sample

MCA_TYPES = ("object_rel_direction_easy", "object_rel_direction_medium", "object_rel_direction_hard",
             "object_rel_distance", "route_planning", "obj_appearance_order")
NA_TYPES = ("object_abs_distance", "object_counting", "object_size_estimation", "room_size_estimation")
REL_DIRECTION = MCA_TYPES[:3]
MRA_KEY = "MRA:.5:.95:.05"

# Official prompt (utils.py `vsibench_doc_to_text`, default lmms_eval_specific_kwargs).
PRE_PROMPT = "These are frames of a video."
NA_POST = "Please answer the question using a single word or phrase."
MCA_POST = "Answer with the option's letter from the given choices directly."


# ---------------------------------------------------------------- reading


def load_samples(card: TaskCard) -> list[Sample]:
    root = extract.require(card.root, card, "the VSI-Bench data root")
    return [guard(lambda: _to_sample(row, card, where, i), card, where, row)
            for i, (where, row) in enumerate(read_rows(root, card))]


def read_rows(root: Path, card: TaskCard) -> list[tuple[str, dict]]:
    """(where, row) pairs of the card's subset. Debiased: test_debiased.parquet, else the
    rows whose `pruned` column is false (the current dataset card), else the rows whose id
    is not in pruned_ids.txt."""
    subset = (card.args or {}).get("subset", "full")
    if subset not in ("full", "debiased"):
        raise InputError(f"task {card.name}: args.subset {subset!r} should be 'full' or 'debiased'")
    if subset == "debiased" and (root / "test_debiased.parquet").is_file():
        files = [root / "test_debiased.parquet"]
    else:
        files = sorted(root.glob("test-*.parquet")) or [p for p in (root / "test.parquet", root / "test.jsonl")
                                                        if p.is_file()][:1]
    if not files:
        extract.require(root / "test.jsonl", card, "VSI-Bench's annotations (test.jsonl or test-*.parquet)")
    rows = [(f"{f} row {i}", r) for f in files for i, r in enumerate(tables.read_rows(f))]
    if subset == "debiased" and files[0].name != "test_debiased.parquet":
        if any("pruned" in r for _, r in rows):
            rows = [(w, r) for w, r in rows if not _truthy(r.get("pruned"))]
        else:
            pruned_path = extract.require(root / "pruned_ids.txt", card, "the debiased subset (a 'pruned' column, "
                                          "test_debiased.parquet, or pruned_ids.txt)")
            pruned = set(pruned_path.read_text().split())
            rows = [(w, r) for w, r in rows if str(r.get("id")) not in pruned]
    return rows


def _truthy(value) -> bool:
    """A `pruned` cell: bool, 0/1, or "true"/"false" text."""
    return value in (True, 1) or str(value).strip().lower() == "true"


def doc_to_sample(doc: dict, card: TaskCard, index: int = 0) -> Sample:
    return _to_sample(doc, card, f"doc {index}", index)


def _to_sample(row: dict, card: TaskCard, where: str, index: int) -> Sample:
    qtype = extract.field(row, "question_type", where, str)
    question = extract.field(row, "question", where, str)
    gt = str(extract.field(row, "ground_truth", where, (str, int, float)))
    dataset = extract.field(row, "dataset", where, str)
    scene = str(extract.field(row, "scene_name", where, (str, int)))
    sid = str(row["id"]) if row.get("id") is not None else f"{index:05d}"
    common = dict(id=sid, task=card.name, question=question, video=str(card.root / dataset / f"{scene}.mp4"),
                  category={"question_type": qtype, "dataset": dataset}, doc=dict(row))
    if qtype in MCA_TYPES:
        options = row.get("options")
        if not isinstance(options, list) or not options:
            raise InputError(f"{where}: multiple-choice type {qtype} needs a non-empty list 'options'")
        texts = [_strip_letter(o, i) for i, o in enumerate(options)]
        if gt not in extract.LETTERS[:len(options)]:
            raise InputError(f"{where}: field 'ground_truth' {gt!r} is not an option letter "
                             f"A-{extract.LETTERS[len(options) - 1]}")
        return Sample(answer=gt, answer_type="option", options=texts, **common)
    if qtype in NA_TYPES:
        if extract.to_float(gt) is None:
            raise InputError(f"{where}: numeric type {qtype} needs a number in 'ground_truth', got {gt!r}")
        return Sample(answer=gt, answer_type="number", options=None, **common)
    raise InputError(f"{where}: unknown question_type {qtype!r}; known: {list(MCA_TYPES + NA_TYPES)}")


def _strip_letter(option: str, i: int) -> str:
    """"A. chair" -> "chair" (the release prefixes each option with its letter)."""
    prefix = f"{extract.LETTERS[i]}. "
    return option[len(prefix):] if str(option).startswith(prefix) else str(option)


# ---------------------------------------------------------------- prompting


def build_prompt(sample: Sample, frameset: FrameSet | None, card: TaskCard | None = None) -> Prompt:
    """Frames, "These are frames of a video.", the question, the options as released, then
    the official post-prompt (plain) or the evidence instructions."""
    mode = card.frames.mode if card is not None else "images"
    content = frame_parts(frameset, mode) if frameset is not None and len(frameset) else []
    plain = card is not None and card.prompt == "plain"
    parts = [PRE_PROMPT, sample.question]
    if sample.answer_type == "option":
        parts.append("Options:\n" + "\n".join(sample.doc.get("options") or []))
        parts.append(MCA_POST if plain else evidence.instructions("option"))
    else:
        parts.append(NA_POST if plain else evidence.instructions("number"))
    text = "\n".join(parts)
    content.append({"type": "text", "text": text})
    n = len(frameset) if frameset is not None else 0
    return Prompt(content=content, n_frames=n, key=prompt_key(content, frameset))


# ---------------------------------------------------------------- scoring


def fuzzy(text: str) -> str:
    """Official `fuzzy_matching`: the first space-separated word, trailing dots removed."""
    return text.split(" ")[0].rstrip(".").strip()


def score(sample: Sample, response: str | None, card: TaskCard | None = None) -> dict:
    """Exact letter (case-insensitive) for multiple choice; MRA for numbers.

    The official rules read the first word of the reply; with the evidence format that is
    the first word of the <answer> span.
    """
    text, _ = extract.answer_text(response)
    if sample.answer_type == "option":
        got = fuzzy(text)
        return {"score": 1.0 if got.lower() == sample.answer.lower() else 0.0, "extracted": got}
    card = card or judge.card_of(sample)
    reading = ((card.args or {}).get("number_reading") if card is not None else None) or "first_word"
    value = extract.first_number(text) if reading == "first_number" else extract.first_word_number(text)
    return {"score": extract.mra(value, extract.to_float(sample.answer)), "extracted": value}


# ---------------------------------------------------------------- aggregate


def aggregate(rows: list[dict], card: TaskCard | None = None) -> dict:
    """Per-type means (accuracy or MRA), rel_direction merged, and their unweighted mean.

    As the official `vsibench_aggregate_results`: each question type's mean score; the
    three rel_direction levels replaced by the mean of their three means; "overall" the
    mean of what remains. A level absent from the rows (a --limit run) is left out of the
    merge instead of raising, as the official code would. `accuracy` equals `overall`.
    """
    groups: dict[str, list[float]] = defaultdict(list)
    for r in rows:
        qtype = (r.get("category") or {}).get("question_type")
        if qtype is None and isinstance(r.get("sample"), dict):
            qtype = r["sample"].get("category", {}).get("question_type")
        groups[str(qtype)].append(float(r.get("score") or 0.0))
    per_type = {q: sum(s) / len(s) for q, s in sorted(groups.items())}
    tasks = {}
    for q, v in per_type.items():
        if q in REL_DIRECTION:
            continue
        tasks[f"{q}_{MRA_KEY if q in NA_TYPES else 'accuracy'}"] = v
    levels = [per_type[q] for q in REL_DIRECTION if q in per_type]
    if levels:
        tasks["object_rel_direction_accuracy"] = sum(levels) / len(levels)
    overall = sum(tasks.values()) / len(tasks) if tasks else 0.0
    return {"accuracy": overall, "overall": overall, "n": len(rows), "tasks": tasks,
            "by_question_type": per_type,
            "subset": ((card.args or {}).get("subset", "full") if card is not None else None)}
