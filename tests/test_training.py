"""Training: reward orderings, contrast mode on a real model, and SFT -> GRPO steps that learn."""

import json
from pathlib import Path

import pytest
import yaml

from rler_eval import evidence
from rler_eval.training import rewards

REPO = Path(__file__).resolve().parent.parent
OPTS = ["red", "green", "blue", "yellow"]


def call(fn, texts, answer="B", key=(3,), n=8, answer_type="option", options=OPTS):
    k = len(texts)
    return fn(completions=[[{"role": "assistant", "content": t}] for t in texts], answer=[answer] * k,
              answer_type=[answer_type] * k, options=[options] * k, n_frames=[n] * k, key_frames=[list(key)] * k)


GOOD = evidence.format_evidence("Frame 3 shows the square is green at that moment.", [3], "B")
WRONG = evidence.format_evidence("Frame 3 shows the square is red at that moment.", [3], "A")
MALFORMED = "the square is green B"
REPETITIVE = evidence.format_evidence("the square is green " * 30, [3], "B")


def test_accuracy_orders_correct_above_incorrect_by_answer_type():
    assert call(rewards.accuracy, [GOOD, WRONG]) == [1.0, 0.0]
    num = call(rewards.accuracy, ["<answer>10</answer>", "<answer>14</answer>", "<answer>40</answer>"],
               answer="10", answer_type="number", options=None)
    assert num[0] == 1.0 > num[1] > num[2] == 0.0
    text = call(rewards.accuracy, ["<answer>a man opens the door</answer>", "<answer>a dog</answer>"],
                answer="a man opens a door", answer_type="text", options=None)
    assert text[0] > text[1]


def test_transparency_gates_malformed_and_repetition_is_penalised():
    t = call(rewards.transparency, [GOOD, MALFORMED, "<think>x</think><answer>B</answer>"])
    assert t[0] == 1.0 and t[1] < 0.5 and t[2] < t[0]
    r = call(rewards.anti_repetition, [GOOD, REPETITIVE, ""])
    assert r[0] > 0.9 > 0.2 > r[1] and r[2] == 0.0


def test_frame_sensitive_is_one_to_one_grounding_f1_with_tolerance():
    cite = lambda frames: evidence.format_evidence("Frame 1 shows it.", frames, "B")  # noqa: E731
    g = call(rewards.frame_sensitive, [cite([3]), cite([4]), cite([6]), cite([3, 6, 7]), MALFORMED], key=(3,))
    assert g[0] == 1.0 and g[1] == 1.0  # ±1 frame tolerance
    assert g[2] == 0.0 and g[3] == 0.5 and g[4] == 0.0  # [3, 6, 7]: one match, precision 1/3


@pytest.fixture(scope="module")
def tiny():
    from transformers import AutoModelForImageTextToText, AutoProcessor

    from rler_eval.testing import tiny_model_dir

    path = tiny_model_dir()
    return AutoModelForImageTextToText.from_pretrained(path).eval(), AutoProcessor.from_pretrained(path)


def test_contrast_mode_runs_on_the_tiny_model(tiny):
    from PIL import Image

    model, processor = tiny
    images = [Image.new("RGB", (56, 56), (40 * i, 200 - 20 * i, 90)) for i in range(4)]
    content = []
    for i in range(4):
        content += [{"type": "text", "text": evidence.frame_caption(i + 1, i * 0.5) + ":"}, {"type": "image", "text": ""}]
    content.append({"type": "text", "text": "Question: What colour is the square?\n" + evidence.instructions()})
    prompt = [{"role": "user", "content": content}]
    reward = rewards.ContrastReward(mode="mask").attach(model, processor)
    texts = [evidence.format_evidence("Frame 2 shows a green square.", [2], "B"),
             evidence.format_evidence("Frame 2 shows a red square.", [2], "A")]
    out = reward(prompts=[prompt, prompt], completions=texts, answer=["B", "B"], answer_type=["option"] * 2,
                 options=[OPTS] * 2, n_frames=[4, 4], key_frames=[[], []], images=[images, images])
    assert 0.0 <= out[0] <= 1.0 and out[1] == 0.0  # a wrong answer earns no contrast reward
    prefix, span = rewards.teacher_forced(evidence.parse(texts[0], 4, "option", OPTS))
    assert span == "B" and prefix.endswith("<frames>2</frames>\n<answer>")
    p_real = reward.span_prob(prompt, prefix, span, images)
    assert 0.0 < p_real < 1.0
    # the reasoning is not part of the scored text: a think naming the answer scores the same
    stating = evidence.format_evidence("Frame 2 shows a green square, so the answer is B.", [2], "B")
    assert reward(prompts=[prompt] * 2, completions=[texts[0], stating], answer=["B"] * 2, answer_type=["option"] * 2,
                  options=[OPTS] * 2, n_frames=[4, 4], key_frames=[[], []], images=[images] * 2) == [out[0]] * 2
    masked = reward.alter(images, [2])
    assert masked[1].getpixel((0, 0)) == (128, 128, 128) and masked[0] is images[0]
    shuffled = rewards.ContrastReward(mode="shuffle").alter(images, [])
    assert sorted(id(i) for i in shuffled) == sorted(id(i) for i in images)
    # with key frames, the contrast reward is plain G
    assert reward(prompts=[prompt], completions=[texts[0]], answer=["B"], answer_type=["option"], options=[OPTS],
                  n_frames=[4], key_frames=[[2]], images=[images]) == [1.0]


def test_sft_then_grpo_steps_change_the_model_and_log_every_reward(tmp_path, monkeypatch):
    import torch
    from transformers import AutoModelForImageTextToText

    from rler_eval.training.cli import train
    from rler_eval.training.recipe import load_recipe

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("RLER_DATA", str(tmp_path / "data"))
    card = {"name": "synth_train_small", "benchmark": "synthvid", "data_root": str(tmp_path / "data" / "st"),
            "frames": {"n": 4, "max_pixels": 56 * 56}, "args": {"generate": True, "n": 8, "seed": 5}}
    (tmp_path / "card.yaml").write_text(yaml.safe_dump(card))
    recipe = {"name": "test", "output_dir": str(tmp_path / "out"),
              "model": {"build": {"hidden": 64, "layers": 2, "vision_depth": 1, "vision_hidden": 32}},
              "data": {"task": str(tmp_path / "card.yaml"), "limit": 8},
              "sft": {"max_steps": 12, "learning_rate": 0.01, "per_device_train_batch_size": 4, "logging_steps": 4,
                      "report_to": []},
              "grpo": {"max_steps": 2, "learning_rate": 0.001, "per_device_train_batch_size": 4, "num_generations": 4,
                       "max_completion_length": 48, "temperature": 1.5, "logging_steps": 1, "report_to": []}}
    (tmp_path / "recipe.yaml").write_text(yaml.safe_dump(recipe))
    out = train(load_recipe(tmp_path / "recipe.yaml"))

    before = AutoModelForImageTextToText.from_pretrained(tmp_path / "runs/train/test/sft").state_dict()
    after = AutoModelForImageTextToText.from_pretrained(out).state_dict()
    assert any(not torch.equal(before[k], after[k]) for k in before), "GRPO steps did not change the model"
    init = AutoModelForImageTextToText.from_pretrained(tmp_path / "runs/train/test/init").state_dict()
    assert any(not torch.equal(init[k], before[k]) for k in init), "SFT steps did not change the model"

    log = json.loads((out / "training_log.json").read_text())
    grpo_keys = set().union(*log["grpo"])
    for name in ("accuracy", "transparency", "anti_repetition", "frame_sensitive"):
        assert f"rewards/{name}/mean" in grpo_keys
    assert "kl" in grpo_keys or "completions/mean_length" in grpo_keys
    assert (out / "reward_curves.png").stat().st_size > 5000

    # resuming with --stages grpo starts from the finished SFT stage and keeps its log
    again = train(load_recipe(tmp_path / "recipe.yaml"), stages=("grpo",))
    log2 = json.loads((again / "training_log.json").read_text())
    assert log2["sft"] == log["sft"] and "grpo" in log2


def test_the_same_recipe_trains_the_same_weights_twice(tmp_path, monkeypatch):
    """`make tiny-model` reproduces the committed checkpoint only if training is deterministic:
    the same recipe run twice from scratch (clips generated anew, the lean SFT loop, sampled GRPO
    completions) must give bit-identical weights. A seed left out anywhere breaks this."""
    import torch
    from transformers import AutoModelForImageTextToText

    from rler_eval.training.cli import train
    from rler_eval.training.recipe import load_recipe

    card = {"name": "synth_train_det", "benchmark": "synthvid", "frames": {"n": 4, "max_pixels": 56 * 56},
            "args": {"generate": True, "n": 8, "seed": 7}}
    recipe = {"name": "det", "model": {"build": {"hidden": 64, "layers": 2, "vision_depth": 1, "vision_hidden": 32}},
              "sft": {"engine": "loop", "max_steps": 6, "learning_rate": 0.01, "per_device_train_batch_size": 4,
                      "warmup_steps": 2, "logging_steps": 3, "save_steps": 100},
              "grpo": {"max_steps": 2, "learning_rate": 0.001, "per_device_train_batch_size": 4, "num_generations": 4,
                       "max_completion_length": 48, "temperature": 1.5, "logging_steps": 1, "report_to": []}}
    weights = []
    for run in ("a", "b"):
        root = tmp_path / run
        root.mkdir()
        monkeypatch.chdir(root)
        monkeypatch.setenv("RLER_DATA", str(root / "data"))
        (root / "card.yaml").write_text(yaml.safe_dump({**card, "data_root": str(root / "data" / "sd")}))
        (root / "recipe.yaml").write_text(yaml.safe_dump(
            {**recipe, "output_dir": str(root / "out"), "data": {"task": str(root / "card.yaml"), "limit": 8}}))
        out = train(load_recipe(root / "recipe.yaml"))
        weights.append(AutoModelForImageTextToText.from_pretrained(out).state_dict())
    sft = AutoModelForImageTextToText.from_pretrained(tmp_path / "b/runs/train/det/sft").state_dict()
    assert any(not torch.equal(sft[k], weights[1][k]) for k in sft), "GRPO did not change the model"
    assert weights[0].keys() == weights[1].keys()
    for k in weights[0]:
        assert torch.equal(weights[0][k], weights[1][k]), f"{k} differs between two runs of the same recipe"


def test_recipes_load_into_valid_trl_configs(tmp_path):
    from rler_eval.training.recipe import grpo_config, load_recipe, sft_config
    from rler_eval.training.sft import LOOP_DEFAULTS

    for name in ("tiny_cpu.yaml", "qwen2_5_vl_7b.yaml"):
        recipe = load_recipe(REPO / "train" / name)
        cfg = grpo_config(recipe, tmp_path / name)
        assert cfg.num_generations >= 2 and len(cfg.reward_weights) == 4
        if recipe.sft and recipe.sft.get("engine", "trl") == "trl":
            assert sft_config(recipe, tmp_path / name).learning_rate > 0
        elif recipe.sft:  # the lean loop: every setting is one it knows
            assert set(recipe.sft) - {"engine"} <= set(LOOP_DEFAULTS), recipe.sft
    big = load_recipe(REPO / "train" / "qwen2_5_vl_7b.yaml")
    cfg = grpo_config(big, tmp_path / "big")
    assert cfg.use_vllm and cfg.vllm_mode == "colocate" and big.model["path"].endswith("Qwen2.5-VL-7B-Instruct")


def test_grpo_oversample_repeats_a_family_and_is_kept_out_of_trl(tmp_path):
    """`grpo: {oversample: {family: k}}` lists each prompt of that family k times; GRPOConfig never sees it."""
    from rler_eval.tasks import load_task
    from rler_eval.training.data import lazy_dataset
    from rler_eval.training.recipe import grpo_config, load_recipe
    from rler_eval.types import Sample

    samples = [Sample(id=str(i), task="t", question="q", answer="A", doc={"family": f})
               for i, f in enumerate(["change", "motion", "change", "color_at"])]
    card = load_task("synthvid_train")
    table = lazy_dataset(samples, card, oversample={"change": 3})
    assert sorted(table.with_format(None)["sample"]) == [0, 0, 0, 1, 2, 2, 2, 3]
    with pytest.raises(ValueError, match=r"grpo oversample: no training rows of family \['chnage'\]"):
        lazy_dataset(samples, card, oversample={"chnage": 2})

    raw = yaml.safe_load((REPO / "train" / "tiny_cpu.yaml").read_text())
    raw["grpo"]["oversample"] = {"color_at": 2}
    (tmp_path / "r.yaml").write_text(yaml.safe_dump(raw))
    cfg = grpo_config(load_recipe(tmp_path / "r.yaml"), tmp_path / "g")
    assert not hasattr(cfg, "oversample") and cfg.max_steps == raw["grpo"]["max_steps"]


def test_recipe_names_a_known_change_verdict_layout(tmp_path):
    """`data.change_verdicts` and `data.moment_frames` are checked when the recipe loads, naming
    the file and the field."""
    from rler_eval.errors import TaskError
    from rler_eval.training.recipe import load_recipe

    raw = yaml.safe_load((REPO / "train" / "tiny_cpu.yaml").read_text())
    raw["data"]["change_verdicts"] = "sideways"
    (tmp_path / "r.yaml").write_text(yaml.safe_dump(raw))
    with pytest.raises(TaskError, match=r"r.yaml: data.change_verdicts is 'sideways'"):
        load_recipe(tmp_path / "r.yaml")
    raw["data"].update(change_verdicts="adjacent", moment_frames="yes")
    (tmp_path / "r.yaml").write_text(yaml.safe_dump(raw))
    with pytest.raises(TaskError, match=r"r.yaml: data.moment_frames is 'yes'; use true or false"):
        load_recipe(tmp_path / "r.yaml")


def test_video_r1_json_and_charades_rows_build_from_fixtures(tmp_path, monkeypatch):
    import numpy as np

    from rler_eval.tasks import load_task
    from rler_eval.training import data
    from rler_eval.video import write_video

    frames = np.zeros((24, 56, 56, 3), np.uint8)
    for i in range(24):
        frames[i] = (i * 10) % 255
    write_video(tmp_path / "clip.mp4", frames, 8)
    rows = [{"problem_id": 1, "problem": "What happens first?", "data_type": "video", "problem_type": "multiple choice",
             "options": ["A. a", "B. b", "C. c", "D. d"], "process": "<think>...</think>",
             "solution": "<answer>C</answer>", "path": "clip.mp4", "data_source": "fixture", "key_times": [[1.0, 2.0]]},
            {"problem_id": 2, "problem": "How many?", "data_type": "video", "problem_type": "numerical",
             "solution": "<answer>3</answer>", "path": "clip.mp4"}]
    (tmp_path / "r1.json").write_text(json.dumps(rows))
    card = load_task("synthvid_train")
    card.frames.n = 6
    samples = data.video_r1_samples(tmp_path / "r1.json", card)

    # the 7B recipe's own data section reads the same layout under $RLER_DATA
    from rler_eval.training.cli import load_data
    from rler_eval.training.recipe import load_recipe
    r1_root = tmp_path / "Video-R1-data"
    r1_root.mkdir()
    (r1_root / "Video-R1-260k.json").write_text(json.dumps(rows))
    (r1_root / "clip.mp4").write_bytes((tmp_path / "clip.mp4").read_bytes())
    monkeypatch.setenv("RLER_DATA", str(tmp_path))
    big_card, big_samples = load_data(load_recipe(REPO / "train" / "qwen2_5_vl_7b.yaml"))
    assert big_card.frames.n == 16 and [s.answer for s in big_samples] == ["C", "3"]
    big_rows = data.build_rows(big_samples, big_card, with_targets=False, cache_dir=tmp_path / "cache")
    assert len(big_rows[0]["images"]) == 16
    assert samples[0].answer == "C" and samples[0].options == ["a", "b", "c", "d"] and samples[1].answer_type == "number"
    built = data.build_rows(samples, card, with_targets=False, cache_dir=tmp_path / "cache")
    assert len(built[0]["images"]) == 6 and built[0]["key_frames"] and not built[1]["key_frames"]
    assert sum(p["type"] == "image" for p in built[0]["prompt"][0]["content"]) == 6

    (tmp_path / "sta.txt").write_text("clip 0.5 1.5##a person opens a door.\n")
    sta = data.charades_sta_samples(tmp_path / "sta.txt", card, tmp_path)
    assert sta[0].key_times == [(0.5, 1.5)] and sta[0].answer_type == "text"

    (tmp_path / "bad.json").write_text(json.dumps([{"problem": "x", "solution": "y", "path": "p"}]))
    from rler_eval.errors import InputError
    with pytest.raises(InputError, match="row 0.*problem_type"):
        data.video_r1_samples(tmp_path / "bad.json", card)


def test_average_checkpoints_is_an_elementwise_mean_and_refuses_mismatches(tmp_path):
    """bench/average_checkpoints.py made the weight-averaged GRPO runs of results/grpo_tuning.md."""
    import importlib.util

    import torch
    from safetensors.torch import load_file, save_file

    spec = importlib.util.spec_from_file_location("average_checkpoints", REPO / "bench" / "average_checkpoints.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    a, b = tmp_path / "a", tmp_path / "b"
    for folder, w in ((a, [1.0, 2.0]), (b, [2.0, 5.0])):
        folder.mkdir()
        save_file({"w": torch.tensor(w, dtype=torch.bfloat16), "n": torch.tensor([5])}, folder / "model.safetensors")
        (folder / "config.json").write_text("{}")
        (folder / "stage_log.json").write_text("[]")
    assert mod.main([str(tmp_path / "mean"), str(a), str(b)]) == 0
    got = load_file(tmp_path / "mean" / "model.safetensors")
    assert got["w"].dtype == torch.bfloat16 and got["w"].tolist() == [1.5, 3.5] and got["n"].tolist() == [5]
    assert (tmp_path / "mean" / "config.json").is_file() and not (tmp_path / "mean" / "stage_log.json").exists()

    save_file({"w": torch.tensor([1.0, 2.0]), "n": torch.tensor([6])}, b / "model.safetensors")
    with pytest.raises(SystemExit, match="non-float tensor n differs"):
        mod.main([str(tmp_path / "mean"), str(a), str(b)])
    save_file({"v": torch.tensor([1.0])}, b / "model.safetensors")
    with pytest.raises(SystemExit, match="only one architecture"):
        mod.main([str(tmp_path / "mean"), str(a), str(b)])


def test_reward_curves_show_a_trailing_mean_of_long_runs():
    from rler_eval.training.plot import smoothed

    assert smoothed([1.0, 3.0, 5.0]) == ([1.0, 3.0, 5.0], 1)  # short logs are drawn as logged
    ys, k = smoothed([0.0, 1.0] * 40)  # a reward that jumps every step
    assert k == 2 and ys[0] == 0.0 and all(y == 0.5 for y in ys[1:])
