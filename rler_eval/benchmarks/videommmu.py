"""Video-MMMU: learning from lecture videos, in three tracks, with MMMU-style scoring.

Why this adapter exists: Video-MMMU asks three questions per lecture video at three
cognitive levels (Perception, Comprehension, Adaptation). Answers are either an option
letter or an open number/phrase, each read by MMMU's tolerant parsers (a letter found
among several cues; for open answers the key sub-sentences, every number in them,
normalised and matched). Adaptation questions come with an image that the official
setup appends to the end of the video; here it is `Sample.images`, shown after the
frames as the last frame. Knowledge gain (Δknowledge) compares Adaptation accuracy with
a question-only baseline run. Facts and sources: docs/FACTS.md ("Benchmarks B").

Layout read (under the card's data root, e.g. $RLER_DATA/videommmu), as on the Hugging
Face dataset lmms-lab/VideoMMMU:

    <Track>/test-*.parquet        rows {id, question, options, answer, question_type[, image 1]}
                                  (or the GitHub release's data/<track>_video.json, as
                                  {"<Track>": {"0": row, ...}}; Perception/Comprehension rows
                                  there have no question_type: options -> multiple choice)
                                  Track in Perception, Comprehension, Adaptation
    <Discipline>/<id>.mp4         Art, Business, Science, Medicine, Humanities, Engineering
                                  (also videos/<id>.mp4 or <id>.mp4)
    question_only/<id>_image.mp4  optional: the official 2-second question-only videos

`id` is "<split>_<Subject>_<n>"; the subject gives the discipline folder. `card.args`:
`tracks` (default all three), `question_only: true` (the Δknowledge baseline: Adaptation
questions with only the question image), `question_only_run` (a run folder of that
baseline, to report Δknowledge). For `rler-eval score`, a doc is one row plus `track`
(needed when the card has more than one track).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path

from rler_eval import evidence
from rler_eval.benchmarks import base, extract, tables
from rler_eval.benchmarks.rows import guard
from rler_eval.errors import InputError
from rler_eval.prompt import frame_parts, prompt_key
from rler_eval.tasks import TaskCard, expand_env
from rler_eval.types import FrameSet, Prompt, Sample

TRACKS = ("Perception", "Comprehension", "Adaptation")
IMAGE_COLUMN = "image 1"

# lmms-eval videommmu/utils.py get_cache_dir and DOMAIN_CAT2SUB_CAT.
DISCIPLINES = {
    "Art": ("Art", "Art_Theory", "Design", "Music"),
    "Science": ("Biology", "Chemistry", "Geography", "Math", "Physics"),
    "Humanities": ("History", "Literature", "Sociology", "Psychology"),
    "Engineering": ("Agriculture", "Architecture_and_Engineering", "Computer_Science", "Electronics",
                    "Energy_and_Power", "Materials", "Mechanical_Engineering"),
    "Medicine": ("Basic_Medical_Science", "Clinical_Medicine", "Diagnostics_and_Laboratory_Medicine", "Pharmacy",
                 "Public_Health"),
    "Business": ("Accounting", "Economics", "Finance", "Manage", "Marketing"),
}

# The customary prompts (lmms-eval videommmu/_default_template_yaml, lmms_eval_specific_kwargs).
PRE_PROMPT = ("Please directly output the option letter/data as the answer. You should watch and learn the video "
              "content. Then apply what you learned to ")
PC_POST = "\nPlease directly output the option letter/data as the answer."
MCQ_PROMPT = "answer the following multi-choice question. The image for this question is at the end of the video.\n"
OPEN_PROMPT = "answer the following open-ended question. The image for this question is at the end of the video.\n"
IMAGE_NOTE = "The image for this question is shown after the video frames, as the last frame."


# ---------------------------------------------------------------- reading


def _tracks(card: TaskCard) -> list[str]:
    args = card.args or {}
    tracks = ["Adaptation"] if args.get("question_only") else list(args.get("tracks") or TRACKS)
    bad = [t for t in tracks if t not in TRACKS]
    if bad:
        raise InputError(f"task {card.name}: unknown Video-MMMU track(s) {bad}; known: {list(TRACKS)}")
    return tracks


def load_samples(card: TaskCard) -> list[Sample]:
    root = extract.require(card.root, card, "the Video-MMMU data root")
    samples = []
    for track in _tracks(card):
        files = track_files(root, track)
        if not files:
            extract.require(root / track / "test-00000-of-00001.parquet", card, f"Video-MMMU's {track} annotations")
        for f in files:
            for i, row in enumerate(tables.read_rows(f)):
                where = f"{f} row {i}"
                samples.append(guard(lambda: _to_sample(row, card, track, where), card, where, row))
    return samples


def track_files(root: Path, track: str) -> list[Path]:
    """The HF layout (<Track>/test-*.parquet, <Track>.json...) or the GitHub one
    (data/<track>_video.json: {"<Track>": {"0": row, ...}})."""
    files = tables.find_files(root, track)
    if files:
        return files
    stem = f"{track.lower()}_video.json"
    return [p for p in (root / "data" / stem, root / stem) if p.is_file()][:1]


def doc_to_sample(doc: dict, card: TaskCard, index: int = 0) -> Sample:
    """One official row; its track is `doc["track"]`, else the id's prefix
    ("Perception/dev_Art_1", "perception_dev_Art_1"), else the card's only track."""
    doc = dict(doc)
    track = doc.pop("track", None)
    m = _TRACK_PREFIX.match(str(doc.get("id", "")))
    if not track and m:
        track, doc["id"] = m.group(1).capitalize(), m.group(2)
    tracks = _tracks(card)
    track = track or (tracks[0] if len(tracks) == 1 else None)
    if track not in TRACKS:
        raise InputError(f"doc {index}: field 'track' should be one of {list(TRACKS)} (the dataset config the row "
                         f"comes from; or prefix the id, e.g. 'Perception/dev_Art_1'), got {track!r}")
    return _to_sample(doc, card, track, f"doc {index}")


_TRACK_PREFIX = re.compile(r"^(perception|comprehension|adaptation)[/_](\w+_.+_\d+)$", re.IGNORECASE)


def subject_of(qid: str, where: str) -> str:
    """lmms-eval `extract_subset_name`: "test_Art_Theory_12" -> "Art_Theory"."""
    split = qid.split("_")[0]
    m = re.match(rf"^{re.escape(split)}_(.+?)_\d+$", qid)
    if not m:
        raise InputError(f"{where}: field 'id' {qid!r} is not '<split>_<Subject>_<number>'")
    return m.group(1)


def discipline_of(subject: str) -> str:
    for disc, subjects in DISCIPLINES.items():
        if subject in subjects:
            return disc
    return "Unknown"


def _to_sample(row: dict, card: TaskCard, track: str, where: str) -> Sample:
    qid = str(extract.field(row, "id", where, str))
    question = extract.field(row, "question", where, str)
    answer = extract.field(row, "answer", where, (str, int, float))
    options = row.get("options") or []
    if not isinstance(options, list) or not all(isinstance(o, str) for o in options):
        raise InputError(f"{where}: field 'options' should be a list of strings")
    qtype = row.get("question_type")
    if qtype is None:  # absent in the Perception/Comprehension files, null in one Adaptation row
        qtype = "multiple-choice" if options else "open"  # as lmms-eval's doc.get("question_type", ...)
    if not isinstance(qtype, str):
        raise InputError(f"{where}: field 'question_type' should be str, got {type(qtype).__name__}")
    subject = subject_of(qid, where)
    disc = discipline_of(subject)
    root = card.root
    question_only = bool((card.args or {}).get("question_only"))
    images = []
    if track == "Adaptation" and row.get(IMAGE_COLUMN) is not None:
        images = [_image_file(row[IMAGE_COLUMN], root, qid, where)]
    if question_only:
        qo = root / "question_only" / f"{qid}_image.mp4"
        video = str(qo) if qo.exists() or not images else None
        images = [] if video else images
    else:
        video = str(_video_path(root, disc, qid))
    doc = {k: v for k, v in row.items() if k != IMAGE_COLUMN}
    doc["track"] = track
    mc = qtype == "multiple-choice"
    if mc and not options:
        raise InputError(f"{where}: a multiple-choice question needs a non-empty 'options' list")
    if mc and str(answer) not in extract.LETTERS[:len(options)]:
        raise InputError(f"{where}: field 'answer' {answer!r} is not an option letter")
    texts = [_strip_letter(o, i) for i, o in enumerate(options)]
    return Sample(id=f"{track}/{qid}", task=card.name, question=question, answer=str(answer),
                  answer_type="option" if mc else "text", options=texts if mc else None, video=video,
                  images=images, category={"track": track, "subject": subject, "discipline": disc,
                                           "question_type": qtype}, doc=doc)


def _strip_letter(option: str, i: int) -> str:
    prefix = f"{extract.LETTERS[i]}. "
    return option[len(prefix):] if option.startswith(prefix) else option


def _video_path(root: Path, disc: str, qid: str) -> Path:
    for p in (root / disc / f"{qid}.mp4", root / "videos" / f"{qid}.mp4", root / f"{qid}.mp4"):
        if p.exists():
            return p
    return root / disc / f"{qid}.mp4"


def _image_file(value, root: Path, qid: str, where: str) -> str:
    """The question image as a file path: a parquet Image cell ({bytes, path}) is written
    once to the cache ($RLER_CACHE/videommmu_images); a string is a path under the root."""
    if isinstance(value, str):
        return str(root / value)
    if isinstance(value, dict) and value.get("bytes"):
        data = value["bytes"]
        digest = hashlib.sha1(data).hexdigest()[:12]
        cache = Path(os.environ.get("RLER_CACHE") or os.path.expanduser("~/.cache/rler-eval")) / "videommmu_images"
        cache.mkdir(parents=True, exist_ok=True)
        path = cache / f"{qid}_{digest}.png"
        if not path.exists():
            tmp = path.with_suffix(f".tmp{os.getpid()}")
            tmp.write_bytes(data)
            os.replace(tmp, path)
        return str(path)
    if isinstance(value, dict) and value.get("path"):
        return str(root / value["path"])
    raise InputError(f"{where}: field '{IMAGE_COLUMN}' is neither an image cell nor a path")


# ---------------------------------------------------------------- prompting


def build_prompt(sample: Sample, frameset: FrameSet | None, card: TaskCard | None = None) -> Prompt:
    """Frames, then the question image(s) as the last frame(s), then the question.

    Plain prompt: the official wording (Perception/Comprehension: question, options and
    "Please directly output ..."; Adaptation: the learning pre-prompt first). Evidence
    prompt: the question, options and the protocol instructions.
    """
    from PIL import Image

    mode = card.frames.mode if card is not None else "images"
    content = frame_parts(frameset, mode) if frameset is not None and len(frameset) else []
    n = len(frameset) if frameset is not None else 0
    for path in sample.images:
        n += 1
        content.append({"type": "text", "text": f"Frame {n} (question image):"})
        content.append({"type": "image", "image": Image.open(path).convert("RGB")})
    track = sample.category.get("track")
    options = "\n".join(f"{extract.LETTERS[i]}. {o}" for i, o in enumerate(sample.options or []))
    body = sample.question + ("\n" + options if options else "")
    plain = card is not None and card.prompt == "plain"
    if plain and track == "Adaptation":
        text = PRE_PROMPT + (MCQ_PROMPT if sample.answer_type == "option" else OPEN_PROMPT) + body
    elif plain:
        text = body + PC_POST
    else:
        text = (IMAGE_NOTE + "\n" if sample.images else "") + body + "\n\n" + evidence.instructions(sample.answer_type)
    content.append({"type": "text", "text": text})
    return Prompt(content=content, n_frames=n, key=prompt_key(content, frameset) + _images_key(sample))


def _images_key(sample: Sample) -> str:
    return hashlib.sha1("|".join(sample.images).encode()).hexdigest()[:4] if sample.images else ""


# ---------------------------------------------------------------- MMMU-style parsing

NO_ANSWER = "No Answer Found."
API_ERROR = "API Error"  # what the official parsers return for an empty reply


def parse_choice(response: str, n_options: int, options: list[str]) -> str:
    """lmms-eval `parse_videommmu_multi_choice_response`: the option a reply names.

    Cues in order: "X." and "X:" anywhere (both collected), else "(X)", else "X " (the
    reply is padded with spaces), else, for replies over 5 words, an option's text. With
    several candidates the last occurrence of the winning cue decides. "" -> "API Error";
    nothing found -> "No Answer Found." (both score 0).
    """
    if response == "":
        return API_ERROR
    choices = list(extract.LETTERS[:n_options])
    for ch in (",", ".", "!", "?", ";", ":", "'"):
        response = response.strip(ch)
    response = " " + response + " "
    cands, period, colon, brack, by_index = [], False, False, False, True
    for c in choices:
        if f"{c}." in response:
            cands.append(c)
            period = True
    for c in choices:
        if f"{c}:" in response:
            cands.append(c)
            colon = True
    if not cands:
        for c in choices:
            if f"({c})" in response:
                cands.append(c)
                brack = True
    if not cands:
        cands = [c for c in choices if f"{c} " in response]
    if not cands and len(response.split()) > 5:
        cands = [c for c, o in zip(choices, options) if o.lower() in response.lower()]
        by_index = not cands
    if not cands:
        return NO_ANSWER
    if len(cands) == 1:
        return cands[0]
    if not by_index:
        pos = [response.lower().rfind(options[choices.index(c)].lower()) for c in cands]
    elif period:
        pos = [response.rfind(f"{c}.") for c in cands]
    elif colon:
        pos = [response.rfind(f"{c}:") for c in cands]
    elif brack:
        pos = [response.rfind(f"({c})") for c in cands]
    else:
        pos = [response.rfind(f" {c} ") for c in cands]
    return cands[pos.index(max(pos))]


_INDICATORS = ("could be ", "so ", "is ", "thus ", "therefore ", "final ", "answer ", "result ", "are ",
               "in total ", "total ", "identify ", "recognize ", "calculated as ", "counted as ", "measured as ",
               "observed as ", "concluded as ", "found to be ", "equals ", "determined to be ", "number of ",
               "value is ", "adds up to ", "have ", "has ")
_TRIVIAL = {":", ",", ".", "!", "?", ";", "'"}


def key_subresponses(response: str) -> list[str]:
    """MMMU `get_key_subresponses`: per line, the shortest tail after an answer indicator.

    The reply is lower-cased before splitting on ". " + capital letter, so in the official
    code only newlines split it; "=" counts as an indicator in the last piece only.
    """
    response = response.strip().strip(".").lower()
    pieces = re.split(r"\.\s(?=[A-Z])|\n", response)
    keys = []
    for i, piece in enumerate(pieces):
        indicators = _INDICATORS + (("=",) if i == len(pieces) - 1 else ())
        shortest = None
        for ind in indicators:
            if ind in piece:
                tail = piece.split(ind)[-1].strip()
                # as the official code: an empty tail found so far is replaced by the next one
                if not shortest or len(tail) < len(shortest):
                    shortest = tail
        if shortest and shortest.strip() not in _TRIVIAL:
            keys.append(shortest)
    return keys or [response]


def extract_numbers(text: str) -> list[str]:
    """MMMU `extract_numbers`: numbers with thousands commas, scientific, then plain ones."""
    commas = re.findall(r"-?\b\d{1,3}(?:,\d{3})+\b", text)
    sci = re.findall(r"-?\d+(?:\.\d+)?[eE][+-]?\d+", text)
    simple = re.findall(r"-?(?:\d+\.\d+|\.\d+|\d+\b)(?![eE][+-]?\d+)(?![,\d])", text)
    return commas + sci + simple


def normalize_str(s: str) -> list:
    """MMMU `normalize_str`: a number -> [round(float, 2)]; text -> [lower] (a single
    character padded with a space on either side, to avoid trivial matches)."""
    s = s.strip()
    try:
        return [round(float(s.replace(",", "")), 2)]
    except ValueError:
        pass
    s = s.lower()
    return [" " + s, s + " "] if len(s) == 1 else [s]


def parse_open(response: str) -> list | str:
    """MMMU `parse_open_response`: key sub-responses, every number in them, normalised."""
    if response == "":
        return API_ERROR
    keys = key_subresponses(response)
    preds = list(keys)
    for k in keys:
        preds.extend(extract_numbers(k))
    out = []
    for p in preds:
        out.extend(normalize_str(p))
    uniq = []
    for p in out:  # the official set(); kept in first-seen order for readable records
        if p not in uniq:
            uniq.append(p)
    return uniq


def eval_open(gold: str, preds: list) -> bool:
    """MMMU `eval_open`: a text prediction containing a normalised gold string, or a
    number equal to the normalised gold number."""
    golds = normalize_str(str(gold))
    for p in preds:
        if isinstance(p, str):
            if any(isinstance(g, str) and g in p for g in golds):
                return True
        elif p in golds:
            return True
    return False


# ---------------------------------------------------------------- scoring


def score(sample: Sample, response: str | None) -> dict:
    """MMMU-style: the parsed option must equal the gold letter; an open answer must match."""
    text, _ = extract.answer_text(response)
    if sample.answer_type == "option":
        got = parse_choice(text, len(sample.options or []), sample.options or [])
        return {"score": float(got == sample.answer), "extracted": got}
    preds = parse_open(text)
    if preds == API_ERROR:
        return {"score": 0.0, "extracted": API_ERROR}
    return {"score": float(eval_open(sample.answer, preds)), "extracted": preds}


# ---------------------------------------------------------------- aggregate


def aggregate(rows: list[dict], card: TaskCard | None = None) -> dict:
    """Overall and per-track accuracy, per subject and discipline, and Δknowledge.

    `accuracy` counts every question (an empty reply is wrong). lmms-eval drops rows whose
    parse is "API Error" (an empty reply) from the denominator; that figure is
    `accuracy_excluding_empty`. Δknowledge = (Acc_adaptation - Acc_question_only) /
    (1 - Acc_question_only) × 100, reported when `args.question_only_run` names a run of
    the question-only baseline (videommmu_question_only) that has a metrics.json.
    """
    out = base.aggregate(rows, card)
    kept = [r for r in rows if r.get("extracted") != API_ERROR]
    out["accuracy_excluding_empty"] = base.mean([r.get("score") or 0.0 for r in kept])
    out["n_empty"] = len(rows) - len(kept)
    adaptation = out.get("by_track", {}).get("Adaptation")
    before, note = _baseline(card)
    out["delta_knowledge"] = None
    if adaptation is not None and before is not None and before < 1.0:
        out["delta_knowledge"] = round((adaptation - before) / (1.0 - before) * 100.0, 4)
        out["question_only_accuracy"] = before
    elif note:
        out["delta_knowledge_note"] = note
    return out


def _baseline(card: TaskCard | None) -> tuple[float | None, str | None]:
    if card is None or (card.args or {}).get("question_only"):
        return None, None
    run = (card.args or {}).get("question_only_run")
    if not run:
        return None, ("no question-only baseline: run task videommmu_question_only and set "
                      "args.question_only_run to its run folder")
    path = Path(expand_env(str(run))).expanduser() / "metrics.json"
    if not path.is_file():
        return None, f"question-only baseline metrics not found at {path}"
    try:
        return float(json.loads(path.read_text())["accuracy"]), None
    except (ValueError, KeyError, TypeError):
        return None, f"{path}: no numeric 'accuracy'"

