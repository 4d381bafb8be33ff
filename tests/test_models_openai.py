"""The OpenAI-compatible backend against a real loopback `transformers serve`, and the
pure request-building of the vLLM backend (vllm itself is not installed here)."""

import json
import sys
import time

import httpx
import pytest

from rler_eval import evidence
from rler_eval.models.base import GenerationRequest
from rler_eval.models.openai_compat import OpenAIBackend, ServerError, build_messages, parse_choice
from rler_eval.types import Prompt, Sample
from tests.fixtures import evidence_prompt, random_frameset


def make_prompt(n=2, seed=0, mode="images"):
    sample = Sample(id="q", task="t", question="Which colour is first?", answer="A", options=["red", "blue"])
    return evidence_prompt(sample, random_frameset(n, seed, size=(56, 56), step=1.0, source=f"s{seed}"), mode)


from conftest import free_port  # noqa: E402


@pytest.fixture(scope="module")
def tiny_dir():
    from rler_eval.testing import tiny_model_dir
    return tiny_model_dir()


# the `server` fixture (a real `transformers serve` on loopback) is in tests/conftest.py


# ---------------------------------------------------------------- real server


@pytest.mark.slow
def test_real_server_candidates_seeds_and_fallbacks(server):
    b = OpenAIBackend.from_spec(f"{server['model']}@{server['url']}", max_retries=0)
    prompt = make_prompt(2, seed=1)
    req = GenerationRequest(prompt, [0.0, 1.0, 1.0], [5, 6, 7], max_new_tokens=12)
    cands = b.generate([req])[0]
    assert [c.temperature for c in cands] == [0.0, 1.0, 1.0]
    assert [c.seed for c in cands[:1]] == [5]
    assert all(c.text for c in cands)
    # transformers serve ignores n and logprobs: the backend fell back to one call per candidate
    assert b.stats["n_ignored"] == 1 and b.stats["http_calls"] == 3
    assert all(c.token_logprobs is None for c in cands)
    assert all(0 < c.n_tokens <= 12 for c in cands)
    assert evidence.confidence(cands[0].token_logprobs, cands[0].tokens, cands[0].text) == evidence.NEUTRAL_CONFIDENCE
    # per-candidate seeds: one sampled call per candidate is reproducible, and seeds matter
    one = OpenAIBackend(server["url"], server["model"], use_n=False, max_retries=0)
    a = one.generate([GenerationRequest(prompt, [1.0, 1.0], [21, 22], max_new_tokens=12)])[0]
    again = one.generate([GenerationRequest(prompt, [1.0], [21], max_new_tokens=12)])[0]
    assert one.stats["n_ignored"] == 0 and one.stats["http_calls"] == 3
    assert again[0].text == a[0].text and a[0].text != a[1].text
    b.close()
    one.close()


@pytest.mark.slow
def test_real_server_greedy_matches_in_process_backend(server):
    """Same checkpoint, same template, lossless PNG frames: the server's greedy text equals ours."""
    from rler_eval.models.hf import HFBackend
    prompt = make_prompt(3, seed=2)
    ours = HFBackend(server["model"], device="cpu").generate(
        [GenerationRequest(prompt, [0.0], [0], max_new_tokens=10)])[0][0]
    theirs = OpenAIBackend(server["url"], server["model"], max_retries=0).generate(
        [GenerationRequest(prompt, [0.0], [0], max_new_tokens=10)])[0][0]
    # the server's Qwen response template trims whitespace around the content region
    # (transformers 5.24 cli/serving/utils.py, _RESPONSE_TEMPLATE_FALLBACKS), so compare stripped text
    assert theirs.text == ours.text.strip() and theirs.text


@pytest.mark.slow
def test_real_server_video_part_is_sent_as_frames(server):
    b = OpenAIBackend(server["url"], server["model"], max_retries=0)
    prompt = make_prompt(4, seed=3, mode="video")
    msgs = build_messages(prompt)
    assert sum(p["type"] == "image_url" for p in msgs[-1]["content"]) == 4
    cand = b.generate([GenerationRequest(prompt, [0.0], [0], max_new_tokens=6)])[0][0]
    assert cand.n_tokens > 0


def test_unreachable_server_raises_clear_error():
    port = free_port()  # nothing listens there
    b = OpenAIBackend(f"http://127.0.0.1:{port}/v1", "m", max_retries=1, timeout=5)
    b_sleep = time.time()
    with pytest.raises(ServerError, match=f"127.0.0.1:{port}"):
        b.generate([GenerationRequest(Prompt(content=[{"type": "text", "text": "hi"}]), [0.0], [0], 4)])
    assert b.stats["http_calls"] == 2 and time.time() - b_sleep < 30


# ---------------------------------------------------------------- a server that honours n and logprobs


def honouring_transport(calls):
    """A mock server that honours `n`, `seed` and `logprobs` (as vLLM serve does)."""
    def handler(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        calls.append(body)
        n = body.get("n", 1)
        choices = []
        for i in range(n):
            toks = ["<answer>", "ABCD"[(body.get("seed", 0) + i) % 4], "</answer>"]
            content = [{"token": t, "logprob": -0.1 * (j + 1), "bytes": list(t.encode())} for j, t in enumerate(toks)]
            choices.append({"index": i, "message": {"role": "assistant", "content": "".join(toks)},
                            "logprobs": {"content": content} if body.get("logprobs") else None,
                            "finish_reason": "stop"})
        return httpx.Response(200, json={"choices": choices, "usage": {"completion_tokens": 3 * n}})
    return httpx.MockTransport(handler)


def test_n_and_logprobs_used_when_honoured():
    calls = []
    b = OpenAIBackend("http://mock/v1", "m", api_key="sk-test")
    b.client = httpx.Client(base_url="http://mock/v1", transport=honouring_transport(calls))
    req = GenerationRequest(make_prompt(2), [0.0, 0.7, 0.7, 1.0], [1, 2, 3, 4], max_new_tokens=16, top_p=0.9)
    cands = b.generate([req])[0]
    # three calls: greedy, one n=2 call for T=0.7, one for T=1.0
    assert len(calls) == 3 and sorted(c.get("n", 1) for c in calls) == [1, 1, 2]
    assert all(c["logprobs"] is True and c["max_tokens"] == 16 and c["top_p"] == 0.9 for c in calls)
    assert [c.temperature for c in cands] == [0.0, 0.7, 0.7, 1.0]
    for c in cands:
        assert c.token_logprobs == pytest.approx([-0.1, -0.2, -0.3]) and c.n_tokens == 3
        assert "".join(c.tokens) == c.text
        assert evidence.confidence(c.token_logprobs, c.tokens, c.text) != evidence.NEUTRAL_CONFIDENCE
    user = calls[0]["messages"][-1]["content"]
    urls = [p["image_url"]["url"] for p in user if p["type"] == "image_url"]
    assert len(urls) == 2 and all(u.startswith("data:image/png;base64,") for u in urls)
    assert b.stats["n_ignored"] == 0


def test_parse_choice_and_spec():
    assert parse_choice({"message": {"content": "x"}}) == ("x", None, None)
    text, lps, toks = parse_choice({"message": {"content": "ab"}, "logprobs": {"content": [
        {"token": "a", "logprob": -1.0}, {"token": "b", "logprob": -0.5}]}})
    assert (text, lps, toks) == ("ab", [-1.0, -0.5], ["a", "b"])
    # a reasoning parser moved the think text out of content: it is restored for the evidence parser
    text, _, _ = parse_choice({"message": {"content": "<frames>2</frames>\n<answer>B</answer>",
                                           "reasoning_content": "in frame 2 the cup moves"}})
    ev = evidence.parse(text, 3, "option", ["a", "b"])
    assert ev.think.strip() == "in frame 2 the cup moves" and ev.answer == "B" and ev.frames == [2]
    assert parse_choice({"message": {"content": "<think>t</think><answer>A</answer>",
                                     "reasoning_content": "t"}})[0] == "<think>t</think><answer>A</answer>"
    assert parse_choice({"message": {"content": None, "reasoning": "only thinking"}})[0] == "<think>only thinking</think>"
    b = OpenAIBackend.from_spec("Qwen/Qwen2.5-VL-7B-Instruct@http://127.0.0.1:8000/v1")
    assert b.model == "Qwen/Qwen2.5-VL-7B-Instruct" and b.base_url == "http://127.0.0.1:8000/v1"
    with pytest.raises(ValueError, match="names no server"):
        OpenAIBackend.from_spec("just-a-model")


# ---------------------------------------------------------------- vLLM request building (no vllm import)


def test_vllm_request_building_without_vllm(tiny_dir):
    from transformers import AutoProcessor

    from rler_eval.models import vllm_backend as vb

    assert "vllm" not in sys.modules
    proc = AutoProcessor.from_pretrained(tiny_dir)

    def render(msgs):
        return proc.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)

    prompt = make_prompt(3, seed=4)
    prompt.system = "Answer carefully."
    inp = vb.build_inputs(prompt, render)
    assert inp["prompt"].count("<|vision_start|><|image_pad|><|vision_end|>") == 3
    assert inp["prompt"].startswith("<|im_start|>system\nAnswer carefully.")
    assert len(inp["multi_modal_data"]["image"]) == 3 and "video" not in inp["multi_modal_data"]
    vid = vb.build_inputs(make_prompt(4, seed=5, mode="video"), render)
    assert vid["prompt"].count("<|video_pad|>") == 1 and vid["multi_modal_data"]["video"][0][0].shape == (4, 56, 56, 3)
    req = GenerationRequest(prompt, [0.0, 0.8], [3, None], max_new_tokens=32, top_p=0.95)
    pairs = vb.expand_request(req)
    assert pairs[0] == (0, 3) and pairs[1][0] == 1 and isinstance(pairs[1][1], int)
    kw = vb.sampling_kwargs(req, 1, 9)
    assert kw == {"n": 1, "temperature": 0.8, "max_tokens": 32, "logprobs": 1, "top_p": 0.95, "seed": 9}
    assert "vllm" not in sys.modules


def test_vllm_candidate_from_output_and_missing_vllm():
    from types import SimpleNamespace as NS

    from rler_eval.models import vllm_backend as vb
    lp = NS  # vllm.logprobs.Logprob has .logprob, .rank, .decoded_token
    out = NS(text="<answer>B</answer>", token_ids=[5, 6, 7],
             logprobs=[{5: lp(logprob=-0.2, rank=1, decoded_token="<answer>"), 9: lp(logprob=-3, rank=2, decoded_token="x")},
                       {6: lp(logprob=-1.5, rank=2, decoded_token="B")},
                       {7: lp(logprob=-0.1, rank=1, decoded_token="</answer>")}])
    c = vb.candidate_from_output(out, 0.7, 11)
    assert c.token_logprobs == [-0.2, -1.5, -0.1] and "".join(c.tokens) == c.text
    assert c.n_tokens == 3 and c.seed == 11 and c.temperature == 0.7
    none = vb.candidate_from_output(NS(text="hi", token_ids=[1], logprobs=None), 0.0, 1)
    assert none.token_logprobs is None and none.n_tokens == 1
    try:
        import vllm  # noqa: F401
    except ImportError:
        with pytest.raises(ImportError, match=r"rler-eval\[vllm\]"):
            vb.VLLMBackend("/nonexistent")
