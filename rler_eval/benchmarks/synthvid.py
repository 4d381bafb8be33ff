"""synthvid: a procedural video-QA testbed with ground-truth key frames.

Why it exists: real benchmarks cannot be downloaded everywhere, and none of them says
which frames hold the evidence. synthvid draws tiny clips of solid coloured shapes on a
grey background, asks a four-option question about each, and records *when* the
evidence is visible (`key_times`). That makes grounding measurable, gives a supervised
warm-up target (`sft_target`) that cites the right frames, and lets a fresh clone
evaluate end to end with no data step: the `synthvid` task generates its default set
(500 questions, seed 0) on first use.

    rler-eval synth --out data/synthvid-custom --n 100 --seed 0

writes DIR/videos/<id>.mp4 (4 s, 8 fps, 112x112 H.264) and DIR/annotations.jsonl.
The same seed gives byte-identical annotations and videos. Every question has its own
clip and its own key times; positions and sizes are jittered so two seeds practically
never produce the same clip (the training split uses seed 1, the evaluation split seed 0;
checked: the default 500 + 2000 questions share no clip).

Question families (each multiple choice, options A-D):
  first_appear  which of three objects appears first (a fourth option never appears)
  color_at      the colour of an object at a given moment (it changes colour once)
  motion        the direction an object moves: left / right / up / down
  flash_count   how many times an object flashes: 1 / 2 / 3 / 4
  change        what changed about an object between two moments:
                its colour / its shape / its position / nothing

Annotation rows (annotations.jsonl, one JSON object per line):
  id         str    unique question id, "sv-s<seed>-<index>"
  family     str    one of the families above
  video      str    clip path relative to the folder of annotations.jsonl
  question   str    the question text (moments are written like the frame captions, "1.2 s")
  options    list   exactly 4 option texts, without letters
  answer     str    the correct letter, "A".."D"
  key_times  list   [[start, end], ...] seconds in which the evidence is visible: the
                    timestamps of the first and last clip frames that show it
  notes      list   [[seconds, "what a frame at that moment shows"], ...], one per key interval
  rationale  str    a short explanation that cites the key moments by time
  fps        float  frames per second of the clip
  duration   float  clip length in seconds
  scene      list   one text per clip frame: what it shows ("red square left, ..."; "" if empty),
                    read from the clean pixels before encoding; used for SFT traces only

Format v2 (this version): every family lists its options in one fixed order
(`option_order`), SFT targets answer with the option text (the parser maps it to the
letter), and their reasoning first reads every sampled frame (`inventory`).

Timing is aligned with uniform 8-frame sampling of the 4-second clips (frames at segment
midpoints 0.25 s, 0.75 s, ...): every event fills whole 0.5 s slots, so the default frame
configuration sees every piece of evidence, and each key interval holds exactly one of
its frames.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import sys
from pathlib import Path

from rler_eval import evidence
from rler_eval.errors import DataMissingError, InputError
from rler_eval.types import Sample

FAMILIES = ("first_appear", "color_at", "motion", "flash_count", "change")
# Basic colours far apart in RGB (and from the grey background), so that H.264 and
# resizing never blur one into another.
COLOURS = {"red": (220, 30, 30), "green": (30, 190, 40), "blue": (30, 60, 230), "yellow": (240, 220, 20),
           "white": (250, 250, 250), "purple": (150, 40, 200)}
SHAPES = ("square", "circle")
CHANGES = ("its colour", "its shape", "its position", "nothing")
DIRECTIONS = ("left", "right", "up", "down")
SIZE, FPS, SECONDS = 112, 8, 4.0
SLOT = 0.5  # seconds; one uniformly sampled frame per slot with the default 8 frames
N_SLOTS = int(SECONDS / SLOT)
BACKGROUND = 110
LETTERS = "ABCD"


# ---------------------------------------------------------------- drawing


def blank_clip():
    import numpy as np

    return np.full((int(SECONDS * FPS), SIZE, SIZE, 3), BACKGROUND, dtype=np.uint8)


def draw(frame, shape: str, colour: str, cx: float, cy: float, r: int = 16) -> None:
    """Paint a filled square or circle of half-size r centred at (cx, cy) pixels."""
    import numpy as np

    ys, xs = np.ogrid[:SIZE, :SIZE]
    if shape == "circle":
        mask = (xs - cx) ** 2 + (ys - cy) ** 2 <= r * r
    else:
        mask = (abs(xs - cx) <= r) & (abs(ys - cy) <= r)
    frame[mask] = COLOURS[colour]


def frames_in(start: float, end: float) -> range:
    """Indices of the clip frames shown during [start, end) seconds."""
    return range(int(round(start * FPS)), min(int(SECONDS * FPS), int(round(end * FPS))))


def slot_time(slot: int) -> list[float]:
    return [slot * SLOT, (slot + 1) * SLOT]


def key_interval(slot: int) -> list[float]:
    """The evidence interval of a slot: from its first to its last frame's timestamp.

    Closed at both ends like `FrameSet.key_frame_labels`, so a sampled frame exactly on
    the slot's end (which already shows the next slot) is never called a key frame.
    """
    return [slot * SLOT, (slot + 1) * SLOT - 1 / FPS]


def slot_mid(slot: int) -> float:
    return (slot + 0.5) * SLOT


def fmt(t: float) -> str:
    """A moment as the frame captions write it (one decimal), e.g. 1.25 -> '1.2 s'."""
    return f"{t:.1f} s"


def non_adjacent_slots(rng: random.Random, k: int) -> list[int]:
    """k distinct slots, no two neighbours, so that k flashes read as k separate events."""
    while True:
        slots = sorted(rng.sample(range(N_SLOTS), k))
        if all(b - a > 1 for a, b in zip(slots, slots[1:])):
            return slots


# ---------------------------------------------------------------- question families
# Each builder returns (clip, spec); spec has question, correct, wrong (3 texts),
# key_times, notes (one per key interval) and optionally ordered=True (fixed option order).


def q_first_appear(rng: random.Random):
    colours = rng.sample(list(COLOURS), 4)
    shapes = [rng.choice(SHAPES) for _ in colours]
    names = [f"the {c} {s}" for c, s in zip(colours, shapes)]
    slots = sorted(rng.sample(range(N_SLOTS - 2), 3))
    spots = [(28, 30), (84, 30), (56, 84)]
    rng.shuffle(spots)
    clip = blank_clip()
    for c, s, slot, (x, y) in zip(colours, shapes, slots, spots):
        x, y = x + rng.randint(-4, 4), y + rng.randint(-4, 4)
        for i in frames_in(slot * SLOT, SECONDS):
            draw(clip[i], s, c, x, y, 14)
    # The fourth object never appears: a distractor. The evidence is the slot where the
    # first object is visible alone.
    return clip, {"question": "Which object appears first in the video?", "correct": names[0],
                  "wrong": names[1:], "key_times": [key_interval(slots[0])],
                  "notes": [[slot_mid(slots[0]), f"{names[0]} is visible and nothing else is yet"]]}


def q_color_at(rng: random.Random):
    c1, c2 = rng.sample(list(COLOURS), 2)
    shape, switch = rng.choice(SHAPES), rng.randint(2, N_SLOTS - 2)
    x, y, r = rng.randint(36, 76), rng.randint(36, 76), rng.randint(16, 22)
    clip = blank_clip()
    for i in range(len(clip)):
        draw(clip[i], shape, c1 if i < switch * SLOT * FPS else c2, x, y, r)
    slot = rng.choice([s for s in range(N_SLOTS) if s not in (switch - 1, switch)])  # not next to the switch
    colour, other = (c1, c2) if slot < switch else (c2, c1)
    rest = [c for c in COLOURS if c not in (c1, c2)]
    rng.shuffle(rest)
    t = slot_mid(slot)
    # The object's other colour is always among the options: only the right moment tells.
    return clip, {"question": f"What colour is the {shape} at {fmt(t)}?", "correct": colour,
                  "wrong": [other] + rest[:2], "key_times": [key_interval(slot)],
                  "notes": [[t, f"the {shape} is {colour}"]]}


def q_motion(rng: random.Random):
    colour, shape = rng.choice(list(COLOURS)), rng.choice(SHAPES)
    direction = rng.choice(DIRECTIONS)
    a, b = rng.randint(16, 28), rng.randint(SIZE - 28, SIZE - 16)  # start/end along the axis
    across, r = rng.randint(32, 80), rng.randint(11, 15)  # the other coordinate stays fixed
    start, end = {"left": ((b, across), (a, across)), "right": ((a, across), (b, across)),
                  "up": ((across, b), (across, a)), "down": ((across, a), (across, b))}[direction]
    clip = blank_clip()
    for i in range(len(clip)):
        f = i / (len(clip) - 1)
        draw(clip[i], shape, colour, start[0] + f * (end[0] - start[0]), start[1] + f * (end[1] - start[1]), r)
    where = {"left": ("right", "left"), "right": ("left", "right"), "up": ("bottom", "top"),
             "down": ("top", "bottom")}[direction]
    return clip, {"question": f"In which direction does the {colour} {shape} move?", "correct": direction,
                  "wrong": [d for d in DIRECTIONS if d != direction], "ordered": True,
                  "key_times": [key_interval(0), key_interval(N_SLOTS - 1)],
                  "notes": [[slot_mid(0), f"the {colour} {shape} is near the {where[0]}"],
                            [slot_mid(N_SLOTS - 1), f"it is near the {where[1]}"]]}


def q_flash_count(rng: random.Random):
    colour, shape, k = rng.choice(list(COLOURS)), rng.choice(SHAPES), rng.randint(1, 4)
    slots = non_adjacent_slots(rng, k)
    x, y, r = rng.randint(40, 72), rng.randint(40, 72), rng.randint(18, 24)
    clip = blank_clip()
    for slot in slots:
        for i in frames_in(*slot_time(slot)):
            draw(clip[i], shape, colour, x, y, r)
    # a running count ("flash 2"), so each note is decided by its own frame, never ahead of it
    notes = [[slot_mid(s), f"the {colour} {shape} flashes (flash {n})"] for n, s in enumerate(slots, 1)]
    return clip, {"question": f"How many times does the {colour} {shape} flash?", "correct": str(k),
                  "wrong": [str(n) for n in range(1, 5) if n != k], "ordered": True,
                  "key_times": [key_interval(s) for s in slots], "notes": notes}


def q_change(rng: random.Random):
    colour, shape = rng.choice(list(COLOURS)), rng.choice(SHAPES)
    change = rng.choice(CHANGES)
    s1, s2 = rng.randint(0, 2), rng.randint(N_SLOTS - 3, N_SLOTS - 1)
    other_colour = rng.choice([c for c in COLOURS if c != colour])
    other_shape = "circle" if shape == "square" else "square"
    x0, x1, y, r = rng.randint(24, 36), rng.randint(76, 88), rng.randint(36, 76), rng.randint(15, 19)
    cut = rng.randint(s1 + 1, s2) * SLOT * FPS  # the change happens strictly between the two moments
    clip = blank_clip()
    for i in range(len(clip)):
        late = i >= cut
        draw(clip[i], other_shape if late and change == "its shape" else shape,
             other_colour if late and change == "its colour" else colour,
             x1 if late and change == "its position" else x0, y, r)
    t1, t2 = slot_mid(s1), slot_mid(s2)
    after = {"its colour": f"it is {other_colour} now", "its shape": f"it is a {other_shape} now",
             "its position": "it has moved to the right", "nothing": "it looks the same"}[change]
    return clip, {"question": f"What changed about the {colour} {shape} between {fmt(t1)} and {fmt(t2)}?",
                  "correct": change, "wrong": [c for c in CHANGES if c != change], "ordered": True,
                  "key_times": [key_interval(s1), key_interval(s2)],
                  "notes": [[t1, f"the {colour} {shape} is on the left"], [t2, after]]}


BUILDERS = {"first_appear": q_first_appear, "color_at": q_color_at, "motion": q_motion,
            "flash_count": q_flash_count, "change": q_change}
ORDER = ["1", "2", "3", "4", *DIRECTIONS, *CHANGES]  # fixed option order for ordered families


def option_order(text: str) -> tuple:
    """Canonical option order: counts, directions and changes as listed; objects by colour, then shape.

    Every family lists its options in one fixed order (format v2). With shuffled options a
    small model had to look an option's letter up after deciding its text, and that lookup,
    not perception, was what failed (DESIGN.md). A fixed order leaks nothing: which of
    the four options is right still depends only on the clip.
    """
    if text in ORDER:
        return (0, ORDER.index(text), "")
    words = text.split()
    colour = next((w for w in words if w in COLOURS), "")
    return (1, list(COLOURS).index(colour) if colour else 99, text)


def make_row(rng: random.Random, family: str, qid: str, video_rel: str) -> tuple:
    """One question of `family`: (clip frames, annotation row)."""
    clip, spec = BUILDERS[family](rng)
    options = sorted([spec["correct"]] + spec["wrong"][:3], key=option_order)
    answer = LETTERS[options.index(spec["correct"])]
    rationale = " ".join(f"At {fmt(t)} {text}." for t, text in spec["notes"])
    row = {"id": qid, "family": family, "video": video_rel, "question": spec["question"], "options": options,
           "answer": answer, "key_times": spec["key_times"], "notes": spec["notes"],
           "rationale": f"{rationale} So the answer is {spec['correct']}.", "fps": FPS, "duration": SECONDS,
           "scene": scene_of(clip)}
    return clip, row


# ---------------------------------------------------------------- what each frame shows


def describe(frame) -> str:
    """The objects in one clean (pre-encoding) frame: 'red square left, blue circle top-right'.

    Colours are exact before encoding, so each colour's mask is its object; the shape is
    read from how much of its bounding box it fills (a disc fills pi/4), and the position
    word names the side of the centre the object lies on, when it is clearly off-centre.
    """
    import numpy as np

    flat = frame.reshape(-1, 3).astype(np.int32)
    fg = np.flatnonzero((flat != BACKGROUND).any(axis=1))  # one pass over the frame; objects are small
    codes = flat[fg] @ np.array([65536, 256, 1])
    # group the foreground pixels by colour once (a sort), rather than one mask per palette colour
    order = np.argsort(codes, kind="stable")
    present, starts, counts = np.unique(codes[order], return_index=True, return_counts=True)
    found = []
    for code, start, count in zip(present.tolist(), starts, counts):
        name = COLOUR_OF_CODE.get(code)
        if name is None or count < 20:
            continue
        ys, xs = np.divmod(fg[order[start:start + count]], frame.shape[1])
        box = (xs.max() - xs.min() + 1) * (ys.max() - ys.min() + 1)
        shape = "square" if len(xs) / box > 0.9 else "circle"
        found.append((xs.mean(), f"{name} {shape}{position_word(xs.mean(), ys.mean())}"))
    return ", ".join(text for _, text in sorted(found))


COLOUR_OF_CODE = {r * 65536 + g * 256 + b: name for name, (r, g, b) in COLOURS.items()}


def position_word(x: float, y: float, dead: float = 12.0) -> str:
    """' top-left', ' right', '' (centred): the sides of the frame centre an object is clearly on."""
    half = SIZE / 2
    v = "top" if y < half - dead else "bottom" if y > half + dead else ""
    h = "left" if x < half - dead else "right" if x > half + dead else ""
    return f" {v}-{h}" if v and h else f" {v or h}" if v or h else ""


def scene_of(clip) -> list[str]:
    """One description per clip frame ('' for an empty frame): the ground truth of what is visible.

    A frame equal to the one before it (most of a clip: objects hold still between events)
    reuses its description; describing was most of the time to generate a question."""
    scene = []
    for i, frame in enumerate(clip):
        same = i > 0 and (frame is clip[i - 1] or (frame == clip[i - 1]).all())
        scene.append(scene[-1] if same else describe(frame))
    return scene


# ---------------------------------------------------------------- generation


def generate(out_dir, n: int = 500, seed: int = 0, progress: bool = True, workers: int | None = None) -> Path:
    """Write `n` questions (clips + annotations.jsonl) to out_dir; returns the annotations path.

    Families rotate so every family has n/5 questions. The annotations file is written
    last and atomically: its presence means the set is complete. One random stream draws
    every question in order, so the set does not depend on `workers` (default: one per core,
    at most 4): this process only runs through the stream without painting (`chunk_states`),
    and each worker paints, describes and encodes a chunk of questions from the stream's state
    at the chunk's start. Sending a worker a state instead of each painted clip (1.2 MB) cut
    the time for 3,000 questions from 42-49 s to 29-39 s on 2 cores (DESIGN.md, "v5 trial").
    """
    from concurrent.futures import ProcessPoolExecutor

    from tqdm import tqdm

    if n < 1:
        raise InputError(f"synthvid: --n must be at least 1, got {n}")
    out_dir = Path(out_dir)
    (out_dir / "videos").mkdir(parents=True, exist_ok=True)
    workers = min(4, os.cpu_count() or 1) if workers is None else workers
    chunks = [(out_dir, seed, a, min(n, a + CHUNK), state) for a, state in chunk_states(n, seed, CHUNK)]
    bar = tqdm(total=n, desc=f"synthvid seed={seed}", unit="clip", disable=not progress)
    rows = []
    pool = ProcessPoolExecutor(workers) if workers > 1 and n >= 100 else None  # after chunk_states: forks paint
    with pool or contextlib.nullcontext():
        for part in (pool.map if pool else map)(write_chunk, chunks):
            rows.extend(part)
            bar.update(len(part))
    bar.close()
    path = out_dir / "annotations.jsonl"
    tmp = path.with_name(f".annotations.{os.getpid()}.tmp")  # unique: shards may generate at once
    tmp.write_text("".join(json.dumps(r) + "\n" for r in rows))
    tmp.replace(path)
    return path


CHUNK = 100  # questions per worker task


def question_ids(seed: int, i: int) -> tuple[str, str, str]:
    """(family, id, clip path) of question i: families rotate."""
    qid = f"sv-s{seed}-{i:05d}"
    return FAMILIES[i % len(FAMILIES)], qid, f"videos/{qid}.mp4"


def chunk_states(n: int, seed: int, size: int) -> list[tuple[int, tuple]]:
    """(first question, random state before it) for every `size` questions."""
    return [(i, state) for i, (state, _) in enumerate(unpainted_draws(n, seed)) if i % size == 0]


def write_chunk(job) -> list[dict]:
    """A worker's task: draw, paint and encode questions a..b from the stream state at a."""
    out_dir, seed, a, b, state = job
    rng = random.Random()
    rng.setstate(state)
    rows = []
    for i in range(a, b):
        clip, row = make_row(rng, *question_ids(seed, i))
        write_clip(out_dir, row["video"], clip)
        rows.append(row)
    return rows


def write_clip(out_dir: Path, rel: str, clip) -> None:
    """Encode one clip: write then rename, so a reader (or a second shard generating the
    same set) never sees a half-written clip."""
    from rler_eval.video import write_video

    tmp = out_dir / "videos" / f".{Path(rel).stem}.{os.getpid()}.mp4"
    write_video(tmp, clip, FPS)
    tmp.replace(out_dir / rel)


# ---------------------------------------------------------------- the benchmark contract


def questions_in(path: Path) -> int:
    with open(path, "rb") as f:
        return sum(1 for line in f if line.strip())


def load_samples(card) -> list[Sample]:
    """Samples from card.root/annotations.jsonl, generating the set first if the card says so."""
    root = card.root
    path = root / "annotations.jsonl"
    n, seed = int(card.args.get("n", 500)), int(card.args.get("seed", 0))
    if not path.exists() and not card.args.get("generate"):
        raise DataMissingError(f"task {card.name}: {path} not found. {card.download_hint}".strip())
    if card.args.get("generate") and (not path.exists() or questions_in(path) < n):
        # a smaller set written by an older card (the training card grew from 12,000 to 24,000)
        # is regenerated whole: the same seed draws the same first questions again
        why = "not found" if not path.exists() else f"holds fewer than the card's {n} questions"
        print(f"synthvid: {path} {why}; generating {n} questions (seed {seed}) into {root}", file=sys.stderr)
        generate(root, n, seed)
    from rler_eval.benchmarks.rows import bad_sample, guard

    samples = []
    for i, raw in enumerate(path.read_bytes().splitlines(), start=1):
        where = f"{path}, line {i}"
        if not raw.strip():
            continue
        try:  # one bad line costs one sample (an error record naming file, line and field)
            row = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            samples.append(bad_sample(card, f"{where}: invalid JSON ({e})", where))
            continue
        sample = guard(lambda row=row, where=where: row_to_sample(row, card, where, root), card, where)
        if sample.load_error and isinstance(row, dict) and isinstance(row.get("id"), str):
            sample.id = row["id"]  # the row's own id, so the error record is found where the user looks
        samples.append(sample)
    if not samples:
        raise InputError(f"{path}: no questions in the file")
    return samples


def check_row(row, where: str) -> None:
    """Raise InputError naming `where` and the field for anything a Sample cannot hold."""
    if not isinstance(row, dict):
        raise InputError(f"{where}: expected a JSON object, got {type(row).__name__}")
    for field in ("id", "family", "question", "options", "answer", "key_times"):
        if field not in row:
            raise InputError(f"{where}: missing field '{field}'")
    options = row["options"]
    if not isinstance(options, list) or len(options) != 4 or not all(isinstance(o, str) for o in options):
        raise InputError(f"{where}: field 'options' must be a list of 4 texts")
    if row["answer"] not in tuple(LETTERS):
        raise InputError(f"{where}: field 'answer' must be one of A-D, got {row['answer']!r}")
    duration = row.get("duration")
    kt = row["key_times"]
    ok = isinstance(kt, list) and all(
        isinstance(k, (list, tuple)) and len(k) == 2 and all(isinstance(v, (int, float)) for v in k)
        and 0 <= k[0] <= k[1] and (not isinstance(duration, (int, float)) or k[1] <= duration) for k in kt)
    if not ok:
        raise InputError(f"{where}: field 'key_times' must be [[start, end], ...] seconds within the clip, "
                         f"got {kt!r}")


def row_to_sample(row: dict, card, where: str, root: Path | None = None) -> Sample:
    check_row(row, where)
    video = row.get("video")
    if video and root is not None:
        video = str((root / video).resolve())
    return Sample(id=str(row["id"]), task=card.name, question=row["question"], answer=row["answer"],
                  answer_type="option", options=list(row["options"]), video=video,
                  key_times=[tuple(k) for k in row["key_times"]], category={"family": str(row["family"])},
                  doc=row)


def doc_to_sample(doc: dict, card, index: int = 0) -> Sample:
    """One annotation row -> Sample (for `rler-eval score`); the video path is resolved under card.root."""
    return row_to_sample(doc, card, f"doc {index}", card.root if card.data_root else None)


# Families whose notes restate the inventory entries of their two key frames ("In frame 1:
# red circle left. In frame 8: red circle right."), so the answer is a comparison of two copied
# descriptions; their own note texts ("it has moved") would state the answer before the evidence.
RESTATED = ("motion", "change")


# The change verdict's two words, by layout (`attribute_comparison`); the first is the default.
VERDICT_PAIRS = {"adjacent": "{} {}", "separated": "{}, {}:"}
VERDICT_LAYOUTS = tuple(VERDICT_PAIRS)
DEFAULT_VERDICTS = VERDICT_LAYOUTS[0]


def frame_words(labels: list[int]) -> str:
    if len(labels) == 1:
        return f"frame {labels[0]}"
    return "frames " + ", ".join(str(x) for x in labels[:-1]) + f" and {labels[-1]}"


# Families whose question names its moments ("at 0.8 s", "between 0.2 s and 3.8 s").
MOMENTS_NAMED = ("color_at", "change")


def sft_target(sample: Sample, frameset, verdicts: str = DEFAULT_VERDICTS, moments: bool = False) -> str:
    """The supervised warm-up target: a frame inventory, then the rationale with its moments
    rewritten as frame labels, answered by option text.

    It cites exactly `frameset.key_frame_labels(sample.key_times)`; each note's moment is
    replaced by the sampled frames inside its key interval (for the RESTATED families the
    note is those frames' inventory entries), e.g. "Frames: 1 red square left;
    ... In frame 3 the square is red. So the answer is red." followed by
    <frames>3</frames><answer>red</answer>.

    `verdicts` is the change family's comparison layout (`attribute_comparison`).

    `moments`: for MOMENTS_NAMED, first restate each asked moment as its frame ("0.8 s is
    frame 2. In frame 2 the square is white."). Why: without it rler-tiny never learned to read
    the tenth of a second; it cited frame 1 for both 0.2 s and 0.8 s and kept color_at's exact
    grounding precision at 0.35. Copying "0.8 s" from the question is easy, and the frame
    number then follows four tokens after the digits it depends on (the same adjacency that
    fixed the change verdict). Trained with it, the SFT stage cites its key frames with
    precision 0.99 (results/grpo_tuning.md, thirteenth session).

    The answer is the option text, not its letter: earlier rler-tiny models named the right
    colour in their reasoning 74% of the time yet gave the right letter near chance; looking
    a letter up from the option list was what failed, not perception (DESIGN.md).
    """
    key_times = [tuple(k) for k in sample.key_times or []]
    cited = frameset.key_frame_labels(key_times)
    scenes = frame_scenes(sample, frameset)
    restate = sample.doc.get("family") in RESTATED and len(scenes) == len(frameset.labels)
    lines, restated = [], []
    for t, text in sample.doc.get("notes") or []:
        # the key interval this note describes (the one containing it, else the nearest)
        interval = min(key_times, key=lambda k: 0.0 if k[0] <= t <= k[1] else min(abs(t - k[0]), abs(t - k[1])),
                       default=(t, t))
        labels = frameset.key_frame_labels([interval])
        if moments and sample.doc.get("family") in MOMENTS_NAMED and labels:
            lines.append(f"{fmt(t)} is {frame_words(labels)}.")
        if restate and labels:  # copy the frames' inventory entries; the answer compares them
            lines.extend(f"In frame {x}: {scenes[frameset.labels.index(x)]}." for x in labels)
            restated.append([scenes[frameset.labels.index(x)] for x in labels])
        else:
            lines.append(f"In {frame_words(labels)} {text}." if labels else f"{text[:1].upper()}{text[1:]}.")
    if sample.doc.get("family") == "change" and len(restated) == 2:
        lines.append(attribute_comparison(restated[0][0], restated[1][-1], verdicts))
    if not lines and cited:
        lines.append(f"The evidence is in {frame_words(cited)}.")
    correct = sample.options[LETTERS.index(sample.answer)]
    think = " ".join([inventory(sample, frameset)] + lines + [f"So the answer is {correct}."])
    return evidence.format_evidence(think, cited, correct)


def attribute_comparison(before: str, after: str, layout: str = DEFAULT_VERDICTS) -> str:
    """'colour red red same; shape square circle changed; position left left same.'
    (layout "separated", what rler-tiny v4 was trained on: 'colour red, red: same; ...').

    Why this layout: each verdict is written right after the two words it compares, with
    nothing between them. A same-or-not verdict is an XOR of two words: neither word alone
    says anything about it, so no attention head gains from fetching one of them until the
    other is already there, and a small model can stay stuck at its prior. rler-tiny v4 did:
    with the earlier layout ('colour red, blue: same'), teacher-forced on the true text, it
    put 0.39 on "changed" for a new colour and 0.36 for a new shape, about what it put on
    "changed" when nothing had, and 300 more steps with that word weighted ten times moved
    neither. With the two words adjacent, the verdict is predicted at the second word, and
    the first is one token back, where a previous-token head already looks: 300 steps from
    the same stage took those to 0.83 and 0.997 (DESIGN.md, "Change: the verdict is an
    XOR"). The answer names the attribute marked "changed" (the attribute names are the
    options' words: its colour / its shape / its position).
    """
    def attributes(text):  # 'red square top-left' -> colour, shape, position ('centre' if none)
        words = text.split(" ", 2)
        return dict(zip(("colour", "shape", "position"), [*words[:2], words[2] if len(words) > 2 else "centre"]))

    pair = VERDICT_PAIRS.get(layout)
    if pair is None:
        raise InputError(f"change verdict layout {layout!r}: use one of {', '.join(VERDICT_LAYOUTS)}")
    a, b = attributes(before), attributes(after)
    return "; ".join(f"{k} {pair.format(a.get(k, ''), b.get(k, ''))} {'same' if a.get(k) == b.get(k) else 'changed'}"
                     for k in ("colour", "shape", "position")) + "."


def inventory(sample: Sample, frameset) -> str:
    """'Frames: 1 red square left; 2 nothing; ...': what every sampled frame shows, in order.

    Why: a reasoning trace that first reads every frame gives the model one perception
    target per frame (eight per question instead of the one or two the key frames give),
    and turns each family's answer into a step over its own words: count the frames that
    show the object, compare frame 1 with frame 8, find the first non-empty frame. Frame
    numbers interleave the descriptions, so the text has few repeated 4-grams.
    """
    parts = [f"{label} {text}" for label, text in zip(frameset.labels, frame_scenes(sample, frameset))]
    return "Frames: " + "; ".join(parts) + "." if parts else ""


def changed_entries(target: str) -> list[tuple[int, int]]:
    """Character spans, in an SFT target, of the inventory entries that differ from the entry
    of the frame before ('2 red square right' after '1 red square left': the span of
    'red square right'); [] for a text without an inventory.

    Why: in a change clip the object holds still in most frames, so copying the previous
    entry is right for about 97% of the inventory's words, and rler-tiny learned exactly
    that: given the true frames before it, it put 0.04 on the moved object's new position
    (DESIGN.md, "change: the copy prior"). The SFT loop can weight these few words up
    (`sft.changed_weight`)."""
    start = target.find("Frames: ")
    end = target.find(". ", start) if start >= 0 else -1
    if start < 0 or end < 0:
        return []
    spans, prev, pos = [], None, start + len("Frames: ")
    for entry in target[pos:end].split("; "):
        label, _, text = entry.partition(" ")
        if prev is not None and text != prev:
            spans.append((pos + len(label) + 1, pos + len(entry)))
        prev, pos = text, pos + len(entry) + 2
    return spans


def frame_scenes(sample: Sample, frameset) -> list[str]:
    """What each sampled frame shows, from the row's per-clip-frame `scene` ([] without one)."""
    scene = sample.doc.get("scene") or []
    if not scene:
        return []
    fps = float(sample.doc.get("fps") or FPS)
    out = []
    for t in frameset.timestamps:
        text = scene[min(len(scene) - 1, max(0, int(round(t * fps))))]
        out.append(text or "nothing")
    return out


# ---------------------------------------------------------------- leak check: the text alone


def text_rows(n: int, seed: int) -> list[dict]:
    """Annotation rows as `generate` makes them (same random stream, same questions, options
    and answers), without painting or encoding any clip. Only `scene`, which is read from the
    pixels, comes out empty."""
    return [row for _, row in unpainted_draws(n, seed)]


def unpainted_draws(n: int, seed: int):
    """(random state before it, row) for each of the first `n` questions of the stream, drawn
    without painting (drawing consumes no randomness, so the rows are `generate`'s)."""
    rng = random.Random(f"synthvid-{seed}")
    with no_painting():
        for i in range(n):
            state = rng.getstate()
            yield state, make_row(rng, *question_ids(seed, i))[1]


@contextlib.contextmanager
def no_painting():
    """Swap painting out (drawing consumes no randomness, so the questions stay the same): for
    running through the random stream fast. In this process only, and not across a fork."""
    import numpy as np

    global draw, blank_clip
    saved = draw, blank_clip
    draw = lambda *a, **k: None  # noqa: E731
    blank_clip = lambda: np.zeros((int(SECONDS * FPS), 1, 1, 3), np.uint8)  # noqa: E731
    try:
        yield
    finally:
        draw, blank_clip = saved


def _words(text: str) -> list[str]:
    return text.lower().replace("?", " ").split()


def text_only_accuracy(train: list[dict], test: list[dict]) -> float:
    """A text-only learner: naive Bayes over (question word, option text) and letter counts.

    It sees the question, the options and their order, never a frame. If the generator
    leaked the answer into the text (a telling word, a favourite position, a colour that
    is always right), this learner would find it (tests plant such a leak to check).
    """
    import math
    from collections import Counter

    right, seen, letters = Counter(), Counter(), Counter(r["answer"] for r in train)
    for r in train:
        for i, opt in enumerate(r["options"]):
            for w in _words(r["question"]) + [f"@{i}", f"#{r['family']}"]:
                seen[w, opt] += 1
                right[w, opt] += LETTERS[i] == r["answer"]

    def score(r, i):
        feats = _words(r["question"]) + [f"@{i}", f"#{r['family']}"]
        return math.log(letters[LETTERS[i]] + 1) + sum(
            math.log((right[w, r["options"][i]] + 1) / (seen[w, r["options"][i]] + 2)) for w in feats)

    hits = sum(LETTERS[max(range(4), key=lambda i: score(r, i))] == r["answer"] for r in test)
    return hits / len(test)


# ---------------------------------------------------------------- the `synth` subcommand


def add_arguments(p) -> None:
    p.add_argument("--out", required=True, help="output folder; gets videos/ and annotations.jsonl")
    p.add_argument("--n", type=int, default=500, help="number of questions, rotating over the 5 families [500]")
    p.add_argument("--seed", type=int, default=0,
                   help="random seed; the same seed gives the same files [0] (task synthvid uses 0, "
                        "synthvid_train uses 1)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def cli(args) -> int:
    path = generate(args.out, args.n, args.seed, progress=not args.quiet)
    print(f"wrote {args.n} questions to {path}")
    return 0
