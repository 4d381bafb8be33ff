"""A pluggable, cached LLM judge for the benchmarks whose official protocol uses one.

Why it exists: TempCompass (answers its rules cannot match, and every caption) and
WildVideo (every open answer) are scored by an LLM in their official code. Scores must be
reproducible and cheap to recompute, so every judgement is cached on disk, keyed by the
full request (model, system text, prompt, temperature, token limit): re-scoring a run or
re-running `rler-eval score` asks the server only about prompts it has never seen.

Any OpenAI-compatible chat-completions server works (api.openai.com, vLLM serve,
`transformers serve`, ...). Configuration, first match wins:

    card args `judge: {base_url, model, api_key_env}`  (per task)
    RLER_JUDGE_BASE_URL, RLER_JUDGE_MODEL              (environment)
    RLER_JUDGE_API_KEY, else OPENAI_API_KEY            (key; optional for local servers)
    RLER_JUDGE=off                                     (force the fallback)

With neither a base URL nor a model configured there is no judge: each benchmark then
applies its documented rule-based fallback and its metrics say so
(`"judge": "rule-based fallback"`). Setting only RLER_JUDGE_MODEL talks to
https://api.openai.com/v1.

How long and how hard to try, first match wins: card args `judge: {timeout, max_retries,
concurrency}`, then RLER_JUDGE_TIMEOUT (seconds, a total deadline per request, not per
read), RLER_JUDGE_RETRIES (extra attempts) and RLER_JUDGE_CONCURRENCY (requests in flight
at once, for `ask_many`).

A request that keeps failing returns None (never cached). So does a reply that is not a
string. The benchmark scores it 0 and marks it `"failed"`; the runner records such a
sample with status `judge_error`, which `--retry-errors` re-runs and a resume re-judges
once the judge answers. A failed judgement is never a permanent zero. Nothing here
imports torch.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
import os
import threading
import time
from contextlib import contextmanager
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from pathlib import Path

from rler_eval.errors import TaskError

FALLBACK = "rule-based fallback"
OPENAI_URL = "https://api.openai.com/v1"


@dataclass
class JudgeConfig:
    """Where the judge lives and how it is asked."""

    base_url: str  # OpenAI-compatible root, e.g. http://127.0.0.1:8000/v1
    model: str  # e.g. gpt-4o-mini (WildVideo's official default)
    api_key: str | None = None  # sent as a Bearer token when set
    temperature: float = 0.0  # WildVideo's official setting; deterministic and cacheable
    max_tokens: int = 128  # TempCompass's official limit for judge replies
    timeout: float = 60.0  # seconds, total deadline of one HTTP request (connect + all reads)
    max_retries: int = 2  # extra attempts after a failed request
    concurrency: int = 4  # requests in flight at once (ask_many)
    cache_dir: str | None = None  # [$RLER_CACHE or ~/.cache/rler-eval]/judge


@dataclass
class Judge:
    """An OpenAI-compatible chat client with an on-disk cache of its replies."""

    config: JudgeConfig
    stats: dict = field(default_factory=lambda: {"http_calls": 0, "cache_hits": 0, "failures": 0})

    def __post_init__(self):
        self._slots = threading.BoundedSemaphore(max(1, self.config.concurrency))

    @property
    def name(self) -> str:
        return f"{self.config.model}@{self.config.base_url}"

    def cache_path(self, key: str) -> Path:
        root = self.config.cache_dir or os.path.join(
            os.environ.get("RLER_CACHE") or os.path.expanduser("~/.cache/rler-eval"), "judge")
        return Path(root) / key[:2] / f"{key}.json"

    def request_key(self, system: str | None, prompt: str) -> str:
        c = self.config
        blob = json.dumps([c.model, system, prompt, c.temperature, c.max_tokens], ensure_ascii=False)
        return hashlib.sha256(blob.encode("utf-8")).hexdigest()

    def ask(self, prompt: str, system: str | None = None) -> str | None:
        """The judge's reply text (cached), or None when the server kept failing."""
        key = self.request_key(system, prompt)
        path = self.cache_path(key)
        if path.exists() and not getattr(_REFRESH, "on", False):
            try:
                reply = json.loads(path.read_text(encoding="utf-8"))["reply"]
                self.stats["cache_hits"] += 1
                return reply
            except (OSError, ValueError, KeyError):
                pass  # a torn cache file is simply asked again
        reply = self._post(prompt, system)
        if reply is None:
            return None
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".tmp{os.getpid()}")
        tmp.write_text(json.dumps({"model": self.config.model, "system": system, "prompt": prompt,
                                   "reply": reply}, ensure_ascii=False), encoding="utf-8")
        os.replace(tmp, path)
        return reply

    def ask_many(self, prompts: list[str], system: str | None = None) -> list[str | None]:
        """`ask` for many prompts, `config.concurrency` at a time; replies in prompt order."""
        with ThreadPoolExecutor(max_workers=max(1, self.config.concurrency)) as pool:
            return list(pool.map(lambda p: self.ask(p, system), prompts))

    def _post(self, prompt: str, system: str | None) -> str | None:
        """The reply text, retrying failed requests (tenacity); None when every attempt failed."""
        from tenacity import RetryError, Retrying, retry_if_exception_type, stop_after_attempt, wait_exponential

        c = self.config
        messages = ([{"role": "system", "content": system}] if system else []) + \
                   [{"role": "user", "content": prompt}]
        body = {"model": c.model, "messages": messages, "temperature": c.temperature, "max_tokens": c.max_tokens}
        retrying = Retrying(stop=stop_after_attempt(c.max_retries + 1), wait=wait_exponential(0.5, max=2.0),
                            retry=retry_if_exception_type(JudgeFailure))
        try:
            with self._slots:
                for attempt in retrying:
                    with attempt:
                        self.stats["http_calls"] += 1
                        return self._post_once(body)
        except (RetryError, JudgeFailure):
            pass
        self.stats["failures"] += 1
        return None

    def _post_once(self, body: dict) -> str:
        """One request under a total deadline of `config.timeout` seconds; JudgeFailure otherwise."""
        c = self.config
        pool = ThreadPoolExecutor(max_workers=1)
        future = pool.submit(_request, c.base_url.rstrip("/") + "/chat/completions", body, c.api_key, c.timeout)
        try:
            return future.result(timeout=c.timeout)
        except FutureTimeout:
            raise JudgeFailure(f"no complete reply within {c.timeout:g} s") from None
        finally:
            pool.shutdown(wait=False)  # an abandoned request thread stops itself at its deadline


class JudgeFailure(Exception):
    """One judge request failed (network, HTTP status, deadline or a malformed reply)."""


def _request(url: str, body: dict, api_key: str | None, timeout: float) -> str:
    """POST and read the reply in chunks, stopping at the deadline even if bytes keep trickling."""
    import httpx

    deadline = time.monotonic() + timeout
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    try:
        with httpx.stream("POST", url, json=body, headers=headers, timeout=timeout) as r:
            r.raise_for_status()
            chunks = []
            for chunk in r.iter_bytes():
                chunks.append(chunk)
                if time.monotonic() > deadline:
                    raise JudgeFailure(f"reply still streaming after {timeout:g} s")
        content = json.loads(b"".join(chunks))["choices"][0]["message"]["content"]
    except httpx.HTTPError as e:
        raise JudgeFailure(f"{type(e).__name__}: {e}") from None
    except (ValueError, KeyError, IndexError, TypeError) as e:
        raise JudgeFailure(f"malformed reply ({type(e).__name__}: {e})") from None
    if content is None:
        return ""
    if not isinstance(content, str):
        raise JudgeFailure(f"reply content is {type(content).__name__}, not text")
    return content.strip()


_REFRESH = threading.local()


@contextmanager
def refreshed():
    """Within this block, ask the judge again instead of reading the cache (and re-cache).

    Used when re-judging a judge_error record: its cached reply was unusable ("inf",
    off-scale, no verdict), so reading it back would only repeat the failure.
    """
    _REFRESH.on = True
    try:
        yield
    finally:
        _REFRESH.on = False


# one client per configuration, so cache statistics survive across score() calls
_JUDGES: dict[tuple, Judge] = {}


def get_judge(card=None) -> Judge | None:
    """The configured judge for a task card (card args, then environment), or None."""
    if os.environ.get("RLER_JUDGE", "").lower() in ("off", "0", "none", "false"):
        return None
    args = ((getattr(card, "args", None) or {}).get("judge") or {}) if card is not None else {}
    base_url = args.get("base_url") or os.environ.get("RLER_JUDGE_BASE_URL")
    model = args.get("model") or os.environ.get("RLER_JUDGE_MODEL")
    if not base_url and not model:
        return None
    key_env = args.get("api_key_env")
    api_key = (os.environ.get(key_env) if key_env else None) or os.environ.get("RLER_JUDGE_API_KEY") \
        or os.environ.get("OPENAI_API_KEY")
    cfg = JudgeConfig(base_url=base_url or OPENAI_URL, model=model or "gpt-4o-mini", api_key=api_key,
                      temperature=float(args.get("temperature", 0.0)),
                      max_tokens=int(args.get("max_tokens", 128)),
                      timeout=setting(args, "timeout", "RLER_JUDGE_TIMEOUT", float, 60.0),
                      max_retries=setting(args, "max_retries", "RLER_JUDGE_RETRIES", int, 2, minimum=0),
                      concurrency=setting(args, "concurrency", "RLER_JUDGE_CONCURRENCY", int, 4, minimum=1),
                      cache_dir=args.get("cache_dir") or os.environ.get("RLER_JUDGE_CACHE"))
    ident = (cfg.base_url, cfg.model, cfg.api_key, cfg.temperature, cfg.max_tokens, cfg.cache_dir, cfg.timeout,
             cfg.max_retries, cfg.concurrency)
    if ident not in _JUDGES:
        _JUDGES[ident] = Judge(cfg)
    return _JUDGES[ident]


def setting(args: dict, key: str, env: str, kind, default, minimum: float | None = None):
    """A judge setting from the card's `judge:` args, else the environment, else the default."""
    raw, where = (args[key], f"card judge.{key}") if args.get(key) is not None else (os.environ.get(env), env)
    if raw in (None, ""):
        return default
    try:
        value = kind(raw)
    except (TypeError, ValueError):
        raise TaskError(f"{where}: expected {kind.__name__}, got {raw!r}") from None
    low = minimum if minimum is not None else 0
    if not math.isfinite(value) or value < low or (minimum is None and value == 0):
        raise TaskError(f"{where}: must be {'positive' if minimum is None else f'>= {minimum}'}, got {raw!r}")
    return value


def describe(card=None) -> str:
    """What scores the judged rows under the current configuration (for the metrics)."""
    j = get_judge(card)
    return j.config.model if j is not None else FALLBACK


# ---------------------------------------------------------------- reading verdicts


def correct_incorrect(reply: str | None) -> float | None:
    """1.0 / 0.0 from a "Correct"/"Incorrect" reply; None when it says neither.

    TempCompass `llm_output_to_rating` (llyx97/TempCompass utils/eval_utils.py): a reply
    starting with "Correct" is 1, starting with "Incorrect" 0; otherwise 1 if "Correct"
    occurs without "Incorrect", 0 if "Incorrect" occurs. Case-sensitive, as there. The
    official code asserts one of the words is present and retries; here None means
    "unparseable" and the caller scores it 0 and counts it.
    """
    if reply is None:
        return None
    t = reply.strip()
    if t.startswith("Correct"):
        return 1.0
    if t.startswith("Incorrect"):
        return 0.0
    if "Correct" in t and "Incorrect" not in t:
        return 1.0
    if "Incorrect" in t:
        return 0.0
    return None


def unit_score(reply: str | None) -> float | None:
    """A 0..1 score from a reply that is a bare number; None (a judge failure) otherwise.

    WildVideo's current official evaluator (yangsongyuan18/WildVideo
    lmms_eval/wildvideo_evals.py `_output_to_score`) takes `float(reply.strip())` and clamps
    it to [0, 1]. Here a value that is not finite or lies outside [0, 1] ("inf", "7") is a
    failure, not a clamp: a judge that answers off the scale has not given a score. Its
    later fallbacks (a regex, then Correct/Incorrect) call `re` without importing it, so
    in the official code any non-numeric reply ends as a failed sample scored 0; here such
    a reply is "unparseable" (None), which the caller scores 0 and records as a failure.
    """
    if reply is None:
        return None
    try:
        value = float(reply.strip())
    except ValueError:
        return None
    if not math.isfinite(value) or not 0.0 <= value <= 1.0:
        return None
    return value


def card_of(sample):
    """The task card a sample came from (by `sample.task`), or None when it cannot be loaded.

    `score(sample, response)` receives no card; judge settings in a card's args are found
    through the sample's task name.
    """
    return _card(sample.task)


@functools.lru_cache(maxsize=64)
def _card(name: str):
    from rler_eval.errors import RlerError
    from rler_eval.tasks import load_task

    try:
        return load_task(name)
    except RlerError:
        return None
