"""`rler-eval train --recipe FILE`: SFT warm start, then GRPO, then save and plot.

Why one command: a published checkpoint (like the bundled rler-tiny) must be
reproducible from its recipe alone. The stages run in order, each stage's checkpoint is
kept under `runs/train/<recipe name>/` (so SFT-only and SFT+GRPO can be compared), and
the final model, its tokenizer/processor, the training log and the reward curves are
written to the recipe's `output_dir`.

On many GPUs, launch the same command with accelerate (see train/launch.sh):
    accelerate launch --config_file train/accelerate_zero3.yaml -m rler_eval.cli train --recipe ...
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from rler_eval.training.recipe import Recipe, load_recipe


def add_arguments(p) -> None:
    p.add_argument("--recipe", required=True, help="recipe YAML, e.g. train/tiny_cpu.yaml")
    p.add_argument("--stages", default="sft,grpo", help="which stages to run, comma-separated [sft,grpo]")
    p.add_argument("--limit", type=int, default=None, help="use only the first N training questions")
    p.add_argument("--output-dir", default=None, help="override the recipe's output_dir")
    p.add_argument("--max-steps", type=int, default=None, help="override max_steps of every stage (smoke runs)")


def cli(args) -> int:
    recipe = load_recipe(args.recipe)
    if args.output_dir:
        recipe.output_dir = args.output_dir
    if args.limit:
        recipe.data["limit"] = args.limit
    stages = [s.strip() for s in args.stages.split(",") if s.strip()]
    if args.max_steps:
        for stage in ("sft", "grpo"):
            if getattr(recipe, stage) is not None:
                setattr(recipe, stage, {**getattr(recipe, stage), "max_steps": args.max_steps})
    out = train(recipe, stages)
    print(f"trained model saved to {out}")
    return 0


def train(recipe: Recipe, stages=("sft", "grpo")) -> Path:
    """Run the recipe's stages; returns the output folder holding the final model.

    Each stage starts from the checkpoint the previous one saved (so TRL's GRPO reference
    model, loaded from the policy's own path, is the SFT model, not the initial one). A
    stage already finished in `runs/train/<name>/` and not asked for again is reused: its
    checkpoint and log are picked up, so `--stages grpo` re-runs only GRPO after an SFT.
    """
    card, samples = load_data(recipe)
    work = Path("runs/train") / recipe.name
    model_dir = start_checkpoint(recipe, samples, work, stages)
    rows = build_rows(recipe, card, samples, with_targets=recipe.sft is not None and "sft" in stages)
    log = {"recipe": recipe.path, "n_questions": len(rows), "stages": {}}
    log.update(earlier_logs(work, stages))
    for stage in [s for s in stages if getattr(recipe, s) is not None]:
        model, processor = load_checkpoint(recipe, model_dir)
        t0 = time.time()
        trainer = run_stage(stage, recipe, model, processor, rows, work / stage)
        model_dir = work / stage
        save(trainer.model, processor, model_dir)
        (model_dir / "stage_log.json").write_text(json.dumps(trainer.state.log_history, default=str))
        log["stages"][stage] = {"wall_s": round(time.time() - t0, 1)}
        log[stage] = trainer.state.log_history
    model, processor = load_checkpoint(recipe, model_dir)
    return finish(recipe, model, processor, log)


def start_checkpoint(recipe: Recipe, samples, work: Path, stages) -> Path:
    """The latest finished earlier stage not being re-run, else the recipe's starting model."""
    for stage in ("grpo", "sft"):
        if stage not in stages and (work / stage / "stage_log.json").is_file() and "sft" not in stages:
            print(f"starting from the finished {stage} stage in {work / stage}")
            return work / stage
    return initial_model(recipe, samples, work / "init")


def earlier_logs(work: Path, stages) -> dict:
    out = {}
    for stage in ("sft", "grpo"):
        path = work / stage / "stage_log.json"
        if stage not in stages and path.is_file():
            out[stage] = json.loads(path.read_text())
    return out


def run_stage(stage, recipe, model, processor, rows, out):
    if stage == "sft":
        from rler_eval.training.sft import run_sft
        return run_sft(recipe, model, processor, rows, out)
    if stage == "grpo":
        from rler_eval.training.grpo import run_grpo
        return run_grpo(recipe, model, processor, rows, out)
    raise ValueError(f"unknown stage {stage!r}; use sft and/or grpo")


def load_data(recipe: Recipe):
    from rler_eval.tasks import FrameConfig, expand_env, load_task
    from rler_eval.training import data

    spec = {k: expand_env(v) if isinstance(v, str) else v for k, v in recipe.data.items()}
    card = load_task(spec.get("task") or spec.get("card") or "synthvid_train")
    card.frames = FrameConfig(**{**card.frames.__dict__, **(recipe.frames or {})})
    if "video_r1" in spec:
        samples = data.video_r1_samples(spec["video_r1"], card, spec.get("video_root"))
    elif "charades_sta" in spec:
        samples = data.charades_sta_samples(spec["charades_sta"], card, spec["video_root"])
    else:
        samples = data.synthvid_samples(card)
    return card, samples[: spec.get("limit") or None]


def build_rows(recipe, card, samples, with_targets: bool) -> list[dict]:
    from rler_eval.training.data import build_rows as rows_for

    return rows_for(samples, card, with_targets)


def initial_model(recipe: Recipe, samples, build_dir: Path) -> Path:
    """The starting checkpoint: a local/hub checkpoint, or a tiny Qwen2.5-VL built offline."""
    if "build" in recipe.model:
        from rler_eval.testing import build_tiny_model
        extra = [s.question + "\n" + " ".join(s.options or []) + "\n" + str(s.doc.get("rationale", ""))
                 for s in samples[:2000]]
        return build_tiny_model(build_dir, extra_corpus=extra, **recipe.model["build"])
    if not recipe.model.get("path"):
        raise ValueError(f"{recipe.path}: model needs 'path' or 'build'")
    return recipe.model["path"]


def load_checkpoint(recipe: Recipe, path):
    from transformers import AutoModelForImageTextToText, AutoProcessor

    processor = AutoProcessor.from_pretrained(str(path), trust_remote_code=recipe.trust_remote_code)
    model = AutoModelForImageTextToText.from_pretrained(str(path), trust_remote_code=recipe.trust_remote_code)
    return model, processor


def save(model, processor, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    processor.save_pretrained(out)


def finish(recipe: Recipe, model, processor, log: dict) -> Path:
    """Save the final model with its log and reward curves; greedy decoding by default."""
    from rler_eval.training.plot import plot

    out = recipe.out
    model.generation_config.do_sample = False
    save(model, processor, out)
    (out / "training_log.json").write_text(json.dumps(log, indent=1, default=str))
    plot(out / "training_log.json", out / "reward_curves.png")
    return out
