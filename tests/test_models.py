"""The tiny Qwen2.5-VL builder and the transformers backend (shared prefill, seeds, cache)."""

import json
import math

import pytest

from rler_eval.models.base import GenerationRequest
from rler_eval.types import Prompt, Sample
from tests.fixtures import evidence_prompt, random_frameset

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def tiny_dir():
    from rler_eval.testing import tiny_model_dir
    return tiny_model_dir()


@pytest.fixture(scope="module")
def backend(tiny_dir):
    from rler_eval.models.hf import HFBackend
    return HFBackend(str(tiny_dir), device="cpu")


def frames(n=4, h=56, w=84, seed=0):
    return random_frameset(n, seed, size=(h, w))


def make_prompt(n=4, seed=0, mode="images"):
    sample = Sample(id="q1", task="t", question="Which object appears first?", answer="A",
                    options=["red circle", "blue square", "green star", "none"])
    return evidence_prompt(sample, frames(n, seed=seed), mode)


def greedy_reference(backend, prompt, max_new_tokens, eos=None):
    """Token ids from `model.generate(do_sample=False)`, stopped at the backend's stop ids."""
    import torch

    inputs = backend.encode(prompt)
    eos = list(backend.stop_ids) if eos is None else eos
    with torch.inference_mode():
        out = backend.model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False,
                                     eos_token_id=eos, pad_token_id=backend.tokenizer.pad_token_id)
    ids = out[0, inputs["input_ids"].shape[1]:].tolist()
    cut = next((i for i, t in enumerate(ids) if t in eos), len(ids))
    return ids[:cut]


# ---------------------------------------------------------------- the tiny model


def test_tiny_model_builds_saves_and_reloads(tmp_path):
    import torch
    from transformers import AutoModelForImageTextToText, AutoProcessor

    from rler_eval.testing import PROTOCOL_TAGS, build_tiny_model

    out = build_tiny_model(tmp_path / "tiny", seed=1)
    meta = json.loads((out / "rler_tiny.json").read_text())
    assert 150_000 <= meta["parameters"] <= 1_000_000
    proc = AutoProcessor.from_pretrained(out)
    model = AutoModelForImageTextToText.from_pretrained(out).eval()
    cfg = model.config
    tok = proc.tokenizer
    assert cfg.image_token_id == tok.convert_tokens_to_ids("<|image_pad|>")
    assert cfg.video_token_id == tok.convert_tokens_to_ids("<|video_pad|>")
    assert cfg.vision_start_token_id == tok.convert_tokens_to_ids("<|vision_start|>")
    assert cfg.text_config.eos_token_id == tok.convert_tokens_to_ids("<|im_end|>")
    assert cfg.text_config.vocab_size == len(tok)
    # protocol tags survive decoding, special tokens are dropped
    text = "<think>in frame 3 the red ball moves</think>\n<frames>3, 7</frames>\n<answer>B</answer>"
    ids = tok(text + "<|im_end|>")["input_ids"]
    assert tok.decode(ids, skip_special_tokens=True) == text
    for tag in PROTOCOL_TAGS:
        assert len(tok(tag)["input_ids"]) == 1
    # the chat template shows each image as vision_start, image_pad, vision_end
    msgs = [{"role": "user", "content": [{"type": "text", "text": "Frame 1 (00:00.0):"}, {"type": "image"},
                                         {"type": "text", "text": "Frame 2 (00:01.0):"}, {"type": "image"},
                                         {"type": "text", "text": "Q?"}]}]
    rendered = proc.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)
    assert rendered.count("<|vision_start|><|image_pad|><|vision_end|>") == 2
    assert rendered.endswith("<|im_start|>assistant\n")
    # the same weights come back (same seed, same builder -> same logits)
    again = build_tiny_model(tmp_path / "tiny2", seed=1)
    model2 = AutoModelForImageTextToText.from_pretrained(again).eval()
    x = torch.tensor([ids])
    with torch.inference_mode():
        assert torch.allclose(model(input_ids=x).logits, model2(input_ids=x).logits)


def test_tiny_model_mrope_section_moves_only_image_positions(tmp_path):
    """A chosen mrope_section is saved, and text alone (the same index in every section)
    gives the same logits as the default split; a split that does not sum up is refused."""
    import torch
    from transformers import AutoModelForImageTextToText

    from rler_eval.testing import build_tiny_model

    default = AutoModelForImageTextToText.from_pretrained(build_tiny_model(tmp_path / "a", seed=1)).eval()
    wide = AutoModelForImageTextToText.from_pretrained(
        build_tiny_model(tmp_path / "b", seed=1, mrope_section=[0, 0, 8])).eval()
    assert wide.config.text_config.rope_parameters["mrope_section"] == [0, 0, 8]
    assert default.config.text_config.rope_parameters["mrope_section"] != [0, 0, 8]
    x = torch.arange(5, 40).unsqueeze(0)
    with torch.inference_mode():
        assert torch.allclose(default(input_ids=x).logits, wide(input_ids=x).logits, atol=1e-5)
    with pytest.raises(ValueError, match="summing to head_dim / 2 = 8"):
        build_tiny_model(tmp_path / "c", mrope_section=[0, 0, 7])


def test_tiny_model_dir_is_cached(tiny_dir):
    from rler_eval.testing import tiny_model_dir
    before = (tiny_dir / "model.safetensors").stat().st_mtime_ns
    assert tiny_model_dir() == tiny_dir
    assert (tiny_dir / "model.safetensors").stat().st_mtime_ns == before


# ---------------------------------------------------------------- shared prefill vs generate


def test_greedy_equals_model_generate(backend):
    prompt = make_prompt(4)
    ids, lps, _ = backend.sample_ids(GenerationRequest(prompt, [0.0], [0], max_new_tokens=24))
    assert ids[0] == greedy_reference(backend, prompt, 24)
    # the greedy row of a mixed batch decodes identically (K rows share one prefill)
    ids4, _, _ = backend.sample_ids(GenerationRequest(prompt, [0.0, 1.0, 1.0, 0.7], [0, 1, 2, 3], max_new_tokens=24))
    assert ids4[0] == ids[0]


def test_greedy_equals_generate_in_video_mode(backend):
    prompt = make_prompt(6, seed=2, mode="video")
    assert any(p["type"] == "video" for p in prompt.content)
    inputs = backend.encode(prompt)
    assert "pixel_values_videos" in inputs and inputs["video_grid_thw"][0, 0] == 3  # 6 frames / temporal patch 2
    ids, _, _ = backend.sample_ids(GenerationRequest(prompt, [0.0, 1.0], [0, 1], max_new_tokens=16))
    assert ids[0] == greedy_reference(backend, prompt, 16)
    assert ids[1] and ids[1] != ids[0]


def test_stop_token_ends_a_row_like_generate(backend):
    """Declare the 5th greedy token a stop token: both loops stop right before it."""
    prompt = make_prompt(3, seed=5)
    full, _, _ = backend.sample_ids(GenerationRequest(prompt, [0.0], [0], max_new_tokens=12))
    stop = full[0][4]
    saved = set(backend.stop_ids)
    backend.stop_ids = saved | {stop}
    try:
        ids, lps, _ = backend.sample_ids(GenerationRequest(prompt, [0.0, 1.0, 1.0], [0, 1, 2], max_new_tokens=12))
    finally:
        backend.stop_ids = saved
    assert ids[0] == full[0][:full[0].index(stop)]
    assert ids[0] == greedy_reference(backend, prompt, 12, eos=list(saved | {stop}))
    assert all(stop not in row for row in ids)
    assert all(len(a) == len(b) for a, b in zip(ids, lps))


# ---------------------------------------------------------------- candidates


def test_k4_sampled_candidates_logprobs_and_seeds(backend):
    prompt = make_prompt(4, seed=1)
    req = GenerationRequest(prompt, [0.0, 1.0, 1.0, 1.0], [7, 11, 12, 13], max_new_tokens=20)
    cands = backend.generate([req])[0]
    assert len(cands) == 4
    for c, t, s in zip(cands, req.temperatures, req.seeds):
        assert c.temperature == t and c.seed == s
        assert c.n_tokens == len(c.token_logprobs) == len(c.tokens) > 0
        assert all(math.isfinite(v) and v <= 0.0 for v in c.token_logprobs)
        assert "".join(c.tokens) == c.text
    # same seeds -> same candidates; different seeds -> different samples
    again = backend.generate([GenerationRequest(prompt, [0.0, 1.0, 1.0, 1.0], [7, 11, 12, 13], max_new_tokens=20)])[0]
    assert [c.text for c in again] == [c.text for c in cands]
    assert [c.token_logprobs for c in again] == [c.token_logprobs for c in cands]
    assert len({c.text for c in cands[1:]}) == 3
    other = backend.generate([GenerationRequest(prompt, [1.0, 1.0, 1.0], [21, 22, 23], max_new_tokens=20)])[0]
    assert {c.text for c in other}.isdisjoint({c.text for c in cands[1:]})
    # a candidate's sample depends on its own seed, not on its batch neighbours
    alone = backend.generate([GenerationRequest(prompt, [1.0], [12], max_new_tokens=20)])[0][0]
    assert alone.text == cands[2].text


def test_logprobs_are_untempered(backend):
    """The recorded log-prob of a greedy token is its log-softmax under the raw logits."""
    import torch
    prompt = make_prompt(2, seed=3)
    cand = backend.generate([GenerationRequest(prompt, [0.0], [0], max_new_tokens=2)])[0][0]
    pre = backend.prefill(prompt)
    first = float(torch.log_softmax(pre.logits, -1).max())
    assert cand.token_logprobs[0] == pytest.approx(first, abs=1e-5)
    # a hot sample (temperature 5) still records the log-prob under the raw logits
    ids, lps, _ = backend.sample_ids(GenerationRequest(prompt, [5.0], [3], max_new_tokens=1))
    assert ids[0][0] != int(pre.logits.argmax())  # with ~870 tokens at T=5 the argmax is unlikely
    assert lps[0][0] == pytest.approx(float(torch.log_softmax(pre.logits, -1)[ids[0][0]]), abs=1e-5)


def test_prefill_cache_hit_for_same_prompt_key(backend):
    backend.clear_prefill_cache()
    prompt = make_prompt(4, seed=9)
    before = dict(backend.stats)
    first = backend.generate([GenerationRequest(prompt, [0.0, 1.0], [1, 2], max_new_tokens=8)])[0]
    assert backend.stats["prefills"] == before["prefills"] + 1
    # an adaptive second round: one more candidate, same prompt key -> no new prefill
    second = backend.generate([GenerationRequest(prompt, [1.0], [2], max_new_tokens=8)])[0]
    assert backend.stats["prefills"] == before["prefills"] + 1
    assert backend.stats["prefill_cache_hits"] == before["prefill_cache_hits"] + 1
    assert second[0].text == first[1].text  # same seed, same prompt: the cached prefill is faithful
    # a different prompt is a miss; LRU eviction beyond the cache size
    backend.generate([GenerationRequest(make_prompt(4, seed=10), [0.0], [0], max_new_tokens=2)])
    assert backend.stats["prefills"] == before["prefills"] + 2
    for s in range(20, 20 + backend.prefill_cache_size):
        backend.generate([GenerationRequest(make_prompt(2, seed=s), [0.0], [0], max_new_tokens=1)])
    n = backend.stats["prefills"]
    backend.generate([GenerationRequest(prompt, [0.0], [0], max_new_tokens=1)])
    assert backend.stats["prefills"] == n + 1  # evicted, so prefilled again


def test_prompt_without_key_is_hashed_and_text_only_prompts_work(backend):
    from PIL import Image
    img = Image.fromarray(frames(1, seed=4).frames[0])
    p1 = Prompt(content=[{"type": "image", "image": img}, {"type": "text", "text": "What is shown?"}])
    p2 = Prompt(content=[{"type": "image", "image": img}, {"type": "text", "text": "What is shown?"}])
    hits = backend.stats["prefill_cache_hits"]
    a = backend.generate([GenerationRequest(p1, [0.0], [0], max_new_tokens=6)])[0][0]
    b = backend.generate([GenerationRequest(p2, [0.0], [0], max_new_tokens=6)])[0][0]
    assert a.text == b.text and backend.stats["prefill_cache_hits"] == hits + 1
    text_only = Prompt(content=[{"type": "text", "text": "Say yes or no."}], system="Be brief.", key="t-only")
    ids, _, _ = backend.sample_ids(GenerationRequest(text_only, [0.0], [0], max_new_tokens=10))
    assert ids[0] == greedy_reference(backend, text_only, 10)
    # same key, other system text: a different prompt, so no (wrong) cache hit
    other = Prompt(content=text_only.content, system="Answer at length.", key="t-only")
    n, hits = backend.stats["prefills"], backend.stats["prefill_cache_hits"]
    ids2, _, _ = backend.sample_ids(GenerationRequest(other, [0.0], [0], max_new_tokens=10))
    assert backend.stats["prefills"] == n + 1 and backend.stats["prefill_cache_hits"] == hits
    assert ids2[0] == greedy_reference(backend, other, 10)


def test_several_requests_and_edge_cases(backend):
    reqs = [GenerationRequest(make_prompt(2, seed=30), [0.0], [0], max_new_tokens=4),
            GenerationRequest(make_prompt(3, seed=31), [1.0, 1.0], None, max_new_tokens=4),
            GenerationRequest(make_prompt(2, seed=32), [], [], max_new_tokens=4),
            GenerationRequest(make_prompt(2, seed=33), [0.5], [1], max_new_tokens=0)]
    out = backend.generate(reqs)
    assert [len(o) for o in out] == [1, 2, 0, 1]
    assert all(c.seed is not None for c in out[1])  # drawn seeds are recorded for replay
    assert out[3][0].text == "" and out[3][0].n_tokens == 0
    with pytest.raises(ValueError, match="seeds"):
        backend.generate([GenerationRequest(make_prompt(2), [0.0, 1.0], [1], max_new_tokens=2)])


def test_top_p_restricts_sampling(backend):
    """With a tiny top_p only the most likely token survives: sampling equals greedy."""
    prompt = make_prompt(2, seed=40)
    greedy = backend.generate([GenerationRequest(prompt, [0.0], [0], max_new_tokens=8)])[0][0]
    nucleus = backend.generate([GenerationRequest(prompt, [1.0, 1.0], [5, 6], max_new_tokens=8, top_p=1e-6)])[0]
    assert [c.text for c in nucleus] == [greedy.text, greedy.text]


def test_token_pieces_join_to_text(backend):
    from rler_eval.models.hf import token_pieces
    tok = backend.tokenizer
    for text in ["<think>Frame 3 shows é and 漢字 🙂</think><answer>B</answer>", "plain", ""]:
        ids = tok(text, add_special_tokens=False)["input_ids"]
        pieces = token_pieces(tok, ids)
        assert len(pieces) == len(ids) and "".join(pieces) == text


def test_load_backend_tiny_random():
    from rler_eval.models import load_backend
    b = load_backend("tiny-random", device="cpu")
    assert "tiny-random" in b.name and b.supports_logprobs
    cands = b.generate([GenerationRequest(make_prompt(2), [0.0, 1.0], [0, 1], max_new_tokens=4)])[0]
    assert len(cands) == 2 and all(c.n_tokens == 4 for c in cands)


def test_device_and_dtype_choice():
    import torch

    from rler_eval.models.hf import pick_device, pick_dtype
    assert pick_device("cpu") == "cpu"
    assert pick_device() == ("cuda" if torch.cuda.is_available() else "cpu")
    assert pick_dtype("cpu") == torch.float32
    assert pick_dtype("cpu", "bfloat16") == torch.bfloat16
