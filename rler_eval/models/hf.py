"""The transformers backend: K candidates per prompt from one shared prefill.

Why a hand-written decode loop instead of `generate(num_return_sequences=K)`: with video
prompts of thousands of visual tokens, the vision encoder and the prompt forward (the
prefill) are most of the cost, and `num_return_sequences` repeats the prefill K times.
Here the prefill runs once, its KV cache is expanded to K rows, and K sequences are
decoded together, each with its own temperature and seed. The prefill is also kept in a
small LRU keyed by `prompt.key` (at most `prefill_cache_size` entries, default 4; each holds
the prompt's KV cache at batch 1 on the model's device), so a later adaptive-election round for the same prompt
(one more candidate at a higher temperature) skips the prefill entirely.

Positions: Qwen2-VL-family models use 3D "mrope" positions. Their vision tokens occupy a
(t, h, w) grid, so after the prompt the text position runs ahead of or behind the token
count by a per-sequence `rope_delta`. The loop computes the prompt's 3D positions with the
model's own `get_rope_index`, then gives decode step i the position
`prompt_len + i + rope_delta` on all three axes, which is what `generate` does (see
transformers `Qwen2_5_VLForConditionalGeneration._prepare_position_ids_for_generation`,
v5.24). Architectures without `get_rope_index` get plain 1D positions. A test checks that
greedy output of this loop equals `model.generate(do_sample=False)` token for token.

Requests in a batch are processed one after another (each already decodes its K
candidates as one batch); batching across different prompts would need padded prefills
and is not done. `batch_size` bounds how many of a request's candidates decode together.

Large models: `device_map="auto"` (with optional `max_memory`) lets accelerate spread the
layers over all visible GPUs; the loop then feeds inputs to the embeddings' device and
indexes the per-layer KV cache with CPU indices, which serve a cache on any device.
"""

from __future__ import annotations

import hashlib
import inspect
import os
import time
from collections import OrderedDict
from dataclasses import dataclass

from rler_eval.models.base import GenerationRequest
from rler_eval.types import Candidate, Prompt


@dataclass
class Prefill:
    """What one prompt's prefill leaves behind: enough to start any number of decodes."""

    kv: list  # per layer (keys, values), batch 1, [1, heads, prompt_len, head_dim]
    logits: object  # torch.Tensor (vocab,) float32: next-token logits after the prompt
    prompt_len: int
    rope_delta: int | None  # mrope offset (Qwen2-VL family); None for 1D positions
    seconds: float = 0.0


def pick_device(device: str | None = None) -> str:
    import torch

    if device:
        return device
    return "cuda" if torch.cuda.is_available() else "cpu"


def pick_dtype(device: str, dtype=None):
    """bf16 on a GPU that supports it (else fp16), fp32 on the CPU; a name or dtype overrides."""
    import torch

    if dtype not in (None, "auto"):
        return getattr(torch, dtype) if isinstance(dtype, str) else dtype
    if str(device).startswith("cuda"):
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.float32


def token_pieces(tokenizer, ids: list[int]) -> list[str]:
    """The text each generated token adds, so that `"".join(pieces) == decode(ids)`.

    Byte-level tokens can end in the middle of a UTF-8 character; such a token gets ""
    and its bytes are shown with the token that completes the character. Special tokens
    (skipped in the text) get "".
    """
    def dec(part):
        return tokenizer.decode(part, skip_special_tokens=True, clean_up_tokenization_spaces=False)

    full = dec(ids)
    pieces: list[str] = []
    prefix, read = 0, 0  # decode from `prefix`; text up to `read` has been emitted
    for i in range(len(ids)):
        before = dec(ids[prefix:read])
        after = dec(ids[prefix:i + 1])
        if len(after) > len(before) and not after.endswith("\ufffd") and after.startswith(before):
            pieces.append(after[len(before):])
            prefix, read = read, i + 1
        else:
            pieces.append("")
    joined = "".join(pieces)
    if joined != full:
        if full.startswith(joined) and pieces:  # undecodable tail bytes: give them to the last token
            pieces[-1] += full[len(joined):]
        else:  # a tokenizer whose decoding is not prefix-stable: fall back to per-token text
            pieces = [dec([t]) for t in ids]
    return pieces


def content_key(prompt: Prompt) -> str:
    """The prefill-cache key: `prompt.key` (+ the system text), or a hash of text and pixels without a key."""
    if prompt.key:  # prompt.key hashes the content, not the system text: add that, so no two prompts collide
        return prompt.key + ("|s" + hashlib.sha1(prompt.system.encode()).hexdigest()[:8] if prompt.system else "")
    import numpy as np

    h = hashlib.sha1((prompt.system or "").encode())
    for part in prompt.content:
        kind = part.get("type", "")
        h.update(kind.encode())
        if kind == "text":
            h.update(part["text"].encode("utf-8", "replace"))
        elif kind == "image":
            img = part.get("image")
            h.update(img.tobytes() if hasattr(img, "tobytes") else str(img).encode())
        elif kind == "video":
            fs = part.get("video")
            h.update(np.ascontiguousarray(fs.frames).tobytes())
            h.update(str(fs.timestamps).encode())
    return "h" + h.hexdigest()[:16]


SMALL_MODEL_PARAMS = 50_000_000


def limit_cpu_threads(model, device: str) -> None:
    """Run small models on one CPU thread.

    Measured on a 2-core machine: the tiny test model decodes ~10x faster on one
    thread than on torch's default pool, whose per-op synchronisation dominates tiny
    matrix products (and collapses when another process holds a core).
    $RLER_CPU_THREADS overrides the choice.
    """
    import os

    import torch

    if device != "cpu":
        return
    if os.environ.get("RLER_CPU_THREADS"):
        torch.set_num_threads(int(os.environ["RLER_CPU_THREADS"]))
    elif sum(p.numel() for p in model.parameters()) < SMALL_MODEL_PARAMS:
        torch.set_num_threads(1)


class HFBackend:
    """K candidates per prompt from a local (or hub) checkpoint via transformers.

    Attributes: `name` (label for reports), `supports_logprobs` (True), `stats`
    (counters: prefills run, prefill cache hits, requests, candidates, tokens).
    """

    supports_logprobs = True

    def __init__(self, model_path: str, label: str | None = None, device: str | None = None,
                 dtype=None, trust_remote_code: bool = False, prefill_cache_size: int = 4,
                 attn_implementation: str | None = None, device_map=None, max_memory: dict | None = None,
                 offload_folder: str | None = None,
                 max_pixels: int | None = None, min_pixels: int | None = None, batch_size: int | None = None):
        import torch
        from transformers import AutoModelForImageTextToText, AutoProcessor

        self.name = label or str(model_path)
        self.model_path = str(model_path)
        self.device = pick_device(device)
        self.dtype = pick_dtype(self.device, dtype)
        self.processor = AutoProcessor.from_pretrained(self.model_path, trust_remote_code=trust_remote_code)
        set_pixel_bounds(self.processor, max_pixels, min_pixels)
        self.tokenizer = getattr(self.processor, "tokenizer", self.processor)
        self.model = AutoModelForImageTextToText.from_pretrained(
            self.model_path, dtype=self.dtype, trust_remote_code=trust_remote_code,
            **load_kwargs(attn_implementation, device_map, max_memory, offload_folder)).eval()
        if device_map is None:
            self.model.to(self.device)
        else:  # accelerate placed the layers; inputs go where the embeddings live
            self.device = str(self.model.get_input_embeddings().weight.device)
        self.batch_size = batch_size  # most candidate rows decoded at once; None = all K of a request
        self.prefill_cache_size = prefill_cache_size
        self._prefills: OrderedDict[str, Prefill] = OrderedDict()
        self.stop_ids = self._stop_ids()
        inner = getattr(self.model, "model", None)
        self._rope_index = getattr(inner, "get_rope_index", None)  # Qwen2-VL family: 3D positions
        params = inspect.signature(self.model.forward).parameters
        self._cache_arg = "cache" if "cache" in params else "past_key_values"
        self._torch = torch
        limit_cpu_threads(self.model, self.device)
        self.stats = {"requests": 0, "prefills": 0, "prefill_cache_hits": 0, "candidates": 0,
                      "generated_tokens": 0, "prompt_tokens": 0, "prefill_seconds": 0.0, "decode_seconds": 0.0}

    # ------------------------------------------------------------------ public

    def generate(self, requests: list[GenerationRequest]) -> list[list[Candidate]]:
        """For each request, `request.k` candidates in the order of its temperatures."""
        return [self._generate_chunked(req) for req in requests]

    def _generate_chunked(self, req: GenerationRequest) -> list[Candidate]:
        """At most `batch_size` candidates decode together; the chunks share one cached prefill."""
        step = self.batch_size or req.k
        if req.k <= step:
            return self._generate_one(req)
        seeds = req.seeds or [None] * req.k
        out: list[Candidate] = []
        for i in range(0, req.k, step):
            out += self._generate_one(GenerationRequest(req.prompt, req.temperatures[i:i + step], seeds[i:i + step],
                                                        req.max_new_tokens, req.top_p))
        return out

    def clear_prefill_cache(self) -> None:
        self._prefills.clear()

    # ------------------------------------------------------------------ prompt encoding

    def _stop_ids(self) -> set[int]:
        ids: set[int] = set()
        gen = getattr(self.model, "generation_config", None)
        eos = getattr(gen, "eos_token_id", None)
        for value in (eos, self.tokenizer.eos_token_id):
            if isinstance(value, int):
                ids.add(value)
            elif value:
                ids.update(int(v) for v in value)
        vocab = self.tokenizer.get_vocab()
        for tok in ("<|im_end|>", "<|endoftext|>"):
            if tok in vocab:
                ids.add(vocab[tok])
        return ids

    def encode(self, prompt: Prompt):
        """Chat-template the prompt and run the processor: model inputs on the device."""
        from rler_eval.prompt import chat_messages

        messages, images, framesets = chat_messages(prompt)
        converted = [video_input(fs) for fs in framesets]
        videos, metadata = [v for v, _ in converted], [m for _, m in converted]
        text = self.processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        kwargs = {"text": [text], "return_tensors": "pt"}
        if images:
            kwargs["images"] = images
        if videos:
            kwargs["videos"] = videos
            kwargs["video_metadata"] = metadata
        inputs = self.processor(**kwargs)
        out = {}
        for k, v in inputs.items():
            if hasattr(v, "to"):
                v = v.to(self.device)
                if v.is_floating_point():
                    v = v.to(self.dtype)
            out[k] = v
        return out

    # ------------------------------------------------------------------ prefill

    def prefill(self, prompt: Prompt) -> Prefill:
        """The prompt's prefill, from the LRU when the same prompt key was seen recently."""
        key = content_key(prompt)
        hit = self._prefills.get(key)
        if hit is not None:
            self._prefills.move_to_end(key)
            self.stats["prefill_cache_hits"] += 1
            return hit
        pre = self._run_prefill(prompt)
        if self.prefill_cache_size > 0:
            self._prefills[key] = pre
            while len(self._prefills) > self.prefill_cache_size:
                self._prefills.popitem(last=False)
        return pre

    def _run_prefill(self, prompt: Prompt) -> Prefill:
        torch = self._torch
        from transformers import DynamicCache

        t0 = time.perf_counter()
        inputs = self.encode(prompt)
        ids = inputs["input_ids"]
        positions, delta = self._prompt_positions(inputs)
        cache = DynamicCache(config=self.model.config)
        with torch.inference_mode():
            out = self.model(**inputs, position_ids=positions, use_cache=True, logits_to_keep=1,
                             **{self._cache_arg: cache})
        kv = [(layer.keys, layer.values) for layer in cache.layers]
        logits = out.logits[0, -1].float()
        seconds = time.perf_counter() - t0
        self.stats["prefills"] += 1
        self.stats["prompt_tokens"] += int(ids.shape[1])
        self.stats["prefill_seconds"] += seconds
        return Prefill(kv=kv, logits=logits, prompt_len=int(ids.shape[1]), rope_delta=delta, seconds=seconds)

    def _prompt_positions(self, inputs):
        """3D mrope positions and delta for the prompt (Qwen2-VL family), else (None, None)."""
        if self._rope_index is None:
            return None, None
        params = inspect.signature(self._rope_index).parameters
        kwargs = {k: v for k, v in inputs.items() if k in params and k != "input_ids"}
        if "mm_token_type_ids" in params and "mm_token_type_ids" not in kwargs:
            kwargs["mm_token_type_ids"] = self._torch.zeros_like(inputs["input_ids"], dtype=self._torch.int)
        positions, delta = self._rope_index(inputs["input_ids"], **kwargs)
        return positions, int(delta.reshape(-1)[0])

    # ------------------------------------------------------------------ follow-up turn (refutation)

    def check(self, prompt: Prompt, assistant_text: str, question: str, prefix: str = "Answer:",
              max_new_tokens: int = 4) -> dict:
        """A greedy reply to a follow-up turn, on top of `prompt`'s cached prefill.

        The conversation continues as: assistant `assistant_text`, user `question`, then the
        assistant turn forced to start with `prefix`. Only those appended tokens run through
        the model; the prompt's prefill (frames included) comes from the LRU. Returns the reply
        Candidate and the log-probs of "yes" and "no" as the next token after the prefix (each
        the log-sum-exp over its spellings' first tokens).
        """
        torch = self._torch
        from transformers import DynamicCache

        pre = self.prefill(prompt)
        suffix = self.followup_text(prompt, assistant_text, question) + prefix
        ids = self.tokenizer(suffix, add_special_tokens=False, return_tensors="pt")["input_ids"].to(self.device)
        n = int(ids.shape[1])
        with torch.inference_mode():
            cache = DynamicCache([(k, v) for k, v in pre.kv], config=self.model.config)
            pos = torch.arange(pre.prompt_len, pre.prompt_len + n, device=self.device)
            out = self.model(input_ids=ids, position_ids=self._positions(pos, pre), use_cache=True,
                             logits_to_keep=1, **{self._cache_arg: cache})
            logits = out.logits[0, -1].float()
            logprobs = torch.log_softmax(logits, dim=-1)
            yes, no = (float(torch.logsumexp(logprobs[self._word_ids(w)], 0)) for w in ("yes", "no"))
            gen, lps = [], []
            for step in range(max_new_tokens):
                tok = int(torch.argmax(logits))
                if tok in self.stop_ids:
                    break
                gen.append(tok)
                lps.append(float(torch.log_softmax(logits, dim=-1)[tok]))
                if step == max_new_tokens - 1:
                    break
                p = torch.tensor([pre.prompt_len + n + step], device=self.device)
                out = self.model(input_ids=torch.tensor([[tok]], device=self.device),
                                 position_ids=self._positions(p, pre), use_cache=True, logits_to_keep=1,
                                 **{self._cache_arg: cache})
                logits = out.logits[0, -1].float()
        text = self.tokenizer.decode(gen, skip_special_tokens=True, clean_up_tokenization_spaces=False)
        self.stats["checks"] = self.stats.get("checks", 0) + 1
        self.stats["check_tokens_fed"] = self.stats.get("check_tokens_fed", 0) + n
        reply = Candidate(text=text, token_logprobs=lps, tokens=token_pieces(self.tokenizer, gen),
                          temperature=0.0, seed=None, n_tokens=len(gen))
        return {"reply": reply, "yes_logprob": round(yes, 6), "no_logprob": round(no, 6), "prefill_reused": True}

    def followup_text(self, prompt: Prompt, assistant_text: str, question: str) -> str:
        """The chat-template text that an assistant turn and a user turn add after `prompt`'s
        generation prompt (ending with the next generation prompt)."""
        from rler_eval.prompt import chat_messages

        messages, _, _ = chat_messages(prompt)
        base = self.processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        more = messages + [{"role": "assistant", "content": [{"type": "text", "text": assistant_text}]},
                           {"role": "user", "content": [{"type": "text", "text": question}]}]
        full = self.processor.apply_chat_template(more, tokenize=False, add_generation_prompt=True)
        if not full.startswith(base):
            raise ValueError("the chat template does not extend the prompt when a turn is appended; "
                             "the refutation check cannot reuse the prefill")
        return full[len(base):]

    def _word_ids(self, word: str) -> list[int]:
        """First-token ids of the spellings of `word` ('yes', ' yes', 'Yes', ' Yes')."""
        ids = set()
        for form in (word, " " + word, word.capitalize(), " " + word.capitalize()):
            toks = self.tokenizer(form, add_special_tokens=False)["input_ids"]
            if toks:
                ids.add(int(toks[0]))
        return sorted(ids)

    def _positions(self, pos, pre: Prefill):
        """Text positions `pos` (1D tensor) for batch 1, on three mrope axes when the model uses them."""
        if pre.rope_delta is not None:
            return (pos + pre.rope_delta).view(1, 1, -1).expand(3, 1, -1)
        return pos.view(1, -1)

    # ------------------------------------------------------------------ decode

    def _generate_one(self, req: GenerationRequest) -> list[Candidate]:
        self.stats["requests"] += 1
        ids, lps, seeds = self.sample_ids(req)
        cands = []
        for c in range(req.k):
            pieces = token_pieces(self.tokenizer, ids[c])
            text = self.tokenizer.decode(ids[c], skip_special_tokens=True, clean_up_tokenization_spaces=False)
            cands.append(Candidate(text=text, token_logprobs=lps[c], tokens=pieces,
                                   temperature=float(req.temperatures[c]), seed=seeds[c], n_tokens=len(ids[c])))
        self.stats["candidates"] += req.k
        self.stats["generated_tokens"] += sum(c.n_tokens for c in cands)
        return cands

    def sample_ids(self, req: GenerationRequest) -> tuple[list[list[int]], list[list[float]], list[int]]:
        """Decode `req.k` sequences from one (possibly cached) prefill.

        Returns per candidate the generated token ids (stop token excluded), the log-prob
        of each under the untempered distribution, and the seed used (drawn at random and
        recorded when the request gives None, so every candidate can be reproduced).
        """
        with self._torch.inference_mode():
            return self._sample_ids(req)

    def _sample_ids(self, req: GenerationRequest):
        torch = self._torch
        from transformers import DynamicCache

        k = req.k
        seeds = [s if s is not None else int.from_bytes(os.urandom(4), "little") >> 1
                 for s in (req.seeds or [None] * k)]
        if len(seeds) != k:
            raise ValueError(f"request has {k} temperatures but {len(seeds)} seeds")
        out_ids: list[list[int]] = [[] for _ in range(k)]
        out_lps: list[list[float]] = [[] for _ in range(k)]
        if k == 0 or req.max_new_tokens <= 0:
            return out_ids, out_lps, seeds
        pre = self.prefill(req.prompt)
        t0 = time.perf_counter()
        gens = []
        for s in seeds:
            g = torch.Generator(device=pre.logits.device)
            g.manual_seed(int(s))
            gens.append(g)
        active = list(range(k))  # candidate index of each row still decoding
        logits = pre.logits.unsqueeze(0).expand(k, -1)
        cache = None
        for step in range(req.max_new_tokens):
            logprobs = torch.log_softmax(logits, dim=-1)
            chosen = [self._choose(logits[r], req.temperatures[c], req.top_p, gens[c]) for r, c in enumerate(active)]
            keep_rows, next_active = [], []
            for r, (c, tok) in enumerate(zip(active, chosen)):
                if tok in self.stop_ids:
                    continue
                out_ids[c].append(tok)
                out_lps[c].append(float(logprobs[r, tok]))
                keep_rows.append(r)
                next_active.append(c)
            if not next_active or step == req.max_new_tokens - 1:
                break
            if cache is None:  # first step: one row per live candidate, all from the shared prefill
                n = len(next_active)
                cache = DynamicCache([(kk.expand(n, -1, -1, -1), vv.expand(n, -1, -1, -1)) for kk, vv in pre.kv],
                                     config=self.model.config)
            elif len(keep_rows) < len(active):  # drop rows that just finished
                cache.batch_select_indices(torch.tensor(keep_rows))  # CPU indices serve layers on any device
            active = next_active
            tokens = torch.tensor([[chosen[r]] for r in keep_rows], device=self.device)
            pos = pre.prompt_len + step  # text position of the token being fed
            if pre.rope_delta is not None:
                position_ids = torch.full((3, len(active), 1), pos + pre.rope_delta, device=self.device)
            else:
                position_ids = torch.full((len(active), 1), pos, device=self.device)
            out = self.model(input_ids=tokens, position_ids=position_ids, use_cache=True, logits_to_keep=1,
                             **{self._cache_arg: cache})
            logits = out.logits[:, -1].float()
        self.stats["decode_seconds"] += time.perf_counter() - t0
        return out_ids, out_lps, seeds

    def _choose(self, logits, temperature: float, top_p: float, gen) -> int:
        """Greedy at temperature 0, else a seeded sample from the tempered (nucleus) distribution."""
        torch = self._torch
        if temperature <= 0:
            return int(torch.argmax(logits))
        probs = torch.softmax(logits / temperature, dim=-1)
        if top_p < 1.0:
            sorted_p, order = torch.sort(probs, descending=True)
            outside = torch.cumsum(sorted_p, dim=-1) - sorted_p >= top_p  # keep the smallest set reaching top_p
            sorted_p = sorted_p.masked_fill(outside, 0.0)
            return int(order[torch.multinomial(sorted_p, 1, generator=gen)])
        return int(torch.multinomial(probs, 1, generator=gen))


def video_input(frameset):
    """A FrameSet as native video input: frames (N, H, W, 3) and their metadata.

    The frame rate given to the processor is the sampling rate implied by the timestamps,
    so the model's temporal positions (`second_per_grid_ts`) match the real spacing.
    """
    import numpy as np
    from transformers.video_utils import VideoMetadata

    frames = np.ascontiguousarray(np.asarray(frameset.frames, dtype=np.uint8))
    n = len(frames)
    ts = list(frameset.timestamps)
    span = (ts[-1] - ts[0]) if n > 1 else 0.0
    fps = (n - 1) / span if span > 0 else 1.0
    meta = VideoMetadata(total_num_frames=n, fps=fps, frames_indices=list(range(n)),
                         height=int(frames.shape[1]), width=int(frames.shape[2]), duration=frameset.duration)
    return frames, meta


def load_kwargs(attn_implementation, device_map, max_memory, offload_folder=None) -> dict:
    """`from_pretrained` keywords for the options that were given (device_map="auto" shards across GPUs)."""
    given = {"attn_implementation": attn_implementation, "device_map": device_map, "max_memory": max_memory,
             "offload_folder": offload_folder}
    if max_memory:
        given["max_memory"] = {int(k) if str(k).isdigit() else k: v for k, v in max_memory.items()}
    return {k: v for k, v in given.items() if v is not None}


def set_pixel_bounds(processor, max_pixels: int | None, min_pixels: int | None) -> None:
    """Bound the pixels per image (and per video frame) the vision tower sees (Qwen2-VL family)."""
    for sub in (getattr(processor, "image_processor", None), getattr(processor, "video_processor", None)):
        size = getattr(sub, "size", None)
        if size is None:
            continue
        for key, value in (("longest_edge", max_pixels), ("shortest_edge", min_pixels)):
            if value is None:
                continue
            if isinstance(size, dict):
                size[key] = int(value)
            else:  # transformers 5: a SizeDict dataclass
                setattr(size, key, int(value))


# model arguments (`--model-args` / a card's `args.model`) -> help; see models/__init__.py
MODEL_ARGS = {
    "dtype": "bfloat16, float16, float32 or auto [bf16 on a GPU that has it, else fp16; fp32 on the CPU]",
    "attn_implementation": "eager, sdpa or flash_attention_2 [transformers' choice]",
    "device_map": "auto shards a large model across all visible GPUs (accelerate); or a mapping",
    "offload_folder": "with device_map: where layers mapped to disk are kept",
    "max_memory": "with device_map: memory per device, e.g. {0: 20GiB, 1: 20GiB, cpu: 64GiB}",
    "device": "cpu, cuda, cuda:1 ... without device_map [cuda when available]",
    "max_pixels": "most pixels per image or video frame after the processor's resize",
    "min_pixels": "fewest pixels per image or video frame",
    "batch_size": "most candidates decoded together (bounds memory at large K) [all K of a request]",
    "prefill_cache_size": "prompts whose prefill is kept for later adaptive rounds [4]",
    "trust_remote_code": "run the checkpoint's own code [false]",
    "label": "the name shown in reports [the path]",
}


def load(target: str, **model_args) -> HFBackend:
    """The registry's entry point: `target` is a local checkpoint folder or a hub id."""
    return HFBackend(target, **model_args)
