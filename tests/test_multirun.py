"""Several tasks in one run: group expansion, one model load, one run folder per task, a summary."""

import json
from pathlib import Path

import pytest

from rler_eval import multirun, runner
from rler_eval.cli import main
from rler_eval.errors import TaskError
from rler_eval.tasks import list_tasks, load_task
from tests.fixtures import write_all

REPO = Path(__file__).resolve().parent.parent
RLER_TINY = REPO / "checkpoints" / "rler-tiny"


def test_groups_expand_to_their_cards():
    groups = multirun.load_groups()
    assert multirun.expand_tasks("tempcompass") == ["tempcompass_mc", "tempcompass_yes_no",
                                                    "tempcompass_caption_matching", "tempcompass_captioning"]
    assert multirun.expand_tasks("longvideobench") == ["longvideobench_val_i", "longvideobench_val_v"]
    assert multirun.expand_tasks("videommmu") == ["videommmu_perception", "videommmu_comprehension",
                                                  "videommmu_adaptation"]
    assert len(multirun.expand_tasks("wildvideo")) == 4
    for name in ("tempcompass", "longvideobench", "videommmu", "wildvideo"):
        for member in groups[name]:
            assert load_task(member).name == member  # every member is a real card


def test_all_is_every_evaluation_card():
    everything = multirun.expand_tasks("all")
    assert "synthvid_train" not in everything
    assert set(everything) == {n for n in list_tasks() if n != "synthvid_train"}


def test_lists_keep_order_drop_duplicates_and_nest_groups():
    groups = {"a": ["x", "b"], "b": ["y", "x"], "self": ["self", "z"]}
    assert multirun.expand_tasks("a,y,w", groups) == ["x", "y", "w"]
    assert multirun.expand_tasks("self", groups) == ["self", "z"]  # a member named like its group is a card
    with pytest.raises(TaskError, match="empty task name"):
        multirun.expand_tasks("a,,b", groups)
    assert multirun.is_multi("mvbench,videomme") and multirun.is_multi("tempcompass")
    assert not multirun.is_multi("mvbench")


def test_unknown_task_fails_before_the_model_loads(monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(runner, "load_model", lambda *a, **k: pytest.fail("model loaded for a bad task list"))
    assert main(["run", "--task", "mvbench,nosuchtask", "--out", str(tmp_path)]) == 2
    assert "unknown task 'nosuchtask'" in capsys.readouterr().err


def test_conflicting_card_model_args_are_refused():
    a, b = load_task("mvbench"), load_task("lvbench")
    a.args["model"], b.args["model"] = {"max_pixels": 50176}, "max_pixels=100352"
    with pytest.raises(TaskError, match="max_pixels"):
        multirun.merged_card_model_args([a, b])
    b.args["model"] = {"max_pixels": 50176, "dtype": "float32"}
    assert multirun.merged_card_model_args([a, b]) == {"max_pixels": 50176, "dtype": "float32"}


def count_loads(monkeypatch) -> list:
    loads, real = [], runner.load_model

    def counting(spec, model_args=None):
        loads.append((spec, model_args))
        return real(spec, model_args)

    monkeypatch.setattr(runner, "load_model", counting)
    return loads


@pytest.mark.slow
def test_tempcompass_group_runs_all_four_formats_with_one_load(tmp_path, monkeypatch, no_judge):
    data = tmp_path / "data"
    write_all(data, ["tempcompass"])
    monkeypatch.setenv("RLER_DATA", str(data))
    loads = count_loads(monkeypatch)
    out = tmp_path / "runs"
    model = str(RLER_TINY) if (RLER_TINY / "config.json").exists() else "tiny-random"
    rc = main(["run", "--task", "tempcompass", "--model", model, "--limit", "2", "--out", str(out),
               "--model-args", "dtype=float32,batch_size=2"])
    assert rc == 0
    assert loads == [(model, {"dtype": "float32", "batch_size": 2})]
    summary = json.loads((out / "summary.json").read_text())
    names = ["tempcompass_mc", "tempcompass_yes_no", "tempcompass_caption_matching", "tempcompass_captioning"]
    assert [r["task"] for r in summary["tasks"]] == names
    for row in summary["tasks"]:
        assert row["status"] == "ok" and row["n"] == 2
        metrics = json.loads((out / row["task"] / "metrics.json").read_text())
        assert metrics["n"] == 2 and metrics["accuracy"] == row["accuracy"]
        config = json.loads((out / row["task"] / "config.json").read_text())
        assert config["task"] == row["task"] and config["model_args"] == {"dtype": "float32", "batch_size": 2}
        lines = (out / row["task"] / "samples.jsonl").read_text().splitlines()
        assert len(lines) == 2
    assert "tempcompass_captioning" in (out / "summary.md").read_text()

    # the same command again resumes every folder: nothing is recomputed
    before = {n: (out / n / "samples.jsonl").read_bytes() for n in names}
    assert main(["run", "--task", "tempcompass", "--model", model, "--limit", "2", "--out", str(out),
                 "--model-args", "dtype=float32,batch_size=2"]) == 0
    assert {n: (out / n / "samples.jsonl").read_bytes() for n in names} == before


@pytest.mark.slow
def test_a_failing_task_does_not_stop_the_others(tmp_path, monkeypatch):
    data = tmp_path / "data"
    write_all(data, ["tempcompass"])  # no MVBench data
    monkeypatch.setenv("RLER_DATA", str(data))
    out = tmp_path / "runs"
    rc = main(["run", "--task", "mvbench,tempcompass_mc", "--model", "tiny-random", "--limit", "1",
               "--out", str(out)])
    assert rc == 1
    rows = {r["task"]: r for r in json.loads((out / "summary.json").read_text())["tasks"]}
    assert rows["mvbench"]["status"] == "error" and "mvbench" in rows["mvbench"]["error"]
    assert rows["tempcompass_mc"]["status"] == "ok"
    assert json.loads((out / "tempcompass_mc" / "metrics.json").read_text())["n"] == 1
