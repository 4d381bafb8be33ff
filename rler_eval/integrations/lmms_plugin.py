"""rler-eval as an lmms-eval model: `python -m lmms_eval --model rler --model_args ...`.

Why: people who evaluate video LMMs already run lmms-eval's tasks. This plugin answers
each of their requests with rler-eval's election: the task's own prompt text, frames
sampled from the task's video and shown as labelled images, K candidates from a backend,
the evidence-weighted vote. The task's own scorer then sees the elected answer.

Registration (lmms-eval 0.7.3, `lmms_eval/models/registry_v2.py`): the entry-point group
`lmms_eval.models` with a `ModelManifest` payload; pyproject.toml declares
`rler = "rler_eval.integrations.lmms_plugin:manifest"`. (`LMMS_EVAL_PLUGINS` is deprecated there.)

The audit: the returned text is `<think>{"rler_audit": ...}</think>ANSWER`. lmms-eval's
default `--reasoning_tags` strip the `<think>` block before scoring, and `--log_samples`
keeps the raw text in `resps`, so each logged sample carries its candidates, scores and
vote while `filtered_resps` holds the answer alone. `<` inside the JSON is escaped as
\\u003c so no tag in a candidate's text can end the block early. `audit=none` returns the
answer alone (for `--reasoning_tags none`).

Model args: `pretrained` (a model spec: HF path, vllm:..., openai:...@...), `strategy`
[rler], `frames` [8], `max_new_tokens` [256; the evidence format needs room, so the
task's own short limit is not used], `prompt` [evidence | plain], `answer_type`
[auto: options when the prompt lists lettered options, else text], `seed` [0], `audit`
[inline | none], any election setting (`k_max`, `delta`, ...) and any backend model
argument (`dtype`, `device_map`, ...).
"""

from __future__ import annotations

import json
import re
from dataclasses import fields

from lmms_eval.api.model import lmms
from lmms_eval.models.registry_v2 import ModelManifest

from rler_eval.errors import InputError

OWN_ARGS = ("pretrained", "strategy", "frames", "max_new_tokens", "prompt", "answer_type", "seed", "audit")
VIDEO_EXT = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".gif")
# "(A) text", "A. text", "A) text", "A: text" at the start of a line
OPTION_LINE = re.compile(r"^\s*\(?([A-Z])[\).:]\s+(.+?)\s*$", re.M)


def manifest() -> ModelManifest:
    """The entry point's payload: model id `rler` -> RlerLMMs."""
    return ModelManifest(model_id="rler", simple_class_path="rler_eval.integrations.lmms_plugin.RlerLMMs")


def split_args(kwargs: dict) -> tuple[dict, dict, dict]:
    """Model args -> (plugin settings, election overrides, backend model args)."""
    from rler_eval.election import ElectionConfig

    election_keys = {f.name for f in fields(ElectionConfig)}
    own = {k: v for k, v in kwargs.items() if k in OWN_ARGS}
    election = {k: v for k, v in kwargs.items() if k in election_keys}
    backend = {k: v for k, v in kwargs.items() if k not in own and k not in election}
    return own, election, backend


def parse_options(text: str) -> list[str] | None:
    """Lettered options listed in a task's prompt, in order from A; None when there are none."""
    found = OPTION_LINE.findall(text)
    opts: list[str] = []
    for letter, body in found:
        if ord(letter) - ord("A") == len(opts):
            opts.append(body)
    return opts if len(opts) >= 2 else None


def audit_block(pred) -> str:
    """The election's audit as a reasoning block that lmms-eval strips before scoring."""
    audit = {k: v for k, v in pred.to_dict().items()}
    text = json.dumps({"rler_audit": audit}, ensure_ascii=False, default=str).replace("<", "\\u003c")
    return f"<think>{text}</think>"


class RlerLMMs(lmms):
    """lmms-eval's `generate_until` answered by an rler-eval strategy over a loaded backend."""

    is_simple = True

    def __init__(self, pretrained: str = "tiny-random", batch_size=1, device=None, max_batch_size=None, **kwargs):
        super().__init__()
        from rler_eval import election
        from rler_eval.models import load_backend, parse_model_args

        own, self.overrides, backend_args = split_args(parse_model_args(kwargs) if kwargs else {})
        self.strategy = str(own.get("strategy", "rler"))
        election.parse_spec(self.strategy)
        election.make_config(self.overrides)  # fail now on a bad setting, not at the first question
        self.frames = int(own.get("frames", 8))
        self.max_new_tokens = int(own.get("max_new_tokens", 256))
        self.prompt_mode = str(own.get("prompt", "evidence"))
        self.answer_type = str(own.get("answer_type", "auto"))
        self.seed = int(own.get("seed", 0))
        self.audit = str(own.get("audit", "inline"))
        if self.audit not in ("inline", "none"):
            raise InputError(f"model arg audit={self.audit!r}: expected inline or none")
        if device is not None and "device_map" not in backend_args and not str(pretrained).startswith(("vllm:", "openai:")):
            backend_args.setdefault("device", device)
        self.backend = load_backend(str(pretrained), **backend_args)

    # ------------------------------------------------------------------ lmms-eval API

    def generate_until(self, requests) -> list[str]:
        from tqdm import tqdm

        out = []
        for req in tqdm(requests, desc=f"rler [{self.strategy}]", disable=(self.rank != 0)):
            context, _gen_kwargs, doc_to_visual, doc_id, task, split = req.args
            visuals = doc_to_visual(self.task_dict[task][split][doc_id]) if doc_to_visual else []
            out.append(self.answer(context, visuals or [], f"{task}/{split}/{doc_id}"))
        return out

    def loglikelihood(self, requests):
        raise NotImplementedError("the rler model answers generate_until tasks only (no loglikelihood)")

    def generate_until_multi_round(self, requests):
        raise NotImplementedError("the rler model answers generate_until tasks only (no multi-round)")

    # ------------------------------------------------------------------ one request

    def answer(self, context: str, visuals: list, sample_id: str) -> str:
        from rler_eval import election
        from rler_eval.election.sources import LiveSource
        from rler_eval.types import Sample

        options = parse_options(context)
        answer_type = self.answer_type if self.answer_type != "auto" else ("option" if options else "text")
        sample = Sample(id=sample_id, task="lmms-eval", question=context, answer="", answer_type=answer_type,
                        options=options)
        prompt = self.build_prompt(context, visuals, answer_type)
        source = LiveSource(self.backend, prompt, self.max_new_tokens, self.seed, sample_id)
        pred = election.answer(self.strategy, sample, source, prompt.n_frames, self.overrides)
        text = pred.answer if pred.answer is not None else (pred.candidates[0].text if pred.candidates else "")
        return (audit_block(pred) + text) if self.audit == "inline" else text

    def build_prompt(self, context: str, visuals: list, answer_type: str):
        """Frames of each video as labelled images, other images as they are, then the task's text."""
        from rler_eval import evidence
        from rler_eval.prompt import frame_parts, prompt_key
        from rler_eval.tasks import FrameConfig
        from rler_eval.video import load_frames

        content, frameset, n = [], None, 0
        for visual in visuals:
            if isinstance(visual, str) and (visual.lower().endswith(VIDEO_EXT)):
                fs = load_frames(visual, FrameConfig(n=self.frames))
                content += frame_parts(fs)
                frameset, n = fs, n + len(fs)
            elif hasattr(visual, "convert") or isinstance(visual, str):
                content.append({"type": "image", "image": visual})
            else:
                raise InputError(f"unsupported visual of type {type(visual).__name__}; expected a video path or image")
        text = context.strip()
        if self.prompt_mode == "evidence":
            text += "\n\n" + evidence.instructions(answer_type)
        content.append({"type": "text", "text": text})
        from rler_eval.types import Prompt

        return Prompt(content=content, n_frames=n, key=prompt_key(content, frameset))
