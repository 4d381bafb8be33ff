"""The element-wise mean of several checkpoints' weights (a uniform "model soup").

Why: GRPO runs of rler-tiny that differ only in their seed add between +1.2 and +3.2 points
over their SFT stage. Averaging the weights of runs that start from the same model is a known
way to keep what they agree on and cancel part of their seed noise (Wortsman et al. 2022,
"Model soups", arXiv:2203.05482; Ramé et al. 2024, "WARP", arXiv:2406.16768). This script
made the averaged models of results/grpo_tuning.md (thirteenth session): there the mean of
seeds 42 and 1 beat both runs, and the mean of seeds 2 and 3 fell below both, so no recipe
uses it.

Floating tensors are averaged in float64 and cast back; any other tensor must be equal in
every checkpoint. Config, tokenizer and processor files are copied from the first folder.

    python bench/average_checkpoints.py OUT_DIR CHECKPOINT_DIR CHECKPOINT_DIR [...]
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path


def average(dirs: list[Path], out: Path) -> Path:
    from safetensors.torch import load_file, save_file

    names = sorted(p.name for p in Path(dirs[0]).glob("*.safetensors"))
    if not names:
        raise SystemExit(f"{dirs[0]}: no *.safetensors weights to average")
    shutil.rmtree(out, ignore_errors=True)
    skip = shutil.ignore_patterns("*.safetensors", "checkpoint-*", "runs", "training_args.bin", "stage_log.json")
    shutil.copytree(dirs[0], out, ignore=skip)
    for name in names:
        paths = [Path(d) / name for d in dirs]
        save_file(mean_tensors([load_file(p) for p in paths], paths), out / name, metadata={"format": "pt"})
    return out


def mean_tensors(tensors: list[dict], paths: list[Path]) -> dict:
    import torch

    for t, p in zip(tensors[1:], paths[1:]):
        if set(t) != set(tensors[0]):
            raise SystemExit(f"{p}: its tensors differ from {paths[0]}'s; only one architecture can be averaged")
    out = {}
    for k, first in tensors[0].items():
        if first.is_floating_point():
            out[k] = (sum(t[k].double() for t in tensors) / len(tensors)).to(first.dtype).contiguous()
        elif all(torch.equal(first, t[k]) for t in tensors[1:]):
            out[k] = first
        else:
            raise SystemExit(f"{paths[0]}: non-float tensor {k} differs between checkpoints; it cannot be averaged")
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("out", type=Path, help="folder to write the averaged checkpoint to (replaced)")
    p.add_argument("checkpoints", type=Path, nargs="+", help="two or more checkpoint folders of one architecture")
    args = p.parse_args(argv)
    if len(args.checkpoints) < 2:
        p.error("give at least two checkpoints to average")
    print(average(args.checkpoints, args.out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
