"""Checks made before a run creates its folder, and the provenance it records.

Why: a typo must not turn into a folder of error records and "accuracy: 0.0000" with exit
0, and a wrong model path must not cost a 40-line hub traceback and a half-made folder.
Everything here runs before the first sample and fails with one line (InputError, exit 2).
The provenance (resolved data root, whether it is a fixture, git commit, library
versions) goes into config.json so that every leaderboard row can be traced.
"""

from __future__ import annotations

import subprocess
from dataclasses import fields
from importlib import metadata
from pathlib import Path

from rler_eval.errors import InputError

SPECIAL_MODELS = ("tiny-random",)
FIXTURE_MARKER = ".rler_fixture"  # written by the fixture writers (tests/fixtures)


def validate_settings(overrides: dict) -> None:
    """Every --set / card election key must be a known election setting with a valid value."""
    from rler_eval import election
    from rler_eval.errors import TaskError

    known = sorted(f.name for f in fields(election.ElectionConfig))
    for key in overrides:
        if key not in known:
            raise InputError(f"unknown election setting '{key}' (known: {', '.join(known)})")
    try:
        election.make_config(overrides)
    except TaskError as e:
        raise InputError(str(e)) from None


def check_model(spec: str) -> None:
    """A model given as a path must be a folder with config.json; remote specs pass."""
    if spec in SPECIAL_MODELS or spec.startswith("openai:"):
        return
    path_str = spec.split(":", 1)[1] if spec.startswith("vllm:") else spec
    path = Path(path_str).expanduser()
    looks_like_path = path_str.startswith(("/", ".", "~")) or path.exists() or path_str.count("/") != 1
    if not looks_like_path:
        return  # "org/name": a hub id, resolved by the backend (offline: from the local cache)
    if not path.exists():
        raise InputError(f"model {spec!r}: no such folder {path} (give a local checkpoint folder, 'tiny-random', "
                         f"'vllm:PATH' or 'openai:MODEL@URL')")
    if path.is_dir() and not (path / "config.json").is_file():
        raise InputError(f"model {spec!r}: {path} has no config.json, so it is not a Hugging Face checkpoint folder")


def provenance(card) -> dict:
    """Resolved data root, fixture flag, git commit and library versions for config.json."""
    root = card.root.resolve() if card.data_root else None
    return {"data_root": str(root) if root else None,
            "data_is_fixture": bool(root) and is_fixture(root),
            "git_commit": git_commit(),
            "versions": {name: version(name) for name in ("torch", "transformers", "av", "trl")}}


def is_fixture(root: Path) -> bool:
    return any((p / FIXTURE_MARKER).exists() for p in (root, *root.parents[:2])) or "fixtures" in root.parts


def git_commit() -> str | None:
    repo = Path(__file__).resolve().parent.parent
    try:
        out = subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD"], check=False, capture_output=True, text=True,
                             timeout=5)
        dirty = subprocess.run(["git", "-C", str(repo), "status", "--porcelain", "--untracked-files=no"], check=False,
                               capture_output=True, text=True, timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    commit = out.stdout.strip()
    return (commit + ("+dirty" if dirty else "")) if out.returncode == 0 and commit else None


def version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def check_enough_candidates(strategy: str, records: list[dict]) -> None:
    """`elect` with a fixed-K strategy needs K recorded candidates per question; refuse a
    replay that would label fewer draws as K (e.g. majority@4 on a greedy run)."""
    from rler_eval import election

    _, k = election.parse_spec(strategy)
    counts = [len((r.get("prediction") or {}).get("candidates") or []) for r in records if r.get("status") == "ok"]
    if not k or not counts or min(counts) >= k:
        return
    short = sum(c < k for c in counts)
    raise InputError(f"{strategy} needs {k} recorded candidates per question, but {short} of {len(counts)} questions "
                     f"have fewer (as few as {min(counts)}); replay with K <= {min(counts)}, or run the model with "
                     f"--strategy rler@{k} (or majority@{k}) to record {k} candidates")
