"""`rler-eval sweep` over recorded runs: tables, plot, ablations, and honest marking of
settings that need more candidates than a run recorded. No real model: the runs come from
the seeded protocol-following fake backend of test_election_e2e."""

from __future__ import annotations

import math

import pandas as pd
import pytest
import yaml

from test_election_e2e import ProtocolBackend


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    from rler_eval.runner import run
    from rler_eval.tasks import load_task

    root = tmp_path_factory.mktemp("sweep")
    card = {"name": "synth_sw", "benchmark": "synthvid", "data_root": str(root / "data"), "split": "test",
            "frames": {"n": 4, "max_pixels": 56 * 56}, "max_new_tokens": 24, "strategy": "greedy",
            "args": {"generate": True, "n": 6, "seed": 8}}
    (root / "c.yaml").write_text(yaml.safe_dump(card))
    card = load_task(str(root / "c.yaml"))
    _, full = run(card, "fake", "rler@8", {"refute": True}, out=root / "runs" / "full", backend=ProtocolBackend())
    _, adaptive = run(card, "fake", "rler", {}, out=root / "runs" / "adaptive", backend=ProtocolBackend())
    return root / "runs", full, adaptive


def test_sweep_writes_tables_plot_and_marks_short_runs(runs, tmp_path):
    from rler_eval.cli import main

    parent, full, adaptive = runs
    assert main(["sweep", str(parent), "--out", str(tmp_path)]) == 0
    for name in ("sweep.csv", "sweep.md", "ablation.csv", "ablation.md", "scores.csv", "sweep.png"):
        assert (tmp_path / name).stat().st_size > 0
    df = pd.read_csv(tmp_path / "sweep.csv")
    f = df[df["run"] == "full"].set_index("setting")
    assert (f["status"] == "ok").all()
    assert f.loc["majority@8", "candidates_per_question"] == 8
    assert f.loc["greedy", "candidates_per_question"] == 1
    assert all(0 <= a <= 1 for a in f["accuracy"])
    a = df[df["run"] == "adaptive"].set_index("setting")
    assert a.loc["majority@8", "status"].startswith("needs more candidates")
    assert math.isnan(a.loc["majority@8", "accuracy"])
    abl = pd.read_csv(tmp_path / "ablation.csv")
    assert {"rler -E", "rler -C", "rler -T", "rler -R", "rler@8 -E"} <= set(abl["setting"])
    full_abl = abl[abl["run"] == "full"].set_index("setting")
    assert full_abl.loc["rler@8 +refute", "status"] == "ok"  # the run recorded its own checks
    assert full_abl.loc["rler@8 +refute", "model_calls_per_question"] > full_abl.loc["rler@8 none", "model_calls_per_question"]
    scores = pd.read_csv(tmp_path / "scores.csv")
    assert set(scores["score"]) == {"E", "C", "T", "R"} and scores["constant_share"].between(0, 1).all()


def test_sweep_rejects_missing_folder(tmp_path):
    from rler_eval.sweep import find_runs
    from rler_eval.errors import InputError

    with pytest.raises(InputError):
        find_runs([str(tmp_path / "nope")])
    with pytest.raises(InputError, match="no run folders"):
        find_runs([str(tmp_path)])
