"""Runs that lose nothing and trust nothing (issue 14): each failure of the hostile-user probe,
reproduced in its exact form, then shown fixed. No model here: records, locks, paths, limits,
the decode workers and the judge client; tests/test_robust_e2e.py runs the whole scenario."""

import json
import os
import signal
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest

from rler_eval import records as rec
from rler_eval import runner
from rler_eval.errors import InputError, RlerError, VideoError
from rler_eval.guards import SampleTimeout, check_paths, check_prompt_size, time_limit
from rler_eval.prefetch import DecodeTimeout, Prefetcher, WorkerFailed
from rler_eval.types import FrameSet, Prompt, Sample

REPO = Path(__file__).resolve().parent.parent


def record(i, status="ok"):
    return {"id": f"q{i:02d}", "status": status, "score": 1.0, "answer": "A"}


def write_lines(run_dir: Path, lines: list[bytes]) -> Path:
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / "samples.jsonl"
    path.write_bytes(b"".join(lines))
    return path


def good_lines(n):
    return [(json.dumps(record(i)) + "\n").encode() for i in range(n)]


# ---------------------------------------------------------------- 1. records are never lost


@pytest.mark.parametrize("damage", [b"garbage{{{\n", b"\xff\xfe not utf-8 \x80\n", b"{}\n", b"[1, 2]\n"])
def test_a_damaged_middle_line_loses_no_other_record(tmp_path, capsys, damage):
    # the probe: one damaged middle line wiped the 14 records after it (or crashed resume)
    lines = good_lines(20)
    path = write_lines(tmp_path, lines[:5] + [damage] + lines[5:])
    assert len(rec.load_records(tmp_path)) == 20  # a reader (replay, merge) skips it, changing nothing
    assert path.read_bytes() == b"".join(lines[:5] + [damage] + lines[5:])
    got = rec.load_records(tmp_path, quarantine=True)  # the run-lock holder moves it aside
    assert [r["id"] for r in got] == [f"q{i:02d}" for i in range(20)]
    assert path.read_bytes() == b"".join(lines)  # every good line kept byte for byte
    corrupt = [json.loads(x) for x in (tmp_path / rec.CORRUPT).read_text().splitlines()]
    assert [c["line"] for c in corrupt] == [6]
    assert "unreadable line" in capsys.readouterr().err


def test_interleaved_half_line_costs_only_the_torn_record(tmp_path):
    # two writers: a half line followed by another record on the same line
    lines = good_lines(6)
    torn = lines[2][:15] + lines[3]
    write_lines(tmp_path, lines[:2] + [torn] + lines[4:])
    got = {r["id"] for r in rec.load_records(tmp_path, quarantine=True)}
    assert got == {"q00", "q01", "q04", "q05"}  # q02 and q03 are recomputed; nothing else
    assert (tmp_path / rec.CORRUPT).exists()


def test_torn_last_line_is_set_aside_and_appends_stay_valid(tmp_path):
    lines = good_lines(3)
    path = write_lines(tmp_path, lines + [lines[0][:10]])
    assert len(rec.load_records(tmp_path, quarantine=True)) == 3
    with open(path, "a") as fh:
        rec.append_record(fh, record(7))
    assert [r["id"] for r in rec.load_records(tmp_path, quarantine=True)] == ["q00", "q01", "q02", "q07"]


# ---------------------------------------------------------------- 3. one writer per run folder


def hold_lock(run_dir: Path) -> subprocess.Popen:
    code = ("import sys, time; from rler_eval.records import RunLock\n"
            f"with RunLock({str(run_dir)!r}):\n    print('held', flush=True); time.sleep(120)\n")
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": str(REPO)})
    assert proc.stdout.readline().strip() == "held"
    return proc


def test_second_writer_is_refused_with_the_holders_pid(tmp_path):
    proc = hold_lock(tmp_path / "run")
    try:
        with pytest.raises(rec.RunFolderBusy, match=f"pid {proc.pid}"):
            with rec.RunLock(tmp_path / "run"):
                pass
    finally:
        proc.kill()
        proc.wait()


def test_stale_lock_of_a_killed_run_is_taken_over(tmp_path):
    proc = hold_lock(tmp_path / "run")
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert (tmp_path / "run" / rec.LOCK_OWNER).read_text().strip() == str(proc.pid)  # left behind
    with rec.RunLock(tmp_path / "run"):
        assert rec.holder_pid(tmp_path / "run") == os.getpid()


# ---------------------------------------------------------------- 2. resume only onto the same run


def config_for(tmp_path, **change):
    from rler_eval.tasks import card_from_dict

    card = card_from_dict({"name": "t", "benchmark": "synthvid", "data_root": str(tmp_path / "d")})
    for k, v in change.items():
        setattr(card, k, v)
    return runner.run_config(card, "tiny-random", "greedy", {}, 0, None, None)


@pytest.mark.parametrize("key,change", [("data_root", {"data_root": "/elsewhere"}), ("prompt", {"prompt": "plain"}),
                                        ("card_sha256", {"max_new_tokens": 7}), ("judge", {"args": {"judge": {
                                            "model": "gpt-x", "base_url": "http://127.0.0.1:9/v1"}}})])
def test_resume_refuses_another_data_root_card_prompt_or_judge(tmp_path, key, change, monkeypatch):
    for k in ("RLER_JUDGE_BASE_URL", "RLER_JUDGE_MODEL"):
        monkeypatch.delenv(k, raising=False)
    out = tmp_path / "run"
    runner.prepare_folder(out, config_for(tmp_path), False)
    with pytest.raises(RlerError) as err:
        runner.prepare_folder(out, config_for(tmp_path, **change), False)
    assert key in str(err.value) and "new --out" in str(err.value)


# ---------------------------------------------------------------- 5. containment


def sample_with(video, **kw):
    return Sample(id="s1", task="t", question="q?", answer="A", options=["a", "b"], video=str(video), **kw)


def test_paths_outside_the_data_root_are_refused(tmp_path):
    root = tmp_path / "root"
    (root / "videos").mkdir(parents=True)
    outside = tmp_path / "secret.mp4"
    outside.write_bytes(b"x")
    (root / "videos" / "link.mp4").symlink_to(outside)
    (root / "videos" / "ok.mp4").write_bytes(b"x")
    for bad in (root / "../../../../../../etc/passwd", outside, root / "videos" / "link.mp4", Path("/dev/zero")):
        with pytest.raises(InputError, match="outside the data root"):
            check_paths(sample_with(bad), root)
    check_paths(sample_with(root / "videos" / "ok.mp4"), root)
    check_paths(sample_with(outside), root, allow_outside=True)
    with pytest.raises(InputError, match="field 'images'"):
        check_paths(sample_with(root / "videos" / "ok.mp4", images=[str(outside)]), root)


def test_only_regular_files_or_frame_folders_are_opened(tmp_path):
    root = tmp_path
    os.mkfifo(root / "fifo.mp4")
    (root / "frames").mkdir()
    start = time.time()
    with pytest.raises(VideoError, match="a FIFO"):
        check_paths(sample_with(root / "fifo.mp4"), root)
    assert time.time() - start < 2  # stat, never open: a FIFO cannot hang the check
    with pytest.raises(VideoError, match="a device"):
        check_paths(sample_with("/dev/zero"), root, allow_outside=True)
    check_paths(sample_with(root / "frames"), root)  # a frame folder is a video
    with pytest.raises(VideoError, match="a folder"):
        check_paths(sample_with(root / "frames" / ".." / "frames", images=[str(root / "frames")]), root)


# ---------------------------------------------------------------- 6. bounded work


class CountingTokenizer:
    calls = 0

    def __call__(self, text, add_special_tokens=False):
        CountingTokenizer.calls += 1
        return {"input_ids": text.split()}


class SmallContextBackend:
    tokenizer = CountingTokenizer()
    context_length = 4096


def test_a_1mb_question_is_refused_before_the_processor():
    prompt = Prompt(content=[{"type": "text", "text": "word " * 200_000}], n_frames=8)
    with pytest.raises(InputError, match="exceeds the budget"):
        check_prompt_size(prompt, SmallContextBackend(), 256, 112 * 112)
    small = Prompt(content=[{"type": "text", "text": "What colour is the square?"}], n_frames=8)
    CountingTokenizer.calls = 0
    check_prompt_size(small, SmallContextBackend(), 256, 112 * 112)
    assert CountingTokenizer.calls == 0  # short prompts are not tokenized twice
    with pytest.raises(InputError):
        check_prompt_size(small, SmallContextBackend(), 256, 112 * 112, cap=50)


def test_time_limit_stops_a_stuck_python_loop():
    start = time.time()
    with pytest.raises(SampleTimeout):
        with time_limit(0.5):
            while True:
                time.sleep(0.01)
    assert time.time() - start < 2


def slow_square(x):
    if x == "hang":
        time.sleep(300)
    if x == "crash":
        os._exit(3)
    if x == "bad":
        raise VideoError("bad.mp4: corrupt video stream")
    time.sleep(0.05)
    return x * x


def test_prefetch_keeps_order_and_contains_each_failure():
    jobs = [1, "bad", 3, "crash", None, "hang", 7]
    with Prefetcher(jobs, slow_square, workers=2) as pool:
        assert pool.get(0, 30) == 1
        with pytest.raises(VideoError, match="bad.mp4"):
            pool.get(1, 30)
        assert pool.get(2, 30) == 9
        with pytest.raises(WorkerFailed):
            pool.get(3, 30)
        assert pool.get(4, 30) is None
        start = time.time()
        with pytest.raises(DecodeTimeout):
            pool.get(5, 1.0)  # a stuck decode is abandoned at the deadline
        assert time.time() - start < 5
        assert pool.get(6, 30) == 49  # and the run goes on with a fresh worker


def sleepy(seconds):
    time.sleep(seconds)
    return seconds


def test_prefetch_decodes_ahead_while_the_caller_works():
    with Prefetcher([1.0] * 5, sleepy, workers=2) as pool:
        pool.get(0, 30)
        time.sleep(2.5)  # "the model generates" while jobs 1 and 2 decode in the workers
        start = time.time()
        assert pool.get(1, 30) == 1.0 and pool.get(2, 30) == 1.0
        assert time.time() - start < 0.5  # already done: inline they would take 2 s
        assert pool.ahead == 4 and len(pool.ready) + sum(w.job is not None for w in pool.workers) <= 4


# ---------------------------------------------------------------- 8. inputs




def frames_of_seed(seed):
    rng = np.random.default_rng(seed)
    return FrameSet(frames=rng.integers(0, 256, (4, 360, 640, 3), dtype=np.uint8), timestamps=[0.0, 1.0, 2.0, 3.0],
                    source=f"v{seed}.mp4", digest=f"d{seed}")


def test_prefetched_frames_arrive_intact_through_shared_memory():
    """Frame sets over 1 MB travel through shared memory: same bytes, fields kept, no block left."""
    shm = Path("/dev/shm")
    before = set(shm.iterdir()) if shm.is_dir() else set()
    with Prefetcher([0, 1, 2], frames_of_seed, workers=2) as pool:
        got = [pool.get(i, 30) for i in range(3)]
    for seed, fs in enumerate(got):
        want = frames_of_seed(seed)
        assert isinstance(fs.frames, np.ndarray) and fs.frames.flags.writeable
        assert np.array_equal(fs.frames, want.frames) and fs.timestamps == want.timestamps
        assert (fs.source, fs.digest) == (want.source, want.digest)
    if shm.is_dir():
        assert not {p.name for p in set(shm.iterdir()) - before if p.name.startswith("psm_")}
def frames_of_size(job):
    seed, n = job
    rng = np.random.default_rng(seed)
    return FrameSet(frames=rng.integers(0, 256, (n, 360, 640, 3), dtype=np.uint8), timestamps=[0.0] * n)


def test_each_worker_reuses_one_block_and_grows_it_when_needed():
    """Results of one worker share its block (no per-result allocation); a larger result grows it."""
    shm = Path("/dev/shm")
    before = set(shm.iterdir()) if shm.is_dir() else set()
    jobs = [(0, 4), (1, 4), (2, 8), (3, 2), (4, 8)]
    with Prefetcher(jobs, frames_of_size, workers=1) as pool:
        got = [pool.get(i, 30) for i in range(len(jobs))]
        mapped = dict(pool.mappings.blocks)
    for job, fs in zip(jobs, got):
        assert np.array_equal(fs.frames, frames_of_size(job).frames)
    assert len(mapped) == 1  # the 4-frame block was retired when the 8-frame result came
    if shm.is_dir():
        assert not {p.name for p in set(shm.iterdir()) - before if p.name.startswith("psm_")}


def run_cli(*args, **env):
    return subprocess.run([sys.executable, "-m", "rler_eval.cli", "run", *args], capture_output=True, text=True,
                          cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO), **env}, timeout=120)


def test_negative_limit_is_refused():
    out = run_cli("--limit", "-10")
    assert out.returncode == 2 and "must be positive" in out.stderr


@pytest.mark.parametrize("value", ["delta=[", "delta=!!python/object:os.system x"])
def test_bad_set_value_is_one_line(value):
    out = run_cli("--set", value)
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1 and "--set" in out.stderr


def test_strict_wraps_a_foreign_exception_into_one_line(tmp_path):
    from PIL import Image

    from rler_eval.tasks import card_from_dict

    frames = tmp_path / "frames"
    frames.mkdir()
    for i in range(3):
        Image.new("RGB", (32, 32)).save(frames / f"{i:03d}.jpg")
    (frames / "001.jpg").write_bytes(b"\xff\xd8\xff garbage jpeg")
    card = card_from_dict({"name": "t", "benchmark": "synthvid", "data_root": str(tmp_path),
                           "frames": {"n": 3}})
    s = sample_with(frames)
    with pytest.raises(RlerError, match="sample s1: UnidentifiedImageError"):
        runner.evaluate_one(s, card, None, None, "greedy", {}, 0, True, str(tmp_path / "cache"))


# ---------------------------------------------------------------- 7. the judge


class JudgeStub(BaseHTTPRequestHandler):
    """An OpenAI-compatible endpoint whose reply is set per test (mode)."""

    mode = "ok"
    content = "0.5"
    hits = 0

    def do_POST(self):
        JudgeStub.hits += 1
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        body = json.dumps({"choices": [{"message": {"content": JudgeStub.content}}]}).encode()
        if JudgeStub.mode == "down":
            self.send_response(503)
            self.end_headers()
            return
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if JudgeStub.mode == "trickle":  # 1 byte per second
            for b in body:
                try:
                    self.wfile.write(bytes([b]))
                    self.wfile.flush()
                except OSError:
                    return
                time.sleep(1)
        else:
            self.wfile.write(body)

    def log_message(self, *a):
        pass


@pytest.fixture()
def stub_judge(tmp_path, monkeypatch):
    srv = ThreadingHTTPServer(("127.0.0.1", 0), JudgeStub)
    srv.daemon_threads = True
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    JudgeStub.mode, JudgeStub.content, JudgeStub.hits = "ok", "0.5", 0
    monkeypatch.setenv("RLER_JUDGE_BASE_URL", f"http://127.0.0.1:{srv.server_port}/v1")
    monkeypatch.setenv("RLER_JUDGE_MODEL", "stub")
    monkeypatch.setenv("RLER_JUDGE_CACHE", str(tmp_path / "judge-cache"))
    monkeypatch.setenv("RLER_JUDGE_RETRIES", "0")
    yield JudgeStub
    srv.shutdown()


def test_judge_deadline_is_per_request_not_per_read(stub_judge, monkeypatch):
    from rler_eval.benchmarks import judge

    stub_judge.mode = "trickle"
    monkeypatch.setenv("RLER_JUDGE_TIMEOUT", "2")
    j = judge.get_judge()
    start = time.time()
    assert j.ask("q?") is None
    assert time.time() - start < 4  # the probe: 40 s held against a 2 s timeout


def test_judge_settings_from_env_and_card(stub_judge, monkeypatch):
    from rler_eval.benchmarks import judge
    from rler_eval.errors import TaskError

    monkeypatch.setenv("RLER_JUDGE_TIMEOUT", "7.5")
    monkeypatch.setenv("RLER_JUDGE_RETRIES", "4")
    monkeypatch.setenv("RLER_JUDGE_CONCURRENCY", "3")
    c = judge.get_judge().config
    assert (c.timeout, c.max_retries, c.concurrency) == (7.5, 4, 3)

    class Card:
        args = {"judge": {"timeout": 1, "max_retries": 0, "concurrency": 2}}
    c = judge.get_judge(Card).config
    assert (c.timeout, c.max_retries, c.concurrency) == (1.0, 0, 2)
    monkeypatch.setenv("RLER_JUDGE_TIMEOUT", "soon")
    with pytest.raises(TaskError, match="RLER_JUDGE_TIMEOUT"):
        judge.get_judge()


def test_judge_retries_then_fails_without_caching(stub_judge, monkeypatch):
    from rler_eval.benchmarks import judge

    stub_judge.mode = "down"
    monkeypatch.setenv("RLER_JUDGE_RETRIES", "2")
    j = judge.get_judge()
    assert j.ask("q?") is None and stub_judge.hits == 3
    stub_judge.mode = "ok"
    assert j.ask("q?") == "0.5"  # the failure was not cached


@pytest.mark.parametrize("content", [["not", "text"], {"a": 1}, 0.7])
def test_non_string_content_is_a_failure_not_a_crash(stub_judge, content):
    from rler_eval.benchmarks import judge

    stub_judge.content = content
    assert judge.get_judge().ask(f"q {content}?") is None


def test_off_scale_judge_scores_are_failures():
    from rler_eval.benchmarks import judge

    for reply in ("inf", "-inf", "1.5", "-0.1", "nan", "1e309"):
        assert judge.unit_score(reply) is None, reply
    assert judge.unit_score("1") == 1.0 and judge.unit_score("0.25") == 0.25


def test_failed_judgement_is_a_judge_error_that_resume_rejudges(stub_judge, tmp_path):
    from rler_eval.benchmarks import get_benchmark
    from rler_eval.tasks import card_from_dict

    bench = get_benchmark("wildvideo")
    card = card_from_dict({"name": "wv", "benchmark": "wildvideo", "data_root": str(tmp_path)})
    s = Sample(id="w1", task="wv", question="What is held?", answer="A red cup.", answer_type="text")
    stub_judge.content = "inf"
    got = runner.score_answer(bench, s, "a cup")
    assert got["status"] == "judge_error" and got["score"] == 0.0 and "inf" in got["error"]

    out = tmp_path / "run"
    out.mkdir()
    r = {"id": "w1", "status": "judge_error", "answer": "a cup", "sample": s.to_dict(), **got}
    rec.rewrite_records(out, [r])
    stub_judge.content = "0.75"
    fixed = runner.rejudge(out, rec.load_records(out), card, bench)
    assert fixed[0]["status"] == "ok" and fixed[0]["score"] == 0.75 and fixed[0]["error"] is None
    assert rec.load_records(out)[0]["status"] == "ok"


# ---------------------------------------------------------------- 6. the sample timeout in a run


class HangOnSecond:
    """A fake model answering in the protocol, that hangs on the second question."""

    name = "hang-fake"
    supports_logprobs = True

    def __init__(self):
        self.calls = 0

    def generate(self, requests):
        from rler_eval.types import Candidate

        self.calls += 1
        if self.calls == 2:
            while True:  # a generation loop that never ends
                time.sleep(0.05)
        text = "<think>In frame 1 the square is red.</think>\n<frames>1</frames>\n<answer>B</answer>"
        return [[Candidate(text, [-0.2] * 6, None, 0.0, 0, 6)] for _ in requests]


@pytest.fixture(scope="module")
def small_set(tmp_path_factory):
    from rler_eval.benchmarks import synthvid
    from rler_eval.tasks import card_from_dict

    root = tmp_path_factory.mktemp("sv") / "data"
    synthvid.generate(root, 4, seed=2, progress=False)
    return card_from_dict({"name": "sv4", "benchmark": "synthvid", "data_root": str(root),
                           "frames": {"n": 4, "max_pixels": 56 * 56}, "max_new_tokens": 16})


def test_stuck_generation_becomes_an_error_record_and_the_run_goes_on(small_set, tmp_path):
    start = time.time()
    limits = runner.Limits(sample_timeout=10.0, decode_workers=1)  # generous: CI machines are busy
    metrics, out = runner.run(small_set, "fake", "greedy", out=tmp_path / "r", backend=HangOnSecond(),
                              cache_dir=str(tmp_path / "c"), limits=limits)
    recs = rec.load_records(out)
    assert [r["status"] for r in recs] == ["ok", "error", "ok", "ok"]
    assert "SampleTimeout" in recs[1]["error"] and metrics["errors"] == 1
    assert time.time() - start < 120


def test_stuck_decode_is_abandoned_and_the_run_goes_on(small_set, tmp_path, monkeypatch):
    original = runner.load_sample_frames

    def hang_on_second(sample, card, cache_dir):
        if sample.id.endswith("1"):
            time.sleep(600)  # e.g. a stream that never ends
        return original(sample, card, cache_dir)

    monkeypatch.setattr(runner, "load_sample_frames", hang_on_second)  # forked workers inherit it
    limits = runner.Limits(sample_timeout=10.0, decode_workers=1)

    class Answers(HangOnSecond):
        def generate(self, requests):
            self.calls = 10
            return super().generate(requests)

    start = time.time()
    metrics, out = runner.run(small_set, "fake", "greedy", out=tmp_path / "r", backend=Answers(),
                              cache_dir=str(tmp_path / "c"), limits=limits)
    recs = rec.load_records(out)
    assert [r["status"] for r in recs] == ["ok", "error", "ok", "ok"]
    assert "DecodeTimeout" in recs[1]["error"]
    assert time.time() - start < 120
