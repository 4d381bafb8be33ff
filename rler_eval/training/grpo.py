"""GRPO with TRL's GRPOTrainer and the four RLER rewards.

Why so little code: TRL does the rollouts, group-relative advantages, KL and clipping,
and logs each reward function's mean separately. Frames go in as a list of images (an
`images` column), which TRL wires for Qwen2.5-VL; its GRPO does not wire native video.
The one piece TRL has no hook for is the contrast mode of the frame-sensitive reward,
which needs the policy itself: `ContrastReward` is attached to the trainer's model.
"""

from __future__ import annotations

from pathlib import Path


def run_grpo(recipe, model, processor, rows, output_dir: Path, args=None):
    """Optimise `model` on rows (prompt, images, reward columns), a list or a (lazy) Dataset.

    `args`: the stage's GRPOConfig when the caller built it before loading the model (as
    it must under DeepSpeed ZeRO-3, so that loading is sharded). Returns the trainer.
    """
    from trl import GRPOTrainer

    from rler_eval.training.data import REWARD_COLUMNS, to_dataset
    from rler_eval.training.recipe import grpo_config
    from rler_eval.training.rewards import DEFAULT_WEIGHTS, ContrastReward, reward_funcs

    names = list((recipe.rewards or DEFAULT_WEIGHTS).keys())
    contrast = ContrastReward(mode=recipe.contrast_mode, use_key_frames=recipe.contrast_use_key_frames,
                              tol=recipe.grounding_tolerance)
    keep = ("prompt", "images", *REWARD_COLUMNS)
    dataset = to_dataset([{k: r[k] for k in keep} for r in rows]) if isinstance(rows, list) else rows
    args = args or grpo_config(recipe, output_dir)
    trainer = GRPOTrainer(model=model, args=args, train_dataset=dataset, processing_class=processor,
                          reward_funcs=reward_funcs(names, contrast))
    contrast.attach(trainer.model, processor)
    trainer.train()
    return trainer
