"""Answering strategies and the RLER evidence-weighted election.

Layout (each module opens with its own why):
    config.py      ElectionConfig and `--set` parsing
    scoring.py     per-candidate scores E C T R, answer clusters, the weight and its cap
    vote.py        summed weights per cluster and the tie-breaks
    refute.py      the refutation check (an appended yes/no turn)
    strategies.py  greedy, majority@K, best_of@K, rler@K, adaptive rler; `answer`
    sources.py     live (backend) and replayed (recorded) candidate sources
This package holds only strategies and candidate sources: it imports no benchmark, runner
or task module. Callers pass the benchmark's answer extractor in as a plain callable.
Offline replay and sweeps live in rler_eval/replay.py and rler_eval/sweep.py.
"""

from rler_eval.election.config import DEFAULT_TEMPERATURES, ElectionConfig, make_config
from rler_eval.election.scoring import cluster, score_candidates, weighted_median
from rler_eval.election.strategies import STRATEGIES, answer, parse_spec, refute_on
from rler_eval.election.vote import Vote, representative, vote

__all__ = ["DEFAULT_TEMPERATURES", "ElectionConfig", "make_config", "cluster", "score_candidates",
           "weighted_median", "STRATEGIES", "answer", "parse_spec", "refute_on", "Vote", "representative", "vote"]
