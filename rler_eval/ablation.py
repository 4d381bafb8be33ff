"""Frame ablations: does a model read the pixels, and in the right order?

Why: an accuracy above chance proves nothing about seeing if the question text alone
gives the answer away. `--ablate-frames blank` replaces every frame with one uniform
grey image (same size, same captions and timestamps), so whatever a model still gets
right it got from the text. `shuffle` keeps the pixels but permutes their order under
the unchanged captions, which breaks questions about time (order, moments, direction)
and leaves time-free ones intact. Both are deterministic per sample id.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import replace

ABLATIONS = ("blank", "shuffle")
GREY = 128


def ablate(frameset, mode: str | None, sample_id: str = ""):
    """A copy of `frameset` with `mode` applied ("blank", "shuffle"); None/"" leaves it as is."""
    import numpy as np

    if not mode or frameset is None:
        return frameset
    frames = np.asarray(frameset.frames)
    if mode == "blank":
        return replace(frameset, frames=np.full_like(frames, GREY), digest=derived(frameset, mode))
    if mode == "shuffle":
        order = list(range(len(frames)))
        seed = int(hashlib.sha1(f"shuffle|{sample_id}".encode()).hexdigest()[:8], 16)
        rng = random.Random(seed)
        while len(order) > 1 and order == sorted(order):  # a permutation that actually moves frames
            rng.shuffle(order)
        return replace(frameset, frames=frames[order], digest=derived(frameset, f"{mode}|{sample_id}"))
    raise ValueError(f"unknown frame ablation {mode!r}; use one of {', '.join(ABLATIONS)}")


def derived(frameset, change: str) -> str | None:
    """The digest of an ablated copy: the original's plus the (deterministic) change."""
    return f"{frameset.digest}|{change}" if frameset.digest else None
