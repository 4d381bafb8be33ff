"""Where a strategy gets its candidates: live from a backend, or replayed from a record.

Why a source object: a strategy only asks "draw k more candidates at these
temperatures". Live, that is a backend call (reusing the prompt's cached prefill);
in replay, it pops the recorded candidates in their recorded order. The same strategy
code therefore runs online and offline, and an adaptive strategy's candidate count is
simulated faithfully.
"""

from __future__ import annotations

import zlib

from rler_eval.models.base import GenerationRequest
from rler_eval.types import Candidate, Prompt


class LiveSource:
    """Draws candidates from a backend for one prompt, counting calls and tokens."""

    def __init__(self, backend, prompt: Prompt, max_new_tokens: int = 256, seed: int = 0, sample_id: str = ""):
        self.backend, self.prompt, self.max_new_tokens = backend, prompt, max_new_tokens
        self.base_seed = (zlib.crc32(sample_id.encode()) + seed) % (2**31)
        self.drawn: list[Candidate] = []
        self.model_calls = 0
        self.generated_tokens = 0

    def draw(self, temperatures: list[float]) -> list[Candidate]:
        seeds = [self.base_seed + len(self.drawn) + i for i in range(len(temperatures))]
        req = GenerationRequest(self.prompt, list(temperatures), seeds, self.max_new_tokens)
        cands = self.backend.generate([req])[0]
        self.model_calls += 1
        self.generated_tokens += sum(c.n_tokens for c in cands)
        self.drawn.extend(cands)
        return cands

    def ask(self, extra_text: str, max_new_tokens: int = 16) -> Candidate:
        """One greedy answer to a follow-up question about the same frames (refutation)."""
        content = list(self.prompt.content) + [{"type": "text", "text": extra_text}]
        prompt = Prompt(content=content, system=self.prompt.system, n_frames=self.prompt.n_frames,
                        key=self.prompt.key + "|" + str(zlib.crc32(extra_text.encode())))
        cand = self.backend.generate([GenerationRequest(prompt, [0.0], [self.base_seed], max_new_tokens)])[0][0]
        self.model_calls += 1
        self.generated_tokens += cand.n_tokens
        return cand


class ReplaySource:
    """Serves recorded candidates in their recorded order; no model involved."""

    def __init__(self, candidates: list[Candidate], asks: dict[str, Candidate] | None = None):
        self.recorded = list(candidates)
        self.asks = asks or {}
        self.drawn: list[Candidate] = []
        self.model_calls = 0
        self.generated_tokens = 0

    @property
    def remaining(self) -> int:
        return len(self.recorded) - len(self.drawn)

    def draw(self, temperatures: list[float]) -> list[Candidate]:
        take = self.recorded[len(self.drawn):len(self.drawn) + len(temperatures)]
        if take:
            self.model_calls += 1
            self.generated_tokens += sum(c.n_tokens for c in take)
        self.drawn.extend(take)
        return take

    def ask(self, extra_text: str, max_new_tokens: int = 16) -> Candidate | None:
        cand = self.asks.get(extra_text)
        if cand is not None:
            self.model_calls += 1
            self.generated_tokens += cand.n_tokens
        return cand

    @classmethod
    def from_prediction(cls, prediction: dict) -> "ReplaySource":
        """A source over a recorded Prediction dict: its candidates and its refutation replies."""
        cands = [Candidate.from_dict(c) for c in prediction.get("candidates") or []]
        asks = {}
        for check in ((prediction.get("refutation") or {}).get("checks") or []):
            if check.get("reply") is not None:
                asks[check["question"]] = Candidate.from_dict(check["reply"])
        return cls(cands, asks)
