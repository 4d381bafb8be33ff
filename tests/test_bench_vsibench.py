"""VSI-Bench: official-schema fixture, exact-letter and MRA scoring (boundaries included),
the official aggregate with rel_direction merged, the debiased subset, `score`, end to end."""

import json

import numpy as np
import pytest

from rler_eval.benchmarks import extract, get_benchmark
from rler_eval.errors import DataMissingError, InputError
from rler_eval.scoring import score_file
from rler_eval.types import FrameSet
from tests.fixtures import card_at as card
from tests.fixtures import vsibench as fx

bench = get_benchmark("vsibench")


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("vsi")
    fx.write(root)
    return root / "vsibench"




def by_type(data, name="vsibench"):
    return {s.category["question_type"]: s for s in bench.load_samples(card(name, data))}


def test_fixture_reads_both_subsets(data):
    full = bench.load_samples(card("vsibench", data))
    assert len(full) == 10 and [s.id for s in full] == [str(i) for i in range(10)]
    deb = bench.load_samples(card("vsibench_debiased", data))
    assert [s.id for s in deb] == ["0", "1", "2", "4", "5", "6", "8", "9"]
    s = by_type(data)
    assert s["object_counting"].answer_type == "number" and s["object_counting"].answer == "4"
    assert s["route_planning"].options == ["Turn left", "Turn right", "Turn back"]
    assert s["object_rel_distance"].video.endswith("scannet/scene0011_00.mp4")


def test_debiased_from_pruned_ids_when_no_parquet(data, tmp_path):
    import shutil

    root = tmp_path / "vsibench"
    shutil.copytree(data, root)
    (root / "test_debiased.parquet").unlink()
    kept = [s.id for s in bench.load_samples(card("vsibench_debiased", root))]
    assert kept == ["0", "1", "2", "4", "5", "6", "8", "9"]
    (root / "pruned_ids.txt").unlink()
    with pytest.raises(DataMissingError, match="pruned_ids.txt"):
        bench.load_samples(card("vsibench_debiased", root))


def test_missing_data_and_bad_rows(tmp_path):
    with pytest.raises(DataMissingError, match="huggingface-cli download nyu-visionx/VSI-Bench"):
        bench.load_samples(card("vsibench", tmp_path / "nowhere"))
    row = dict(fx.records()[4])
    row["ground_truth"] = "E"
    with pytest.raises(InputError, match="ground_truth"):
        bench.doc_to_sample(row, card("vsibench"))
    with pytest.raises(InputError, match="unknown question_type 'object_colour'"):
        bench.doc_to_sample(dict(row, question_type="object_colour"), card("vsibench"))
    with pytest.raises(InputError, match="needs a number"):
        bench.doc_to_sample(dict(fx.records()[0], ground_truth="four"), card("vsibench"))


def test_multiple_choice_is_the_first_word_case_insensitive(data):
    s = by_type(data)["object_rel_distance"]  # gold C
    for reply, want in [("C", 1), ("c", 1), ("C.", 1), ("C. lamp", 1), ("<answer>C</answer>", 1),
                        ("(C)", 0), ("The answer is C", 0), ("lamp", 0), ("", 0), ("B", 0),
                        ("<think>in Frame 2 ...</think><frames>2</frames><answer>C. lamp</answer>", 1)]:
        assert bench.score(s, reply)["score"] == want, reply


def test_mra_matches_the_official_computation_at_the_boundaries(data):
    count = by_type(data)["object_counting"]  # gold 4
    cases = {"4": 1.0, "3": 0.6, "5": 0.6, "2": 0.1, "6": 0.1, "1": 0.0, "8": 0.0, "4.0": 1.0, "4.": 1.0,
             "4 chairs": 1.0, "about 4": 0.0, "four": 0.0, "": 0.0, "<answer>2</answer>": 0.1, "nan": 0.0,
             "inf": 0.0, "-4": 0.0}
    for reply, want in cases.items():
        assert bench.score(count, reply)["score"] == pytest.approx(want), reply

    # the official formula, written out, on many values: thresholds from np.linspace, ratio <= 1 - θ
    def official(pred, target):
        th = np.linspace(.5, .95, int((.95 - .5) / .05 + 2))
        return (abs(pred - target) / target <= 1 - th).mean()
    for target in (4.0, 1.8, 200.0, 25.5):
        for pred in np.linspace(0, 2.2 * target, 89):
            assert extract.mra(float(pred), target) == pytest.approx(official(float(pred), target))
    # float64 decides at the threshold: 1 - 0.55 = 0.44999999999999996, so a ratio computed as
    # exactly 0.45 (4.5 / 10) fails θ = 0.55, while |1.45 - 1| / 1 = 0.44999999999999996 passes it
    assert extract.mra(14.5, 10.0) == pytest.approx(0.1) and extract.mra(1.45, 1.0) == pytest.approx(0.2)


def test_number_reading_option(data):
    c = card("vsibench")
    c.args["number_reading"] = "first_number"
    count = by_type(data)["object_counting"]
    assert bench.score(count, "about 4", c)["score"] == 1.0
    assert bench.score(count, "There are four chairs", c)["score"] == 1.0
    assert bench.score(count, "about 4")["score"] == 0.0  # the official first-word reading


def test_aggregate_merges_rel_direction_and_averages_tasks(data):
    ss = bench.load_samples(card("vsibench", data))
    replies = {"object_counting": "2", "object_rel_direction_easy": "B", "object_rel_direction_medium": "C",
               "object_rel_direction_hard": "D"}  # 0.1, right, wrong, right; the rest exact
    rows = []
    for s in ss:
        r = replies.get(s.category["question_type"], s.answer)
        rows.append({"id": s.id, "status": "ok", "category": s.category, **bench.score(s, r)})
    m = bench.aggregate(rows, card("vsibench"))
    assert m["tasks"]["object_rel_direction_accuracy"] == pytest.approx(2 / 3)
    assert m["tasks"]["object_counting_MRA:.5:.95:.05"] == pytest.approx(0.1)
    assert len(m["tasks"]) == 8 and "object_rel_direction_easy_accuracy" not in m["tasks"]
    want = (6 + 0.1 + 2 / 3) / 8
    assert m["overall"] == pytest.approx(want) and m["accuracy"] == m["overall"]
    # the plain mean over questions would differ: the metric is the mean of task means
    assert m["overall"] != pytest.approx(sum(r["score"] for r in rows) / len(rows))


def test_prompts(data):
    s = by_type(data)["route_planning"]
    fs = FrameSet(frames=np.zeros((3, 8, 8, 3), np.uint8), timestamps=[0.0, 1.0, 2.0])
    plain = card("vsibench")
    plain.prompt = "plain"
    text = bench.build_prompt(s, fs, plain).text()
    assert text.startswith("Frame 1 (00:00.0):") and "These are frames of a video." in text
    assert "A. Turn left\nB. Turn right" in text and text.endswith(bench.MCA_POST)
    ev = bench.build_prompt(by_type(data)["object_counting"], fs, card("vsibench"))
    assert ev.n_frames == 3 and "<answer>a number only</answer>" in ev.text()


def test_score_command(tmp_path):
    replies = ["4", "1.5 meters", "", "25.5", "C", "B", "A.", "d", "A", "B"]
    path = tmp_path / "in.jsonl"
    path.write_text("".join(json.dumps({"doc": d, "response": r}) + "\n" for d, r in zip(fx.records(), replies)))
    metrics, rows = score_file("vsibench", path)
    assert [r["score"] for r in rows] == pytest.approx([1, 0.7, 0, 1, 1, 1, 1, 1, 1, 1])
    assert metrics["tasks"]["object_abs_distance_MRA:.5:.95:.05"] == pytest.approx(0.7)
    assert metrics["overall"] == pytest.approx((6 + 0.7) / 8)  # object_size_estimation scored 0


@pytest.fixture(scope="module")
def backend():
    from rler_eval.models import load_backend

    return load_backend("tiny-random")


@pytest.mark.slow
@pytest.mark.parametrize("name", ["vsibench", "vsibench_debiased"])
def test_tiny_model_end_to_end(name, data, backend, tmp_path):
    from rler_eval import runner

    c = card(name, data)
    c.frames.n, c.frames.max_pixels, c.max_new_tokens = 4, 56 * 56, 24
    metrics, out = runner.run(c, "tiny-random", "greedy", limit=2, out=tmp_path / "run", backend=backend)
    records = runner.load_records(out)
    assert len(records) == 2 and all(r["status"] == "ok" for r in records), [r.get("error") for r in records]
    assert 0.0 <= metrics["overall"] <= 1.0 and set(metrics["tasks"]) == {
        "object_counting_MRA:.5:.95:.05", "object_abs_distance_MRA:.5:.95:.05"}


@pytest.mark.slow
def test_missing_video_is_a_per_sample_error(data, backend, tmp_path):
    import shutil

    from rler_eval import runner

    root = tmp_path / "vsibench"
    shutil.copytree(data, root)
    (root / "scannet" / "scene0011_00.mp4").unlink()
    c = card("vsibench", root)
    c.frames.n, c.frames.max_pixels, c.max_new_tokens = 4, 56 * 56, 16
    metrics, out = runner.run(c, "tiny-random", "greedy", limit=4, out=tmp_path / "run", backend=backend)
    records = {r["id"]: r for r in runner.load_records(out)}
    assert [records[i]["status"] for i in "0123"] == ["ok", "ok", "ok", "error"]
    assert "scene0011_00.mp4" in records["3"]["error"] and metrics["errors"] == 1
