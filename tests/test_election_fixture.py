"""What the election does on real candidate sets: a committed fixture of recorded rler@8
runs of the bundled rler-tiny on synthvid (tests/fixtures/election, written by
`make election-fixture`), replayed with no model.

These tests quote the figures, win or lose; none assumes that RLER wins. They check that
the figures the README quotes are what the code computes on the fixture, that replay is
exact on real data, and the score properties issue 10 asks for on real outputs."""

from __future__ import annotations

import gzip
import importlib.util
import json
import shutil
from pathlib import Path

import pytest

from rler_eval import election
from rler_eval.election.sources import ReplaySource

FIXTURE = Path(__file__).resolve().parent / "fixtures" / "election"
REPO = Path(__file__).resolve().parents[1]


def results_module():
    spec = importlib.util.spec_from_file_location("election_results", REPO / "bench" / "election_results.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def fixture_run(tmp_path_factory):
    """The fixture as a run folder (config.json + samples.jsonl)."""
    run = tmp_path_factory.mktemp("fixture") / "rler8"
    run.mkdir()
    shutil.copy(FIXTURE / "config.json", run / "config.json")
    with gzip.open(FIXTURE / "samples.jsonl.gz", "rt", encoding="utf-8") as fh:
        (run / "samples.jsonl").write_text(fh.read())
    return run


@pytest.fixture(scope="module")
def records(fixture_run):
    return [json.loads(x) for x in (fixture_run / "samples.jsonl").read_text().splitlines()]


def test_fixture_is_a_real_recorded_run(records):
    assert len(records) >= 200
    assert all(r["prediction"]["strategy"] == "rler@8" and len(r["prediction"]["candidates"]) == 8 for r in records)
    assert all(c["token_logprobs"] for r in records for c in r["prediction"]["candidates"])


def test_replaying_the_recorded_strategy_reproduces_every_answer(records):
    for r in records:
        source = ReplaySource.from_prediction(r["prediction"])
        sample = _sample(r)
        pred = election.answer("rler@8", sample, source, r["n_frames"], {"refute": True})  # as recorded
        assert pred.answer == r["prediction"]["answer"], r["id"]
        assert pred.to_dict()["refutation"] == r["prediction"]["refutation"], r["id"]


def _sample(r):
    from rler_eval.replay import sample_from_dict

    return sample_from_dict(r["sample"])


def test_strategy_figures_are_the_quoted_ones(fixture_run, records, capsys):
    mod = results_module()
    config = json.loads((fixture_run / "config.json").read_text())
    got = mod.summarise(config, records)
    quoted = json.loads((FIXTURE / "summary.json").read_text())
    assert got["accuracy"] == quoted["accuracy"]
    assert got["refutation"] == quoted["refutation"]
    acc = got["accuracy"]
    with capsys.disabled():
        print(f"\nelection on {got['questions']} recorded rler-tiny candidate sets:")
        for k, v in acc.items():
            print(f"  {k:38s} {v:.4f}")
        d = acc["rler@8, no refutation"] - acc["majority@8"]
        print(f"  rler@8 vs majority@8: {d:+.4f} ({'win' if d > 0 else 'loss' if d < 0 else 'tie'})")


def test_every_recorded_check_has_a_verdict(records):
    checks = [c for r in records for c in (r["prediction"]["refutation"] or {}).get("checks", [])]
    assert checks
    rate = sum(c["verdict"] in ("yes", "no") for c in checks) / len(checks)
    assert rate >= 0.95


def test_real_candidate_sets_lone_answers_get_no_E_and_T_separates(records):
    lone_E, T_values = [], set()
    for r in records:
        pred = election.answer("rler@8", _sample(r), ReplaySource.from_prediction(r["prediction"]), r["n_frames"],
                               {"refute": False})
        labels = [s["cluster"] for s in pred.scores]
        for s in pred.scores:
            T_values.add(s["T"])
            if s["cluster"] is not None and labels.count(s["cluster"]) == 1:
                lone_E.append(s["E"])
    assert lone_E and max(lone_E) == 0.0
    assert len(T_values) > 1  # real outputs do not all score alike


def headroom_module():
    spec = importlib.util.spec_from_file_location("headroom_tiny", REPO / "bench" / "headroom_tiny.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_headroom_classes_follow_the_greedy_candidate_and_the_sampled_majority():
    classify = headroom_module().classify
    assert classify([False] + [True] * 4 + [False] * 3) == "sharpenable"
    assert classify([False] + [True] * 3 + [False] * 4) == "out of reach"
    assert classify([True] + [True] * 3 + [False] * 4) == "fragile"
    assert classify([True] + [True] * 4 + [False] * 3) == "kept"


def test_headroom_on_real_candidate_sets_counts_every_question_once(records):
    """bench/headroom_tiny.py: its greedy figure is the recorded temperature-0 candidate's, which
    is the fixture's quoted greedy accuracy, and the four classes partition the questions."""
    by = headroom_module().tally(records)["all"]
    quoted = json.loads((FIXTURE / "summary.json").read_text())["accuracy"]["greedy"]
    assert round(by["greedy"] / by["n"], 4) == quoted
    assert by["sharpenable"] + by["fragile"] + by["out of reach"] + by["kept"] == by["n"] == len(records)
    assert by["greedy"] == by["kept"] + by["fragile"]
