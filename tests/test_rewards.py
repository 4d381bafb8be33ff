"""Rewards that cannot be gamed: G's precision term, contrast-mode parsimony, a think that
states its answer, and equal forward passes across ranks (two gloo processes)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rler_eval import evidence
from rler_eval.training import rewards

REPO = Path(__file__).resolve().parent.parent
OPTS = ["red", "green", "blue", "yellow"]


def g(frames, key, n=8):
    text = evidence.format_evidence("Frame 1 shows it.", frames, "B")
    return rewards.frame_sensitive(completions=[text], answer=["B"], answer_type=["option"], options=[OPTS],
                                   n_frames=[n], key_frames=[list(key)])[0]


@pytest.mark.parametrize("key", [[4], [2, 6], [2, 5, 8], [1, 2, 3], [3, 4]])
def test_citing_every_frame_earns_less_than_the_key_frames(key):
    everything = g(list(range(1, 9)), key)
    assert g(key, key) == 1.0 > everything
    # the tolerant F1 (the evaluation metric) gives cite-all the top score for spread-out keys;
    # the reward must not
    if key == [2, 5, 8]:
        assert evidence.grounding_f1(list(range(1, 9)), key) == 1.0


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(1, 8), min_size=1, max_size=3, unique=True), st.integers(0, 1))
def test_precision_term_orders_exact_over_padded_citations(key, shift):
    assert g(key, key) == 1.0
    near = [k + shift for k in key]  # a ±1 neighbour of each key frame still counts
    if max(near) <= 8:
        assert g(near, key) == 1.0
    if len(key) < 8:
        assert g(list(range(1, 9)), key) < 1.0
    extra = sorted(set(range(1, 9)) - set(key))[:1]
    if extra:
        assert g(sorted(key + extra), key) < 1.0  # one superfluous frame already costs precision


def test_matched_pairs_is_one_to_one_within_tolerance():
    assert rewards.matched_pairs([3, 4, 5], [4], 1) == 1
    assert rewards.matched_pairs([3, 5], [4, 5], 1) == 2
    assert rewards.matched_pairs([1, 9], [4], 1) == 0
    assert rewards.grounding_reward([], [3]) == 0.0 and rewards.grounding_reward([3], []) is None
    assert rewards.grounding_reward([0, 99, 3], [3]) == pytest.approx(0.5)  # out-of-range citations count against



def test_exact_tolerance_tells_a_key_frame_from_its_neighbour(tmp_path):
    """At ±1, citing frame 1 for key frame 2 earns full G; at tol 0 (synthvid's exact key
    frames) it earns nothing, through the recipe field and the trainer's reward alike."""
    from rler_eval.training.recipe import load_recipe

    text = evidence.format_evidence("Frame 1 shows it.", [1], "B")
    cols = dict(prompts=[None], completions=[text], answer=["B"], answer_type=["option"], options=[OPTS],
                n_frames=[8], key_frames=[[2]])
    assert rewards.frame_sensitive(**cols) == [1.0]
    assert rewards.frame_sensitive(**cols, tol=0) == [0.0]
    recipe = tmp_path / "r.yaml"
    recipe.write_text("name: r\noutput_dir: out\nmodel: {}\ndata: {}\ngrounding_tolerance: 0\n")
    tol = load_recipe(recipe).grounding_tolerance
    assert rewards.ContrastReward(tol=tol)(**cols) == [0.0]
    assert rewards.ContrastReward()(**cols) == [1.0]
    exact = evidence.format_evidence("Frame 2 shows it.", [2], "B")
    assert rewards.ContrastReward(tol=tol)(**{**cols, "completions": [exact]}) == [1.0]

class FakeContrast(rewards.ContrastReward):
    """A stand-in policy whose answer probability behaves as a real one's would:
    frame 3 holds the evidence (masking it drops the answer), and an answer already
    written in the teacher-forced text is near-certain whatever the frames."""

    def span_prob(self, prompt, prefix, span, images):
        self.forwards += 1
        if span in prefix or "green" in prefix:
            return 0.97
        return 0.9 if images[2] != "grey" else 0.3

    def alter(self, images, cited):
        if self.mode == "mask" and any(1 <= f <= len(images) for f in cited):
            return ["grey" if k + 1 in cited else im for k, im in enumerate(images)]
        return list(reversed(images))


def contrast(reward, texts, answer="B", n=8):
    k = len(texts)
    prompt = [{"role": "user", "content": [{"type": "text", "text": "q"}]}]
    return reward(prompts=[prompt] * k, completions=texts, answer=[answer] * k, answer_type=["option"] * k,
                  options=[OPTS] * k, n_frames=[n] * k, key_frames=[[]] * k,
                  images=[[f"frame{i}" for i in range(n)]] * k)


def test_contrast_mode_gives_citing_every_frame_less_than_the_top_reward():
    reward = FakeContrast(model=object(), processor=None, mode="mask")
    cite = lambda frames: evidence.format_evidence("I looked closely at the video.", frames, "B")  # noqa: E731
    key, everything, wrong_frame, none = contrast(reward, [cite([3]), cite(list(range(1, 9))), cite([6]), cite([])])
    assert key == pytest.approx(0.6)  # the drop 0.9 -> 0.3, one frame cited
    assert everything < key and everything <= 0.6 / 8 + 1e-9
    assert wrong_frame == 0.0  # masking a frame that does not matter drops nothing
    assert none < key  # no citation: at most half


def test_a_think_that_states_the_answer_is_not_penalised():
    reward = FakeContrast(model=object(), processor=None, mode="mask")
    stating = evidence.format_evidence("In Frame 3 the square is green, so the answer is B.", [3], "B")
    opaque = evidence.format_evidence("I looked at the frames and decided.", [3], "B")
    a, b = contrast(reward, [stating, opaque])
    assert a == b > 0
    assert "green" not in rewards.teacher_forced(evidence.parse(stating, 8, "option", OPTS))[0]


def test_contrast_is_skipped_without_a_model_and_for_wrong_answers_without_forwards():
    reward = FakeContrast(model=object(), processor=None)
    out = contrast(reward, [evidence.format_evidence("Frame 3 shows red.", [3], "A")])
    assert out == [0.0] and reward.forwards == 0
    assert contrast(FakeContrast(model=None), [evidence.format_evidence("x y z", [3], "B")]) == [0.0]
    with pytest.raises(ValueError, match="mask"):
        rewards.ContrastReward(mode="blur")


WORKER = r'''
import json, os, sys
import torch.distributed as dist
from PIL import Image
from transformers import AutoModelForImageTextToText, AutoProcessor
from rler_eval import evidence
from rler_eval.testing import tiny_model_dir
from rler_eval.training.rewards import ContrastReward

rank = int(sys.argv[1]); out = sys.argv[2]
dist.init_process_group("gloo", init_method="file://" + out + "/rendezvous", rank=rank, world_size=2)
path = tiny_model_dir()
reward = ContrastReward(mode="mask").attach(AutoModelForImageTextToText.from_pretrained(path).eval(),
                                            AutoProcessor.from_pretrained(path))
images = [Image.new("RGB", (56, 56), (60 * i, 90, 200 - 50 * i)) for i in range(3)]
content = []
for i in range(3):
    content += [{"type": "text", "text": evidence.frame_caption(i + 1, i) + ":"}, {"type": "image", "text": ""}]
content.append({"type": "text", "text": "Question: what colour?\n" + evidence.instructions()})
prompt = [{"role": "user", "content": content}]
right = evidence.format_evidence("Frame 2 shows green.", [2], "B")
wrong = evidence.format_evidence("Frame 2 shows red.", [2], "A")
# rank 0: two samples that need contrast passes; rank 1: one with key frames, one wrong answer
texts, keys = ([right, right], [[], []]) if rank == 0 else ([right, wrong], [[2], []])
values = reward(prompts=[prompt] * 2, completions=texts, answer=["B"] * 2, answer_type=["option"] * 2,
                options=[["red", "green", "blue", "yellow"]] * 2, n_frames=[3, 3], key_frames=keys,
                images=[images] * 2)
json.dump({"forwards": reward.forwards, "values": values}, open(f"{out}/rank{rank}.json", "w"))
dist.destroy_process_group()
'''


@pytest.mark.slow
def test_contrast_ranks_run_the_same_number_of_forwards_under_gloo(tmp_path):
    from rler_eval.testing import tiny_model_dir

    tiny_model_dir()  # build the shared checkpoint once, before two processes race for it
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1", GLOO_SOCKET_IFNAME="lo")
    procs = [subprocess.Popen([sys.executable, str(script), str(r), str(tmp_path)], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for r in (0, 1)]
    logs = [p.communicate(timeout=900)[0] for p in procs]
    assert all(p.returncode == 0 for p in procs), logs
    r0, r1 = (json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1))
    assert r0["forwards"] == r1["forwards"] == 4  # rank 1 needed none, and padded to rank 0's four
    assert r1["values"][0] == 1.0 and r1["values"][1] == 0.0  # padding does not change rank 1's rewards
    assert all(0.0 <= v <= 1.0 for v in r0["values"])
