"""Official annotation files (parquet, JSON, JSON lines) read as plain row dicts.

Why: the Hugging Face releases of TempCompass, Video-MMMU, VSI-Bench and WildVideo ship
parquet shards, while their GitHub releases and mirrors ship JSON. The adapters want the
same thing from all of them: a list of plain Python dicts (numpy arrays turned into lists,
numpy scalars into Python numbers), with an error naming the file when it cannot be read.
"""

from __future__ import annotations

from pathlib import Path

from rler_eval.benchmarks import extract
from rler_eval.errors import InputError


def plain(value):
    """numpy / pandas values as JSON-ready Python values (recursively)."""
    import numpy as np

    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, np.ndarray)):
        return [plain(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, float) and value != value:  # NaN from a missing parquet cell
        return None
    return value


def read_rows(path: str | Path) -> list[dict]:
    """Rows of one .parquet, .json (a list, or {"data": [...]}) or .jsonl file."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        import pandas as pd

        try:
            frame = pd.read_parquet(path)
        except Exception as e:  # noqa: BLE001 - pyarrow raises many types
            raise InputError(f"{path}: cannot read parquet: {e}") from None
        return [plain(r) for r in frame.to_dict(orient="records")]
    if suffix == ".jsonl":
        return extract.read_jsonl(path)
    data = extract.read_json(path)
    if isinstance(data, dict) and isinstance(data.get("data"), list):
        data = data["data"]
    if not isinstance(data, list) or not all(isinstance(r, dict) for r in data):
        raise InputError(f"{path}: expected a JSON list of objects")
    return data


def find_files(folder: Path, stem: str) -> list[Path]:
    """`folder/<stem>/*.parquet` shards (HF layout), else `folder/<stem>.{parquet,jsonl,json}`."""
    shards = sorted((folder / stem).glob("*.parquet")) if (folder / stem).is_dir() else []
    if shards:
        return shards
    for ext in (".parquet", ".jsonl", ".json"):
        if (folder / f"{stem}{ext}").is_file():
            return [folder / f"{stem}{ext}"]
    return []
