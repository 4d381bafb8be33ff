"""Election settings: one dataclass, settable by `--set key=value` or a card's `args.election`.

Why a separate module: the strategies, the scores, the refutation check and the sweep all
read the same settings; parsing and validating them once keeps a typo from silently
running the default.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

from rler_eval.errors import TaskError

DEFAULT_TEMPERATURES = (0.0, 0.7, 0.8, 0.9, 1.0, 1.1, 1.2, 1.3)
RENAMED = {"w_C": "c_exponent"}


@dataclass
class ElectionConfig:
    """Parameters of every strategy (README, "Election settings", gives the measured defaults)."""

    w_E: float = 1.0  # weight of evidence consistency E in the weight's mix
    c_exponent: float = 1.0  # exponent a of confidence C in w = C^a * mix (0 removes C)
    w_T: float = 0.5  # weight of transparency T in the mix
    w_R: float = 0.0  # weight of non-redundancy R in the mix; 0: R was constant on the recorded runs (README)
    weight_cap: float = 3.0  # cap on a weight, as a multiple of the median of the *other* positive weights (0 = none)
    k0: int = 2  # adaptive: candidates in the first round (greedy + sampled)
    k_max: int = 8  # adaptive: most candidates drawn
    delta: float = 0.2  # adaptive: stop when (leader - runner-up) / total weight >= delta ...
    min_support: int = 2  # ... and the leader has at least this many supporters
    temperatures: tuple = DEFAULT_TEMPERATURES  # candidate i uses temperatures[min(i, len - 1)]
    refute: bool | None = None  # refutation check for `rler`/`rler@K`; None = refute.DEFAULT_ON (off, README)
    refute_tokens: int = 4  # max new tokens of the refutation reply (a yes/no after the "Answer:" prefix)
    number_tol: float = 0.05  # numbers agree when |a - b| <= number_tol * max(|a|, |b|)
    text_f1: float = 0.5  # free-text answers agree when their token F1 >= text_f1
    frame_tol: int = 1  # frames within this distance count as the same in E

    def temperature(self, i: int) -> float:
        temps = list(self.temperatures) or [0.0]
        return float(temps[min(i, len(temps) - 1)])


def make_config(overrides: dict | None) -> ElectionConfig:
    """An ElectionConfig from overrides; unknown keys or bad values raise TaskError."""
    cfg = ElectionConfig()
    known = {f.name for f in fields(ElectionConfig)}
    for key, value in (overrides or {}).items():
        if key in RENAMED:
            raise TaskError(f"election setting '{key}' was renamed to '{RENAMED[key]}'")
        if key not in known:
            raise TaskError(f"unknown election setting '{key}'; known: {', '.join(sorted(known))}")
        setattr(cfg, key, _coerce(key, value, getattr(cfg, key)))
    if cfg.k0 < 1 or cfg.k_max < 1:
        raise TaskError("election settings k0 and k_max must be >= 1")
    return cfg


def _coerce(key: str, value, default):
    try:
        if key == "temperatures":
            return tuple(float(v) for v in (value if isinstance(value, (list, tuple)) else str(value).split(",")))
        if key == "refute":
            return None if value is None else as_bool(value)
        if isinstance(default, bool):
            return as_bool(value)
        if isinstance(default, int):
            return int(value)
        if isinstance(default, float):
            return float(value)
        return value
    except (TypeError, ValueError):
        raise TaskError(f"election setting '{key}': bad value {value!r}") from None


def as_bool(value) -> bool:
    if isinstance(value, bool):
        return value
    s = str(value).strip().lower()
    if s in ("1", "true", "yes", "on"):
        return True
    if s in ("0", "false", "no", "off"):
        return False
    raise ValueError(value)
