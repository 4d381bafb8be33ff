"""Scale-out: every recipe's TRL config built in the environment `accelerate launch` gives it,
the multi-node launcher, and a real 2-process CPU launch (gloo) through the training CLI."""

import json
import os
import subprocess
import sys
from pathlib import Path
from unittest import mock

import pytest
import yaml

from rler_eval.training.launch_env import launcher, launcher_env
from rler_eval.training.recipe import grpo_config, load_recipe, sft_config
from rler_eval.training.sft import LOOP_DEFAULTS

REPO = Path(__file__).resolve().parent.parent
RECIPES = sorted(p for p in (REPO / "train").glob("*.yaml") if "name" in (yaml.safe_load(p.read_text()) or {}))



@pytest.fixture(autouse=True)
def no_global_deepspeed_config():
    """TrainingArguments built in a DeepSpeed launch environment register a process-global
    HfDeepSpeedConfig in transformers; drop it so later tests load models normally."""
    yield
    from transformers.integrations.deepspeed import unset_hf_deepspeed_config

    unset_hf_deepspeed_config()

def test_there_are_recipes_and_each_names_an_existing_accelerate_config():
    assert {p.name for p in RECIPES} >= {"tiny_cpu.yaml", "qwen2_5_vl_7b.yaml"}
    for path in RECIPES:
        assert (REPO / load_recipe(path).accelerate_config).is_file(), path


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: p.name)
def test_recipe_configs_build_in_the_accelerate_launch_environment(path, tmp_path, monkeypatch):
    monkeypatch.chdir(REPO)  # accelerate configs name their DeepSpeed JSON relative to the checkout
    recipe = load_recipe(path)
    env = launcher_env(REPO / recipe.accelerate_config)
    with mock.patch.dict(os.environ, env):
        cfg = grpo_config(recipe, tmp_path / "grpo")
        assert cfg.num_generations >= 2 and len(cfg.reward_weights) == 4
        if recipe.sft and recipe.sft.get("engine", "trl") == "trl":
            assert sft_config(recipe, tmp_path / "sft").learning_rate > 0
        elif recipe.sft:  # the lean loop: every setting is one it knows
            assert set(recipe.sft) - {"engine"} <= set(LOOP_DEFAULTS), recipe.sft
    if env.get("ACCELERATE_USE_DEEPSPEED") == "true":
        assert cfg.deepspeed_plugin is not None and cfg.deepspeed_plugin.zero_stage == 3
        assert cfg.use_vllm and cfg.vllm_mode == "colocate" and 0 < cfg.vllm_max_model_length <= 16384


def test_the_environment_is_real_enough_to_catch_the_mixed_precision_clash(tmp_path, monkeypatch):
    """accelerate_zero3.yaml as it was (mixed_precision next to a DeepSpeed JSON) fails as on a cluster."""
    monkeypatch.chdir(REPO)
    old = yaml.safe_load((REPO / "train/accelerate_zero3.yaml").read_text())
    old["mixed_precision"] = "bf16"
    (tmp_path / "old.yaml").write_text(yaml.safe_dump(old))
    env = launcher_env(tmp_path / "old.yaml")
    assert "mixed_precision" in env["ACCELERATE_CONFIG_DS_FIELDS"]
    with mock.patch.dict(os.environ, env), pytest.raises(ValueError, match="will be ignored"):
        grpo_config(load_recipe(REPO / "train/qwen2_5_vl_7b.yaml"), tmp_path / "g")


def test_multinode_launch_joins_one_torchrun_rendezvous(monkeypatch):
    monkeypatch.chdir(REPO)
    flags = ("--num_machines", "2", "--machine_rank", "1", "--main_process_ip", "127.0.0.1", "--num_processes", "16")
    cmd, args = launcher(REPO / "train/accelerate_zero3.yaml", *flags)
    assert cmd is None  # pdsh would return a `deepspeed --hostfile ... --launcher pdsh` command
    assert (args.nnodes, args.node_rank, args.nproc_per_node) == ("2", 1, "8")
    slurm = (REPO / "train/slurm_multinode.sh").read_text()
    assert "--output=logs/" not in slurm and "train/launch.sh" in slurm


def write_small_task(tmp_path: Path, n_frames: int = 4) -> Path:
    card = {"name": "synth_launch", "benchmark": "synthvid", "data_root": str(tmp_path / "data"),
            "frames": {"n": n_frames, "max_pixels": 56 * 56}, "args": {"generate": True, "n": 8, "seed": 5}}
    (tmp_path / "card.yaml").write_text(yaml.safe_dump(card))
    return tmp_path / "card.yaml"


def launch_recipe(tmp_path: Path) -> Path:
    """The tiny recipe's shape, from the bundled rler-tiny, contrast mode on for every sample."""
    recipe = {"name": "launch", "output_dir": str(tmp_path / "out"), "model": {"path": str(REPO / "checkpoints/rler-tiny")},
              "data": {"task": str(write_small_task(tmp_path)), "limit": 8},
              "grpo": {"max_steps": 2, "learning_rate": 0.001, "per_device_train_batch_size": 2, "num_generations": 4,
                       "max_completion_length": 40, "temperature": 1.0, "logging_steps": 1, "report_to": []},
              "contrast_mode": "mask", "contrast_use_key_frames": False}
    (tmp_path / "recipe.yaml").write_text(yaml.safe_dump(recipe))
    return tmp_path / "recipe.yaml"


def check_checkpoint(out: Path) -> dict:
    """The saved model loads and generates; returns the training log."""
    import torch
    from transformers import AutoModelForImageTextToText, AutoProcessor

    model = AutoModelForImageTextToText.from_pretrained(out).eval()
    processor = AutoProcessor.from_pretrained(out)
    ids = processor(text=["Question: what colour is the square?"], return_tensors="pt")
    with torch.no_grad():
        gen = model.generate(**ids, max_new_tokens=8)
    assert gen.shape[1] > ids["input_ids"].shape[1]
    return json.loads((out / "training_log.json").read_text())


@pytest.mark.slow
@pytest.mark.skipif(not (REPO / "checkpoints/rler-tiny/config.json").is_file(), reason="needs the bundled rler-tiny")
def test_two_process_accelerate_launch_trains_saves_and_reloads(tmp_path):
    from conftest import free_port

    recipe = launch_recipe(tmp_path)
    exe = Path(sys.executable).parent / "accelerate"
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1")
    cmd = [str(exe), "launch", "--config_file", str(REPO / "train/accelerate_cpu.yaml"), "--num_processes", "2",
           "--main_process_port", str(free_port()), "-m", "rler_eval.cli", "train", "--recipe", str(recipe),
           "--stages", "grpo"]
    done = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=1500)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-6000:]
    log = check_checkpoint(tmp_path / "out")
    assert log["processes"] == 2
    steps = [row for row in log["grpo"] if "rewards/frame_sensitive/mean" in row]
    assert len(steps) == 2
    assert (tmp_path / "runs/train/launch/grpo/stage_log.json").is_file()
