"""Training recipes: one YAML file describes a whole run (model, data, SFT, GRPO, rewards).

Why a recipe file: a run that produced a published checkpoint must be re-runnable from a
single file. TRL's own configs (`SFTConfig`, `GRPOConfig`) are used as they are: the
recipe's `sft:` and `grpo:` sections are passed to them verbatim, so every TRL option
(accelerate, DeepSpeed, vLLM rollouts, logging) is available without re-declaring it.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from pathlib import Path

import yaml

from rler_eval.benchmarks.synthvid import DEFAULT_VERDICTS, VERDICT_LAYOUTS
from rler_eval.errors import TaskError


@dataclass
class Recipe:
    """A parsed recipe; see train/tiny_cpu.yaml and train/qwen2_5_vl_7b.yaml."""

    name: str
    output_dir: str  # the final checkpoint goes here; stages write under <output_dir>/stages/
    # the starting model: {"path": DIR_OR_HUB_ID} or {"build": {hidden, layers, ...}} for a tiny
    # Qwen2.5-VL built offline by rler_eval.testing.build_tiny_model (its tokenizer is trained
    # on the training questions as well as the built-in corpus)
    model: dict = field(default_factory=dict)
    # where questions come from: {"task": CARD, "limit": N} (synthvid cards) or
    # {"video_r1": JSON, "video_root": DIR, "card": CARD} or {"charades_sta": TXT, "video_root": DIR};
    # synthvid's "change_verdicts": "adjacent" (default) or "separated" lays out the change
    # targets' comparison (synthvid.attribute_comparison); "moment_frames": true restates the
    # moments a color_at or change question names as frames ("0.8 s is frame 2.", sft_target)
    data: dict = field(default_factory=dict)
    frames: dict = field(default_factory=dict)  # overrides of the card's frames (n, max_pixels, ...)
    sft: dict | None = None  # SFTConfig keyword arguments; absent: no warm start
    # GRPOConfig keyword arguments, plus "oversample": {family: k} (synthvid families drawn k
    # times as often, as in the SFT loop); absent: SFT only
    grpo: dict | None = None
    rewards: dict = field(default_factory=dict)  # reward name -> weight; empty: rewards.DEFAULT_WEIGHTS
    contrast_mode: str = "mask"  # frame_sensitive without key frames: "mask" cited frames or "shuffle"
    # false: contrast mode for every sample, key frames or not (exercises it on synthvid)
    contrast_use_key_frames: bool = True
    # frames a citation may be off and still match a key frame in G. 1 suits key frames taken
    # from annotated times; 0 where the key frames are exact sampled frames (synthvid), since
    # at ±1 G cannot tell "at 0.8 s" -> frame 2 from its neighbour (results/grpo_tuning.md)
    grounding_tolerance: int = 1
    # the accelerate config this recipe is launched with (train/launch.sh, tests/test_launch.py)
    accelerate_config: str = "train/accelerate_cpu.yaml"
    trust_remote_code: bool = False
    path: str = ""

    @property
    def out(self) -> Path:
        return Path(self.output_dir)


def load_recipe(path) -> Recipe:
    path = Path(path)
    if not path.is_file():
        raise TaskError(f"recipe not found: {path}")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise TaskError(f"{path}: invalid YAML: {e}") from None
    known = {f.name for f in fields(Recipe)}
    unknown = set(raw) - known
    if unknown:
        raise TaskError(f"{path}: unknown field(s) {sorted(unknown)}; known: {sorted(known - {'path'})}")
    for req in ("name", "output_dir", "model", "data"):
        if req not in raw:
            raise TaskError(f"{path}: missing required field '{req}'")
    check_target_options(path, raw["data"] or {})
    return Recipe(**raw, path=str(path))


def check_target_options(path, data: dict) -> None:
    """synthvid's SFT-target settings in `data:`, checked when the recipe loads."""
    layout = data.get("change_verdicts", DEFAULT_VERDICTS)
    if layout not in VERDICT_LAYOUTS:
        raise TaskError(f"{path}: data.change_verdicts is {layout!r}; use one of {', '.join(VERDICT_LAYOUTS)}")
    moments = data.get("moment_frames", False)
    if not isinstance(moments, bool):
        raise TaskError(f"{path}: data.moment_frames is {moments!r}; use true or false")


def sft_config(recipe: Recipe, output_dir: Path, **overrides):
    """TRL SFTConfig from the recipe's `sft:` section, with CPU-safe defaults."""
    from trl import SFTConfig

    sft = dict(recipe.sft or {})
    if sft.pop("engine", "trl") != "trl":
        raise ValueError(f"{recipe.path}: sft engine {recipe.sft['engine']!r} is not TRL's; it has no SFTConfig")
    kwargs = {**default_args(), **sft, **cpu_only(), **overrides}
    return SFTConfig(output_dir=str(output_dir), **kwargs)


GRPO_OWN_KEYS = ("oversample",)  # the recipe's grpo keys that are not GRPOConfig's


def grpo_config(recipe: Recipe, output_dir: Path, **overrides):
    """TRL GRPOConfig from the recipe's `grpo:` section; reward weights in recipe order."""
    from trl import GRPOConfig

    from rler_eval.training.rewards import DEFAULT_WEIGHTS

    weights = recipe.rewards or DEFAULT_WEIGHTS
    own = {k: v for k, v in (recipe.grpo or {}).items() if k not in GRPO_OWN_KEYS}
    kwargs = {**default_args(), **own, **cpu_only(), **overrides}
    kwargs.setdefault("reward_weights", [float(w) for w in weights.values()])
    return GRPOConfig(output_dir=str(output_dir), **kwargs)


def default_args() -> dict:
    return {"save_strategy": "no", "report_to": ["tensorboard"], "logging_steps": 5}


def cpu_only() -> dict:
    """Without a GPU, a recipe still loads (e.g. to check the 7B recipe): CPU and fp32."""
    import torch

    if torch.cuda.is_available():
        return {}
    return {"use_cpu": True, "bf16": False, "fp16": False}
