"""Generation backends, chosen from a model spec through a small registry.

Why a registry: each backend is one module that exposes `load(target, **model_args)` and
a `MODEL_ARGS` table (argument -> one-line help). Adding a backend is writing that module
and one `register_backend` line; nothing here branches on backend names. Heavy imports
(torch, vllm, httpx) happen inside each module, only when it is chosen.

Model specs:
- a local path or hub-style id, or "hf:<path>"  -> transformers (`hf.py`)
- "vllm:<path>"                                  -> vLLM (`vllm_backend.py`, optional extra)
- "openai:<model>@<base_url>"                    -> any OpenAI-compatible server (`openai_compat.py`)
- "tiny-random"                                  -> a freshly built tiny random Qwen2.5-VL (tests, smoke runs)

Model arguments follow lmms-eval's `--model_args` form, "key=value,key=value", with each
value read as YAML (so `0.9` is a number, `true` a boolean, `{"0": "20GiB"}` a mapping).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass

from rler_eval.errors import InputError
from rler_eval.models.base import Backend, GenerationRequest  # noqa: F401


@dataclass(frozen=True)
class BackendEntry:
    prefix: str  # the spec prefix before ":", e.g. "vllm"
    module: str  # module exposing `load(target, **kwargs)` and `MODEL_ARGS`
    open_args: bool = False  # True: unknown model args pass through to the library (e.g. vllm.LLM)


BACKENDS: dict[str, BackendEntry] = {}
DEFAULT_PREFIX = "hf"


def register_backend(prefix: str, module: str, open_args: bool = False) -> None:
    """Make `<prefix>:<target>` specs load through `module.load(target, **model_args)`."""
    BACKENDS[prefix] = BackendEntry(prefix, module, open_args)


register_backend("hf", "rler_eval.models.hf")
register_backend("vllm", "rler_eval.models.vllm_backend", open_args=True)
register_backend("openai", "rler_eval.models.openai_compat")


def split_spec(spec: str) -> tuple[BackendEntry, str]:
    """'vllm:/ckpt' -> (vllm entry, '/ckpt'); a spec without a registered prefix is a HF path."""
    prefix, sep, target = spec.partition(":")
    if sep and prefix in BACKENDS:
        return BACKENDS[prefix], target
    return BACKENDS[DEFAULT_PREFIX], spec


def model_args_help(prefix: str) -> dict[str, str]:
    """The documented model arguments of a backend (argument -> help)."""
    return dict(getattr(importlib.import_module(BACKENDS[prefix].module), "MODEL_ARGS", {}))


def check_model_args(entry: BackendEntry, kwargs: dict) -> None:
    if entry.open_args:
        return
    known = model_args_help(entry.prefix)
    unknown = sorted(set(kwargs) - set(known))
    if unknown:
        raise InputError(f"model argument(s) {', '.join(unknown)} not accepted by the {entry.prefix} backend; "
                         f"known: {', '.join(sorted(known))}")


def load_backend(spec: str, **model_args) -> "Backend":
    """Load the backend a spec names, with its model arguments (checked against `MODEL_ARGS`)."""
    if spec == "tiny-random":
        from rler_eval.testing import tiny_model_dir
        model_args.setdefault("label", "tiny-random (untrained random weights)")
        spec = str(tiny_model_dir())
    entry, target = split_spec(spec)
    check_model_args(entry, model_args)
    return importlib.import_module(entry.module).load(target, **model_args)


def parse_model_args(text: str | dict | None) -> dict:
    """'dtype=bfloat16,device_map=auto' -> {'dtype': 'bfloat16', 'device_map': 'auto'}.

    Commas inside brackets or quotes do not split, so `max_memory={"0": "20GiB", "1": "20GiB"}`
    stays one value. A dict passes through (a card's `args.model`).
    """
    import yaml

    if not text:
        return {}
    if isinstance(text, dict):
        return dict(text)
    out = {}
    for item in _split_top_level(str(text)):
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise InputError(f"model argument {item!r}: expected KEY=VALUE (e.g. dtype=bfloat16,device_map=auto)")
        try:
            out[key.strip()] = yaml.safe_load(value) if value.strip() else ""
        except yaml.YAMLError:
            out[key.strip()] = value.strip()
    return out


def _split_top_level(text: str) -> list[str]:
    parts, depth, quote, cur = [], 0, None, []
    for ch in text:
        if quote:
            quote = None if ch == quote else quote
        elif ch in "\"'":
            quote = ch
        elif ch in "{[(":
            depth += 1
        elif ch in "}])":
            depth -= 1
        elif ch == "," and depth == 0:
            parts.append("".join(cur))
            cur = []
            continue
        cur.append(ch)
    parts.append("".join(cur))
    return [p.strip() for p in parts if p.strip()]
