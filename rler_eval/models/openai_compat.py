"""A backend for any OpenAI-compatible chat-completions server (vLLM serve, SGLang,
`transformers serve`, hosted APIs).

Why it exists: large models are usually served, not loaded in-process. Evaluating through
the standard chat-completions API lets the same strategies and election run against any
server. Servers differ in what they honour, so this backend asks for the best case and
copes with less:
- it asks for `n` candidates per call (one call per temperature group) and, where the
  server returns fewer choices (it ignored `n`), draws the rest one call per candidate,
  each with its own `seed` and `temperature`;
- it asks for `logprobs`; a server that ignores them gives candidates with
  `token_logprobs=None`, which the election scores with the neutral confidence
  (`evidence.NEUTRAL_CONFIDENCE`).

Images go as base64 data URLs (`{"type": "image_url", "image_url": {"url": ...}}`). The
standard API has no video part, so a native-video prompt part is sent as its frames, in
order, as images. Seeds: with `n > 1` one seed covers the whole call, so each candidate
records the call's seed; with one candidate per call the record is exact.

The think text is restored from `reasoning_content` / `reasoning` where a server's reasoning
parser moved it out of `content` (transformers 5.24 `cli/serving/utils.py`,
`_RESPONSE_TEMPLATE_FALLBACKS` for qwen2/qwen2_5_vl/...: `<think>` goes to
`reasoning_content`, and the content region drops the whitespace around it).

Fact (transformers 5.24, `transformers/cli/serving/chat_completion.py` and
`cli/serving/utils.py`): `transformers serve` ignores `n`, `logprobs` and `top_logprobs`,
honours `seed` (it seeds torch per request) and `temperature`, but only samples when the
model's generation config has `do_sample=True`; temperature 0 forces greedy.
"""

from __future__ import annotations

import base64
import io
import os
import time
from concurrent.futures import ThreadPoolExecutor

from rler_eval.models.base import GenerationRequest
from rler_eval.types import Candidate, Prompt


class ServerError(RuntimeError):
    """The server could not be reached or kept failing; the message names the URL."""


def image_data_url(image, fmt: str = "PNG") -> str:
    """A PIL image (or HxWx3 uint8 array) as a base64 data URL."""
    import numpy as np
    from PIL import Image

    if not isinstance(image, Image.Image):
        image = Image.fromarray(np.asarray(image, dtype=np.uint8))
    buf = io.BytesIO()
    image.convert("RGB").save(buf, format=fmt)
    mime = "jpeg" if fmt.upper() in ("JPG", "JPEG") else fmt.lower()
    return f"data:image/{mime};base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def build_messages(prompt: Prompt, image_format: str = "PNG") -> list[dict]:
    """The prompt as OpenAI chat messages (system optional, one user turn)."""
    from rler_eval.prompt import as_rgb_image

    parts: list[dict] = []
    for part in prompt.content:
        kind = part.get("type")
        if kind == "text":
            parts.append({"type": "text", "text": part["text"]})
        elif kind == "image":
            img = as_rgb_image(part["image"])
            parts.append({"type": "image_url", "image_url": {"url": image_data_url(img, image_format)}})
        elif kind == "video":  # no video part in the standard API: send the frames in order
            for frame in part["video"].frames:
                parts.append({"type": "image_url", "image_url": {"url": image_data_url(frame, image_format)}})
        else:
            raise ValueError(f"unsupported prompt part type {kind!r}")
    messages = []
    if prompt.system:
        messages.append({"role": "system", "content": prompt.system})
    messages.append({"role": "user", "content": parts})
    return messages


def parse_choice(choice: dict) -> tuple[str, list[float] | None, list[str] | None]:
    """(text, token log-probs, token texts) of one returned choice; log-probs may be None."""
    msg = choice.get("message") or {}
    text = msg.get("content")
    if text is None:
        text = choice.get("text") or ""
    # Servers with a reasoning parser move <think>...</think> out of `content` into
    # `reasoning_content` (transformers serve for Qwen model types; vLLM/others may say
    # `reasoning`). The evidence protocol needs the think text, so put it back in front.
    reasoning = msg.get("reasoning_content") or msg.get("reasoning")
    if isinstance(reasoning, str) and reasoning and "<think>" not in text:
        text = f"<think>{reasoning}</think>" + ("\n" if text else "") + text
    lp = choice.get("logprobs")
    content = lp.get("content") if isinstance(lp, dict) else None
    if not content:
        return text, None, None
    lps, toks = [], []
    for entry in content:
        value = entry.get("logprob")
        if value is None:
            return text, None, None
        lps.append(float(value))
        raw = entry.get("bytes")
        toks.append(bytes(raw).decode("utf-8", "replace") if raw is not None and entry.get("token") is None
                    else str(entry.get("token", "")))
    return text, lps, toks


class OpenAIBackend:
    """K candidates per prompt from an OpenAI-compatible `/chat/completions` endpoint."""

    supports_logprobs = True  # asked for; a server may still return none (then C is neutral)

    def __init__(self, base_url: str, model: str, api_key: str | None = None, timeout: float = 600.0,
                 max_retries: int = 3, use_n: bool = True, logprobs: bool = True, image_format: str = "PNG",
                 concurrency: int = 1, label: str | None = None, extra_body: dict | None = None):
        import httpx

        self.base_url = base_url.rstrip("/")
        self.model = model
        self.name = label or f"{model}@{self.base_url}"
        self.use_n, self.logprobs, self.image_format = use_n, logprobs, image_format
        self.max_retries, self.concurrency = max_retries, max(1, concurrency)
        self.extra_body = dict(extra_body or {})
        key = api_key if api_key is not None else os.environ.get("OPENAI_API_KEY", "EMPTY")
        self.client = httpx.Client(base_url=self.base_url, timeout=timeout,
                                   headers={"Authorization": f"Bearer {key}"})
        self.stats = {"requests": 0, "http_calls": 0, "retries": 0, "candidates": 0,
                      "n_ignored": 0, "logprobs_missing": 0}

    @classmethod
    def from_spec(cls, spec: str, **kwargs) -> "OpenAIBackend":
        """`model@http://host:port/v1`; without `@url`, `$OPENAI_BASE_URL` is used."""
        if "@" in spec and "://" in spec.rsplit("@", 1)[1]:
            model, url = spec.rsplit("@", 1)
        else:
            model, url = spec, os.environ.get("OPENAI_BASE_URL", "")
        if not url:
            raise ValueError(f"model spec {spec!r} names no server: use 'openai:MODEL@http://host:port/v1' "
                             "or set OPENAI_BASE_URL")
        return cls(url, model, **kwargs)

    def close(self) -> None:
        self.client.close()

    # ------------------------------------------------------------------ generation

    def generate(self, requests: list[GenerationRequest]) -> list[list[Candidate]]:
        return [self._generate_one(req) for req in requests]

    def _generate_one(self, req: GenerationRequest) -> list[Candidate]:
        self.stats["requests"] += 1
        k = req.k
        seeds = list(req.seeds) if req.seeds else [None] * k
        if len(seeds) != k:
            raise ValueError(f"request has {k} temperatures but {len(seeds)} seeds")
        messages = build_messages(req.prompt, self.image_format)
        # first wave: one call per temperature group (asking for n), or one per candidate
        groups: dict[float, list[int]] = {}
        for i, t in enumerate(req.temperatures):
            groups.setdefault(float(t), []).append(i)
        jobs = []
        for t, idx in groups.items():
            if self.use_n and t > 0 and len(idx) > 1:
                jobs.append((t, idx))
            else:
                jobs.extend((t, [i]) for i in idx)
        out: list[Candidate | None] = [None] * k
        missing = self._run_jobs(jobs, messages, req, seeds, out)
        if missing:  # the server returned fewer choices than asked: one call per missing candidate
            self.stats["n_ignored"] += 1
            self._run_jobs([(float(req.temperatures[i]), [i]) for i in missing], messages, req, seeds, out)
        if any(c is None for c in out):
            raise ServerError(f"{self.base_url}: server returned no choice for some candidates")
        self.stats["candidates"] += k
        return out  # type: ignore[return-value]

    def _run_jobs(self, jobs, messages, req, seeds, out) -> list[int]:
        """Run the calls, fill `out`, return candidate indices left without a choice."""
        def run(job):
            t, idx = job
            return job, self._call(messages, t, seeds[idx[0]], len(idx), req)

        if self.concurrency > 1 and len(jobs) > 1:
            with ThreadPoolExecutor(self.concurrency) as pool:
                results = list(pool.map(run, jobs))
        else:
            results = [run(job) for job in jobs]
        missing = []
        for (t, idx), data in results:
            choices = sorted(data.get("choices") or [], key=lambda c: c.get("index", 0))
            usage = data.get("usage") or {}
            for pos, i in enumerate(idx):
                if pos >= len(choices):
                    missing.append(i)
                    continue
                text, lps, toks = parse_choice(choices[pos])
                if lps is None:
                    self.stats["logprobs_missing"] += 1
                n_tok = len(lps) if lps is not None else (
                    int(usage.get("completion_tokens") or 0) if len(choices) == 1 else 0)
                out[i] = Candidate(text=text, token_logprobs=lps, tokens=toks, temperature=t,
                                   seed=seeds[idx[0]], n_tokens=n_tok)
        return missing

    def request_body(self, messages: list[dict], temperature: float, seed: int | None, n: int,
                     req: GenerationRequest) -> dict:
        body = {"model": self.model, "messages": messages, "max_tokens": req.max_new_tokens,
                "temperature": float(temperature)}
        if n > 1:
            body["n"] = n
        if seed is not None:
            body["seed"] = int(seed)
        if req.top_p < 1.0:
            body["top_p"] = float(req.top_p)
        if self.logprobs:
            body["logprobs"] = True
        body.update(self.extra_body)
        return body

    def _call(self, messages, temperature, seed, n, req) -> dict:
        import httpx

        body = self.request_body(messages, temperature, seed, n, req)
        delay = 1.0
        for attempt in range(self.max_retries + 1):
            self.stats["http_calls"] += 1
            try:
                resp = self.client.post("/chat/completions", json=body)
            except httpx.HTTPError as e:
                err = f"{type(e).__name__}: {e}"
            else:
                if resp.status_code == 200:
                    return resp.json()
                err = f"HTTP {resp.status_code}: {resp.text[:500]}"
                if resp.status_code == 400 and "logprobs" in body and "logprob" in resp.text.lower():
                    body.pop("logprobs")  # a strict server that refuses logprobs: retry without
                    continue
                if resp.status_code not in (408, 409, 429) and resp.status_code < 500:
                    break
            if attempt < self.max_retries:
                self.stats["retries"] += 1
                time.sleep(delay)
                delay *= 2
        raise ServerError(f"{self.base_url}/chat/completions failed for model {self.model!r}: {err}")


# model arguments (`--model-args` / a card's `args.model`) -> help; see models/__init__.py
MODEL_ARGS = {
    "timeout": "seconds to wait for one HTTP response [600]",
    "concurrency": "HTTP calls in flight at once for one prompt's candidates [1]",
    "max_retries": "retries of a failed call, with backoff [3]",
    "use_n": "ask for n candidates per call (false: one call per candidate) [true]",
    "logprobs": "ask for token log-probs [true]",
    "image_format": "PNG or JPEG for the frames sent as data URLs [PNG]",
    "api_key": "bearer token [$OPENAI_API_KEY, else EMPTY]",
    "extra_body": "a mapping merged into every request body, e.g. {top_k: 20}",
    "label": "the name shown in reports [MODEL@URL]",
}


def load(target: str, **model_args) -> OpenAIBackend:
    """The registry's entry point: `target` is `MODEL@URL` (or MODEL with $OPENAI_BASE_URL)."""
    return OpenAIBackend.from_spec(target, **model_args)
