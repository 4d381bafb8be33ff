"""Checks that keep one sample from escaping its data or its budget.

Why before any work is done: a row is untrusted input. Its video path could name any
file on the machine (`../../etc/passwd`, a symlink, an absolute path), and with a remote
`openai:` model the decoded frames would leave the machine. A FIFO or a device makes the
decoder hang or read forever. A 1 MB question becomes a million tokens the processor
tokenizes and the model prefills for many minutes. Each of these becomes an error record
for that sample only, before a decoder, processor or model ever sees it.
"""

from __future__ import annotations

import math
import os
import signal
import stat
import threading
from contextlib import contextmanager
from pathlib import Path

from rler_eval.errors import InputError, RlerError, VideoError

DEFAULT_CONTEXT = 32768  # tokens, when the backend does not say its context length
PATCH_PIXELS = 28 * 28  # Qwen2.5-VL: one visual token per 28x28 pixels after merging


class SampleTimeout(RlerError):
    """A sample ran past --sample-timeout."""


# ---------------------------------------------------------------- containment


def check_paths(sample, root: Path, allow_outside: bool = False) -> None:
    """Every file a sample names must be a regular file (or a frame folder) under `root`.

    Paths are resolved with symlinks followed, so a link inside the root that points out
    of it is caught. Nothing is opened here: `os.stat` never blocks on a FIFO.
    """
    named = [("video", sample.video, True)] + [("images", p, False) for p in sample.images or []] + \
        [("subtitles", sample.subtitles, False)]
    roots = [Path(root).expanduser().resolve(), extracted_root()]
    real_root = roots[0]
    for field, path, folder_ok in named:
        if not path:
            continue
        real = Path(path).expanduser().resolve()
        if not allow_outside and not any(real == r or r in real.parents for r in roots):
            raise InputError(f"sample {sample.id}: field '{field}' {path} resolves to {real}, outside the data "
                             f"root {real_root} (pass --allow-outside-data-root to allow it)")
        check_file_kind(sample, field, path, real, folder_ok)


def extracted_root() -> Path:
    """Where adapters write files they extract from the data itself (e.g. Video-MMMU's question
    images stored as parquet bytes, under $RLER_CACHE/videommmu_images): trusted like the root."""
    return (Path(os.environ.get("RLER_CACHE") or "~/.cache/rler-eval").expanduser() / "videommmu_images").resolve()


def check_file_kind(sample, field: str, path, real: Path, folder_ok: bool) -> None:
    try:
        mode = os.stat(real).st_mode
    except FileNotFoundError:
        if field == "subtitles":
            return  # optional: adapters read subtitles only when present
        raise VideoError(f"{path}: {field} not found") from None
    except OSError as e:
        raise VideoError(f"{path}: cannot stat ({e.strerror})") from None
    if stat.S_ISREG(mode) or (folder_ok and stat.S_ISDIR(mode)):
        return
    kind = "a folder" if stat.S_ISDIR(mode) else "a FIFO" if stat.S_ISFIFO(mode) else \
        "a device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) else "a socket" if stat.S_ISSOCK(mode) else "special"
    raise VideoError(f"{path}: {field} is {kind}, not a regular file; only regular files are read")


# ---------------------------------------------------------------- prompt size


def context_length(backend) -> int | None:
    """The model's context in tokens, when the backend can tell."""
    value = getattr(backend, "context_length", None)
    if isinstance(value, int):
        return value
    config = getattr(getattr(backend, "model", None), "config", None)
    for cfg in (getattr(config, "text_config", None), config):
        value = getattr(cfg, "max_position_embeddings", None)
        if isinstance(value, int):
            return value
    return None


def prompt_budget(backend, max_new_tokens: int, cap: int | None) -> int:
    ctx = context_length(backend) or DEFAULT_CONTEXT
    budget = ctx - max_new_tokens
    return min(budget, cap) if cap else budget


def estimate_tokens(prompt, backend, max_pixels: int, budget: int) -> int:
    """Text tokens (exact with the backend's tokenizer) plus the visual tokens of the frames.

    Each token spans at least one UTF-8 byte, so a text of at most `budget` bytes fits and
    is not tokenized here; only longer texts pay for exact counting.
    """
    text = prompt.text() + (prompt.system or "")
    visual = prompt.n_frames * max(1, math.ceil(max_pixels / PATCH_PIXELS))
    n_bytes = len(text.encode("utf-8"))
    if n_bytes + visual <= budget:
        return n_bytes + visual
    tokenizer = getattr(backend, "tokenizer", None)
    if tokenizer is not None and n_bytes <= 64 * budget:
        return len(tokenizer(text, add_special_tokens=False)["input_ids"]) + visual
    return math.ceil(n_bytes / 4) + visual  # no tokenizer, or far too long to bother counting


def check_prompt_size(prompt, backend, max_new_tokens: int, max_pixels: int, cap: int | None = None) -> None:
    budget = prompt_budget(backend, max_new_tokens, cap)
    n = estimate_tokens(prompt, backend, max_pixels, budget)
    if n > budget:
        raise InputError(f"prompt of about {n} tokens exceeds the budget of {budget} tokens (model context "
                         f"minus max_new_tokens, or --max-prompt-tokens); not sent to the model")


# ---------------------------------------------------------------- time limit


@contextmanager
def time_limit(seconds: float | None, what: str = "sample"):
    """Raise SampleTimeout in the main thread after `seconds` (SIGALRM; no-op elsewhere).

    Python checks signals between bytecodes, so a generation loop, an HTTP read or a
    decode in Python stops at its next step; long single C calls stop when they return.
    """
    if not seconds or threading.current_thread() is not threading.main_thread() or not hasattr(signal, "SIGALRM"):
        yield
        return
    if seconds <= 0:
        raise SampleTimeout(f"{what} ran past the sample timeout")

    def expire(signum, frame):
        raise SampleTimeout(f"{what} ran past the sample timeout ({seconds:.0f} s left at its start); stopped")

    old = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
