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
        return extract.read_jsonl(path, lenient=True)
    data = unwrap(extract.read_json(path))
    if not isinstance(data, list):
        raise InputError(f"{path}: expected a JSON list of objects, got {type(data).__name__}")
    return [r if isinstance(r, dict) else extract.BadRow(f"{path} row {i}: expected a JSON object, got "
                                                          f"{type(r).__name__}") for i, r in enumerate(data)]


def unwrap(data):
    """The row list inside the JSON shapes the releases use: a list; {"data": [...]};
    an index-keyed object {"0": row, ...}; or one config name over either, as in
    Video-MMMU's GitHub files ({"Perception": {"0": row, ...}})."""
    if isinstance(data, dict) and isinstance(data.get("data"), list):
        return data["data"]
    if isinstance(data, dict) and len(data) == 1 and isinstance(next(iter(data.values())), (dict, list)):
        inner = next(iter(data.values()))
        if isinstance(inner, list) or all(isinstance(v, dict) for v in inner.values()):
            return unwrap(inner)
    if isinstance(data, dict) and data and all(k.isdigit() for k in data) and \
            all(isinstance(v, dict) for v in data.values()):
        return [data[k] for k in sorted(data, key=int)]
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
