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
