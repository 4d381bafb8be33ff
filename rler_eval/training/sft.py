"""Supervised warm start with TRL's SFTTrainer on evidence-format targets.

Why: a small model sampled from scratch almost never emits a parsable
<think>/<frames>/<answer> completion, so GRPO would see all-zero format rewards and
learn nothing. A short SFT pass on synthvid's rationales (which cite the key frames)
teaches the format first; GRPO then shapes *which* frames are cited and the answers.
"""

from __future__ import annotations

from pathlib import Path


def run_sft(recipe, model, processor, rows: list[dict], output_dir: Path, args=None):
    """Train on prompt/completion/images rows; returns the trainer (its model is trained in place)."""
    from trl import SFTTrainer

    from rler_eval.training.data import to_dataset
    from rler_eval.training.recipe import sft_config

    keep = ("prompt", "completion", "images")
    dataset = to_dataset([{k: r[k] for k in keep} for r in rows])
    args = args or sft_config(recipe, output_dir, remove_unused_columns=False)
    trainer = SFTTrainer(model=model, args=args, train_dataset=dataset, processing_class=processor)
    trainer.train()
    return trainer
