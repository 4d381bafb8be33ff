"""The one small interface every generation backend implements.

Why so small: strategies (greedy, majority, RLER election) only ever need "give me K
candidates for this prompt at these temperatures". Keeping the interface to a single
`generate` call lets an ablation swap the strategy without touching the model, and lets
offline replay stand in for a backend.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from rler_eval.types import Candidate, Prompt


@dataclass
class GenerationRequest:
    """K candidates for one prompt.

    `temperatures` has one entry per candidate (0.0 means greedy), `seeds` likewise
    (None lets the backend choose). A backend that keeps a prefill cache reuses it when
    the same `prompt.key` comes back in a later request (adaptive rounds).
    """

    prompt: Prompt
    temperatures: list[float] = field(default_factory=lambda: [0.0])
    seeds: list[int | None] | None = None
    max_new_tokens: int = 256
    top_p: float = 1.0

    @property
    def k(self) -> int:
        return len(self.temperatures)


class Backend(Protocol):
    name: str  # what to show in reports, e.g. the checkpoint path
    supports_logprobs: bool

    def generate(self, requests: list[GenerationRequest]) -> list[list[Candidate]]:
        """For each request, `request.k` candidates in the order of its temperatures."""
        ...
