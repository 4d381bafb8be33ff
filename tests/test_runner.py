"""The runner end to end on synthvid with the tiny random model: resume, errors, shards, report."""

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from rler_eval import runner
from rler_eval.errors import VideoError
from rler_eval.tasks import load_task

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent / "rler-eval"
N = 30


@pytest.fixture(scope="module")
def card_path(tmp_path_factory):
    """A small synthvid card with its own data root, generated on first use."""
    root = tmp_path_factory.mktemp("synth")
    card = {"name": "synth_small", "benchmark": "synthvid", "data_root": str(root / "data"), "split": "test",
            "frames": {"n": 4, "max_pixels": 56 * 56}, "max_new_tokens": 24, "strategy": "greedy",
            "args": {"generate": True, "n": N, "seed": 3}}
    path = root / "synth_small.yaml"
    path.write_text(yaml.safe_dump(card))
    return path


def run_cli(*args, **kw):
    return subprocess.run([str(BIN), "run", *args], capture_output=True, text=True, cwd=REPO, timeout=600, **kw)


def strip_timing(metrics: dict) -> dict:
    return {k: v for k, v in metrics.items() if k != "timing"}


def read_lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_sigkill_then_resume_equals_uninterrupted_run(card_path, tmp_path):
    full = tmp_path / "full"
    out = run_cli("--task", str(card_path), "--model", "tiny-random", "--out", str(full))
    assert out.returncode == 0, out.stderr

    killed = tmp_path / "killed"
    proc = subprocess.Popen([str(BIN), "run", "--task", str(card_path), "--model", "tiny-random",
                             "--out", str(killed)], cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    records = killed / "samples.jsonl"
    deadline = time.time() + 300
    while time.time() < deadline:
        if records.exists() and records.read_text().count("\n") >= 5:
            break
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    n_before = records.read_text().count("\n")
    assert 5 <= n_before < N, "the run must be killed mid-way for this test to mean anything"

    out = run_cli("--task", str(card_path), "--model", "tiny-random", "--out", str(killed))
    assert out.returncode == 0, out.stderr
    lines = read_lines(records)
    assert len(lines) == N and len({r["id"] for r in lines}) == N
    m_full = json.loads((full / "metrics.json").read_text())
    m_resumed = json.loads((killed / "metrics.json").read_text())
    assert strip_timing(m_full) == strip_timing(m_resumed)
    answers = {r["id"]: r["answer"] for r in read_lines(full / "samples.jsonl")}
    assert answers == {r["id"]: r["answer"] for r in lines}

    # a third invocation recomputes nothing: the file is untouched
    before = records.read_bytes()
    out = run_cli("--task", str(card_path), "--model", "tiny-random", "--out", str(killed))
    assert out.returncode == 0 and records.read_bytes() == before


def test_record_holds_the_audit_fields(card_path, tmp_path):
    card = load_task(str(card_path))
    metrics, out = runner.run(card, "tiny-random", "greedy", limit=3, out=tmp_path / "r")
    rec = read_lines(out / "samples.jsonl")[0]
    for key in ("id", "prompt_hash", "prediction", "answer", "score", "timings", "key_frames", "n_frames"):
        assert key in rec
    cand = rec["prediction"]["candidates"][0]
    assert cand["text"] is not None and cand["token_logprobs"] and cand["n_tokens"] > 0
    for key in ("accuracy", "by_family", "candidates_per_question", "errors", "timing"):
        assert key in metrics
    assert metrics["candidates_per_question"] == 1.0


def test_bad_video_becomes_an_error_record_and_strict_fails_fast(card_path, tmp_path):
    card = load_task(str(card_path))
    from rler_eval.benchmarks import get_benchmark

    samples = get_benchmark("synthvid").load_samples(card)[:4]
    broken = card.root / "broken.mp4"  # inside the data root: a path outside it is refused before decoding
    broken.write_bytes(b"not a video at all")
    bench = get_benchmark("synthvid")
    original = bench.load_samples

    def patched(c):
        out = original(c)[:4]
        out[1].video = str(broken)
        return out

    bench.load_samples = patched
    try:
        metrics, out = runner.run(card, "tiny-random", "greedy", out=tmp_path / "r")
        recs = {r["id"]: r for r in read_lines(out / "samples.jsonl")}
        assert len(recs) == 4 and metrics["errors"] == 1
        bad = recs[samples[1].id]
        assert bad["status"] == "error" and "broken.mp4" in bad["error"] and bad["score"] == 0.0
        with pytest.raises(VideoError):
            runner.run(card, "tiny-random", "greedy", out=tmp_path / "strict", strict=True)
    finally:
        bench.load_samples = original


def test_shards_merge_to_the_unsharded_metrics(card_path, tmp_path):
    common = ["--task", str(card_path), "--model", "tiny-random", "--limit", "10"]
    assert run_cli(*common, "--out", str(tmp_path / "all")).returncode == 0
    for i in range(2):
        out = run_cli(*common, "--shard", f"{i}/2", "--out", str(tmp_path / f"s{i}"))
        assert out.returncode == 0, out.stderr
    merged = subprocess.run([str(BIN), "merge", str(tmp_path / "s0"), str(tmp_path / "s1"),
                             "--out", str(tmp_path / "merged")], capture_output=True, text=True, cwd=REPO)
    assert merged.returncode == 0, merged.stderr
    m_all = json.loads((tmp_path / "all" / "metrics.json").read_text())
    m_merged = json.loads((tmp_path / "merged" / "metrics.json").read_text())
    drop = {"timing", "run"}
    assert {k: v for k, v in m_all.items() if k not in drop} == {k: v for k, v in m_merged.items() if k not in drop}

    report = subprocess.run([str(BIN), "report", str(tmp_path / "all"), str(tmp_path / "merged"),
                             "--out", str(tmp_path / "lb")], capture_output=True, text=True, cwd=REPO)
    assert report.returncode == 0, report.stderr
    assert "synth_small" in (tmp_path / "lb.md").read_text()
    assert (tmp_path / "lb.csv").exists() and (tmp_path / "lb.png").stat().st_size > 1000

    details = subprocess.run([str(BIN), "report", str(tmp_path / "all"), "--details", "--out", str(tmp_path / "d")],
                             capture_output=True, text=True, cwd=REPO)
    assert details.returncode == 0, details.stderr
    table = (tmp_path / "d.md").read_text()
    assert "grounding_f1" in table and "candidates_per_question" in table and "synth_small" in table


def test_resume_refuses_different_settings(card_path, tmp_path):
    assert run_cli("--task", str(card_path), "--model", "tiny-random", "--limit", "2",
                   "--out", str(tmp_path / "r")).returncode == 0
    out = run_cli("--task", str(card_path), "--model", "tiny-random", "--limit", "2", "--frames", "6",
                  "--out", str(tmp_path / "r"))
    assert out.returncode == 2 and "different settings" in out.stderr
