"""Reward curves from a training log, as a matplotlib PNG.

Why a separate script: TRL already logs every reward, KL, completion length and clip
ratio (to tensorboard or wandb); this turns the saved `log_history` (trainer_state.json
or our training_log.json) into one picture that can be committed next to a checkpoint.

    python -m rler_eval.training.plot LOG.json --out curves.png
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

PANELS = [("SFT loss", ["loss"], "sft"), ("GRPO rewards", ["rewards/"], "grpo"),
          ("GRPO total reward", ["reward"], "grpo"), ("KL", ["kl"], "grpo"),
          ("completion length", ["completions/mean_length"], "grpo"), ("clip ratio", ["clip_ratio/region_mean"], "grpo")]


def histories(log: dict) -> dict[str, list[dict]]:
    """{"sft": [...], "grpo": [...]} from our log, or {"grpo": ...} from a bare trainer_state.json."""
    if "log_history" in log:
        return {"grpo": log["log_history"], "sft": log["log_history"]}
    return {k: v for k, v in log.items() if isinstance(v, list)}


def series(history: list[dict], prefix: str) -> dict[str, tuple[list, list]]:
    out: dict[str, tuple[list, list]] = {}
    for row in history:
        for key, value in row.items():
            match = key.startswith(prefix) and key.endswith("/mean") if prefix.endswith("/") else key == prefix
            if match and isinstance(value, (int, float)):
                xs, ys = out.setdefault(key, ([], []))
                xs.append(row.get("step", len(xs)))
                ys.append(value)
    return out


def smoothed(ys: list, points: int = 40) -> tuple[list, int]:
    """A trailing mean over k = len/points logged values, and k. Logged every step, a GRPO
    reward is the mean of one small batch and jumps between a few values (rler-tiny: 8 prompts
    of 4 completions), so the raw curve hides any trend."""
    import numpy as np

    k = max(1, len(ys) // points)
    c = np.cumsum(np.insert(np.asarray(ys, dtype=float), 0, 0.0))
    return [(c[i + 1] - c[max(0, i + 1 - k)]) / min(k, i + 1) for i in range(len(ys))], k


def plot(log_path, out_path) -> Path:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    hist = histories(json.loads(Path(log_path).read_text()))
    fig, axes = plt.subplots(2, 3, figsize=(13, 7))
    for ax, (title, prefixes, stage) in zip(axes.flat, PANELS):
        window = 1
        for prefix in prefixes:
            for key, (xs, ys) in series(hist.get(stage, []), prefix).items():
                ys, window = smoothed(ys)
                ax.plot(xs, ys, lw=0.9, label=key.replace("rewards/", "").replace("/mean", ""))
        ax.set_title(title + (f" (mean of the last {window} logged)" if window > 1 else ""), fontsize=10)
        ax.set_xlabel("step")
        if ax.lines and len(ax.lines) > 1:
            ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out_path, dpi=90)
    plt.close(fig)
    return Path(out_path)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("log", help="training_log.json or trainer_state.json")
    p.add_argument("--out", default="reward_curves.png")
    args = p.parse_args(argv)
    print(plot(args.log, args.out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
