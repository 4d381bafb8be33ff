"""--ablate-frames: blank frames carry no pixels, shuffled frames keep pixels but not order."""

import numpy as np
import pytest

from rler_eval.ablation import ablate
from rler_eval.types import FrameSet


def frameset():
    frames = np.stack([np.full((8, 8, 3), 10 * i, np.uint8) for i in range(8)])
    return FrameSet(frames=frames, timestamps=[0.25 + 0.5 * i for i in range(8)], source="v.mp4")


def test_blank_is_uniform_grey_with_the_same_captions():
    fs = frameset()
    out = ablate(fs, "blank", "q1")
    assert out.frames.shape == fs.frames.shape and len(np.unique(out.frames)) == 1
    assert out.timestamps == fs.timestamps and fs.frames[3, 0, 0, 0] == 30  # the original is untouched


def test_shuffle_moves_frames_deterministically_per_sample():
    fs = frameset()
    a, b, c = ablate(fs, "shuffle", "q1"), ablate(fs, "shuffle", "q1"), ablate(fs, "shuffle", "q2")
    order = [int(f[0, 0, 0]) // 10 for f in a.frames]
    assert sorted(order) == list(range(8)) and order != list(range(8))
    assert np.array_equal(a.frames, b.frames) and a.timestamps == fs.timestamps
    assert not np.array_equal(a.frames, c.frames)


def test_no_ablation_and_unknown_modes():
    fs = frameset()
    assert ablate(fs, None) is fs and ablate(None, "blank") is None
    with pytest.raises(ValueError, match="unknown frame ablation"):
        ablate(fs, "invert")


def test_prompt_keys_follow_the_pixels_without_hashing_them(tmp_path):
    """A decoded set's digest is its cache key; ablated copies get their own, derived digests."""
    from rler_eval import video
    from rler_eval.prompt import prompt_key
    from rler_eval.tasks import FrameConfig

    clip = video.write_video(tmp_path / "c.mp4", [np.full((32, 32, 3), 20 * i, np.uint8) for i in range(8)])
    cfg = FrameConfig(n=4)
    fs = video.load_frames(clip, cfg, cache_dir=False)
    assert fs.digest == video.cache_key(clip, cfg, None, 3.0)
    keys = {prompt_key([], x) for x in (fs, ablate(fs, "blank", "q1"), ablate(fs, "shuffle", "q1"),
                                        ablate(fs, "shuffle", "q2"))}
    assert len(keys) == 4
    assert prompt_key([], ablate(fs, "shuffle", "q1")) == prompt_key([], ablate(fs, "shuffle", "q1"))
    bare = FrameSet(frames=fs.frames.copy(), timestamps=fs.timestamps, source=fs.source)  # no digest: hashed
    other = FrameSet(frames=fs.frames[::-1].copy(), timestamps=fs.timestamps, source=fs.source)
    assert prompt_key([], bare) != prompt_key([], other) and bare.digest and other.digest
