"""Election figures for `make bench` (prints, asserts nothing).

Why: the election must be negligible next to generation (target: under 1 ms per question
for K=8, model excluded), and adaptive RLER only pays off if a later round does not redo
the prompt's prefill. This measures:
1. election overhead per question (parse + E C T R + vote) for K=8 recorded candidates,
   for majority@8, rler@8 and adaptive rler, replayed with no model;
2. one adaptive round (one more candidate for the same 16-frame prompt) through
   `LiveSource.draw` on the tiny model, with the backend's cached prefill against a round
   whose prefill cache was cleared first (HFBackend.clear_prefill_cache()).
"""

from __future__ import annotations

import os
import random
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "2")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from rler_eval import election  # noqa: E402
from rler_eval.election.sources import LiveSource, ReplaySource  # noqa: E402
from rler_eval.types import Candidate, Sample  # noqa: E402

N_QUESTIONS, K, REPEATS, NEW_TOKENS = 300, 8, 5, 16


def recorded_questions(n: int, k: int, seed: int = 0):
    """Protocol-shaped candidates of realistic length (~60-word think text, 6 answer tokens of log-probs)."""
    rng = random.Random(seed)
    words = "the red ball moves left while cup stays near edge then square turns blue".split()
    out = []
    for q in range(n):
        cands = []
        for i in range(k):
            frames = sorted(rng.sample(range(1, 17), 2))
            think = f"In frame {frames[0]} " + " ".join(rng.choice(words) for _ in range(60))
            text = f"<think>{think}</think>\n<frames>{frames[0]}, {frames[1]}</frames>\n<answer>{rng.choice('ABCD')}</answer>"
            lps = [-rng.random() for _ in range(80)]
            cands.append(Candidate(text, lps, None, 0.0 if i == 0 else 0.7, i, 80))
        out.append((Sample(id=f"q{q}", task="bench", question="?", answer="A", options=list("abcd")), cands))
    return out


def election_overhead() -> None:
    data = recorded_questions(N_QUESTIONS, K)
    print(f"== election overhead, K={K}, {N_QUESTIONS} questions, no model (median of {REPEATS}) ==")
    for spec, over in (("majority@8", {}), ("rler@8", {"refute": False}), ("rler", {"refute": False})):
        times = []
        for _ in range(REPEATS):
            t = time.perf_counter()
            for sample, cands in data:
                election.answer(spec, sample, ReplaySource(cands), 16, over)
            times.append((time.perf_counter() - t) / len(data))
        print(f"  {spec:12s} {statistics.median(times) * 1000:7.3f} ms / question")


def adaptive_round() -> None:
    from bench_generate import prompt_16_frames

    from rler_eval.models.hf import HFBackend
    from rler_eval.testing import tiny_model_dir

    backend = HFBackend(str(tiny_model_dir()))
    prompt = prompt_16_frames()
    reuse, redo = [], []
    for r in range(REPEATS):
        for keep, bucket in ((True, reuse), (False, redo)):
            backend.clear_prefill_cache()
            source = LiveSource(backend, prompt, NEW_TOKENS, r, "bench")
            source.draw([0.0, 0.7])  # first round: greedy + one sampled candidate
            if not keep:
                backend.clear_prefill_cache()
            t = time.perf_counter()
            source.draw([0.8])  # the adaptive round
            bucket.append(time.perf_counter() - t)
    a, b = statistics.median(reuse), statistics.median(redo)
    print(f"== adaptive round: 1 more candidate, tiny Qwen2.5-VL, 16 frames, {NEW_TOKENS} new tokens "
          f"(median of {REPEATS}) ==")
    print(f"  reusing the cached prefill   {a * 1000:8.1f} ms")
    print(f"  redoing the prefill          {b * 1000:8.1f} ms   reuse/redo = {a / b:.2f}")
    print(f"  backend stats: {backend.stats}")


if __name__ == "__main__":
    election_overhead()
    adaptive_round()
