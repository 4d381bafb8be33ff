"""RLER-Training: teach a model to cite its evidence, with TRL's SFT and GRPO trainers.

Why a thin layer: TRL already does the hard parts (batched rollouts, group-relative
advantages, KL, logging, accelerate/DeepSpeed/vLLM scaling). This package adds only what
TRL has no hook for: datasets of labelled frames built with `rler_eval.video`, reward
callables that reuse `rler_eval.evidence` (so training and election score evidence the
same way), the contrast mode of the frame-sensitive reward, and recipes.

    data.py     Samples -> TRL rows (conversational prompt, images, reward columns)
    rewards.py  accuracy, transparency, anti_repetition, frame_sensitive (+ contrast mode)
    recipe.py   the YAML recipe schema (dataclasses) and its loader
    sft.py      supervised warm start (TRL SFTTrainer)
    grpo.py     GRPO (TRL GRPOTrainer)
    plot.py     reward curves from a trainer log
    cli.py      `rler-eval train --recipe FILE`
"""
