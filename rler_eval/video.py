"""Video I/O: write small test clips, sample labelled frames, cache decoded frame sets.

Why here and not in each adapter: every benchmark needs the same thing (N frames with
timestamps and 1-based labels, resized to a pixel budget), and decoding is the slowest
part of an evaluation. One module owns decoding so it can seek instead of decoding whole
files and cache each frame set on disk, so that a video shared by many questions is
decoded once per frame configuration.
"""

from __future__ import annotations

from pathlib import Path

from rler_eval.errors import VideoError  # noqa: F401  (re-exported for callers)


def write_video(path, frames, fps: float = 8.0, codec: str = "libx264") -> Path:
    """Encode uint8 frames (T, H, W, 3) into an mp4 at `path` with PyAV."""
    import av
    import numpy as np

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    frames = np.asarray(frames, dtype=np.uint8)
    h, w = frames.shape[1] // 2 * 2, frames.shape[2] // 2 * 2  # yuv420p needs even sizes
    with av.open(str(path), mode="w") as out:
        stream = out.add_stream(codec, rate=int(round(fps)))
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        for frame in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame[:h, :w], format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path
