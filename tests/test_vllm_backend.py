"""The vLLM backend's requests, against vLLM's documented input types, with a stand-in
`vllm` module that records what it is given (vllm itself is an optional extra, not installed)."""

import sys
import types
from types import SimpleNamespace as NS

import numpy as np
import pytest

from rler_eval.models import vllm_backend as vb
from rler_eval.models.base import GenerationRequest
from rler_eval.tasks import FrameConfig
from rler_eval.types import FrameSet


def frameset(n=4, step=0.5, duration=None):
    return FrameSet(frames=np.full((n, 56, 56, 3), 90, np.uint8), timestamps=[i * step for i in range(n)],
                    duration=duration)


def test_video_item_carries_the_metadata_qwen_vl_needs_with_the_hf_backends_numbers():
    from rler_eval.models.hf import video_input

    frames, meta = vb.video_item(frameset(4, 0.5))
    assert frames.shape == (4, 56, 56, 3) and frames.dtype == np.uint8
    assert meta["do_sample_frames"] is False and meta["frames_indices"] == [0, 1, 2, 3]
    assert meta["total_num_frames"] == 4 and meta["fps"] == pytest.approx(2.0)
    assert meta["duration"] == pytest.approx(2.0)  # no duration known: n / fps
    assert meta["fps"] == pytest.approx(video_input(frameset(4, 0.5))[1].fps)
    assert vb.video_item(frameset(4, 0.5, duration=9.5))[1]["duration"] == 9.5


def test_video_metadata_gives_the_hf_processor_the_same_video_grid(tmp_path):
    """The dict vLLM hands to the HF processor yields the grid the HF backend gets."""
    from transformers import AutoProcessor
    from transformers.video_utils import VideoMetadata

    from rler_eval.models.hf import video_input
    from rler_eval.testing import tiny_model_dir

    proc = AutoProcessor.from_pretrained(tiny_model_dir())
    fs = frameset(4, 0.5)
    frames, meta = vb.video_item(fs)
    fields = {k: v for k, v in meta.items() if k != "do_sample_frames"}
    ours = proc(text=["<|vision_start|><|video_pad|><|vision_end|>"], videos=[frames],
                video_metadata=[VideoMetadata(**fields)], do_sample_frames=False, return_tensors="pt")
    hf_frames, hf_meta = video_input(fs)
    theirs = proc(text=["<|vision_start|><|video_pad|><|vision_end|>"], videos=[hf_frames],
                  video_metadata=[hf_meta], return_tensors="pt")
    assert ours["video_grid_thw"].tolist() == theirs["video_grid_thw"].tolist()


def lp(v, tok):
    return NS(logprob=v, rank=1, decoded_token=tok)


def test_final_stop_token_is_dropped_like_the_hf_backend():
    eos = 99
    entries = [{5: lp(-0.2, "<answer>")}, {6: lp(-1.5, "B")}, {7: lp(-0.1, "</answer>")}, {eos: lp(-0.01, "")}]
    stopped = vb.candidate_from_output(NS(text="<answer>B</answer>", token_ids=[5, 6, 7, eos], logprobs=entries,
                                          finish_reason="stop", stop_reason=None), 0.7, 1)
    assert stopped.n_tokens == 3 and stopped.token_logprobs == [-0.2, -1.5, -0.1]
    assert "".join(stopped.tokens) == stopped.text
    cut = vb.candidate_from_output(NS(text="<answer>B</answer>", token_ids=[5, 6, 7], logprobs=entries[:3],
                                      finish_reason="length", stop_reason=None), 0.7, 1)
    assert cut.n_tokens == 3 and cut.token_logprobs == [-0.2, -1.5, -0.1]  # no stop token to drop
    by_string = vb.candidate_from_output(NS(text="<answer>B</answer>", token_ids=[5, 6, 7], logprobs=entries[:3],
                                            finish_reason="stop", stop_reason="</answer>x"), 0.7, 1)
    assert by_string.n_tokens == 3  # a stop string leaves the tokens as generated


def test_model_len_fits_the_cards_frames():
    big = vb.model_len_for(FrameConfig(n=16, max_pixels=448 * 448), max_new_tokens=768)
    assert big % 1024 == 0 and 16 * 256 + 768 < big <= 8192
    assert vb.model_len_for(FrameConfig(n=8, max_pixels=112 * 112)) == 4096
    assert vb.model_len_for(FrameConfig(fps=2.0, max_frames=64, max_pixels=224 * 224)) > 64 * 64


@pytest.fixture()
def fake_vllm(monkeypatch):
    """A `vllm` module with vLLM's offline API shape: LLM(**kw).generate(prompts, params)."""
    seen = {}

    class SamplingParams:
        def __init__(self, **kw):
            self.kw = kw

    class LLM:
        def __init__(self, **kw):
            seen["llm"] = kw

        def generate(self, prompts, params, use_tqdm=False):
            seen["prompts"], seen["params"] = prompts, params
            out = NS(text="<answer>A</answer>", token_ids=[11, 12, 2], finish_reason="stop", stop_reason=None,
                     logprobs=[{11: lp(-0.5, "<answer>A")}, {12: lp(-0.2, "</answer>")}, {2: lp(-0.01, "")}])
            return [NS(outputs=[out]) for _ in prompts]

    mod = types.ModuleType("vllm")
    mod.LLM, mod.SamplingParams = LLM, SamplingParams
    monkeypatch.setitem(sys.modules, "vllm", mod)
    monkeypatch.delenv("VLLM_BATCH_INVARIANT", raising=False)
    return seen


def test_backend_builds_vllm_requests_with_video_metadata_and_context_length(fake_vllm):
    from rler_eval.testing import tiny_model_dir
    from rler_eval.types import Prompt

    backend = vb.VLLMBackend(tiny_model_dir(), frames=FrameConfig(n=4, max_pixels=56 * 56), max_new_tokens=64,
                             batch_invariant=True)
    assert fake_vllm["llm"]["max_model_len"] == vb.model_len_for(FrameConfig(n=4, max_pixels=56 * 56), 64)
    import os
    assert os.environ["VLLM_BATCH_INVARIANT"] == "1"
    prompt = Prompt(content=[{"type": "video", "video": frameset(4, 0.5)}, {"type": "text", "text": "Which colour?"}])
    req = GenerationRequest(prompt, [0.0, 0.9], [1, 2], max_new_tokens=64)
    (cands,) = backend.generate([req])
    sent = fake_vllm["prompts"][0]
    frames, meta = sent["multi_modal_data"]["video"][0]
    assert frames.shape == (4, 56, 56, 3) and meta["do_sample_frames"] is False and meta["fps"] == pytest.approx(2.0)
    assert sent["prompt"].count("<|video_pad|>") == 1
    assert [p.kw["seed"] for p in fake_vllm["params"]] == [1, 2]
    assert [p.kw["temperature"] for p in fake_vllm["params"]] == [0.0, 0.9]
    assert all(c.n_tokens == 2 and c.token_logprobs == [-0.5, -0.2] for c in cands)
