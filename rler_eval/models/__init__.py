"""Generation backends. Each returns `Candidate`s with per-token log-probs where it can.

`load_backend(spec)` picks the backend from a model spec string:
- a local path or hub-style id            -> transformers (`hf.py`)
- "vllm:<path>"                            -> vLLM (`vllm_backend.py`, optional extra)
- "openai:<model>@<base_url>"              -> any OpenAI-compatible server (`openai_compat.py`)
- "tiny-random"                            -> a freshly built tiny random Qwen2.5-VL (tests, smoke runs)
Heavy imports happen inside each backend module, only when it is chosen.
"""

from __future__ import annotations

from rler_eval.models.base import Backend, GenerationRequest  # noqa: F401


def load_backend(spec: str, **kwargs) -> "Backend":
    if spec.startswith("vllm:"):
        from rler_eval.models.vllm_backend import VLLMBackend
        return VLLMBackend(spec.split(":", 1)[1], **kwargs)
    if spec.startswith("openai:"):
        from rler_eval.models.openai_compat import OpenAIBackend
        return OpenAIBackend.from_spec(spec.split(":", 1)[1], **kwargs)
    from rler_eval.models.hf import HFBackend
    if spec == "tiny-random":
        from rler_eval.testing import tiny_model_dir
        return HFBackend(str(tiny_model_dir()), label="tiny-random (untrained random weights)", **kwargs)
    return HFBackend(spec, **kwargs)
