"""WildVideo: official-schema fixture (single/multi, EN/CN), multi-turn context with ground-truth
answers, last turn scored, the rule-based fallback stated in the metrics, `score`, end to end.
The judge path against a real server is in tests/test_bench_judge.py."""

import json

import pytest

from rler_eval.benchmarks import get_benchmark, judge
from rler_eval.errors import DataMissingError, InputError
from rler_eval.scoring import score_file
from tests.fixtures import card_at as card
from tests.fixtures import wildvideo as fx

bench = get_benchmark("wildvideo")
TASKS = ["wildvideo_single_en", "wildvideo_multi_en", "wildvideo_single_cn", "wildvideo_multi_cn"]


pytestmark = pytest.mark.usefixtures("no_judge")


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("wv")
    fx.write(root)
    return root / "wildvideo"




def test_fixture_reads_every_config(data):
    single = bench.load_samples(card("wildvideo_single_en", data))
    assert [(s.question, s.answer, s.context) for s in single][0] == ("What is the person holding?", "A red cup.", [])
    assert single[0].video.endswith("video/ego_0001.mp4") and single[0].category == {"type": "Object"}
    multi = bench.load_samples(card("wildvideo_multi_en", data))
    m = multi[0]
    assert m.question == "Who picks it up?" and m.answer == "The man in the blue shirt."
    assert [(t["question"], t["answer"]) for t in m.context] == [("What is on the table?", "A red cup."),
                                                              ("What colour is it?", "Red.")]
    assert m.category == {"type": "Contextual Ellipsis"}  # the last turn's type
    assert [len(s.context) for s in bench.load_samples(card("wildvideo_multi_cn", data))] == [1]
    assert bench.load_samples(card("wildvideo_single_cn", data))[1].answer == "向右移动。"


def test_rounds_are_ordered_by_round_number(data):
    doc = fx.multi(fx.MULTI_EN, "en")[0]
    doc["rounds"] = list(reversed(doc["rounds"]))
    s = bench.doc_to_sample(doc, card("wildvideo_multi_en"))
    assert s.question == "Who picks it up?" and s.context[0]["question"] == "What is on the table?"


def test_multi_turn_prompt_gives_history_with_ground_truth(data):
    s = bench.load_samples(card("wildvideo_multi_en", data))[0]
    text = bench.build_prompt(s, None, card("wildvideo_multi_en")).text()
    assert "[Turn 1] Q: What is on the table?\n[Turn 1] A: A red cup." in text
    assert "[Turn 2] A: Red." in text and "Current question (Turn 3): Who picks it up?" in text
    assert "The man in the blue shirt" not in text  # the scored turn's answer is not shown
    cn = bench.load_samples(card("wildvideo_multi_cn", data))[0]
    assert "[轮次 1] 答：一个红色的杯子。" in bench.build_prompt(cn, None, card("wildvideo_multi_cn")).text()


def test_missing_data_and_bad_rows(tmp_path):
    with pytest.raises(DataMissingError, match="huggingface-cli download yangsongyuan18/wildvideo"):
        bench.load_samples(card("wildvideo_single_en", tmp_path / "nowhere"))
    flat = bench.doc_to_sample({"video_id": "v", "question": "q", "answer": "a"}, card("wildvideo_multi_en"))
    assert (flat.question, flat.answer, flat.context) == ("q", "a", [])  # no rounds: the flat fields, as lmms-eval
    with pytest.raises(InputError, match="doc 0: missing field 'question'"):
        bench.doc_to_sample({"video_id": "v", "answer": "a"}, card("wildvideo_multi_en"))
    with pytest.raises(InputError, match=r"rounds\[1\]: missing field 'answer'"):
        bench.doc_to_sample({"video_id": "v", "rounds": [{"round": 1, "question": "q", "answer": "a"},
                                                         {"round": 2, "question": "q2"}]}, card("wildvideo_multi_en"))


def test_fallback_scores_and_says_so(data):
    s = bench.load_samples(card("wildvideo_single_en", data))[0]  # "A red cup."
    cases = {"A red cup.": 1.0, "a red cup": 1.0, "The person is holding a red cup.": 1.0,
             "<answer>red cup</answer>": 1.0, "<think>Frame 2 shows a cup</think><frames>2</frames>"
                                            "<answer>A red cup</answer>": 1.0,
             "a blue cup": 0.5, "nothing": 0.0, "": 0.0}
    for reply, want in cases.items():
        out = bench.score(s, reply)
        assert out["score"] == pytest.approx(want), reply
        assert out["extracted"]["by"] == judge.FALLBACK
    cn = bench.load_samples(card("wildvideo_single_cn", data))[0]  # 一个红色的杯子。
    assert bench.score(cn, "一个红色的杯子")["score"] == 1.0
    assert 0.0 < bench.score(cn, "一个杯子")["score"] < 1.0 and bench.score(cn, "没有")["score"] == 0.0
    binary = card("wildvideo_single_en")
    binary.args["judge_mode"] = "binary"
    assert bench.score(s, "a blue cup", binary)["score"] == 1.0 and bench.score(s, "blue", binary)["score"] == 0.0


def test_aggregate_per_type_and_judge_statement(data):
    ss = bench.load_samples(card("wildvideo_single_en", data))
    rows = [{"id": s.id, "status": "ok", "category": s.category, **bench.score(s, r)}
            for s, r in zip(ss, ["A red cup.", "left"])]
    m = bench.aggregate(rows, card("wildvideo_single_en"))
    assert m["accuracy"] == 0.5 and m["by_type"] == {"Action": 0.0, "Object": 1.0}
    assert m["judge"] == judge.FALLBACK and m["judged_by"] == {judge.FALLBACK: 2} and m["judge_mode"] == "score"


def test_score_command_on_each_task(tmp_path):
    docs = {"wildvideo_single_en": fx.single(fx.SINGLE_EN, "en"), "wildvideo_single_cn": fx.single(fx.SINGLE_CN, "cn"),
            "wildvideo_multi_en": fx.multi(fx.MULTI_EN, "en"), "wildvideo_multi_cn": fx.multi(fx.MULTI_CN, "cn")}
    replies = {"wildvideo_single_en": ["a red cup", "It moves up."], "wildvideo_single_cn": ["红色的杯子", "向右移动"],
               "wildvideo_multi_en": ["The man in the blue shirt", "to the right"],
               "wildvideo_multi_cn": ["穿蓝色衬衫的男人"]}
    for name in TASKS:
        path = tmp_path / f"{name}.jsonl"
        path.write_text("".join(json.dumps({"doc": d, "response": r}, ensure_ascii=False) + "\n"
                                for d, r in zip(docs[name], replies[name])))
        metrics, rows = score_file(name, path)
        assert len(rows) == len(replies[name]) and metrics["judge"] == judge.FALLBACK, name
        assert rows[0]["score"] > 0.5, name  # the first reply is right in every task
        assert metrics["config"] == name.split("_", 1)[1]
    assert rows[0]["extracted"]["answer"] == "穿蓝色衬衫的男人"


@pytest.fixture(scope="module")
def backend():
    from rler_eval.models import load_backend

    return load_backend("tiny-random")


@pytest.mark.slow
@pytest.mark.parametrize("name", TASKS)
def test_tiny_model_end_to_end(name, data, backend, tmp_path):
    from rler_eval import runner

    c = card(name, data)
    c.frames.n, c.frames.max_pixels, c.max_new_tokens = 4, 56 * 56, 24
    metrics, out = runner.run(c, "tiny-random", "greedy", limit=2, out=tmp_path / "run", backend=backend)
    records = runner.load_records(out)
    assert len(records) == min(2, len(bench.load_samples(c)))
    assert all(r["status"] == "ok" for r in records), [r.get("error") for r in records]
    assert 0.0 <= metrics["accuracy"] <= 1.0 and "by_type" in metrics
    assert metrics["judge"] == judge.FALLBACK  # no judge configured here


@pytest.mark.slow
def test_cli_run_on_the_fixture(data, tmp_path):
    """`rler-eval run --model tiny-random --limit 2` on a multi-turn task, as a user runs it."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    env = {k: v for k, v in os.environ.items() if k not in ("RLER_JUDGE_BASE_URL", "RLER_JUDGE_MODEL")}
    env.update(RLER_DATA=str(data.parent), OMP_NUM_THREADS="1")
    out = tmp_path / "run"
    proc = subprocess.run([str(Path(sys.executable).parent / "rler-eval"), "run", "--task", "wildvideo_multi_en",
                           "--model", "tiny-random", "--limit", "2", "--frames", "4", "--max-new-tokens", "16",
                           "--out", str(out)], capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["n"] == 2 and metrics["errors"] == 0 and metrics["judge"] == judge.FALLBACK
    records = [json.loads(line) for line in (out / "samples.jsonl").read_text().splitlines()]
    assert len(records[0]["sample"]["context"]) == 2  # the earlier turns travel with the record
