"""`rler-eval report` on real runs of the bundled rler-tiny: rows are model × strategy, every cell
shows n and a 95 % interval, the mean covers only shared tasks, duplicates and fixture data
are named, and published figures appear as reported rows with their sources."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd
import pytest
import yaml

from rler_eval import stats

REPO = Path(__file__).resolve().parents[1]
MODEL = REPO / "checkpoints" / "rler-tiny"


def card(root: Path, name: str, n: int, seed: int) -> Path:
    spec = {"name": name, "benchmark": "synthvid", "data_root": str(root / "data" / name), "split": "test",
            "frames": {"n": 8, "max_pixels": 12544}, "prompt": "evidence", "max_new_tokens": 128,
            "strategy": "greedy", "args": {"generate": True, "n": n, "seed": seed}}
    root.mkdir(parents=True, exist_ok=True)
    (root / f"{name}.yaml").write_text(yaml.safe_dump(spec))
    return root / f"{name}.yaml"


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """synth_a: rler@3 on 6 questions and again on 2 (a duplicate of one cell), and a majority@3
    replay of the 6; synth_b (its card under a 'fixtures' folder): rler@3 on 3 questions."""
    from rler_eval.replay import replay_run
    from rler_eval.models import load_backend
    from rler_eval.runner import run
    from rler_eval.tasks import load_task

    root = tmp_path_factory.mktemp("report")
    backend = load_backend(str(MODEL))
    a = load_task(str(card(root, "synth_a", 6, 3)))
    b = load_task(str(card(root / "fixtures", "synth_b", 3, 4)))
    out = root / "runs"
    run(a, str(MODEL), "rler@3", out=out / "a6", backend=backend)
    run(a, str(MODEL), "rler@3", limit=2, out=out / "a2", backend=backend)
    run(b, str(MODEL), "rler@3", out=out / "b3", backend=backend)
    replay_run(out / "a6", "majority@3", out=out / "a6_majority3")
    return out


def scores(run: Path) -> list[float]:
    return [float(json.loads(x)["score"] or 0) for x in sorted((run / "samples.jsonl").read_text().splitlines())]


def test_leaderboard_rows_cells_and_mean(runs, tmp_path):
    from rler_eval.report import REPORTED, leaderboard, write

    ref = tmp_path / "ref.yaml"
    ref.write_text(yaml.safe_dump([
        {"model": "Paper-7B", "benchmark": "Synth A", "task": "synth_a", "accuracy": 61.5, "source": "a paper, table 2"},
        {"model": "Paper-7B", "benchmark": "Other", "task": None, "accuracy": 40.0, "source": "a paper, table 3"}]))
    board = leaderboard([runs], reference=ref)
    keys = [(r["model"], r["strategy"]) for r in board.rows]
    assert sorted(keys) == [("checkpoints/rler-tiny", "majority@3"), ("checkpoints/rler-tiny", "rler@3")]
    assert board.tasks == ["synth_a", "synth_b"] and board.shared == ["synth_a"]

    rler = next(r for r in board.rows if r["strategy"] == "rler@3")
    a = rler["cells"]["synth_a"]
    assert a.run.name == "a6" and a.n == 6  # the larger of the two runs of this cell ...
    assert any("a2" in n and "n=2" in n and "left out" in n for n in board.notes)  # ... and the other is named
    expected = stats.bootstrap_ci(scores(runs / "a6"))
    assert (a.interval.value, a.interval.low, a.interval.high) == (expected.value, expected.low, expected.high)
    assert a.interval.low <= a.interval.value <= a.interval.high and (a.interval.high - a.interval.low > 0.1 or a.interval.value in (0, 1))
    assert not a.fixture and rler["cells"]["synth_b"].fixture and rler["cells"]["synth_b"].n == 3
    # the mean covers synth_a only, the one task both rows have
    assert rler["mean"].value == pytest.approx(a.interval.value)
    assert any("left out of the mean: synth_b" in n for n in board.notes)

    paths = write(board, tmp_path / "lb")
    md = (tmp_path / "lb.md").read_text()
    assert "('" not in md  # no Python tuples as labels
    assert "mean (1 shared tasks)" in md and "n=6" in md and "n=3 ᶠ" in md
    assert f"{100 * a.interval.value:.1f} [{100 * a.interval.low:.1f}, {100 * a.interval.high:.1f}] n=6" in md
    assert REPORTED in md and "61.5" in md and "a paper, table 2" in md and "a paper, table 3" in md
    assert "rler-eval show" in md  # the runs link to (or tell how to make) the evidence viewer

    csv = pd.read_csv(tmp_path / "lb.csv")
    row = csv[(csv["kind"] == "measured") & (csv["task"] == "synth_a") & (csv["strategy"] == "rler@3")].iloc[0]
    assert row["n"] == 6 and row["ci95_low"] <= row["accuracy"] <= row["ci95_high"]
    assert set(csv["kind"]) == {"measured", REPORTED}
    assert paths[2].stat().st_size > 5000  # the PNG


def test_report_links_an_existing_viewer_and_frames_column(runs, tmp_path):
    from rler_eval.cli import main

    assert main(["show", str(runs / "b3")]) == 0
    assert main(["report", str(runs / "a6"), str(runs / "b3"), "--out", str(tmp_path / "lb"),
                 "--reference", "none"]) == 0
    md = (tmp_path / "lb.md").read_text()
    link = Path(md.split("[viewer](")[1].split(")")[0])
    assert (tmp_path / link).resolve() == (runs / "b3" / "show" / "index.html").resolve()
    table = md.split("\n\n")[2]
    assert table.count("checkpoints/rler-tiny") == 1  # one row for one model × strategy ...
    assert "|rler@3|8|" in table.replace(" ", "")  # ... with frames as a column


def test_frame_counts_split_rows_only_for_the_same_task(runs, tmp_path):
    import shutil

    from rler_eval.report import leaderboard

    twin = tmp_path / "a6_f16"
    shutil.copytree(runs / "a6", twin)
    m = json.loads((twin / "metrics.json").read_text())
    m["run"]["frames"] = 16  # the same task at another frame count: a different setting
    (twin / "metrics.json").write_text(json.dumps(m))
    board = leaderboard([runs / "a6", runs / "b3", twin], reference=None)
    frames = sorted(r["frames_text"] for r in board.rows)
    assert frames == ["16", "8"] and not any("left out" in n and "a6_f16" in n for n in board.notes)


def test_bad_reference_file_names_the_entry(tmp_path, runs):
    from rler_eval.errors import InputError
    from rler_eval.report import leaderboard

    bad = tmp_path / "ref.yaml"
    bad.write_text(yaml.safe_dump([{"model": "X", "benchmark": "Y", "accuracy": 1.0}]))
    with pytest.raises(InputError, match=r"entry 1 lacks source"):
        leaderboard([runs / "a6"], reference=bad)
    assert not math.isnan(leaderboard([runs / "a6"], reference=None).rows[0]["mean"].value)
