"""Rows in the exact form the benchmarks released them (issue 11), bad rows as error records
(issue 14), and the checks that keep a result from being silently wrong.

Each fixture below is written in the released shape that broke the adapters: the missing
field, the null, the extra folder, the flat mirror, the nested JSON object.
"""

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from rler_eval import preflight, protocol, runner
from rler_eval.benchmarks import get_benchmark
from rler_eval.cli import main
from rler_eval.errors import InputError
from rler_eval.scoring import score_file
from rler_eval.types import Candidate, Prediction, Sample
from tests.fixtures import card_at, video

# ---------------------------------------------------------------- Video-MMMU

# As in github.com/videommmu/VideoMMMU data/*_video.json: {"<Track>": {"0": row, ...}};
# Perception/Comprehension rows carry no question_type; one Adaptation row has it null.
PERCEPTION = {"Perception": {"0": {"id": "dev_Biology_3", "link_selected": "https://www.youtube.com/watch?v=x",
                                   "question": "How many carbon atoms?", "options": ["3, 3", "3, 4", "3, 5"],
                                   "answer": "B"}}}
ADAPTATION = {"Adaptation": {
    "0": {"id": "validation_Accounting_13", "link_selected": "https://www.youtube.com/watch?v=y",
          "question": "<image 1> What is the cost?", "options": ["$52,000", "$62,000", "$72,000"],
          "answer": "C", "question_type": None},
    "1": {"id": "validation_Finance_8", "link_selected": "https://www.youtube.com/watch?v=z",
          "question": "<image 1> What is the value?", "options": [], "answer": "360", "question_type": "open"}}}


def test_videommmu_github_json_without_question_type(tmp_path):
    data = tmp_path / "videommmu" / "data"
    data.mkdir(parents=True)
    (data / "perception_video.json").write_text(json.dumps(PERCEPTION))
    (data / "adaptation_video.json").write_text(json.dumps(ADAPTATION))
    card = card_at("videommmu", tmp_path / "videommmu")
    card.args["tracks"] = ["Perception", "Adaptation"]
    samples = get_benchmark("videommmu").load_samples(card)
    assert [s.load_error for s in samples] == [None, None, None]
    by_id = {s.id: s for s in samples}
    assert by_id["Perception/dev_Biology_3"].answer_type == "option"  # missing type + options: multiple choice
    assert by_id["Adaptation/validation_Accounting_13"].answer_type == "option"  # null type + options
    assert by_id["Adaptation/validation_Finance_8"].answer_type == "text"
    assert by_id["Perception/dev_Biology_3"].video.endswith("Science/dev_Biology_3.mp4")


def test_videommmu_parquet_without_question_type_column(tmp_path):
    root = tmp_path / "videommmu"
    (root / "Perception").mkdir(parents=True)
    pd.DataFrame([PERCEPTION["Perception"]["0"]]).to_parquet(root / "Perception" / "test-00000-of-00001.parquet")
    card = card_at("videommmu_perception", root)
    [s] = get_benchmark("videommmu").load_samples(card)
    assert s.load_error is None and s.answer_type == "option" and s.options == ["3, 3", "3, 4", "3, 5"]


def test_score_derives_videommmu_track_from_id_prefix(tmp_path):
    row = dict(PERCEPTION["Perception"]["0"], id="Perception/dev_Biology_3")
    lines = [{"doc": row, "response": "B"}, {"doc": row, "response": "A"}]  # two replies, one question
    path = tmp_path / "in.jsonl"
    path.write_text("".join(json.dumps(x) + "\n" for x in lines))
    metrics, rows = score_file("videommmu", path)
    assert [r["score"] for r in rows] == [1.0, 0.0]
    assert metrics["by_track"] == {"Perception": 0.5}
    assert (metrics["lines"], metrics["questions"], metrics["duplicate_questions"]) == (2, 1, 1)


def test_score_counts_duplicates_of_rows_without_an_id(tmp_path):
    """TempCompass's GitHub rows ({video_id: {dim: [{question, answer}]}}) carry no id: two
    replies to one row are still one question, and two different rows are two."""
    from rler_eval.benchmarks.tempcompass import flatten

    nested = {"1034419625": {"action": [
        {"question": "What is the man doing in the video?\nA. dunking a basketball\nB. dribbling a basketball",
         "answer": "A. dunking a basketball"},
        {"question": "Which activity is the man engaged in?\nA. passing a basketball\nB. dunking a basketball",
         "answer": "B. dunking a basketball"}]}}
    first, second = flatten(nested, None, "multi-choice.json")
    lines = [{"doc": first, "response": "A"}, {"doc": first, "response": "B"}, {"doc": second, "response": "B"}]
    path = tmp_path / "in.jsonl"
    path.write_text("".join(json.dumps(x) + "\n" for x in lines))
    metrics, rows = score_file("tempcompass_mc", path)
    assert [r["score"] for r in rows] == [1.0, 0.0, 1.0]
    assert (metrics["lines"], metrics["questions"], metrics["duplicate_questions"]) == (3, 2, 1)


# ---------------------------------------------------------------- MVBench


def mvbench_root(tmp_path, rows, subtask="object_existence", folder="clevrer/video_validation"):
    root = tmp_path / "mvbench"
    (root / "json").mkdir(parents=True)
    (root / "json" / f"{subtask}.json").write_text(json.dumps(rows))
    card = card_at("mvbench", root)
    card.args["subtasks"] = [subtask]
    return root, card


def test_mvbench_clip_moved_to_data0613(tmp_path):
    rows = [{"video": "video_10001.mp4", "question": "Is there a cube?", "candidates": ["yes", "no"],
             "answer": "yes"}]
    root, card = mvbench_root(tmp_path, rows)
    (root / "video" / "clevrer" / "video_validation").mkdir(parents=True)  # the folder, without this clip
    moved = video(root / "video" / "data0613" / "clevrer" / "video_validation" / "video_10001.mp4", seconds=1.0)
    [s] = get_benchmark("mvbench").load_samples(card)
    assert Path(s.video) == moved


def test_mvbench_bad_row_is_an_error_record_and_the_others_run(tmp_path):
    rows = [{"video": "a.mp4", "question": "q1", "candidates": ["yes", "no"], "answer": "no"},
            {"video": "b.mp4", "question": "q2", "candidates": ["yes", "no"]},  # no answer
            {"video": "c.mp4", "question": "q3", "candidates": ["yes", "no"], "answer": "yes"}]
    _, card = mvbench_root(tmp_path, rows)
    samples = get_benchmark("mvbench").load_samples(card)
    assert [s.load_error is None for s in samples] == [True, False, True]
    bad = samples[1]
    assert "object_existence.json row 1" in bad.load_error and "missing field 'answer'" in bad.load_error
    assert bad.id == "invalid-row:json/object_existence.json row 1"
    # the runner records it without touching a model (backend=None would fail if used)
    record = runner.evaluate_one(bad, card, get_benchmark("mvbench"), None, "greedy", {}, 0, False, None)
    assert record["status"] == "error" and "missing field 'answer'" in record["error"]
    with pytest.raises(InputError):
        runner.evaluate_one(bad, card, get_benchmark("mvbench"), None, "greedy", {}, 0, True, None)


def test_mvbench_score_without_task_type(tmp_path):
    doc = {"video": "a.mp4", "question": "q", "candidates": ["left", "right"], "answer": "right"}
    path = tmp_path / "in.jsonl"
    path.write_text(json.dumps({"doc": doc, "response": "(B) right"}) + "\n")
    metrics, rows = score_file("mvbench", path)
    assert rows[0]["score"] == 1.0 and metrics["by_task_type"] == {"unknown": 1.0}


def test_non_utf8_json_is_one_line_error(tmp_path):
    root, card = mvbench_root(tmp_path, [])
    (root / "json" / "object_existence.json").write_bytes(b'[{"video": "\xff\xfe"}]')
    with pytest.raises(InputError, match=r"object_existence.json: not UTF-8"):
        get_benchmark("mvbench").load_samples(card)


# ---------------------------------------------------------------- VSI-Bench


def vsi_row(i, pruned):
    return {"id": i, "dataset": "scannet", "scene_name": f"scene{i}", "question_type": "object_counting",
            "question": "How many chairs?", "options": None, "ground_truth": "3", "pruned": pruned}


def test_vsibench_debiased_filters_on_pruned_column(tmp_path):
    root = tmp_path / "vsibench"
    root.mkdir()
    pd.DataFrame([vsi_row(0, False), vsi_row(1, True), vsi_row(2, False)]).to_parquet(root / "test.parquet")
    samples = get_benchmark("vsibench").load_samples(card_at("vsibench_debiased", root))
    assert [s.id for s in samples] == ["0", "2"]
    assert len(get_benchmark("vsibench").load_samples(card_at("vsibench", root))) == 3


# ---------------------------------------------------------------- WildVideo


def test_wildvideo_flat_multi_rows_and_skipped_lang_or_turn(tmp_path):
    root = tmp_path / "wildvideo"
    root.mkdir()
    rows = [{"video_id": "v1", "question": "What is it?", "answer": "A cup.", "lang": "en", "turn_type": "multi"},
            {"video_id": "v2", "rounds": [{"round": 1, "question": "q", "answer": "a"}], "lang": "cn",
             "turn_type": "multi"},
            {"video_id": "v3", "question": "q", "answer": "a", "lang": "en", "turn_type": "single"}]
    (root / "multi_en.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    samples = get_benchmark("wildvideo").load_samples(card_at("wildvideo_multi_en", root))
    assert [(s.question, s.answer, s.load_error) for s in samples] == [("What is it?", "A cup.", None)]


def test_jsonl_line_with_broken_bytes_costs_one_sample(tmp_path):
    root = tmp_path / "wildvideo"
    root.mkdir()
    good = json.dumps({"video_id": "v1", "question": "q", "answer": "a"}).encode()
    (root / "single_en.jsonl").write_bytes(good + b"\n" + b'{"video_id": "\xff"}\n' + good + b"\n")
    samples = get_benchmark("wildvideo").load_samples(card_at("wildvideo_single_en", root))
    assert [s.load_error is None for s in samples] == [True, False, True]
    assert "single_en.jsonl:2: not UTF-8" in samples[1].load_error


# ---------------------------------------------------------------- LVBench


def test_lvbench_flat_mirror(tmp_path):
    root = tmp_path / "lvbench"
    (root / "videos").mkdir(parents=True)
    rows = [{"uid": 7, "key": "abc", "video_path": "abc.mp4", "question": "What?\n(A) x\n(B) y\n(C) z\n(D) w",
             "answer": "C", "question_type": ["reasoning"], "time_reference": "00:01-00:02"},
            {"video_path": "videos/def.mp4", "question": "Which?", "options": ["p", "q", "r", "s"], "answer": "A"}]
    pd.DataFrame(rows).to_parquet(root / "train-00000-of-00001.parquet")
    samples = get_benchmark("lvbench").load_samples(card_at("lvbench", root))
    assert [s.load_error for s in samples] == [None, None]
    assert samples[0].options == ["x", "y", "z", "w"] and samples[0].answer == "C"
    assert samples[1].options == ["p", "q", "r", "s"] and samples[1].category == {"question_type": ["unknown"]}
    assert samples[1].video == str(root / "videos" / "def.mp4")


# ---------------------------------------------------------------- scorers and protocol


def test_lmms_eval_scorer_reads_the_answer_is_c():
    s = Sample(id="1", task="t", question="q", answer="C", options=["a", "b", "c", "d"])
    reply = "The answer is C."
    assert get_benchmark("mvbench").score(s, reply)["score"] == 0.0  # official check_ans: wrong
    assert protocol.mvbench_lmms_score(s, reply)["score"] == 1.0
    assert get_benchmark("lvbench").score(s, reply)["score"] == 0.0  # official polish_answer: wrong
    assert protocol.lvbench_lmms_score(s, reply)["score"] == 1.0
    assert protocol.lmms_mcq_letter("B. it moves left") == "B"


def test_official_protocol_scores_the_raw_reply():
    card = card_at("mvbench")
    assert protocol.apply_protocol(card, "official", "rler@4") == "greedy" and card.prompt == "plain"
    bench = protocol.wrap(get_benchmark("mvbench"), card)
    s = Sample(id="1", task="mvbench", question="q", answer="B", options=["a", "b"])
    pred = Prediction(answer=None, candidates=[Candidate(text="B) b")], strategy="greedy")
    assert runner.score_prediction(bench, s, pred)["score"] == 1.0  # "(" + "B) b" -> "(b)": right
    assert bench.aggregate([{"score": 1.0, "category": {}}])["protocol"] == "official"
    with pytest.raises(InputError, match="--scorer lmms-eval applies to"):
        protocol.wrap(get_benchmark("videomme"), card_at("videomme"), "lmms-eval")


def test_judge_fallback_is_named(monkeypatch):
    for var in ("RLER_JUDGE_BASE_URL", "RLER_JUDGE_MODEL"):
        monkeypatch.delenv(var, raising=False)
    card = card_at("wildvideo_single_en")
    metrics = protocol.wrap(get_benchmark("wildvideo"), card).aggregate([], card)
    assert metrics["metric_name"] == "accuracy (rule fallback, not official)"
    assert "rule-based fallback" in protocol.judge_warning(card)
    assert protocol.judge_warning(card_at("mvbench")) is None


# ---------------------------------------------------------------- preflight and CLI


def test_set_typo_and_bad_model_exit_2_before_any_folder(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["run", "--model", "tiny-random", "--set", "delt=0.3", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert "unknown election setting 'delt' (known: " in err and len(err.splitlines()) == 1
    assert main(["run", "--model", "/nonexistent", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert "no such folder /nonexistent" in err and len(err.splitlines()) == 1
    assert not out.exists()


def test_score_names_the_cards_of_a_group(tmp_path, capsys):
    path = tmp_path / "in.jsonl"
    path.write_text("")
    assert main(["score", "--task", "longvideobench", "--input", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert "task group (longvideobench_val_i, longvideobench_val_v)" in err and len(err.splitlines()) == 1


def test_elect_refuses_fewer_candidates_than_k():
    records = [{"status": "ok", "prediction": {"candidates": [{"text": "A"}]}}]
    with pytest.raises(InputError, match="majority@4 needs 4 recorded candidates"):
        preflight.check_enough_candidates("majority@4", records)
    preflight.check_enough_candidates("greedy", records)


def test_run_config_records_provenance(tmp_path):
    (tmp_path / ".rler_fixture").write_text("")
    card = card_at("mvbench", tmp_path)
    config = runner.run_config(card, "tiny-random", "greedy", {}, 0, None, None)
    assert config["data_root"] == str(tmp_path.resolve()) and config["data_is_fixture"] is True
    assert set(config["versions"]) == {"torch", "transformers", "av", "trl"}
    assert config["git_commit"]


def test_tasks_prints_resolved_root_and_survives_a_closed_pipe(tmp_path):
    repo = Path(__file__).parent.parent
    env = {"RLER_DATA": str(tmp_path), "PATH": "/usr/bin:/bin", "PYTHONPATH": str(repo)}
    run = [sys.executable, "-c", "from rler_eval.cli import main; main(['tasks'])"]
    proc = subprocess.run(run, check=False, capture_output=True, text=True, cwd=repo, env=env)
    assert f"{tmp_path}/mvbench" in proc.stdout and "${RLER_DATA}" not in proc.stdout
    # `rler-eval tasks | head`: stdout is a pipe whose reader has gone
    closed = ("import os; r, w = os.pipe(); os.close(r); os.dup2(w, 1); "
              "from rler_eval.cli import main; raise SystemExit(main(['tasks']))")
    proc = subprocess.run([sys.executable, "-c", closed], check=False, capture_output=True, text=True, cwd=repo, env=env)
    assert proc.returncode == 0 and "Traceback" not in proc.stderr and "BrokenPipe" not in proc.stderr
