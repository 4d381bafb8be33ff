"""synthvid: a procedural video-QA testbed with ground-truth key frames.

Why it exists: real benchmarks cannot be downloaded here, and none of them says which
frames hold the evidence. synthvid draws tiny clips of coloured shapes on a grey
background, asks a four-option question about them, and records *when* the evidence is
visible (`key_times`). That makes grounding F1 measurable, gives a supervised warm-up
target (`sft_target`) that cites the right frames, and lets a fresh clone evaluate end
to end with no data step: the task generates its default set on first use.

Question families (each multiple choice with options A-D):
- first_appear:  which of three objects appears first
- color_at:      the colour of an object at a given moment (it changes colour once)
- motion:        the direction an object moves (left/right/up/down)
- flash_count:   how many times an object flashes (1-4)
- change:        what changed about an object between two moments (colour/shape/position/nothing)

Annotation rows (`annotations.jsonl`, one JSON object per line):
    id        str    unique question id, e.g. "sv-s0-00012"
    family    str    one of the families above
    video     str    clip path relative to the folder of annotations.jsonl
    question  str
    options   list   exactly 4 option texts
    answer    str    the correct letter, "A".."D"
    key_times list   [[start, end], ...] seconds where the evidence is visible
    notes     list   [[seconds, "what a frame at that moment shows"], ...] for rationales
    rationale str    a short explanation citing the key moments by time
    fps, duration    float, clip timing

Timing is aligned with uniform 8-frame sampling of the 4-second clips (frames at segment
midpoints 0.25 s, 0.75 s, ...): every event lasts whole 0.5 s slots, so the default frame
configuration always sees the evidence. Output is deterministic for a given seed.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

from rler_eval import evidence
from rler_eval.errors import DataMissingError, InputError
from rler_eval.types import Sample

FAMILIES = ("first_appear", "color_at", "motion", "flash_count", "change")
COLOURS = {"red": (220, 30, 30), "green": (30, 190, 40), "blue": (30, 60, 230), "yellow": (240, 220, 20),
           "white": (250, 250, 250), "purple": (150, 40, 200)}
SHAPES = ("square", "circle")
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
    """Paint a filled square or circle centred at (cx, cy) in pixel units."""
    import numpy as np

    ys, xs = np.ogrid[:SIZE, :SIZE]
    if shape == "circle":
        mask = (xs - cx) ** 2 + (ys - cy) ** 2 <= r * r
    else:
        mask = (abs(xs - cx) <= r) & (abs(ys - cy) <= r)
    frame[mask] = COLOURS[colour]


def frames_in(start: float, end: float) -> range:
    return range(int(round(start * FPS)), min(int(SECONDS * FPS), int(round(end * FPS))))


def slot_time(slot: int) -> tuple[float, float]:
    return slot * SLOT, (slot + 1) * SLOT


def fmt(t: float) -> str:
    return f"{t:.1f} s"


# ---------------------------------------------------------------- question families


def q_first_appear(rng: random.Random):
    colours = rng.sample(list(COLOURS), 3)
    shapes = [rng.choice(SHAPES) for _ in colours]
    slots = sorted(rng.sample(range(0, N_SLOTS - 2), 3))
    spots = [(28, 30), (84, 30), (56, 84)]
    clip = blank_clip()
    for (c, s, slot, (x, y)) in zip(colours, shapes, slots, spots):
        for i in frames_in(slot_time(slot)[0], SECONDS):
            draw(clip[i], s, c, x, y, 14)
    names = [f"the {c} {s}" for c, s in zip(colours, shapes)]
    distractor = next(f"the {c} {rng.choice(SHAPES)}" for c in COLOURS if c not in colours)
    first = slot_time(slots[0])
    notes = [[first[0] + SLOT / 2, f"{names[0]} has appeared and nothing else is visible yet"]]
    if slots[1] > slots[0]:
        notes.append([slot_time(slots[1])[0] + SLOT / 2, f"{names[1]} appears after it"])
    return clip, {"question": "Which object appears first in the video?", "correct": names[0],
                  "wrong": names[1:] + [distractor], "key_times": [list(first)], "notes": notes}


def q_color_at(rng: random.Random):
    c1, c2 = rng.sample(list(COLOURS), 2)
    shape, switch = rng.choice(SHAPES), rng.randint(2, N_SLOTS - 2)
    clip = blank_clip()
    for i in range(len(clip)):
        draw(clip[i], shape, c1 if i < switch * SLOT * FPS else c2, 56, 56, 20)
    slot = rng.choice([s for s in range(N_SLOTS) if s not in (switch - 1, switch)])
    colour = c1 if slot < switch else c2
    t = sum(slot_time(slot)) / 2
    wrong = [c for c in COLOURS if c != colour]
    rng.shuffle(wrong)
    wrong = [c2 if colour == c1 else c1] + [c for c in wrong if c not in (c1, c2)][:2]
    return clip, {"question": f"What colour is the {shape} at {fmt(t)}?", "correct": colour, "wrong": wrong,
                  "key_times": [list(slot_time(slot))], "notes": [[t, f"the {shape} is {colour}"]]}


def q_motion(rng: random.Random):
    colour, shape = rng.choice(list(COLOURS)), rng.choice(SHAPES)
    direction = rng.choice(["left", "right", "up", "down"])
    a, b = 18, SIZE - 18
    start, end = {"left": ((b, 56), (a, 56)), "right": ((a, 56), (b, 56)),
                  "up": ((56, b), (56, a)), "down": ((56, a), (56, b))}[direction]
    clip = blank_clip()
    for i in range(len(clip)):
        f = i / (len(clip) - 1)
        draw(clip[i], shape, colour, start[0] + f * (end[0] - start[0]), start[1] + f * (end[1] - start[1]), 14)
    where = {"left": ("right", "left"), "right": ("left", "right"), "up": ("bottom", "top"),
             "down": ("top", "bottom")}[direction]
    wrong = [d for d in ("left", "right", "up", "down") if d != direction]
    return clip, {"question": f"In which direction does the {colour} {shape} move?", "correct": direction,
                  "wrong": wrong, "key_times": [list(slot_time(0)), list(slot_time(N_SLOTS - 1))],
                  "notes": [[SLOT / 2, f"the {colour} {shape} is at the {where[0]}"],
                            [SECONDS - SLOT / 2, f"it is now at the {where[1]}"]]}


def q_flash_count(rng: random.Random):
    colour, shape, k = rng.choice(list(COLOURS)), rng.choice(SHAPES), rng.randint(1, 4)
    slots = sorted(rng.sample(range(0, N_SLOTS, 2), k) if k <= 4 else [])  # never two adjacent slots
    clip = blank_clip()
    for slot in slots:
        for i in frames_in(*slot_time(slot)):
            draw(clip[i], shape, colour, 56, 56, 22)
    notes = [[sum(slot_time(s)) / 2, f"the {colour} {shape} flashes"] for s in slots]
    return clip, {"question": f"How many times does the {colour} {shape} flash?", "correct": str(k),
                  "wrong": [str(n) for n in range(1, 5) if n != k], "ordered": True,
                  "key_times": [list(slot_time(s)) for s in slots], "notes": notes}


def q_change(rng: random.Random):
    colour, shape = rng.choice(list(COLOURS)), rng.choice(SHAPES)
    change = rng.choice(["its colour", "its shape", "its position", "nothing"])
    s1, s2 = rng.randint(0, 2), rng.randint(N_SLOTS - 3, N_SLOTS - 1)
    other_colour = rng.choice([c for c in COLOURS if c != colour])
    other_shape = "circle" if shape == "square" else "square"
    clip = blank_clip()
    cut = (s1 + 1 + s2) / 2 * SLOT * FPS  # the change happens between the two moments
    for i in range(len(clip)):
        late = i >= cut
        draw(clip[i], other_shape if late and change == "its shape" else shape,
             other_colour if late and change == "its colour" else colour,
             84 if late and change == "its position" else 30, 56, 18)
    t1, t2 = sum(slot_time(s1)) / 2, sum(slot_time(s2)) / 2
    after = {"its colour": f"it is {other_colour} now", "its shape": f"it is a {other_shape} now",
             "its position": "it has moved to the right", "nothing": "it looks the same"}[change]
    return clip, {"question": f"What changed about the {colour} {shape} between {fmt(t1)} and {fmt(t2)}?",
                  "correct": change, "wrong": [c for c in ("its colour", "its shape", "its position", "nothing")
                                               if c != change],
                  "ordered": True, "key_times": [list(slot_time(s1)), list(slot_time(s2))],
                  "notes": [[t1, f"the {colour} {shape} is on the left"], [t2, after]]}


BUILDERS = {"first_appear": q_first_appear, "color_at": q_color_at, "motion": q_motion,
            "flash_count": q_flash_count, "change": q_change}


def make_row(rng: random.Random, family: str, qid: str, video_rel: str) -> tuple:
    clip, spec = BUILDERS[family](rng)
    options = [spec["correct"]] + spec["wrong"][:3]
    if spec.get("ordered"):
        order = ["1", "2", "3", "4", "its colour", "its shape", "its position", "nothing"]
        options.sort(key=order.index)
    else:
        rng.shuffle(options)
    answer = LETTERS[options.index(spec["correct"])]
    rationale = " ".join(f"At {fmt(t)} {text}." for t, text in spec["notes"])
    row = {"id": qid, "family": family, "video": video_rel, "question": spec["question"], "options": options,
           "answer": answer, "key_times": spec["key_times"], "notes": spec["notes"],
           "rationale": f"{rationale} So the answer is {spec['correct']}.", "fps": FPS, "duration": SECONDS}
    return clip, row


# ---------------------------------------------------------------- generation


def generate(out_dir, n: int = 500, seed: int = 0, progress: bool = True) -> Path:
    """Write `n` questions (clips + annotations.jsonl) to out_dir; returns the annotations path."""
    from tqdm import tqdm

    from rler_eval.video import write_video

    out_dir = Path(out_dir)
    (out_dir / "videos").mkdir(parents=True, exist_ok=True)
    rng = random.Random(f"synthvid-{seed}")
    rows = []
    for i in tqdm(range(n), desc=f"synthvid seed={seed}", unit="clip", disable=not progress):
        family = FAMILIES[i % len(FAMILIES)]
        qid = f"sv-s{seed}-{i:05d}"
        clip, row = make_row(rng, family, qid, f"videos/{qid}.mp4")
        write_video(out_dir / row["video"], clip, FPS)
        rows.append(row)
    path = out_dir / "annotations.jsonl"
    tmp = path.with_suffix(".jsonl.tmp")
    tmp.write_text("".join(json.dumps(r) + "\n" for r in rows))
    tmp.replace(path)  # annotations last: their presence means the set is complete
    return path


# ---------------------------------------------------------------- the benchmark contract


def load_samples(card) -> list[Sample]:
    root = card.root
    path = root / "annotations.jsonl"
    if not path.exists():
        if not card.args.get("generate"):
            raise DataMissingError(f"task {card.name}: {path} not found. {card.download_hint}".strip())
        n, seed = int(card.args.get("n", 500)), int(card.args.get("seed", 0))
        print(f"synthvid: generating {n} questions (seed {seed}) into {root} (first use) ...")
        generate(root, n, seed)
    samples = []
    for i, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise InputError(f"{path}, line {i}: invalid JSON ({e})") from None
        samples.append(row_to_sample(row, card, f"{path}, line {i}", root))
    return samples


def row_to_sample(row: dict, card, where: str, root: Path | None = None) -> Sample:
    for field in ("id", "family", "question", "options", "answer", "key_times"):
        if field not in row:
            raise InputError(f"{where}: missing field '{field}'")
    if not isinstance(row["options"], list) or len(row["options"]) != 4:
        raise InputError(f"{where}: field 'options' must be a list of 4 texts")
    if row["answer"] not in LETTERS:
        raise InputError(f"{where}: field 'answer' must be one of A-D, got {row['answer']!r}")
    video = str((root / row["video"]).resolve()) if root is not None and row.get("video") else row.get("video")
    return Sample(id=str(row["id"]), task=card.name, question=row["question"], answer=row["answer"],
                  answer_type="option", options=list(row["options"]), video=video,
                  key_times=[tuple(k) for k in row["key_times"]], category={"family": row["family"]}, doc=row)


def doc_to_sample(doc: dict, card, index: int = 0) -> Sample:
    return row_to_sample(doc, card, f"doc {index}")


def sft_target(sample: Sample, frameset) -> str:
    """The warm-up target: the rationale with moments rewritten as the sampled frames' labels."""
    notes = sample.doc.get("notes") or []
    times = list(frameset.timestamps)
    lines, cited = [], set(frameset.key_frame_labels(sample.key_times))
    for t, text in notes:
        label = 1 + min(range(len(times)), key=lambda i: abs(times[i] - t))
        cited.add(label)
        lines.append(f"Frame {label} shows that {text}.")
    correct = sample.options[LETTERS.index(sample.answer)]
    think = " ".join(lines + [f"So the answer is {correct}."])
    return evidence.format_evidence(think, sorted(cited), sample.answer)


# ---------------------------------------------------------------- the `synth` subcommand


def add_arguments(p) -> None:
    p.add_argument("--out", required=True, help="output folder (videos/ and annotations.jsonl)")
    p.add_argument("--n", type=int, default=500, help="number of questions [500]")
    p.add_argument("--seed", type=int, default=0, help="random seed; the same seed gives the same set [0]")


def cli(args) -> int:
    path = generate(args.out, args.n, args.seed)
    print(f"wrote {args.n} questions to {path}")
    return 0
