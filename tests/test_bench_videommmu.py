"""Video-MMMU: official-schema fixture, MMMU-style option and open-answer scoring, the
Adaptation question image as the last frame, per-track metrics, Δknowledge, `score`, e2e."""

import json

import numpy as np
import pytest

from rler_eval.benchmarks import get_benchmark
from rler_eval.benchmarks import videommmu as vm
from rler_eval.errors import DataMissingError, InputError
from rler_eval.scoring import score_file
from rler_eval.types import FrameSet
from tests.fixtures import card_at as card
from tests.fixtures import videommmu as fx

bench = get_benchmark("videommmu")
CARDS = ["videommmu", "videommmu_perception", "videommmu_comprehension", "videommmu_adaptation",
         "videommmu_question_only"]


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("RLER_CACHE", str(tmp_path / "cache"))


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("vm")
    fx.write(root)
    return root / "videommmu"




def get(data, sid, name="videommmu"):
    return {s.id: s for s in bench.load_samples(card(name, data))}[sid]


def test_fixture_reads_tracks_images_and_videos(data):
    ss = bench.load_samples(card("videommmu", data))
    assert [s.id for s in ss] == [f"{t}/{q}" for t in vm.TRACKS for q in ("test_Art_Theory_1", "test_Physics_2")]
    art = ss[0]
    assert art.options == ["Monet", "Degas", "Renoir", "Cezanne"] and art.answer == "B"
    assert art.category == {"track": "Perception", "subject": "Art_Theory", "discipline": "Art",
                            "question_type": "multiple-choice"}
    assert ss[1].options == ["newton", "joule", "watt", "pascal"]  # "A. " prefixes stripped
    assert art.video.endswith("Art/test_Art_Theory_1.mp4") and ss[3].video.endswith("Science/test_Physics_2.mp4")
    assert ss[3].answer_type == "text" and ss[3].answer == "2"
    adapt = [s for s in ss if s.category["track"] == "Adaptation"]
    assert all(len(s.images) == 1 and s.images[0].endswith(".png") for s in adapt)
    assert not any(s.images for s in ss if s.category["track"] != "Adaptation")
    assert "image 1" not in adapt[0].doc  # the image bytes are not kept in the record
    for name in CARDS[1:4]:
        assert {s.category["track"] for s in bench.load_samples(card(name, data))} == {name.split("_")[1].title()}


def test_question_only_baseline(data):
    qo = bench.load_samples(card("videommmu_question_only", data))
    assert [s.id for s in qo] == ["Adaptation/test_Art_Theory_1", "Adaptation/test_Physics_2"]
    assert qo[0].video.endswith("question_only/test_Art_Theory_1_image.mp4") and qo[0].images == []
    assert qo[1].video is None and len(qo[1].images) == 1  # no question-only video: the image alone
    p = bench.build_prompt(qo[1], None, card("videommmu_question_only"))
    assert p.n_frames == 1 and [c["type"] for c in p.content] == ["text", "image", "text"]
    assert p.content[0]["text"] == "Frame 1 (question image):"


def test_adaptation_image_is_the_last_frame(data):
    s = get(data, "Adaptation/test_Art_Theory_1")
    fs = FrameSet(frames=np.zeros((3, 8, 8, 3), np.uint8), timestamps=[0.0, 1.0, 2.0])
    p = bench.build_prompt(s, fs, card("videommmu"))
    assert p.n_frames == 4 and p.content[6]["text"] == "Frame 4 (question image):"
    assert p.content[7]["type"] == "image" and p.content[7]["image"].size == (48, 32)
    assert vm.IMAGE_NOTE in p.text() and "A. Baroque\nB. Impressionism" in p.text()
    plain = card("videommmu")
    plain.prompt = "plain"
    text = bench.build_prompt(s, fs, plain).text()
    assert vm.PRE_PROMPT + vm.MCQ_PROMPT + s.question in text
    perc = bench.build_prompt(get(data, "Perception/test_Art_Theory_1"), fs, plain).text()
    assert perc.endswith("D. Cezanne" + vm.PC_POST)


def test_missing_data_and_bad_rows(tmp_path, data):
    with pytest.raises(DataMissingError, match="huggingface-cli download lmms-lab/VideoMMMU"):
        bench.load_samples(card("videommmu", tmp_path / "nowhere"))
    doc = dict(fx.ROWS["Perception"][0])
    with pytest.raises(InputError, match="field 'track'"):
        bench.doc_to_sample(doc, card("videommmu"))
    assert bench.doc_to_sample(doc, card("videommmu_perception")).id == "Perception/test_Art_Theory_1"
    with pytest.raises(InputError, match="'<split>_<Subject>_<number>'"):
        bench.doc_to_sample(dict(doc, id="art1", track="Perception"), card("videommmu"))
    with pytest.raises(InputError, match="not an option letter"):
        bench.doc_to_sample(dict(doc, answer="Degas", track="Perception"), card("videommmu"))


def test_multiple_choice_parse(data):
    s = get(data, "Perception/test_Art_Theory_1")  # gold B, options Monet/Degas/Renoir/Cezanne
    cases = {"B": 1, "B.": 1, "(B)": 1, "B: Degas": 1, "The answer is B.": 1, "Answer: B": 1,
             "<answer>B</answer>": 1, "<think>Frame 3 shows the name</think><frames>3</frames><answer>B</answer>": 1,
             "The lecture first names the painter Degas in its opening": 1,  # > 5 words: option text
             "Degas": 0,  # short reply, no letter cue: "No Answer Found."
             # both "A." and "B." occur; the final "." is stripped first, so the last "X." is "B."
             "A. Monet, not B. Degas? No: the answer is A.": 1,
             "B. Degas? No: the answer is A. Monet": 0,
             "C": 0, "": 0, "zzz": 0}
    for reply, want in cases.items():
        assert bench.score(s, reply)["score"] == want, reply
    assert bench.score(s, "")["extracted"] == vm.API_ERROR
    assert bench.score(s, "zzz")["extracted"] == vm.NO_ANSWER


def test_open_answer_parse(data):
    s = get(data, "Adaptation/test_Physics_2")  # gold "12.5"
    cases = {"12.5": 1, "12.50": 1, "The force is 12.5 N.": 1, "F = ma = 2.5 * 5 = 12.5": 1,
             "Therefore the result is 12.5 newtons": 1, "<answer>12.5</answer>": 1,
             "It is about 12 N": 0, "12.5e0": 1, "125/10": 0, "": 0, "twelve and a half": 0}
    for reply, want in cases.items():
        assert bench.score(s, reply)["score"] == want, reply
    assert vm.parse_open("The total is 1,250 so the answer is 3") == [3.0]  # shortest tail "3"
    assert vm.eval_open("a", [" a ", "x"]) and not vm.eval_open("a", ["banana"])  # single letters padded
    assert vm.normalize_str("1,234.567") == [1234.57]
    # an empty tail ("... so " at a line end) is replaced by the next indicator's tail, as officially
    assert vm.parse_open("answer man = B. man A (A) . man so \n total") == ["man = b. man a (a) . man so"]


def test_aggregate_tracks_and_delta_knowledge(data, tmp_path):
    ss = bench.load_samples(card("videommmu", data))
    replies = ["B", "C", "A", "2", "B", ""]  # Perception 2/2, Comprehension 1/2, Adaptation 1/2 (one empty)
    rows = [{"id": s.id, "status": "ok", "category": s.category, **bench.score(s, r)} for s, r in zip(ss, replies)]
    c = card("videommmu")
    m = bench.aggregate(rows, c)
    assert m["accuracy"] == pytest.approx(4 / 6)
    assert m["by_track"] == {"Adaptation": 0.5, "Comprehension": 0.5, "Perception": 1.0}
    assert m["by_discipline"] == {"Art": pytest.approx(2 / 3), "Science": pytest.approx(2 / 3)}
    assert m["accuracy_excluding_empty"] == pytest.approx(4 / 5) and m["n_empty"] == 1
    assert m["delta_knowledge"] is None and "videommmu_question_only" in m["delta_knowledge_note"]
    run = tmp_path / "qo"
    run.mkdir()
    (run / "metrics.json").write_text(json.dumps({"accuracy": 0.25}))
    c.args["question_only_run"] = str(run)
    m = bench.aggregate(rows, c)
    assert m["delta_knowledge"] == pytest.approx((0.5 - 0.25) / 0.75 * 100)
    assert m["question_only_accuracy"] == 0.25


def test_score_command(tmp_path):
    lines = []
    for track, rows in fx.ROWS.items():
        for row in rows:
            lines.append({"doc": {**row, "track": track}, "response": {"B": "B", "2": "2", "C": "(C)",
                                                                       "12.5": "It is 12.5 N."}[row["answer"]]})
    lines[1]["response"] = "A. newton"  # wrong
    path = tmp_path / "in.jsonl"
    path.write_text("".join(json.dumps(x) + "\n" for x in lines))
    metrics, rows = score_file("videommmu", path)
    assert [r["score"] for r in rows] == [1, 0, 1, 1, 1, 1]
    assert metrics["by_track"]["Perception"] == 0.5 and metrics["accuracy"] == pytest.approx(5 / 6)


@pytest.fixture(scope="module")
def backend():
    from rler_eval.models import load_backend

    return load_backend("tiny-random")


@pytest.mark.slow
@pytest.mark.parametrize("name", CARDS)
def test_tiny_model_end_to_end(name, data, backend, tmp_path, monkeypatch):
    from rler_eval import runner

    c = card(name, data)
    c.frames.n, c.frames.max_pixels, c.max_new_tokens = 3, 56 * 56, 24
    if name == "videommmu":
        c.args["tracks"] = ["Adaptation"]  # the track with the question image
    metrics, out = runner.run(c, "tiny-random", "greedy", limit=2, out=tmp_path / "run", backend=backend)
    records = runner.load_records(out)
    assert len(records) == 2 and all(r["status"] == "ok" for r in records), [r.get("error") for r in records]
    if name in ("videommmu", "videommmu_adaptation"):
        assert all(r["n_frames"] == 4 for r in records)  # 3 frames + the question image
    assert 0.0 <= metrics["accuracy"] <= 1.0 and "by_track" in metrics
