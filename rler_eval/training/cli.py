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

    Under `accelerate launch` every process runs this. Each stage's TRL config is built
    before its model is loaded (so DeepSpeed ZeRO-3 shards the weights as they load); the
    main process prepares data and the starting model first, the others then reuse them;
    GRPO decodes frames lazily, each process only its own rows; saving goes through
    `trainer.save_model()`, which gathers ZeRO-3 shards and writes once.
    """
    work = Path("runs/train") / recipe.name
    todo = [s for s in stages if getattr(recipe, s) is not None]
    args = stage_config(todo[0], recipe, work / todo[0]) if todo else None
    with main_process_first(args):
        card, samples = load_data(recipe)
        model_dir = start_checkpoint(recipe, samples, work, stages)
    log = {"recipe": recipe.path, "n_questions": len(samples), "processes": n_processes(), "stages": {}}
    log.update(earlier_logs(work, stages))
    for stage in todo:
        args = args or stage_config(stage, recipe, work / stage)
        model, processor = load_checkpoint(recipe, model_dir)
        with main_process_first(args):
            data = stage_data(stage, recipe, card, samples)
        t0 = time.time()
        trainer = run_stage(stage, recipe, model, processor, data, work / stage, args)
        model_dir = work / stage
        save_stage(trainer, processor, model_dir)
        log["stages"][stage] = {"wall_s": round(time.time() - t0, 1)}
        log[stage] = trainer.state.log_history
        args = None
    if not is_main_process():
        return recipe.out
    return finish(recipe, model_dir, log)


def stage_config(stage: str, recipe: Recipe, out: Path):
    from rler_eval.training.recipe import grpo_config, sft_config

    if stage == "sft":
        if (recipe.sft or {}).get("engine") == "loop":
            return None  # the lean loop (sft.run_loop) is single-process and takes no TRL config
        return sft_config(recipe, out, remove_unused_columns=False)
    if stage == "grpo":
        return grpo_config(recipe, out)
    raise ValueError(f"unknown stage {stage!r}; use sft and/or grpo")


def main_process_first(args):
    """The main process runs the block first (decoding, building), then the others."""
    import contextlib

    return args.main_process_first(local=False, desc="prepare") if args is not None else contextlib.nullcontext()


def is_main_process() -> bool:
    from accelerate import PartialState

    return PartialState().is_main_process


def n_processes() -> int:
    from accelerate import PartialState

    return PartialState().num_processes


def stage_data(stage: str, recipe: Recipe, card, samples):
    """SFT: decoded rows with targets. GRPO: a lazy dataset, decoded per process as read."""
    from rler_eval.training import data

    if stage == "sft":
        return data.build_rows(samples, card, with_targets=True, verdicts=recipe.data.get("change_verdicts"),
                               moments=bool(recipe.data.get("moment_frames", False)))
    return data.lazy_dataset(samples, card, oversample=(recipe.grpo or {}).get("oversample"))


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


def run_stage(stage, recipe, model, processor, rows, out, args=None):
    if stage == "sft":
        from rler_eval.training.sft import run_sft
        return run_sft(recipe, model, processor, rows, out, args)
    if stage == "grpo":
        from rler_eval.training.grpo import run_grpo
        return run_grpo(recipe, model, processor, rows, out, args)
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


def initial_model(recipe: Recipe, samples, build_dir: Path) -> Path:
    """The starting checkpoint: a local/hub checkpoint, or a tiny Qwen2.5-VL built offline."""
    if "build" in recipe.model:
        from rler_eval.testing import build_tiny_model
        extra = [s.question + "\n" + " ".join(s.options or []) + "\n" + str(s.doc.get("rationale", ""))
                 for s in samples[:2000]]
        key = json.dumps({"build": recipe.model["build"], "corpus": extra}, sort_keys=True, default=str)
        marker = build_dir / "build_key.json"
        if marker.is_file() and marker.read_text() == key:
            return build_dir  # built by an earlier run or by the main process of this launch
        out = build_tiny_model(build_dir, extra_corpus=extra, **recipe.model["build"])
        marker.write_text(key)
        return out
    if not recipe.model.get("path"):
        raise ValueError(f"{recipe.path}: model needs 'path' or 'build'")
    return recipe.model["path"]


def load_checkpoint(recipe: Recipe, path):
    from transformers import AutoModelForImageTextToText, AutoProcessor

    processor = AutoProcessor.from_pretrained(str(path), trust_remote_code=recipe.trust_remote_code)
    model = AutoModelForImageTextToText.from_pretrained(str(path), trust_remote_code=recipe.trust_remote_code)
    return model, processor


def save_stage(trainer, processor, out: Path) -> None:
    """The stage's model via `trainer.save_model()` (gathers ZeRO-3 shards, writes on the main
    process only), its processor and log; every process waits until the files are there."""
    trainer.save_model(str(out))
    if trainer.is_world_process_zero():
        processor.save_pretrained(out)
        (out / "stage_log.json").write_text(json.dumps(trainer.state.log_history, default=str))
    trainer.accelerator.wait_for_everyone()


def finish(recipe: Recipe, model_dir: Path, log: dict) -> Path:
    """Copy the last stage's model to the output folder, greedy decoding by default, with
    its training log and reward curves (main process only)."""
    import shutil

    from transformers import GenerationConfig

    from rler_eval.training.plot import plot

    out = recipe.out
    # TRL's pickled arguments and generated model card are not part of the model
    skip = shutil.ignore_patterns("checkpoint-*", "runs", "training_args.bin", "README.md")
    shutil.copytree(model_dir, out, dirs_exist_ok=True, ignore=skip)
    gen = GenerationConfig.from_pretrained(out) if (out / "generation_config.json").is_file() else GenerationConfig()
    gen.do_sample = False
    gen.save_pretrained(out)
    (out / "training_log.json").write_text(json.dumps(log, indent=1, default=str))
    plot(out / "training_log.json", out / "reward_curves.png")
    return out
