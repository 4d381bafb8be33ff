"""Video I/O: write small test clips, sample labelled frames, cache decoded frame sets.

Why here and not in each adapter: every benchmark needs the same thing (N frames with
timestamps and 1-based labels, resized to a pixel budget), and decoding is the slowest
part of an evaluation. One module owns decoding so that it does the least work the codec
allows, and caches what the model sees:

- Decoding reads packets in order and decodes only the GOPs that hold a target (seeking
  across long gaps), skips the frames far from any target that no later frame needs
  (`skip_plan`: non-reference frames, or every B-frame where the stream allows it), and scales each chosen
  frame straight to its final size with swscale (no full-size RGB copy, no PIL).
- A frame set is kept as small yuv420p planes (rgb24 for image folders and decord) and
  turned into RGB by one function, on the decoded and on the cached path alike, so cached
  runs see exactly the pixels of uncached runs.
- The disk cache stores those planes losslessly (zstd: a hit costs a decompression, not a
  decode), keyed by file content, decoder, frame choice and resize, bounded by RLER_CACHE_MAX_GB with
  least-recently-used eviction. The in-process cache is bounded in bytes
  (RLER_MEMORY_CACHE_MB).
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import os
from collections import OrderedDict
from pathlib import Path

from rler_eval.errors import VideoError  # noqa: F401  (re-exported for callers)

CACHE_FORMAT = 4  # bump whenever decoding, resizing or storage changes the pixels


@contextlib.contextmanager
def zeroed_allocations():
    """While encoding, glibc hands out heap memory filled with zeros (mallopt M_PERTURB).

    Why: x264 (through PyAV) reads heap memory it has not written, so the same frames gave
    different bitstreams, and sometimes different pixels, depending on what the process had
    allocated and freed before: 68 of 24,000 synthvid training clips differed in pixels between
    two generations, and a fresh-clone `make tiny-model` trained another model (DESIGN.md,
    "Deterministic clips"). Zero-filled allocations give every encode the output of a fresh
    process. glibc only (the byte 0xff makes malloc fill with 0x00); elsewhere a no-op.
    """
    mallopt = glibc_mallopt()
    if mallopt is None or not mallopt(M_PERTURB, 0xFF):
        yield
        return
    try:
        yield
    finally:
        mallopt(M_PERTURB, 0)


@functools.cache
def glibc_mallopt():
    """The C library's `mallopt`, looked up once (write_video runs once per clip), or None
    where there is none (macOS). musl has one that ignores M_PERTURB and returns 0."""
    import ctypes

    try:
        return ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return None


M_PERTURB = -6  # glibc malloc.h


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
    with zeroed_allocations(), av.open(str(path), mode="w") as out:
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

SEEK_MIN_SECONDS = 60.0  # below this, reading the clip once is cheaper than seeking
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
# PyAV thread type for clips read in one pass: on the 720p test clip (132 P-frames, 2 cores,
# chosen frames scaled on a second thread) frame threads fetched 32 frames in 0.35-0.39 s,
# one decoding thread in 0.42 s (medians of 8 alternating runs).
# Small frames invert that: on synthvid's 112x112 clips frame threads cost more to start and
# feed than they save (3.0 ms per clip against 1.6 ms with one thread), so they are used
# only from FRAME_THREADS_MIN_PIXELS up.
THREAD_TYPE = "AUTO"
FRAME_THREADS_MIN_PIXELS = 640 * 360
INTERPOLATION = "BICUBIC"  # swscale filter for the resize (part of the cache key via CACHE_FORMAT)


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


def target_size(width: int, height: int, max_pixels: int) -> tuple[int, int]:
    """Shrink (never enlarge) to at most max_pixels, keeping the aspect ratio; even sides."""
    if width * height > max_pixels:
        scale = (max_pixels / (width * height)) ** 0.5
        width, height = int(width * scale), int(height * scale)
    return max(2, width // 2 * 2), max(2, height // 2 * 2)


def resize_to_budget(frame, max_pixels: int):
    """An RGB array scaled to the pixel budget, with the same swscale filter as decoded frames."""
    import av

    h, w = frame.shape[:2]
    nw, nh = target_size(w, h, max_pixels)
    if (nw, nh) == (w, h):
        return frame
    return av.VideoFrame.from_ndarray(frame, format="rgb24").to_ndarray(
        width=nw, height=nh, format="rgb24", interpolation=INTERPOLATION)


CHUNK_FRAMES = 16  # frames per conversion chunk and per zstd frame in a cache entry


def chunks(n: int) -> list[tuple[int, int]]:
    """[start, stop) frame ranges: converted (and, cached, decompressed) in parallel threads."""
    return [(a, min(n, a + CHUNK_FRAMES)) for a in range(0, n, CHUNK_FRAMES)]


def in_threads(job, items) -> None:
    """Run `job` over `items` on up to one thread per core (swscale and zstd release the GIL)."""
    workers = min(len(items), os.cpu_count() or 1)
    if workers <= 1:
        for item in items:
            job(item)
        return
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(job, items))


def stacked_planes(images):
    """yuv420p planes (N, 3H/2, W) laid out as one frame N*H rows tall: every Y, every U, every V."""
    import numpy as np

    n, rows, w = images.shape
    y = rows * 2 // 3 * w
    flat = images.reshape(n, -1)
    return np.concatenate([flat[:, :y].ravel(), flat[:, y:y + y // 4].ravel(), flat[:, y + y // 4:].ravel()])


def plane_array(plane, rows: int, width: int):
    """A writable view of a PyAV plane's pixels, without its row padding."""
    import numpy as np

    return np.frombuffer(plane, np.uint8).reshape(-1, plane.line_size)[:rows, :width]


def stacked_to_rgb(stacked, colorspace: int, out) -> None:
    """Convert stacked planes (see stacked_planes) into `out` (n, H, W, 3) with one swscale call.

    Exact per frame: the unscaled yuv420p->rgb24 path converts each pair of rows from its own
    chroma row, so no frame bleeds into the next (tested against frame-by-frame conversion).
    One tall frame instead of N small ones saves N allocations and PyAV's slow copy of
    rows whose byte width is not aligned (to_ndarray: 10 ms per 32 frames at 298 px wide).
    The planes are copied into a frame PyAV allocates: wrapping the array itself
    (`from_numpy_buffer`) crashed swscale, whose SIMD reads past an unpadded row's end.
    """
    import av

    n, h, w, _ = out.shape
    tall, y = av.VideoFrame(w, n * h, "yuv420p"), n * h * w
    plane_array(tall.planes[0], n * h, w)[:] = stacked[:y].reshape(n * h, w)
    plane_array(tall.planes[1], n * h // 2, w // 2)[:] = stacked[y:y + y // 4].reshape(n * h // 2, w // 2)
    plane_array(tall.planes[2], n * h // 2, w // 2)[:] = stacked[y + y // 4:].reshape(n * h // 2, w // 2)
    rgb = tall.reformat(format="rgb24", src_colorspace=colorspace or None)  # 0: unspecified
    out.reshape(n * h, w * 3)[:] = plane_array(rgb.planes[0], n * h, w * 3)


def pix_fmt_of(images) -> str:
    """How decoded images are laid out: RGB (N, H, W, 3) from folders and decord, else yuv420p planes."""
    return "rgb24" if images.ndim == 4 else "yuv420p"


def to_rgb(images, pix_fmt: str, colorspace: int = 0):
    """The RGB frames the model sees, from stored planes: the one conversion both paths share."""
    import numpy as np

    if pix_fmt == "rgb24":
        return np.ascontiguousarray(images)
    n, rows, w = images.shape
    out = np.empty((n, rows * 2 // 3, w, 3), np.uint8)
    in_threads(lambda ab: stacked_to_rgb(stacked_planes(images[ab[0]:ab[1]]), colorspace, out[ab[0]:ab[1]]),
               chunks(n))
    return out


# ---------------------------------------------------------------- PyAV decoding


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


def decode_pyav(path: Path, cfg, clip):
    """(yuv420p planes, stamps, duration, colorspace) of the frames nearest the target times."""
    from concurrent.futures import ThreadPoolExecutor

    with open_container(path) as container, ThreadPoolExecutor(1) as scaler:
        stream = container.streams.video[0]
        duration = stream_duration(container)
        if duration <= 0:  # no duration in the header: one pass to find it
            duration = last_frame_time(container)
            container.seek(0)
        # Frame threads speed up one long pass; across seeks and GOP jumps their pipeline is
        # flushed each time and costs more than it gives (measured in bench/bench_video.py).
        stream.thread_type = one_pass_threads(stream) if duration < SEEK_MIN_SECONDS else "SLICE"
        targets = sample_times(duration, cfg, clip)
        shrink = Shrinker(cfg.max_pixels, stream, scaler)
        seek = duration >= SEEK_MIN_SECONDS
        if cfg.sampling == "keyframes":
            chosen = pick_keyframes(container, stream, targets, shrink)
        elif cfg.sampling != "exact":
            raise VideoError(f"unknown frames.sampling {cfg.sampling!r}; use 'exact' or 'keyframes'")
        elif seek and decode_threads(len(targets)) > 1:
            chosen = pick_parallel(path, targets, shrink, decode_threads(len(targets)), skip_plan(container, stream))
        else:
            chosen = pick_exact(container, stream, targets, shrink, seek=seek, plan=skip_plan(container, stream))
        return shrink.planes(chosen), [c[1] for c in chosen], duration, shrink.colorspace


def one_pass_threads(stream) -> str:
    """THREAD_TYPE for a clip read in one pass, unless its frames are too small to gain from it."""
    if (stream.width or 0) * (stream.height or 0) >= FRAME_THREADS_MIN_PIXELS:
        return THREAD_TYPE
    stream.codec_context.thread_count = 1
    return "SLICE"


def decode_threads(n_targets: int) -> int:
    """Threads for a seeking decode: one per core (at most 4, $RLER_DECODE_THREADS overrides)."""
    want = int(env_number("RLER_DECODE_THREADS", min(os.cpu_count() or 1, 4)))
    return max(1, min(want, n_targets // 4))


NONREF_PLAN = ("NONREF", 3)  # skip what no frame references; decode everything 3 frames before a target


def pick_parallel(path: Path, targets: list[float], shrink, threads: int, plan=NONREF_PLAN) -> list:
    """Split the targets into contiguous runs, each decoded by its own container in a thread.

    PyAV releases the GIL while decoding, so the runs decode in parallel; runs far apart share
    no GOP, so the split costs nothing but the open (frame threads, by contrast, are flushed
    at every jump between GOPs).
    """
    from concurrent.futures import ThreadPoolExecutor

    size = -(-len(targets) // threads)
    runs = [targets[i:i + size] for i in range(0, len(targets), size)]
    cores = max(1, (os.cpu_count() or 1) // len(runs))  # the cores shared out, not each run taking all

    def run(part):
        with open_container(path) as container:
            stream = container.streams.video[0]
            stream.thread_type = "SLICE"
            stream.codec_context.thread_count = cores
            return pick_exact(container, stream, part, shrink, seek=True, plan=plan)

    with ThreadPoolExecutor(len(runs)) as pool:
        return [c for part in pool.map(run, runs) for c in part]


class Shrinker:
    """Scales chosen frames to the budget (size fixed by the first one), as yuv420p planes.

    With a `pool`, each frame is scaled on it while the decoder goes on (swscale releases the
    GIL): on the 720p test clip that hides 32 scalings of 1.6 ms behind the decode.
    """

    def __init__(self, max_pixels: int, stream=None, pool=None):
        self.max_pixels, self.size, self.colorspace, self.pool = max_pixels, None, 0, pool
        if stream is not None and stream.width and stream.height:  # fixed before any thread starts
            self.size = target_size(stream.width, stream.height, max_pixels)

    def __call__(self, frame, time: float):
        """(planes, time); the planes are a Future when scaled on the pool (see `planes`)."""
        if self.size is None:
            self.size = target_size(frame.width, frame.height, self.max_pixels)
        self.colorspace = self.colorspace or int(frame.colorspace or 0)
        if self.pool is not None:
            return self.pool.submit(self.scale, frame), time
        return self.scale(frame), time

    def scale(self, frame):
        w, h = self.size
        return frame.reformat(width=w, height=h, format="yuv420p", interpolation=INTERPOLATION).to_ndarray()

    @staticmethod
    def planes(chosen):
        """The chosen frames' planes stacked, (N, 3H/2, W), waiting for any still being scaled."""
        import numpy as np

        try:
            return np.stack([p.result() if hasattr(p, "result") else p for p, _ in chosen])
        except Exception as e:  # noqa: BLE001 - a frame swscale rejects is a bad video, not a crash
            raise VideoError(f"cannot scale a decoded frame ({type(e).__name__}: {e})") from None


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


def packets_from(container, stream, t: float):
    """Packets from the last keyframe at or before `t`; re-seeks earlier if a seek overshoots."""
    back = 0.0
    while True:
        at = max(0.0, t - back)
        container.seek(int(at / stream.time_base), stream=stream, backward=True, any_frame=False)
        packets = container.demux(stream)
        first = next(packets, None)
        if first is None or at == 0 or first.pts is None or first.pts * stream.time_base <= t:
            return itertools.chain([first] if first is not None else [], packets)
        back = max(2 * back, 10.0)


def pick_exact(container, stream, targets: list[float], shrink, seek: bool, skip: bool = True,
               stats: dict | None = None, plan=NONREF_PLAN) -> list:
    """The frame nearest each (ascending) target time, exactly as a full decode would find it.

    Packets are read in order but decoded only from the keyframe of a GOP that holds a
    target, so targets sharing a GOP cost one pass; gaps longer than two GOPs are crossed
    by seeking. Frames more than `margin` before the next target are skipped when no later
    frame needs them: `plan` (from `skip_plan`) says which. `stats`, if given, counts the
    frames decoded ("decoded") for the benchmark and tests.
    """
    # float seconds, not Fractions: Fraction arithmetic per packet cost ~0.3 s of Python per
    # 15,000 packets, time that also holds the GIL against pick_parallel's other threads
    tb, ctx = float(stream.time_base), stream.codec_context
    rate = float(stream.average_rate or stream.guessed_rate or 25)
    far_level, near_frames = plan
    margin = max(near_frames / rate, 0.2)
    chosen, unsure = [None] * len(targets), []
    state = {"k": 0, "prev": None, "skip": None}

    def take(frame):  # an output frame, in presentation order
        if frame.pts is None:
            return
        now, k, prev = frame.pts * tb, state["k"], state["prev"]
        while k < len(targets) and now >= targets[k]:
            t = targets[k]
            near_prev = prev is not None and t - prev[1] <= now - t
            chosen[k] = shrink(*(prev if near_prev else (frame, now)))
            if skip and (t - prev[1] if near_prev else now - t) >= margin:
                unsure.append(k)  # a skipped frame may have been nearer (variable frame rate)
            k += 1
        state["k"], state["prev"] = k, (frame, now)

    def feed(packet):
        t = packet.pts * tb if packet.pts is not None else None
        k = state["k"]
        far = skip and t is not None and k < len(targets) and t < targets[k] - margin
        if far != state["skip"]:  # set only on a change: each set is a call into PyAV
            ctx.skip_frame, state["skip"] = far_level if far else "DEFAULT", far
        frames = stream.decode(packet)
        if stats is not None:
            stats["decoded"] = stats.get("decoded", 0) + len(frames)
        for frame in frames:
            take(frame)

    def release(held, fresh):  # decode the held packets, from a keyframe if `fresh`
        if fresh:
            ctx.flush_buffers()
            state["prev"] = None
        for p in held:
            feed(p)

    gop, last_key, sought = 0.0, None, seek
    packets = packets_from(container, stream, targets[0] if seek else 0.0)
    held, fresh, fed = [], True, False  # packets not yet decoded; whether they start a new GOP
    try:
        while state["k"] < len(targets):
            packet = next(packets, None)
            if packet is None or packet.size == 0:  # end of stream
                break
            t = packet.pts * tb if packet.pts is not None else None
            want = targets[state["k"]] - margin
            if packet.is_keyframe and t is not None:
                if last_key is not None and t > last_key:
                    gop = max(gop, float(t - last_key))
                last_key = t
                if t < want and seek and not sought and targets[state["k"]] - t > 2 * (gop or 10.0):
                    packets, held, fresh, sought, last_key = packets_from(container, stream, targets[state["k"]]), [], True, True, None
                    continue
                sought = False
                if t < want:  # a GOP that starts before the next target's neighbourhood: drop the rest
                    held, fresh = [], True
            held.append(packet)
            if t is None or t >= want:  # near the next target: decode what is held, in order
                release(held, fresh)
                held, fresh, fed = [], False, True
        if held and state["k"] < len(targets):  # targets past the last keyframe: the clip's last frames
            release(held, fresh)
            fed = True
        if fed:
            for frame in stream.decode(None):  # frames still held back for reordering
                if stats is not None:
                    stats["decoded"] = stats.get("decoded", 0) + 1
                take(frame)
    except VideoError:
        raise
    except Exception as e:  # noqa: BLE001 - PyAV raises many types for corrupt data
        raise VideoError(f"{container.name}: corrupt video stream ({type(e).__name__}: {e})") from None
    finally:
        ctx.skip_frame = "DEFAULT"
    return finish_exact(container, stream, targets, shrink, seek, skip, chosen, unsure, state["prev"])


def skip_plan(container, stream) -> tuple[str, int]:
    """(FFmpeg skip level, frames kept before a target) for the frames far from any target.

    Any stream: skip non-reference frames ("NONREF"). An x264 stream made with ref=1 (the
    veryfast, superfast and ultrafast presets) may skip every B-frame ("BIDIR"), B-pyramid
    references included: x264 sorts a P-frame's candidate references by display distance and
    keeps the first `ref` (encoder.c, reference_build_list), so with ref=1 each P-frame
    references only the I- or P-frame before it. A B-frame target needs the B references of
    its own run of B-frames, so a run (bframes + 1 frames) before each target is decoded whole.
    tests/test_frames.py checks both plans against a full decode, and that ref=2 and ref=3
    streams, whose P-frames do reference B-frames, keep "NONREF".
    """
    opts = x264_options(container, stream)
    if opts.get("ref") != "1" or opts.get("interlaced", "0") != "0" or opts.get("frame-packing"):
        return NONREF_PLAN
    bframes = int(opts["bframes"]) if opts.get("bframes", "").isdigit() else 16  # 16: x264's maximum
    return "BIDIR", max(NONREF_PLAN[1], bframes + 1)


def x264_options(container, stream) -> dict[str, str]:
    """The encoder options x264 writes as text into the first packet ({} for other encoders)."""
    try:
        packet = next(container.demux(stream), None)
        head = bytes(packet)[:8192] if packet is not None else b""
        container.seek(0)
    except Exception:  # noqa: BLE001 - an unreadable head is a plain stream; decoding reports it
        return {}
    at = head.find(b"x264 - core")
    text = head[at:head.find(b"\x00", at)].decode("ascii", "replace") if at >= 0 else ""
    _, _, options = text.partition(" - options: ")
    return dict(item.split("=", 1) for item in options.split() if "=" in item)


def finish_exact(container, stream, targets, shrink, seek, skip, chosen, unsure, last) -> list:
    """Targets past the last frame take the last frame; unsure ones are redone without skipping."""
    for k, c in enumerate(chosen):
        if c is None:
            if last is None:
                raise VideoError(f"{container.name}: no decodable frames")
            chosen[k] = shrink(*last)
    if skip and unsure:
        redo = pick_exact(container, stream, [targets[k] for k in unsure], shrink, seek, skip=False)
        for k, c in zip(unsure, redo):
            chosen[k] = c
    return chosen


def pick_keyframes(container, stream, targets: list[float], shrink) -> list:
    """Approximate sampling for hour-long videos: the keyframe nearest each target, decoded alone.

    Off by default (frames.sampling: keyframes): the frame times are the keyframes' own, so
    targets closer than a GOP may share a frame and the spacing follows the encoder's GOPs.
    """
    tb, ctx = stream.time_base, stream.codec_context
    out, done = [], {}
    for t in targets:
        before = after = None
        for packet in packets_from(container, stream, t):
            if packet.pts is None or not packet.is_keyframe:
                continue
            if packet.pts * tb <= t:
                before = packet
            else:
                after = packet
                break
        pick = before if after is None or (before is not None and t - before.pts * tb <= after.pts * tb - t) else after
        if pick is None:
            raise VideoError(f"{container.name}: no keyframe found near {t:.2f}s")
        if pick.pts not in done:
            ctx.flush_buffers()
            frames = [f for f in itertools.chain(stream.decode(pick), stream.decode(None)) if f.pts is not None]
            if not frames:
                raise VideoError(f"{container.name}: keyframe at {float(pick.pts * tb):.2f}s does not decode")
            done[pick.pts] = shrink(frames[0], float(frames[0].pts * tb))
        out.append(done[pick.pts])
    return out


# ---------------------------------------------------------------- other decoders (RGB)


def decode_decord(path: Path, cfg, clip):
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
    return rgb_images(list(batch), cfg.max_pixels), [i / fps for i in idx], duration, 0


def decode_folder(path: Path, cfg, clip, folder_fps: float):
    """A folder of numbered frame images, read as a video at folder_fps."""
    import numpy as np
    from PIL import Image

    files = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise VideoError(f"{path}: frame folder holds no images")
    duration = len(files) / folder_fps
    idx = [min(len(files) - 1, int(t * folder_fps)) for t in sample_times(duration, cfg, clip)]
    frames = [np.asarray(Image.open(files[i]).convert("RGB")) for i in idx]
    return rgb_images(frames, cfg.max_pixels), [i / folder_fps for i in idx], duration, 0


def rgb_images(frames: list, max_pixels: int):
    """Resized RGB frames stacked; sets whose frames differ in size are cropped to the smallest."""
    import numpy as np

    frames = [resize_to_budget(np.asarray(f, dtype=np.uint8), max_pixels) for f in frames]
    h = min(f.shape[0] for f in frames)
    w = min(f.shape[1] for f in frames)
    return np.stack([f[:h, :w] for f in frames])


# ---------------------------------------------------------------- cached entry point

_MEMORY: OrderedDict = OrderedDict()  # key -> FrameSet, least recently used first


def memory_limit() -> int:
    return int(float(env_number("RLER_MEMORY_CACHE_MB", 512)) * 2**20)


def disk_limit() -> int:
    return int(float(env_number("RLER_CACHE_MAX_GB", 20)) * 2**30)


def env_number(name: str, default: float) -> float:
    raw = os.environ.get(name)
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise VideoError(f"${name}={raw!r}: expected a number") from None
    if value < 0:
        raise VideoError(f"${name}={raw!r}: must be >= 0")
    return value


def fingerprint(path: Path) -> list:
    """What identifies a video's content cheaply: size, mtime and a hash of its head and tail."""
    import hashlib

    if path.is_dir():
        return sorted([p.name, p.stat().st_size, p.stat().st_mtime_ns] for p in path.iterdir())
    st = path.stat()
    h = hashlib.sha1()
    with open(path, "rb") as fh:
        h.update(fh.read(1 << 16))
        if st.st_size > 1 << 17:
            fh.seek(-(1 << 16), os.SEEK_END)
            h.update(fh.read(1 << 16))
    return [st.st_size, st.st_mtime_ns, h.hexdigest()]


def cache_key(path: Path, cfg, clip, folder_fps: float) -> str:
    """Content, decoder, frame choice and resize: everything that changes the pixels."""
    import hashlib
    import json
    from dataclasses import asdict

    settings = {k: v for k, v in asdict(cfg).items() if k != "mode"}  # mode does not change pixels
    raw = [CACHE_FORMAT, INTERPOLATION, fingerprint(path), sorted(settings.items()), clip,
           folder_fps if path.is_dir() else None]
    return hashlib.sha1(json.dumps(raw, default=str).encode()).hexdigest()


def default_cache_dir() -> Path:
    root = os.environ.get("RLER_CACHE") or Path.home() / ".cache" / "rler-eval"
    return Path(root) / "frames"


def load_frames(path, cfg, clip=None, cache_dir=None, folder_fps: float = 3.0):
    """The FrameSet of `path` under `cfg`: from memory, else the disk cache, else decoded.

    cache_dir: the disk cache folder [$RLER_CACHE or ~/.cache/rler-eval]/frames; False
    turns both caches off (`rler-eval run --no-cache`).
    """
    path = Path(path)
    check_readable(path)
    key = cache_key(path, cfg, clip, folder_fps)  # also the frame set's digest: it fixes the pixels
    if cache_dir is False:
        return build_frameset(path, *decoded_rgb(path, cfg, clip, folder_fps), digest=key)
    if key in _MEMORY:
        _MEMORY.move_to_end(key)
        return _MEMORY[key]
    cache_file = Path(cache_dir or default_cache_dir()) / f"{key}{CACHE_SUFFIX}"
    stored = read_cache(cache_file)
    if stored is None:
        stored = decoded_rgb(path, cfg, clip, folder_fps, cache_file)
    frameset = build_frameset(path, *stored, digest=key)
    remember(key, frameset)
    return frameset


def decoded_rgb(path: Path, cfg, clip, folder_fps: float, cache_file: Path | None = None):
    """(RGB frames, stamps, duration) decoded from the source, stored first if `cache_file`."""
    images, stamps, duration, colorspace = decode(path, cfg, clip, folder_fps)
    if cache_file is not None:
        write_cache(cache_file, (images, stamps, duration, colorspace))
    return to_rgb(images, pix_fmt_of(images), colorspace), stamps, duration


def build_frameset(path: Path, frames, stamps, duration, digest=None):
    from rler_eval.types import FrameSet

    return FrameSet(frames=frames, timestamps=[round(float(t), 3) for t in stamps],
                    source=str(path), duration=float(duration), digest=digest)


def remember(key: str, frameset) -> None:
    """Keep a frame set in memory, evicting the least recently used beyond the byte budget."""
    limit = memory_limit()
    if frameset.frames.nbytes > limit:
        return
    _MEMORY[key] = frameset
    total = sum(f.frames.nbytes for f in _MEMORY.values())
    while total > limit:
        _, old = _MEMORY.popitem(last=False)
        total -= old.frames.nbytes


def check_readable(path: Path) -> None:
    if not path.exists():
        raise VideoError(f"{path}: video not found")
    if path.is_file() and path.stat().st_size == 0:
        raise VideoError(f"{path}: zero-length file")


def decode(path: Path, cfg, clip, folder_fps: float):
    """(images, stamps, duration, colorspace): yuv420p planes (N, 3H/2, W) or RGB (N, H, W, 3)."""
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


# ---------------------------------------------------------------- disk cache


# zstd level for cache entries: on the 720p test clip (32 frames at 50,176 px) level 3 stores
# 1.54 MB of 2.4 MB of planes in about 30 ms (level 6: 1.53 MB in 66 ms; level 1: 1.70 MB),
# and any level decompresses in about 4 ms.
ZSTD_LEVEL = 3


def encode_chunks(images, pix_fmt: str) -> list[bytes]:
    """One zstd frame per chunk of frames (yuv420p stacked as in the conversion), lossless.

    x264 at qp 0 stored a third less, but decoding it back took 30-50 ms per 32 frames,
    which capped a disk hit at about 12x faster than decoding the source (bench/bench_video.py).
    Chunks cost 0.4% in size and let a hit decompress and convert on every core.
    """
    import numpy as np
    import zstandard

    ranges = chunks(len(images))
    parts = [b""] * len(ranges)

    def job(i):  # a compressor per thread: one zstd context is not to be shared
        a, b = ranges[i]
        raw = images[a:b] if pix_fmt == "rgb24" else stacked_planes(images[a:b])
        parts[i] = zstandard.ZstdCompressor(level=ZSTD_LEVEL).compress(np.ascontiguousarray(raw).tobytes())

    in_threads(job, range(len(ranges)))
    return parts


def decode_chunks(blob, sizes: list[int], head: dict):
    """The RGB frames of an entry: each chunk decompressed and converted on its own thread."""
    import numpy as np
    import zstandard

    n, shape = head["shape"][0], head["shape"][1:]
    rgb = shape if head["pix_fmt"] == "rgb24" else [shape[0] * 2 // 3, shape[1], 3]
    out = np.empty([n, *rgb], np.uint8)
    ranges, offsets = chunks(n), list(itertools.accumulate([0, *sizes]))
    if len(ranges) != len(sizes) or offsets[-1] != len(blob):
        raise ValueError("chunk table does not match the entry")

    def job(i):
        (a, b), part = ranges[i], blob[offsets[i]:offsets[i + 1]]
        raw = np.frombuffer(zstandard.ZstdDecompressor().decompress(part), np.uint8)
        if head["pix_fmt"] == "rgb24":
            out[a:b] = raw.reshape(out[a:b].shape)
        else:
            stacked_to_rgb(raw, int(head["colorspace"]), out[a:b])

    in_threads(job, range(len(ranges)))
    return out


CACHE_SUFFIX = ".frames"
CACHE_MAGIC = b"rler-eval frames\n"  # then a 4-byte header length, a JSON header, the zstd chunks


def read_cache(cache_file: Path):
    """The stored (RGB frames, stamps, duration), or None; a hit refreshes its LRU time."""
    import json

    try:
        data = memoryview(cache_file.read_bytes())
    except OSError:
        return None
    try:
        m = len(CACHE_MAGIC)
        if bytes(data[:m]) != CACHE_MAGIC:
            return None
        size = int.from_bytes(data[m:m + 4], "little")
        head = json.loads(bytes(data[m + 4:m + 4 + size]))
        frames = decode_chunks(data[m + 4 + size:], head["chunks"], head)
        stored = frames, head["timestamps"], float(head["duration"])
    except Exception:  # noqa: BLE001 - a torn or foreign cache file is simply rebuilt
        return None
    try:
        os.utime(cache_file)
    except OSError:
        pass
    return stored


_WRITTEN: dict[str, int] = {}  # cache folder -> bytes written since its size was last measured


def write_cache(cache_file: Path, stored) -> None:
    """Atomic: write a temporary file, then rename, so concurrent shards never read a torn file."""
    import json

    images, stamps, duration, colorspace = stored
    pix_fmt = pix_fmt_of(images)
    parts = encode_chunks(images, pix_fmt)
    head = json.dumps({"shape": list(images.shape), "pix_fmt": pix_fmt, "chunks": [len(c) for c in parts],
                       "timestamps": [float(t) for t in stamps], "duration": float(duration or 0.0),
                       "colorspace": int(colorspace)}).encode()
    cache_file.parent.mkdir(parents=True, exist_ok=True)
    # the temporary name ends in the entry suffix, so a file left by a killed writer still counts
    # against the bound and is evicted (readers never open it: its name is no key)
    tmp = cache_file.with_name(f"{cache_file.stem}.tmp{os.getpid()}{CACHE_SUFFIX}")
    tmp.write_bytes(b"".join([CACHE_MAGIC, len(head).to_bytes(4, "little"), head, *parts]))
    os.replace(tmp, cache_file)
    folder = str(cache_file.parent)
    _WRITTEN[folder] = _WRITTEN.get(folder, 0) + cache_file.stat().st_size
    if folder not in _MEASURED or _WRITTEN[folder] + _MEASURED[folder] > disk_limit():
        evict(cache_file.parent, disk_limit())


_MEASURED: dict[str, int] = {}  # cache folder -> its size at the last scan


def evict(folder: Path, limit: int) -> None:
    """Delete least recently used entries until the folder holds at most 90% of `limit`."""
    entries = []
    for p in itertools.chain(folder.glob(f"*{CACHE_SUFFIX}"), folder.glob("*.npz")):  # .npz: format 2
        try:
            st = p.stat()
        except OSError:  # removed by another process meanwhile
            continue
        entries.append((st.st_mtime, st.st_size, p))
    total = sum(e[1] for e in entries)
    if total > limit:
        for _, size, p in sorted(entries, key=lambda e: e[0]):
            if total <= 0.9 * limit:
                break
            try:
                p.unlink()
            except OSError:
                pass
            total -= size
    _MEASURED[str(folder)], _WRITTEN[str(folder)] = total, 0
