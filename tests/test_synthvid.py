"""synthvid: deterministic generation, well-formed questions, and clips that really show
the evidence at the annotated key times (checked on decoded pixels, family by family)."""

import hashlib
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from rler_eval import evidence
from rler_eval.benchmarks import get_benchmark
from rler_eval.benchmarks import synthvid as sv
from rler_eval.cli import main as cli_main
from rler_eval.errors import DataMissingError, InputError
from rler_eval.tasks import FrameConfig, card_from_dict, load_task

os.environ.setdefault("OMP_NUM_THREADS", "1")
REPO = Path(__file__).resolve().parent.parent
N = 25  # 5 questions per family


def small_card(root, **args):
    return card_from_dict({"name": "sv_test", "benchmark": "synthvid", "data_root": str(root),
                           "frames": {"n": 8, "max_pixels": 112 * 112}, "args": args})


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("sv") / "s0"
    sv.generate(root, N, seed=0, progress=False)
    return root


@pytest.fixture(scope="module")
def samples(data):
    return sv.load_samples(small_card(data))


def rows_of(root: Path) -> list[dict]:
    return [json.loads(line) for line in (root / "annotations.jsonl").read_text().splitlines()]


# ---------------------------------------------------------------- pixel helpers


def object_mask(frame):
    return np.abs(frame.astype(int) - sv.BACKGROUND).max(axis=-1) > 50


def colours_present(frame, min_px: int = 100) -> set[str]:
    """Names of the palette colours covering at least min_px pixels.

    A pixel counts for a colour only when it is close to it (RGB distance under 60), so the
    blurred rims that H.264 leaves around shapes count for nothing.
    """
    px = frame[object_mask(frame)].astype(int)
    if not len(px):
        return set()
    palette = np.array(list(sv.COLOURS.values()))
    dist = ((px[:, None, :] - palette[None]) ** 2).sum(-1)
    nearest = np.argmin(dist, axis=1)[dist.min(axis=1) < 60 ** 2]
    counts = np.bincount(nearest, minlength=len(palette))
    return {name for name, c in zip(sv.COLOURS, counts) if c >= min_px}


def centroid(frame):
    ys, xs = np.nonzero(object_mask(frame))
    return xs.mean(), ys.mean()


def fill_ratio(frame):
    """Area over bounding-box area: about 1 for a square, about 0.785 for a circle."""
    ys, xs = np.nonzero(object_mask(frame))
    return len(xs) / ((np.ptp(xs) + 1) * (np.ptp(ys) + 1))


def shape_of(frame) -> str:
    """Squares measure 0.87-1.0 after H.264, circles 0.72-0.81."""
    return "square" if fill_ratio(frame) > 0.84 else "circle"


def all_frames(path) -> list:
    import av

    with av.open(str(path)) as c:
        return [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]


def key_frames(sample, n=8):
    from rler_eval.video import load_frames

    fs = load_frames(sample.video, FrameConfig(n=n, max_pixels=112 * 112))
    labels = fs.key_frame_labels(sample.key_times)
    return fs, labels, [fs.frames[k - 1] for k in labels]


def correct_text(sample) -> str:
    return sample.options["ABCD".index(sample.answer)]


# ---------------------------------------------------------------- format and determinism


def test_same_seed_same_bytes_different_seed_differs(tmp_path, data):
    again = tmp_path / "again"
    sv.generate(again, N, seed=0, progress=False)
    assert (again / "annotations.jsonl").read_bytes() == (data / "annotations.jsonl").read_bytes()
    for row in rows_of(data)[:10]:
        assert (again / row["video"]).read_bytes() == (data / row["video"]).read_bytes(), row["id"]
    other = tmp_path / "other"
    sv.generate(other, N, seed=1, progress=False)
    rows0, rows1 = rows_of(data), rows_of(other)
    assert [r["question"] + str(r["options"]) for r in rows0] != [r["question"] + str(r["options"]) for r in rows1]
    assert not {r["id"] for r in rows0} & {r["id"] for r in rows1}
    # jittered geometry: no clip of one seed is byte-identical to a clip of the other
    digest = lambda root, rows: {hashlib.sha1((root / r["video"]).read_bytes()).hexdigest() for r in rows}
    assert not digest(data, rows0) & digest(other, rows1)


def test_parallel_encoding_writes_the_same_set(tmp_path, monkeypatch):
    """Workers draw chunks of questions from the stream's state at each chunk: the same bytes
    as drawing every question in one process."""
    monkeypatch.setattr(sv, "CHUNK", 30)  # 4 chunks, the last one short
    one, two = tmp_path / "one", tmp_path / "two"
    sv.generate(one, 100, seed=5, progress=False, workers=1)
    sv.generate(two, 100, seed=5, progress=False, workers=2)
    assert (one / "annotations.jsonl").read_bytes() == (two / "annotations.jsonl").read_bytes()
    for row in rows_of(one):
        assert (one / row["video"]).read_bytes() == (two / row["video"]).read_bytes(), row["id"]


def test_rows_are_well_formed(data):
    rows = rows_of(data)
    assert len(rows) == N and len({r["id"] for r in rows}) == N
    assert {r["family"] for r in rows} == set(sv.FAMILIES)
    for r in rows:
        assert set(r) >= {"id", "family", "video", "question", "options", "answer", "key_times", "rationale",
                          "fps", "duration"}
        assert len(r["options"]) == 4 and len(set(r["options"])) == 4
        assert r["answer"] in "ABCD"
        assert r["key_times"] and all(0 <= s < e <= r["duration"] for s, e in r["key_times"])
        assert (data / r["video"]).is_file()
        # the rationale cites every key moment the way the questions and captions write times
        for t, _ in r["notes"]:
            assert sv.fmt(t) in r["rationale"]
            assert any(s <= t <= e for s, e in r["key_times"])
        assert r["options"]["ABCD".index(r["answer"])] in r["rationale"]


def test_answers_are_spread_over_letters(tmp_path):
    sv.generate(tmp_path, 100, seed=5, progress=False)
    letters = [r["answer"] for r in rows_of(tmp_path)]
    assert all(letters.count(x) >= 10 for x in "ABCD"), letters


# ---------------------------------------------------------------- the clips show the evidence


def test_colour_at_key_frame_is_the_answer(samples):
    for s in [s for s in samples if s.category["family"] == "color_at"]:
        for n in (8, 16):  # one key frame per 0.5 s slot at 8 frames, two at 16
            _, labels, frames = key_frames(s, n)
            assert len(labels) == n // 8
            assert all(colours_present(f) == {correct_text(s)} for f in frames), (s.id, n)
        # the wrong option that the object takes at another moment is really in the clip
        seen = set().union(*(colours_present(f) for f in all_frames(s.video)))
        assert len(seen & set(s.options)) == 2, s.id


def test_first_appear_key_frame_shows_only_the_answer(samples):
    for s in [s for s in samples if s.category["family"] == "first_appear"]:
        fs, labels, frames = key_frames(s)
        colour, shape = correct_text(s).split()[1:]
        assert colours_present(frames[0]) == {colour}, s.id
        assert shape_of(frames[0]) == shape, s.id
        for earlier in fs.frames[:labels[0] - 1]:
            assert not colours_present(earlier), s.id
        # the distractor option never appears anywhere
        appeared = set().union(*(colours_present(f) for f in all_frames(s.video)))
        assert len(appeared) == 3 and colour in appeared


def test_motion_key_frames_move_in_the_answer_direction(samples):
    for s in [s for s in samples if s.category["family"] == "motion"]:
        _, labels, frames = key_frames(s)
        assert len(labels) == 2
        (x0, y0), (x1, y1) = centroid(frames[0]), centroid(frames[1])
        dx, dy = x1 - x0, y1 - y0
        seen = ("right" if dx > 0 else "left") if abs(dx) > abs(dy) else ("down" if dy > 0 else "up")
        assert seen == correct_text(s) and max(abs(dx), abs(dy)) > 40, s.id


def test_flash_count_matches_decoded_clip(samples):
    for s in [s for s in samples if s.category["family"] == "flash_count"]:
        visible = [bool(colours_present(f)) for f in all_frames(s.video)]
        onsets = sum(1 for a, b in zip([False] + visible, visible) if b and not a)
        assert onsets == int(correct_text(s)), s.id
        for n in (8, 16):
            fs, labels, frames = key_frames(s, n)
            assert len(labels) == onsets * n // 8 and all(colours_present(f) for f in frames), (s.id, n)
            others = [f for k, f in zip(fs.labels, fs.frames) if k not in labels]
            assert not any(colours_present(f) for f in others), (s.id, n)  # non-key frames are blank


def test_change_between_key_frames_is_the_answer(samples):
    for s in [s for s in samples if s.category["family"] == "change"]:
        _, labels, (a, b) = key_frames(s)
        changed = set()
        if colours_present(a) != colours_present(b):
            changed.add("its colour")
        if shape_of(a) != shape_of(b):
            changed.add("its shape")
        if abs(centroid(a)[0] - centroid(b)[0]) > 20:
            changed.add("its position")
        assert changed == ({correct_text(s)} - {"nothing"}), (s.id, changed)


# ---------------------------------------------------------------- the benchmark contract


def test_sft_target_parses_back_to_answer_and_key_frames(samples):
    for n in (8, 16):
        for s in samples:
            fs, labels, _ = key_frames(s, n)
            text = sv.sft_target(s, fs)
            ev = evidence.parse(text, n_frames=len(fs), answer_type="option", options=s.options)
            assert ev.answer == s.answer and ev.frames == labels, (s.id, text)
            assert set(ev.mentioned) == set(labels) and evidence.transparency(ev) == 1.0, text
            assert evidence.grounding_f1(ev.frames, labels) == 1.0


def test_change_targets_compare_attributes_and_mark_the_answer(samples):
    """The change target's word-by-word comparison marks the answer's attribute, and only it."""
    seen = set()
    for s in (s for s in samples if s.doc["family"] == "change"):
        fs, _, _ = key_frames(s)
        think = sv.sft_target(s, fs).split("<frames>")[0]
        marks = dict(re.findall(r"(colour|shape|position) [^;:]* (same|changed)[;.]", think))
        assert set(marks) == {"colour", "shape", "position"}, think
        changed = {f"its {k}" for k, v in marks.items() if v == "changed"} or {"nothing"}
        assert changed == {correct_text(s)}, (s.id, think)
        seen |= changed
    assert len(seen) >= 3  # the fixture's change questions cover most answers


def test_moment_frames_restate_each_asked_moment_as_its_key_frame(samples):
    """With `moments`, a color_at or change target says which frame each asked moment is, in
    the question's own words ("0.8 s is frame 2."), and then cites that frame; without it, and
    for the other families, the target is unchanged."""
    seen = 0
    for n in (8, 16):
        for s in samples:
            fs, labels, _ = key_frames(s, n)
            plain, restated = sv.sft_target(s, fs), sv.sft_target(s, fs, moments=True)
            said = re.findall(r"(\d+\.\d s) is frames? ([\d, and]+)\.", restated.split("<frames>")[0])
            if s.doc["family"] not in sv.MOMENTS_NAMED:
                assert restated == plain and not said
                continue
            assert [m for m, _ in said] == re.findall(r"\d+\.\d s", s.question), (s.id, restated)
            cited = [int(x) for _, f in said for x in re.findall(r"\d+", f)]
            assert cited == labels, (s.id, restated)
            ev = evidence.parse(restated, n_frames=len(fs), answer_type="option", options=s.options)
            assert ev.answer == s.answer and ev.frames == labels
            seen += 1
    assert seen >= 4


def test_change_verdicts_follow_their_two_words_in_either_layout():
    """Adjacent (the default) puts the verdict right after the two words; separated is v4's layout.
    The verdict is computed from the words, so a changed word is marked whatever the layout."""
    a, b = "red square left", "blue square top-right"
    assert sv.attribute_comparison(a, b) == "colour red blue changed; shape square square same; position left top-right changed."
    assert sv.attribute_comparison(a, a, "separated") == (
        "colour red, red: same; shape square, square: same; position left, left: same.")
    assert sv.attribute_comparison("red circle", "red circle bottom").endswith("position centre bottom changed.")
    with pytest.raises(InputError, match="sideways"):
        sv.attribute_comparison(a, b, "sideways")


def test_load_samples(samples, data):
    s = samples[0]
    assert len(samples) == N and s.answer_type == "option" and len(s.options) == 4
    assert Path(s.video).is_absolute() and Path(s.video).is_file()
    assert s.category == {"family": s.doc["family"]} and s.key_times == [tuple(k) for k in s.doc["key_times"]]


def test_load_samples_generates_on_first_use(tmp_path, capsys):
    root = tmp_path / "fresh"
    card = small_card(root, generate=True, n=10, seed=4)
    got = sv.load_samples(card)
    assert len(got) == 10 and (root / "annotations.jsonl").is_file()
    assert "generating 10 questions" in capsys.readouterr().err
    assert [s.id for s in sv.load_samples(card)] == [s.id for s in got]  # second use reads, no regeneration
    with pytest.raises(DataMissingError, match="not found"):
        sv.load_samples(small_card(tmp_path / "absent"))


@pytest.mark.parametrize("edit, field", [
    (lambda r: r.pop("options"), "options"),
    (lambda r: r.update(options=["a", "b", "c"]), "options"),
    (lambda r: r.update(answer="E"), "answer"),
    (lambda r: r.update(key_times=[[3.5, 9.0]]), "key_times"),
    (lambda r: r.update(key_times="soon"), "key_times"),
])
def test_bad_row_names_file_line_and_field(tmp_path, data, edit, field):
    rows = rows_of(data)[:3]
    edit(rows[1])
    path = tmp_path / "annotations.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    got = sv.load_samples(small_card(tmp_path))  # the bad row becomes one error sample; the others load
    assert [s.load_error is None for s in got] == [True, False, True]
    err = got[1].load_error
    assert str(path) in err and "line 2" in err and field in err


def test_bad_json_line(tmp_path, data):
    (tmp_path / "annotations.jsonl").write_bytes((data / "annotations.jsonl").read_bytes() + b"{oops\n\xff\xfe\n")
    got = sv.load_samples(small_card(tmp_path))
    assert all(s.load_error is None for s in got[:N])
    assert f"line {N + 1}: invalid JSON" in got[N].load_error and f"line {N + 2}: invalid JSON" in got[N + 1].load_error


def test_score_and_aggregate_by_family(samples):
    bench = get_benchmark("synthvid")
    card = small_card("/nonexistent")
    rows = []
    for i, s in enumerate(samples):
        doc_sample = bench.doc_to_sample(s.doc, card, i)
        assert doc_sample.answer == s.answer and doc_sample.category == s.category
        wrong = "ABCD"[("ABCD".index(s.answer) + 1) % 4]
        response = evidence.format_evidence("frame 1", [1], s.answer if i % 2 == 0 else wrong)
        rows.append({**bench.score(doc_sample, response), "category": doc_sample.category})
    agg = bench.aggregate(rows, card)
    assert agg["n"] == N and abs(agg["accuracy"] - 13 / 25) < 1e-9
    assert set(agg["by_family"]) == set(sv.FAMILIES)


def test_score_command_on_synthvid_rows(tmp_path, data, capsys):
    rows = rows_of(data)
    lines = [{"doc": r, "response": evidence.format_evidence("frame 1", [1], r["answer"] if r["family"] == "motion"
                                                             else "ABCD"[("ABCD".index(r["answer"]) + 1) % 4])}
             for r in rows]
    responses = tmp_path / "responses.jsonl"
    responses.write_text("".join(json.dumps(x) + "\n" for x in lines))
    assert cli_main(["score", "--task", "synthvid", "--input", str(responses)]) == 0
    metrics = json.loads(capsys.readouterr().out)
    assert metrics["by_family"]["motion"] == 1.0 and metrics["by_family"]["change"] == 0.0
    assert abs(metrics["accuracy"] - 0.2) < 1e-9
    bad = dict(lines[0], doc={k: v for k, v in rows[0].items() if k != "answer"})
    responses.write_text(json.dumps(bad) + "\n")
    assert cli_main(["score", "--task", "synthvid", "--input", str(responses)]) == 2
    assert f"{responses}:1" in capsys.readouterr().err


def test_task_cards():
    ev, tr = load_task("synthvid"), load_task("synthvid_train")
    assert ev.benchmark == tr.benchmark == "synthvid"
    assert ev.args["generate"] and ev.args["n"] >= 500 and tr.args["generate"]
    assert ev.args["seed"] != tr.args["seed"] and ev.root != tr.root  # train never reads eval questions
    assert ev.frames.n == 8 and ev.frames.max_pixels <= 112 * 112


# ---------------------------------------------------------------- the `synth` command


def test_synth_cli(tmp_path, capsys):
    assert cli_main(["synth", "--out", str(tmp_path / "c"), "--n", "5", "--seed", "2", "--quiet"]) == 0
    assert len(rows_of(tmp_path / "c")) == 5 and "wrote 5 questions" in capsys.readouterr().out
    with pytest.raises(SystemExit) as e:
        cli_main(["synth", "--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert "--seed" in out and "first_appear" in out and "key_times" in out
    assert cli_main(["synth", "--out", str(tmp_path / "d"), "--n", "0"]) == 2


@pytest.mark.slow
def test_run_synthvid_end_to_end(tmp_path):
    env = {**os.environ, "RLER_DATA": str(tmp_path / "data"), "OMP_NUM_THREADS": "1"}
    out = subprocess.run([str(Path(sys.executable).parent / "rler-eval"), "run", "--task", "synthvid",
                          "--model", "tiny-random", "--limit", "2", "--out", str(tmp_path / "run")],
                         capture_output=True, text=True, cwd=REPO, env=env, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    assert len(rows_of(tmp_path / "data" / "synthvid")) == 500  # generated on first use
    records = [json.loads(x) for x in (tmp_path / "run" / "samples.jsonl").read_text().splitlines()]
    assert len(records) == 2 and all(r["status"] == "ok" for r in records), records
    assert all(r["key_frames"] for r in records)
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics


# ---------------------------------------------------------------- no answer in the text


def test_text_rows_are_the_generated_rows(tmp_path):
    sv.generate(tmp_path, 5, seed=3, progress=False)
    strip = lambda rows: [{k: v for k, v in r.items() if k not in ("video", "scene")} for r in rows]  # noqa: E731
    assert strip(sv.text_rows(5, seed=3)) == strip(rows_of(tmp_path))


def test_text_alone_stays_near_chance():
    """Trained on 3,000 training-split rows, a text-only learner answers the held-out split near chance."""
    acc = sv.text_only_accuracy(sv.text_rows(3000, seed=1), sv.text_rows(500, seed=0))
    assert acc <= 0.35, acc


def test_text_only_learner_finds_a_planted_leak():
    """The leak check can fail: plant a leak (the answer is always listed first) and it is found."""
    def leaky(rows):
        out = []
        for r in rows:
            correct = r["options"]["ABCD".index(r["answer"])]
            out.append({**r, "options": [correct] + [o for o in r["options"] if o != correct], "answer": "A"})
        return out
    assert sv.text_only_accuracy(leaky(sv.text_rows(600, seed=1)), leaky(sv.text_rows(200, seed=0))) > 0.9


def test_a_set_smaller_than_its_card_is_regenerated_with_the_same_first_questions(tmp_path, capsys):
    from rler_eval.tasks import card_from_dict

    def card(n):
        return card_from_dict({"name": "grow", "benchmark": "synthvid", "data_root": str(tmp_path),
                               "args": {"generate": True, "n": n, "seed": 7}})

    small = sv.load_samples(card(5))
    grown = sv.load_samples(card(10))
    assert len(small) == 5 and len(grown) == 10
    assert [s.doc for s in grown[:5]] == [s.doc for s in small]
    assert "fewer than the card's 10 questions" in capsys.readouterr().err
    assert len(sv.load_samples(card(5))) == 10  # a larger set is kept; the recipe's limit cuts it


def test_describe_groups_colours_as_the_per_colour_masks_did():
    import random

    rng = random.Random(3)
    for family in sv.FAMILIES:
        clip, _ = sv.BUILDERS[family](rng)
        for frame in clip[::5]:
            want = []
            flat = frame.reshape(-1, 3).astype(np.int32)
            for name, colour in sv.COLOURS.items():  # the slow reference: one full mask per colour
                ys, xs = np.nonzero((flat == colour).all(axis=1).reshape(frame.shape[:2]))
                if len(xs) < 20:
                    continue
                box = (xs.max() - xs.min() + 1) * (ys.max() - ys.min() + 1)
                shape = "square" if len(xs) / box > 0.9 else "circle"
                want.append((xs.mean(), f"{name} {shape}{sv.position_word(xs.mean(), ys.mean())}"))
            assert sv.describe(frame) == ", ".join(t for _, t in sorted(want))


def test_training_rows_carry_the_recipes_moment_frames_setting(data, samples):
    """`data.moment_frames` reaches the SFT rows through the training CLI's stage data."""
    from types import SimpleNamespace

    from rler_eval.training.cli import stage_data

    card = small_card(data)
    picked = [s for s in samples if s.doc["family"] == "color_at"][:2]
    for flag in (False, True):
        recipe = SimpleNamespace(data={"moment_frames": flag})
        rows = stage_data("sft", recipe, card, picked)
        texts = [r["completion"][0]["content"][0]["text"] for r in rows]
        assert all((" s is frame " in t) == flag for t in texts), texts
