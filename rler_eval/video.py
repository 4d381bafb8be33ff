"""Video I/O: write small test clips, sample labelled frames, cache decoded frame sets.

Why here and not in each adapter: every benchmark needs the same thing (N frames with
timestamps and 1-based labels, resized to a pixel budget), and decoding is the slowest
part of an evaluation. One module owns decoding so it can seek instead of decoding whole
files and cache each frame set on disk, so that a video shared by many questions is
decoded once per frame configuration.
"""

from __future__ import annotations

import itertools
from pathlib import Path

from rler_eval.errors import VideoError  # noqa: F401  (re-exported for callers)


def write_video(path, frames, fps: float = 8.0, codec: str = "libx264", options: dict | None = None) -> Path:
    """Encode uint8 frames (T, H, W, 3) into an mp4 at `path` with PyAV.

    `frames` may be any iterable of equally sized frames (e.g. a generator for long
    videos); `options` go to the encoder, e.g. {"g": "10", "preset": "ultrafast"}.
    """
    import av
    import numpy as np

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    frames = iter(frames)
    first = np.asarray(next(frames), dtype=np.uint8)
    h, w = first.shape[0] // 2 * 2, first.shape[1] // 2 * 2  # yuv420p needs even sizes
    with av.open(str(path), mode="w") as out:
        stream = out.add_stream(codec, rate=int(round(fps)), options=dict(options or {}))
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        for frame in itertools.chain([first], frames):
            frame = np.asarray(frame, dtype=np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame[:h, :w], format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path


# ---------------------------------------------------------------- sampling plans

SEEK_MIN_SECONDS = 60.0  # below this, decoding the whole clip once is cheaper than seeking
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")


def sample_times(duration: float, cfg, clip=None) -> list[float]:
    """Target timestamps: cfg.n segment midpoints, or every 1/cfg.fps s capped at max_frames."""
    start, end = (0.0, duration) if clip is None else (max(0.0, clip[0]), min(duration, clip[1]))
    if end <= start:
        start, end = 0.0, duration
    span = end - start
    if cfg.fps:
        n = max(1, min(cfg.max_frames, int(span * cfg.fps)))
    else:
        n = max(1, cfg.n)
    return [start + span * (i + 0.5) / n for i in range(n)]


def resize_to_budget(frame, max_pixels: int):
    """Shrink (never enlarge) to at most max_pixels, keeping the aspect ratio; even sides."""
    import numpy as np
    from PIL import Image

    h, w = frame.shape[:2]
    if h * w <= max_pixels:
        return frame
    scale = (max_pixels / (h * w)) ** 0.5
    nh, nw = max(2, int(h * scale) // 2 * 2), max(2, int(w * scale) // 2 * 2)
    return np.asarray(Image.fromarray(frame).resize((nw, nh), Image.BICUBIC))


# ---------------------------------------------------------------- decoders


def open_container(path: Path):
    import av

    try:
        container = av.open(str(path))
    except Exception as e:  # noqa: BLE001 - PyAV raises many types for a bad file
        raise VideoError(f"{path}: cannot open as a video ({type(e).__name__}: {e})") from None
    if not container.streams.video:
        container.close()
        raise VideoError(f"{path}: has no video stream (audio-only or not a video)")
    return container


def stream_duration(container) -> float:
    stream = container.streams.video[0]
    if stream.duration and stream.time_base:
        return float(stream.duration * stream.time_base)
    if container.duration:
        return container.duration / 1_000_000
    return 0.0


def decode_pyav(path: Path, cfg, clip) -> tuple[list, list[float], float]:
    """Frames nearest the target times; seeks per target on long videos."""
    with open_container(path) as container:
        duration = stream_duration(container)
        if duration <= 0:  # no duration in the header: one pass to find it
            duration = last_frame_time(container)
            container.seek(0)
        targets = sample_times(duration, cfg, clip)
        if duration < SEEK_MIN_SECONDS:
            return decode_sequential(container, targets) + (duration,)
        return seek_each(container, targets) + (duration,)


def frames_of(container):
    """Decoded frames of the first video stream; a broken stream raises VideoError."""
    stream = container.streams.video[0]
    stream.thread_type = "AUTO"
    try:
        for frame in container.decode(stream):
            if frame.time is not None:
                yield frame
    except Exception as e:  # noqa: BLE001 - PyAV raises many types for corrupt data
        raise VideoError(f"{container.name}: corrupt video stream ({type(e).__name__}: {e})") from None


def last_frame_time(container) -> float:
    last = 0.0
    for frame in frames_of(container):
        last = float(frame.time)
    return last


def decode_sequential(container, targets: list[float]) -> tuple[list, list[float]]:
    """One decoding pass; only the frame nearest each target is converted to pixels."""
    chosen: list = [None] * len(targets)
    prev, k = None, 0
    for frame in frames_of(container):
        while k < len(targets) and frame.time >= targets[k]:
            near_prev = prev is not None and targets[k] - prev.time <= frame.time - targets[k]
            chosen[k] = prev if near_prev else frame
            k += 1
        if k == len(targets):
            break
        prev = frame
    for j in range(k, len(targets)):  # targets after the last frame
        chosen[j] = prev
    if any(c is None for c in chosen):
        raise VideoError(f"{container.name}: no decodable frames")
    return [c.to_ndarray(format="rgb24") for c in chosen], [float(c.time) for c in chosen]


def seek_each(container, targets: list[float]) -> tuple[list, list[float]]:
    """Seek to the keyframe before each target, then decode forward to the target."""
    stream = container.streams.video[0]
    frames, stamps = [], []
    for target in targets:
        container.seek(int(target / stream.time_base), stream=stream, backward=True, any_frame=False)
        best = None
        for frame in container.decode(stream):
            if frame.time is None:
                continue
            best = frame
            if frame.time >= target:
                break
        if best is None:
            raise VideoError(f"{container.name}: no frame decodable near {target:.2f}s")
        frames.append(best.to_ndarray(format="rgb24"))
        stamps.append(float(best.time))
    return frames, stamps


def decode_decord(path: Path, cfg, clip) -> tuple[list, list[float], float]:
    try:
        import decord
    except ImportError:
        raise VideoError("decoder 'decord' requested but not installed: pip install 'rler-eval[decord]'") from None
    try:
        vr = decord.VideoReader(str(path))
    except Exception as e:  # noqa: BLE001
        raise VideoError(f"{path}: decord cannot open it ({type(e).__name__}: {e})") from None
    fps = float(vr.get_avg_fps()) or 1.0
    duration = len(vr) / fps
    idx = [min(len(vr) - 1, int(t * fps)) for t in sample_times(duration, cfg, clip)]
    batch = vr.get_batch(idx).asnumpy()
    return list(batch), [i / fps for i in idx], duration


def decode_folder(path: Path, cfg, clip, folder_fps: float) -> tuple[list, list[float], float]:
    """A folder of numbered frame images, read as a video at folder_fps."""
    import numpy as np
    from PIL import Image

    files = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise VideoError(f"{path}: frame folder holds no images")
    duration = len(files) / folder_fps
    idx = [min(len(files) - 1, int(t * folder_fps)) for t in sample_times(duration, cfg, clip)]
    frames = [np.asarray(Image.open(files[i]).convert("RGB")) for i in idx]
    return frames, [i / folder_fps for i in idx], duration


# ---------------------------------------------------------------- cached entry point

_MEMORY: dict[str, object] = {}
_MEMORY_MAX = 32


def cache_key(path: Path, cfg, clip, folder_fps: float) -> str:
    import hashlib
    from dataclasses import asdict

    st = path.stat()
    settings = {k: v for k, v in asdict(cfg).items() if k != "mode"}  # mode does not change pixels
    raw = f"{path.resolve()}|{st.st_mtime_ns}|{st.st_size}|{sorted(settings.items())}|{clip}|{folder_fps}"
    return hashlib.sha1(raw.encode()).hexdigest()


def default_cache_dir() -> Path:
    import os

    return Path(os.environ.get("RLER_CACHE", ".cache")) / "frames"


def load_frames(path, cfg, clip=None, cache_dir=None, folder_fps: float = 3.0):
    """The FrameSet of `path` under `cfg`: from memory, else the disk cache, else decoded."""
    from rler_eval.types import FrameSet

    path = Path(path)
    check_readable(path)
    key = cache_key(path, cfg, clip, folder_fps)
    if key in _MEMORY:
        return _MEMORY[key]
    cache_file = Path(cache_dir or default_cache_dir()) / f"{key}.npz"
    frameset = read_cache(cache_file)
    if frameset is None:
        frames, stamps, duration = decode(path, cfg, clip, folder_fps)
        frames = stack([resize_to_budget(f, cfg.max_pixels) for f in frames])
        frameset = FrameSet(frames=frames, timestamps=[round(t, 3) for t in stamps], source=str(path),
                            duration=duration)
        write_cache(cache_file, frameset)
    if len(_MEMORY) >= _MEMORY_MAX:
        _MEMORY.pop(next(iter(_MEMORY)))
    _MEMORY[key] = frameset
    return frameset


def check_readable(path: Path) -> None:
    if not path.exists():
        raise VideoError(f"{path}: video not found")
    if path.is_file() and path.stat().st_size == 0:
        raise VideoError(f"{path}: zero-length file")


def decode(path: Path, cfg, clip, folder_fps: float):
    if path.is_dir():
        return decode_folder(path, cfg, clip, folder_fps)
    if cfg.decoder == "decord":
        return decode_decord(path, cfg, clip)
    if cfg.decoder != "pyav":
        raise VideoError(f"unknown decoder {cfg.decoder!r}; use 'pyav' or 'decord'")
    try:
        return decode_pyav(path, cfg, clip)
    except VideoError as e:
        raise VideoError(str(e) if str(path) in str(e) else f"{path}: {e}") from None


def stack(frames: list):
    """Frames of one set may differ in size after resizing odd sources; crop to the smallest."""
    import numpy as np

    h = min(f.shape[0] for f in frames)
    w = min(f.shape[1] for f in frames)
    return np.stack([f[:h, :w] for f in frames]).astype(np.uint8)


def read_cache(cache_file: Path):
    import numpy as np

    from rler_eval.types import FrameSet

    if not cache_file.exists():
        return None
    try:
        with np.load(cache_file, allow_pickle=False) as z:
            return FrameSet(frames=z["frames"], timestamps=z["timestamps"].tolist(), source=str(z["source"]),
                            duration=float(z["duration"]))
    except Exception:  # noqa: BLE001 - a torn cache file is simply rebuilt
        return None


def write_cache(cache_file: Path, frameset) -> None:
    """Atomic: write a temporary file, then rename, so concurrent shards never read a torn file."""
    import os

    import numpy as np

    cache_file.parent.mkdir(parents=True, exist_ok=True)
    tmp = cache_file.with_suffix(f".tmp{os.getpid()}.npz")
    np.savez(tmp, frames=frameset.frames, timestamps=np.asarray(frameset.timestamps, dtype=np.float64),
             source=np.asarray(frameset.source), duration=np.asarray(frameset.duration or 0.0))
    os.replace(tmp, cache_file)
