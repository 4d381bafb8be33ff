"""Task cards: one YAML file per evaluable task, in the repository's `tasks/` folder.

Why cards: as in lm-evaluation-harness, a task is data, not code. The card names the
benchmark module that reads and scores it, where its data lives, how frames are sampled
and which prompt variant to use; the benchmark module stays generic across its subsets.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field, fields
from pathlib import Path

import yaml

from rler_eval.errors import TaskError

TASKS_DIR = Path(__file__).resolve().parent.parent / "tasks"


@dataclass
class FrameConfig:
    """How frames are sampled from a video for one task."""

    n: int = 8  # frames sampled uniformly (ignored when fps is set)
    fps: float | None = None  # sample at this rate instead, capped at max_frames
    max_frames: int = 64
    max_pixels: int = 224 * 224  # each frame is resized to at most this many pixels
    decoder: str = "pyav"  # "pyav" or "decord"
    mode: str = "images"  # "images": labelled frames; "video": native video input
    ablate: str | None = None  # "blank" (uniform grey frames) or "shuffle" (frame order); see ablation.py


@dataclass
class TaskCard:
    """A parsed task card. `args` holds benchmark-specific settings."""

    name: str
    benchmark: str
    data_root: str = ""
    split: str = "test"
    frames: FrameConfig = field(default_factory=FrameConfig)
    prompt: str = "evidence"  # "evidence" adds the protocol instructions; "plain" does not
    max_new_tokens: int = 256
    strategy: str = "greedy"
    metric: str = "accuracy"
    download_hint: str = ""  # the command a user runs on a connected machine to get the data
    args: dict = field(default_factory=dict)
    path: str = ""

    @property
    def root(self) -> Path:
        return Path(expand_env(self.data_root)).expanduser()


def expand_env(value: str) -> str:
    """Expand ${VAR} and ${VAR:-default}; RLER_DATA defaults to ./data."""
    def sub(m: re.Match) -> str:
        name, default = m.group(1), m.group(2)
        if name == "RLER_DATA" and default is None:
            default = "data"
        return os.environ.get(name) or (default or "")
    return re.sub(r"\$\{(\w+)(?::-([^}]*))?\}", sub, value)


def list_tasks() -> list[str]:
    return sorted(p.stem for p in TASKS_DIR.glob("*.yaml"))


def load_task(name_or_path: str) -> TaskCard:
    """Load `tasks/<name>.yaml` (or a path to a card) into a TaskCard."""
    path = Path(name_or_path)
    if not path.suffix:
        path = TASKS_DIR / f"{name_or_path}.yaml"
    if not path.is_file():
        known = ", ".join(list_tasks())
        raise TaskError(f"unknown task '{name_or_path}': no card at {path}. Known tasks: {known}")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise TaskError(f"{path}: invalid YAML: {e}") from None
    return card_from_dict(raw, str(path))


def card_from_dict(raw: dict, path: str = "<dict>") -> TaskCard:
    known = {f.name for f in fields(TaskCard)}
    unknown = set(raw) - known
    if unknown:
        raise TaskError(f"{path}: unknown field(s) {sorted(unknown)}; known: {sorted(known)}")
    for req in ("name", "benchmark"):
        if req not in raw:
            raise TaskError(f"{path}: missing required field '{req}'")
    frames_raw = raw.get("frames") or {}
    frame_known = {f.name for f in fields(FrameConfig)}
    if set(frames_raw) - frame_known:
        raise TaskError(f"{path}: unknown frames field(s) {sorted(set(frames_raw) - frame_known)}")
    return TaskCard(**{**raw, "frames": FrameConfig(**frames_raw), "path": path})
