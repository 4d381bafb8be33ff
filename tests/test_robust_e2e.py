"""Issue 14's "done when", end to end through the CLI with the tiny random model.

A synthvid set of 7 good rows plus 5 hostile ones (a path to /etc/passwd, a real video
outside the data root, a row with no answer, a FIFO named .mp4, a 1 MB question) runs to
the end; then a garbage line, another RLER_DATA and a live second run are each handled.
"""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parent.parent
BAD = ("bad-passwd", "bad-outside", "bad-noanswer", "bad-fifo", "bad-huge")
# The no-answer row (a row synthvid cannot turn into a Sample) has its own test: it must
# become an error record under its own id while the other rows run.


def hostile_set(tmp_path, with_noanswer: bool):
    from rler_eval.benchmarks import synthvid

    data = tmp_path / "data"
    root = data / "sv"
    synthvid.generate(root, 7, seed=5, progress=False)
    ann = root / "annotations.jsonl"
    rows = [json.loads(line) for line in ann.read_text().splitlines()]
    outside = tmp_path / "elsewhere" / "clip.mp4"
    outside.parent.mkdir()
    shutil.copy(root / rows[0]["video"], outside)
    os.mkfifo(root / "videos" / "stuck.mp4")
    base = rows[0]
    hostile = [dict(base, id="bad-passwd", video="../../../../../../etc/passwd"),
               dict(base, id="bad-outside", video=str(outside)),
               dict(base, id="bad-fifo", video="videos/stuck.mp4"),
               dict(base, id="bad-huge", question="How many words? " + "word " * 210_000)]
    if with_noanswer:
        hostile.insert(2, {k: v for k, v in dict(base, id="bad-noanswer").items() if k != "answer"})
    with open(ann, "a") as fh:
        for row in hostile:
            fh.write(json.dumps(row) + "\n")
    card = {"name": "sv_hostile", "benchmark": "synthvid", "data_root": "${RLER_DATA}/sv",
            "frames": {"n": 4, "max_pixels": 56 * 56}, "max_new_tokens": 16, "strategy": "greedy"}
    path = tmp_path / "sv_hostile.yaml"
    path.write_text(yaml.safe_dump(card))
    return path, data


def rler(*args, data: Path):
    env = {**os.environ, "PYTHONPATH": str(REPO), "RLER_DATA": str(data)}
    return subprocess.run([sys.executable, "-m", "rler_eval.cli", "run", *args], capture_output=True, text=True,
                          cwd=REPO, env=env, timeout=900)


def test_row_without_answer_stops_nothing(tmp_path):
    card, data = hostile_set(tmp_path, with_noanswer=True)
    r = rler("--task", str(card), "--model", "tiny-random", "--out", str(tmp_path / "run"), data=data)
    assert r.returncode == 0, r.stderr[-3000:]
    recs = {json.loads(x)["id"]: json.loads(x) for x in (tmp_path / "run" / "samples.jsonl").read_text().splitlines()}
    assert len(recs) == 12 and recs["bad-noanswer"]["status"] == "error" and "answer" in recs["bad-noanswer"]["error"]
    assert sum(r["status"] == "ok" for r in recs.values()) == 7


def test_hostile_set_runs_to_the_end_and_the_folder_defends_itself(tmp_path):
    card, data = hostile_set(tmp_path, with_noanswer=False)
    bad = [b for b in BAD if b != "bad-noanswer"]
    out = tmp_path / "run"
    common = ("--task", str(card), "--model", "tiny-random", "--out", str(out))
    r = rler(*common, data=data)
    assert r.returncode == 0, r.stderr[-3000:]
    lines = (out / "samples.jsonl").read_bytes().splitlines(keepends=True)
    recs = {json.loads(x)["id"]: json.loads(x) for x in lines}
    assert len(recs) == 7 + len(bad)
    for b in bad:
        assert recs[b]["status"] == "error" and recs[b]["score"] == 0.0, (b, recs[b])
    assert "outside the data root" in recs["bad-passwd"]["error"]
    assert "outside the data root" in recs["bad-outside"]["error"]
    assert "FIFO" in recs["bad-fifo"]["error"]
    assert "exceeds the budget" in recs["bad-huge"]["error"]
    good = [v for k, v in recs.items() if k not in BAD]
    assert len(good) == 7 and all(g["status"] == "ok" and g["score"] in (0.0, 1.0) for g in good)
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["n"] == 7 + len(bad) and metrics["errors"] == len(bad)

    # a garbage line in the middle: resume keeps every record byte-identical, recomputes nothing
    before = b"".join(lines)
    damaged = lines[:6] + [b"\x00garbage {not json\n"] + lines[6:]
    (out / "samples.jsonl").write_bytes(b"".join(damaged))
    r = rler(*common, data=data)
    assert r.returncode == 0, r.stderr[-3000:]
    assert (out / "samples.jsonl").read_bytes() == before
    assert json.loads((out / "samples.corrupt.jsonl").read_text())["line"] == 7
    assert "unreadable line" in r.stderr

    # another RLER_DATA: refused, naming the key
    other = tmp_path / "other-data"
    shutil.copytree(data, other, ignore=shutil.ignore_patterns("stuck.mp4"))
    r = rler(*common, data=other)
    assert r.returncode == 2 and "data_root" in r.stderr and "new --out" in r.stderr
    assert (out / "samples.jsonl").read_bytes() == before

    # a second run on a live run folder: refused, naming the holder
    code = ("import time; from rler_eval.records import RunLock\n"
            f"with RunLock({str(out)!r}):\n    print('held', flush=True); time.sleep(300)\n")
    holder = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True,
                              env={**os.environ, "PYTHONPATH": str(REPO)})
    try:
        assert holder.stdout.readline().strip() == "held"
        r = rler(*common, data=data)
        assert r.returncode == 2 and f"pid {holder.pid}" in r.stderr
        assert len(r.stderr.strip().splitlines()) == 1
    finally:
        holder.kill()
        holder.wait()
