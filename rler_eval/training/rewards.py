"""GRPO rewards as TRL reward callables, built on the same scores the election uses.

Why shared code: a model trained to maximise T, R and G under one parser and then
judged by another would learn the first parser's quirks. Every reward here parses with
`rler_eval.evidence.parse` and scores with its T, R and G, so training and election see
evidence identically.

TRL calls each function as `f(prompts=..., completions=..., completion_ids=...,
**columns)` where `columns` are the dataset's extra columns (here: answer, answer_type,
options, key_frames, n_frames, images), one value per completion; each returns one float
per completion. TRL logs each function's mean under `rewards/<__name__>/mean`, so every
reward is logged separately. The total reward is TRL's weighted sum (`reward_weights`):
r = r_acc + wT*T + wR*R + wF*G (DESIGN.md), defaults in `DEFAULT_WEIGHTS`.
"""

from __future__ import annotations

from rler_eval import evidence
from rler_eval.benchmarks.extract import mra, token_f1

DEFAULT_WEIGHTS = {"accuracy": 1.0, "transparency": 0.3, "anti_repetition": 0.2, "frame_sensitive": 0.5}


def completion_text(completion) -> str:
    """TRL passes plain strings, or conversational lists of {"role", "content"} messages."""
    if isinstance(completion, str):
        return completion
    parts = []
    for message in completion or []:
        content = message.get("content", "")
        if isinstance(content, list):
            content = "".join(p.get("text") or "" for p in content if p.get("type") == "text")
        parts.append(content or "")
    return "".join(parts)


def parsed(completions, n_frames, answer_type, options) -> list[tuple[str, evidence.Evidence]]:
    out = []
    for i, c in enumerate(completions):
        text = completion_text(c)
        out.append((text, evidence.parse(text, n_frames[i], answer_type[i], options[i] or None)))
    return out


def answer_score(got: str | None, gold: str, answer_type: str) -> float:
    """r_acc by task type: exact for options and yes/no, MRA for numbers, token-F1 for text."""
    if got is None:
        return 0.0
    if answer_type == "number":
        g, p = evidence.parse_number(gold), evidence.parse_number(got)
        return float(mra(p, g)) if g is not None and p is not None else 0.0
    if answer_type == "text":
        return token_f1(got, gold)
    return float(got.strip().lower() == str(gold).strip().lower())


def accuracy(completions, answer, answer_type, options, n_frames, **_) -> list[float]:
    """1 for the right option / yes-no, MRA for numbers, token-F1 for free text."""
    return [answer_score(ev.answer, answer[i], answer_type[i])
            for i, (_, ev) in enumerate(parsed(completions, n_frames, answer_type, options))]


def transparency(completions, answer_type, options, n_frames, **_) -> list[float]:
    """T, gated strictly: a completion that is not well formed gets at most half its T."""
    out = []
    for _, ev in parsed(completions, n_frames, answer_type, options):
        t = evidence.transparency(ev)
        out.append(t if evidence.is_well_formed(ev) else 0.5 * t)
    return out


def anti_repetition(completions, answer_type, options, n_frames, **_) -> list[float]:
    """R on the think text (or the whole completion when there is none); 0 for empty output."""
    return [evidence.non_redundancy(evidence.redundancy_text(ev, text)) if text.strip() else 0.0
            for text, ev in parsed(completions, n_frames, answer_type, options)]


def frame_sensitive(completions, answer_type, options, n_frames, key_frames, **_) -> list[float]:
    """G: F1 of cited frames against key frames (±1 frame); 0 when a sample has none.

    Samples without key frames are rewarded by `ContrastReward` instead, which needs the
    model; this plain function stays model-free so it can run anywhere.
    """
    out = []
    for i, (_, ev) in enumerate(parsed(completions, n_frames, answer_type, options)):
        g = evidence.grounding_f1(ev.frames, list(key_frames[i] or []))
        out.append(0.0 if g is None else g)
    return out


class ContrastReward:
    """Frame-sensitive reward with contrast mode for samples without key frames.

    With key frames it is G. Without them (the Video-R1 T-GRPO idea: reward answers that
    need the real evidence), the current policy scores the completion's own answer span
    twice: once with the frames as given, once with the cited frames masked (grey) or,
    when nothing is cited, with the frames shuffled. The reward is the drop in the
    answer's probability, clipped to [0, 1], and only for correct answers: evidence that
    the correct answer depended on the cited frames. Set `model` and `processor`
    after the trainer is built (`attach`).
    """

    __name__ = "frame_sensitive"

    def __init__(self, model=None, processor=None, mode: str = "mask", seed: int = 0):
        self.model, self.processor, self.mode, self.seed = model, processor, mode, seed

    def attach(self, model, processor) -> "ContrastReward":
        self.model, self.processor = model, processor
        return self

    def __call__(self, prompts, completions, answer, answer_type, options, n_frames, key_frames,
                 images=None, **_) -> list[float]:
        out = []
        for i, (text, ev) in enumerate(parsed(completions, n_frames, answer_type, options)):
            g = evidence.grounding_f1(ev.frames, list(key_frames[i] or []))
            if g is not None:
                out.append(g)
            elif images is None or self.model is None or answer_score(ev.answer, answer[i], answer_type[i]) < 1:
                out.append(0.0)
            else:
                out.append(self.contrast(prompts[i], text, ev, list(images[i])))
        return out

    def contrast(self, prompt, text: str, ev: evidence.Evidence, images: list) -> float:
        if not ev.answer_span or not images:
            return 0.0
        altered = self.alter(images, ev.frames)
        p_real = self.answer_prob(prompt, text, ev, images)
        p_alt = self.answer_prob(prompt, text, ev, altered)
        return float(max(0.0, min(1.0, p_real - p_alt)))

    def alter(self, images: list, cited: list[int]) -> list:
        """Cited frames greyed out; with no usable citation, the frames shuffled."""
        import random

        from PIL import Image

        hits = [f for f in cited if 1 <= f <= len(images)]
        if self.mode == "mask" and hits:
            return [Image.new("RGB", im.size, (128, 128, 128)) if k + 1 in hits else im
                    for k, im in enumerate(images)]
        order = list(range(len(images)))
        random.Random(self.seed).shuffle(order)
        return [images[k] for k in order]

    def answer_prob(self, prompt, text: str, ev: evidence.Evidence, images: list) -> float:
        """exp(mean log-prob) of the answer span, teacher-forced after the completion's prefix."""
        import torch

        start, end = ev.answer_span
        messages = [dict(m) for m in prompt]
        filled = iter(images)
        for m in messages:
            if isinstance(m.get("content"), list):
                m["content"] = [{"type": "image", "image": next(filled)} if p.get("type") == "image"
                                else {"type": "text", "text": p.get("text") or ""} for p in m["content"]]
        head = self.processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        tok = self.processor.tokenizer
        prefix_ids = tok(text[:start], add_special_tokens=False)["input_ids"]
        span_ids = tok(text[start:end], add_special_tokens=False)["input_ids"]
        if not span_ids:
            return 0.0
        inputs = self.processor(text=[head], images=images, return_tensors="pt")
        device = next(self.model.parameters()).device
        tail = torch.tensor([prefix_ids + span_ids])
        ids = torch.cat([inputs["input_ids"], tail], dim=1).to(device)
        extra = {k: v.to(device) for k, v in inputs.items() if k not in ("input_ids", "attention_mask")}
        if "mm_token_type_ids" in extra:  # Qwen2.5-VL marks image tokens; the appended text is type 0
            extra["mm_token_type_ids"] = torch.cat([extra["mm_token_type_ids"], torch.zeros_like(tail).to(device)], 1)
        with torch.no_grad():
            logits = self.model(input_ids=ids, attention_mask=torch.ones_like(ids), **extra).logits[0]
        logp = torch.log_softmax(logits[-len(span_ids) - 1:-1].float(), dim=-1)
        picked = logp[torch.arange(len(span_ids)), torch.tensor(span_ids, device=device)]
        return float(picked.mean().exp())


REWARDS = {"accuracy": accuracy, "transparency": transparency, "anti_repetition": anti_repetition,
           "frame_sensitive": frame_sensitive}


def reward_funcs(names, contrast: ContrastReward | None = None) -> list:
    """The callables for `names`; frame_sensitive becomes the contrast-aware one when given."""
    out = []
    for name in names:
        if name not in REWARDS:
            raise ValueError(f"unknown reward {name!r}; known: {sorted(REWARDS)}")
        out.append(contrast if name == "frame_sensitive" and contrast is not None else REWARDS[name])
    return out
