"""Where a strategy gets its candidates: live from a backend, or replayed from a record.

Why a source object: a strategy only asks "draw k more candidates at these temperatures"
and, for the refutation check, "answer this follow-up turn". Live, those are backend calls
(reusing the prompt's cached prefill); in replay, they pop the recorded candidates in their
recorded order and serve the recorded check replies. The same strategy code therefore runs
online and offline, and an adaptive strategy's candidate count is simulated faithfully.
"""

from __future__ import annotations

import zlib

from rler_eval.election.refute import PREFIX
from rler_eval.models.base import GenerationRequest
from rler_eval.types import Candidate, Prompt

GENERIC_SUFFIX = " Reply with one word: yes or no."


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

    def check(self, question: str, reply_to_text: str, max_new_tokens: int, reply_to: int = 0) -> dict:
        """A greedy yes/no follow-up turn after the completion `reply_to_text`.

        A backend with `check` (transformers) appends the turn to the cached prefill and
        returns yes/no log-probs; any other backend gets one user turn quoting the
        completion, and its reply text is read."""
        if hasattr(self.backend, "check"):
            res = self.backend.check(self.prompt, reply_to_text, question, PREFIX, max_new_tokens)
        else:
            text = f"Your answer was:\n{reply_to_text}\n\n{question}{GENERIC_SUFFIX}"
            prompt = Prompt(content=list(self.prompt.content) + [{"type": "text", "text": text}],
                            system=self.prompt.system, n_frames=self.prompt.n_frames,
                            key=self.prompt.key + "|check" + str(zlib.crc32(text.encode())))
            reply = self.backend.generate([GenerationRequest(prompt, [0.0], [self.base_seed], max_new_tokens)])[0][0]
            res = {"reply": reply, "yes_logprob": None, "no_logprob": None, "prefill_reused": False}
        self.model_calls += 1
        self.generated_tokens += res["reply"].n_tokens
        return res


class ReplaySource:
    """Serves recorded candidates in their recorded order; no model involved."""

    def __init__(self, candidates: list[Candidate], checks: dict | None = None):
        self.recorded = list(candidates)
        self.checks = checks or {}  # (question, reply_to) -> recorded check result
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

    def check(self, question: str, reply_to_text: str, max_new_tokens: int, reply_to: int = 0) -> dict | None:
        """The recorded reply to this check, or None when the run did not make it."""
        res = self.checks.get((question, reply_to))
        if res is not None:
            self.model_calls += 1
            self.generated_tokens += res["reply"].n_tokens
        return res

    @classmethod
    def from_prediction(cls, prediction: dict) -> "ReplaySource":
        """A source over a recorded Prediction dict: its candidates and its check replies."""
        cands = [Candidate.from_dict(c) for c in prediction.get("candidates") or []]
        checks = {}
        for c in ((prediction.get("refutation") or {}).get("checks") or []):
            if c.get("reply") is not None and "reply_to" in c:
                checks[(c["question"], c["reply_to"])] = {
                    "reply": Candidate.from_dict(c["reply"]), "yes_logprob": c.get("yes_logprob"),
                    "no_logprob": c.get("no_logprob"), "prefill_reused": c.get("prefill_reused")}
        return cls(cands, checks)
