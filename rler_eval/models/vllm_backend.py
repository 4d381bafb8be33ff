"""The vLLM backend: fast batched generation on GPUs, through vLLM's offline `LLM` API.

Why it exists: for full benchmark runs with K candidates per question, vLLM's paged
attention and continuous batching are far faster than the transformers loop. Each
candidate is submitted as its own prompt with its own `SamplingParams(seed=...)`, so every
candidate is reproducible on its own; vLLM's automatic prefix caching (multi-modal items
are hashed by content) shares the prompt's prefill among the K copies and across later
adaptive rounds, which is the role `HFBackend`'s prefill LRU plays in-process.

vllm is an optional extra (`pip install rler-eval[vllm]`) and is imported only when the
backend is constructed. The request-building half of this module (`build_inputs`,
`sampling_kwargs`, `candidate_from_output`) is pure Python, so it is unit-tested
without vllm. What was NOT exercised: vllm is not installed on the machine this was built
on, so `LLM(...)` and `LLM.generate` have never been run from this module; the API facts
below come from vLLM's documentation only (see docs/FACTS.md, "Backends").

Facts used (vLLM documentation, docs.vllm.ai: "Offline Inference", "Multimodal Inputs",
`vllm.logprobs`, `vllm.v1.sample.sampler`):
- `LLM(model=...)`, `LLM.generate(prompts, sampling_params)` where `prompts` is a list of
  `{"prompt": str, "multi_modal_data": {"image": [PIL images], "video": [arrays]}}` and
  `sampling_params` may be one `SamplingParams` per prompt;
- `SamplingParams(n, temperature, top_p, seed, max_tokens, logprobs)`; with `logprobs=k`
  each output token carries a dict token id -> `Logprob(logprob, rank, decoded_token)`
  that always includes the sampled token;
- in the V1 engine the returned log-probs are computed from the raw logits, before
  temperature and penalties (`logprobs_mode="raw_logprobs"`, the default), which matches
  the untempered log-probs `HFBackend` records;
- the prompt text must follow the model's own chat template, with one image placeholder
  per image, so it is rendered with the checkpoint's HF processor;
- a video is a `(frames, metadata)` pair: Qwen2.5-VL's multi-modal parser needs `fps`,
  `duration`, `total_num_frames`, `frames_indices` and `do_sample_frames: False` (the
  frames are already sampled) and fails without them (`video_item`);
- a completion's `token_ids` and `logprobs` end with the stop token when
  `finish_reason == "stop"`; the HF backend drops it, so this backend does too, or every
  vLLM candidate would count one token and one log-prob more (`candidate_from_output`);
- a request's `seed` reproduces its sample only while the batch it runs in is the same;
  across different batches only with `VLLM_BATCH_INVARIANT=1` (vLLM's batch-invariant
  mode, slower, not on every GPU): `VLLMBackend(batch_invariant=True)` sets it.
"""

from __future__ import annotations

import os

from rler_eval.models.base import GenerationRequest
from rler_eval.types import Candidate, Prompt


def build_inputs(prompt: Prompt, render) -> dict:
    """One vLLM prompt dict: `render(messages)` gives the chat-templated text."""
    from rler_eval.prompt import chat_messages

    messages, images, framesets = chat_messages(prompt)
    videos = [video_item(fs) for fs in framesets]
    inp: dict = {"prompt": render(messages)}
    mm: dict = {}
    if images:
        mm["image"] = images
    if videos:
        mm["video"] = videos
    if mm:
        inp["multi_modal_data"] = mm
    return inp


def video_item(frameset) -> tuple:
    """(frames, metadata) for vLLM: the same frames and frame rate the HF backend gives its processor."""
    from rler_eval.models.hf import video_input

    frames, meta = video_input(frameset)
    n = int(meta.total_num_frames)
    fps = float(meta.fps)
    duration = float(meta.duration) if meta.duration else n / fps
    return frames, {"fps": fps, "duration": duration, "total_num_frames": n, "frames_indices": list(range(n)),
                    "video_backend": "rler-eval", "do_sample_frames": False}


def model_len_for(frames, max_new_tokens: int = 1024, text_tokens: int = 2048) -> int:
    """A context length that fits a card's frames (Qwen2.5-VL: one token per 28x28 pixels,
    plus 2 delimiters per frame), its text and the generated tokens; a multiple of 1024."""
    n = frames.max_frames if getattr(frames, "fps", None) else frames.n
    per_frame = -(-int(frames.max_pixels) // (28 * 28)) + 2
    need = n * per_frame + text_tokens + int(max_new_tokens)
    return -(-need // 1024) * 1024


def sampling_kwargs(req: GenerationRequest, index: int, seed: int | None, logprobs: int = 1) -> dict:
    """`SamplingParams` keyword arguments for candidate `index` of a request."""
    kw = {"n": 1, "temperature": float(req.temperatures[index]), "max_tokens": int(req.max_new_tokens),
          "logprobs": logprobs}
    if req.top_p < 1.0:
        kw["top_p"] = float(req.top_p)
    if seed is not None:
        kw["seed"] = int(seed)
    return kw


def expand_request(req: GenerationRequest) -> list[tuple[int, int | None]]:
    """(candidate index, seed) pairs: one vLLM prompt per candidate, seeds drawn if absent."""
    seeds = list(req.seeds) if req.seeds else [None] * req.k
    if len(seeds) != req.k:
        raise ValueError(f"request has {req.k} temperatures but {len(seeds)} seeds")
    return [(i, s if s is not None else int.from_bytes(os.urandom(4), "little") >> 1) for i, s in enumerate(seeds)]


def candidate_from_output(completion, temperature: float, seed: int | None) -> Candidate:
    """A `Candidate` from one vLLM `CompletionOutput` (text, token_ids, logprobs).

    A final stop token (finish_reason "stop", not a stop string) is dropped from the ids
    and log-probs, as the HF backend does; it is not part of the text either.
    """
    ids = list(getattr(completion, "token_ids", None) or [])
    stopped = getattr(completion, "finish_reason", None) == "stop"
    if stopped and ids and not isinstance(getattr(completion, "stop_reason", None), str):
        ids = ids[:-1]
    lps, toks = None, None
    entries = getattr(completion, "logprobs", None)
    if entries is not None and ids:
        lps, toks = [], []
        for pos, tok in enumerate(ids):
            entry = entries[pos]
            info = entry.get(tok) if hasattr(entry, "get") else entry[tok]
            if info is None:
                lps, toks = None, None
                break
            lps.append(float(info.logprob))
            toks.append(info.decoded_token if info.decoded_token is not None else "")
    return Candidate(text=completion.text, token_logprobs=lps, tokens=toks, temperature=float(temperature),
                     seed=seed, n_tokens=len(ids))


class VLLMBackend:
    """K candidates per prompt through `vllm.LLM` (optional dependency)."""

    supports_logprobs = True

    def __init__(self, model_path: str, label: str | None = None, trust_remote_code: bool = False,
                 dtype: str = "auto", max_model_len: int | None = None, gpu_memory_utilization: float = 0.9,
                 tensor_parallel_size: int = 1, limit_mm_per_prompt: dict | None = None, frames=None,
                 max_new_tokens: int = 1024, batch_invariant: bool = False, **llm_kwargs):
        """`frames` (a task card's FrameConfig) sizes `max_model_len` when it is not given;
        without either, vLLM would reserve KV cache for the model's whole default context."""
        if batch_invariant:
            os.environ["VLLM_BATCH_INVARIANT"] = "1"
        try:
            from vllm import LLM
        except ImportError as e:
            raise ImportError("the vLLM backend needs vllm: pip install 'rler-eval[vllm]' "
                              f"(on a machine with a supported GPU). Import failed with: {e}") from e
        from transformers import AutoProcessor

        self.name = label or f"vllm:{model_path}"
        self.processor = AutoProcessor.from_pretrained(model_path, trust_remote_code=trust_remote_code)
        kwargs = dict(model=model_path, trust_remote_code=trust_remote_code, dtype=dtype,
                      gpu_memory_utilization=gpu_memory_utilization, tensor_parallel_size=tensor_parallel_size,
                      limit_mm_per_prompt=limit_mm_per_prompt or {"image": 64, "video": 1})
        if not max_model_len and frames is not None:
            max_model_len = model_len_for(frames, max_new_tokens)
        if max_model_len:
            kwargs["max_model_len"] = int(max_model_len)
        kwargs.update(llm_kwargs)
        self.llm = LLM(**kwargs)
        self.stats = {"requests": 0, "candidates": 0, "generated_tokens": 0}

    def render(self, messages: list[dict]) -> str:
        return self.processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)

    def generate(self, requests: list[GenerationRequest]) -> list[list[Candidate]]:
        """All candidates of all requests go to vLLM in one `generate` call."""
        from vllm import SamplingParams

        prompts, params, where = [], [], []
        for r, req in enumerate(requests):
            inp = build_inputs(req.prompt, self.render)
            for i, seed in expand_request(req):
                prompts.append(inp)
                params.append(SamplingParams(**sampling_kwargs(req, i, seed)))
                where.append((r, i, seed))
        outs = self.llm.generate(prompts, params, use_tqdm=False) if prompts else []
        result: list[list[Candidate | None]] = [[None] * req.k for req in requests]
        for (r, i, seed), out in zip(where, outs):
            result[r][i] = candidate_from_output(out.outputs[0], requests[r].temperatures[i], seed)
        self.stats["requests"] += len(requests)
        self.stats["candidates"] += len(where)
        self.stats["generated_tokens"] += sum(c.n_tokens for row in result for c in row if c)
        return result  # type: ignore[return-value]


# model arguments (`--model-args` / a card's `args.model`) -> help; any other argument
# goes to `vllm.LLM(...)` unchanged (see models/__init__.py)
MODEL_ARGS = {
    "tensor_parallel_size": "GPUs one model is split across [1]",
    "gpu_memory_utilization": "fraction of each GPU's memory vLLM may take [0.9]",
    "max_model_len": "context length to reserve the KV cache for [the model's]",
    "dtype": "auto, bfloat16, float16 [auto]",
    "limit_mm_per_prompt": "most images/videos per prompt [{image: 64, video: 1}]",
    "trust_remote_code": "run the checkpoint's own code [false]",
    "label": "the name shown in reports [vllm:PATH]",
}


def load(target: str, **model_args) -> VLLMBackend:
    """The registry's entry point: `target` is the checkpoint path."""
    return VLLMBackend(target, **model_args)
