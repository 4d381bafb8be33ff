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

Why G is not the plain tolerant F1 of `evidence.grounding_f1`: with a ±1 frame
tolerance a citation of every frame matches every key frame's neighbourhood, so "1-8"
scored F1 0.55 against one key frame, 0.86 against two and 1.0 against three. A
reward the policy can max out without looking is no reward. `grounding_reward` matches
cited frames to key frames one-to-one (still within ±1), so each extra citation lowers
precision; see its docstring.
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


def grounding_reward(cited: list[int], key: list[int], tol: int = 1) -> float | None:
    """G for training: F1 of cited against key frames, matched one-to-one within ±tol.

    The precision term: a key frame can vouch for one cited frame only, so precision is
    (matched pairs) / (cited frames). Citing every one of n frames against k key frames
    earns 2k/(n+k) < 1, citing exactly the key frames (or a neighbour of each) earns 1.
    None without key frames (the caller decides), 0 with no citation.
    """
    key = sorted(set(key))
    if not key:
        return None
    cited = sorted(set(cited))
    if not cited:
        return 0.0
    pairs = matched_pairs(cited, key, tol)
    if pairs == 0:
        return 0.0
    precision, recall = pairs / len(cited), pairs / len(key)
    return 2 * precision * recall / (precision + recall)


def matched_pairs(cited: list[int], key: list[int], tol: int) -> int:
    """The largest one-to-one matching of sorted `cited` to sorted `key` with |c - k| <= tol.

    Greedy in order is optimal here: every key frame's window has the same width, so
    giving each key frame the leftmost cited frame it can take never blocks a later one.
    """
    pairs, i = 0, 0
    for k in key:
        while i < len(cited) and cited[i] < k - tol:
            i += 1
        if i < len(cited) and cited[i] <= k + tol:
            pairs, i = pairs + 1, i + 1
    return pairs


def frame_sensitive(completions, answer_type, options, n_frames, key_frames, tol: int = 1, **_) -> list[float]:
    """G: one-to-one F1 of cited frames against key frames (±tol frames); 0 when a sample has none.

    Samples without key frames are rewarded by `ContrastReward` instead, which needs the
    model; this plain function stays model-free so it can run anywhere.
    """
    out = []
    for i, (_, ev) in enumerate(parsed(completions, n_frames, answer_type, options)):
        g = grounding_reward(ev.frames, list(key_frames[i] or []), tol)
        out.append(0.0 if g is None else g)
    return out


class ContrastReward:
    """Frame-sensitive reward with contrast mode for samples without key frames.

    With key frames it is G (`grounding_reward`). Without them (the Video-R1 T-GRPO idea:
    reward answers that need the real evidence), the current policy scores the
    completion's own answer twice: once with the frames as given, once with the cited
    frames masked (grey) or, when nothing is cited or in "shuffle" mode, with the frames
    shuffled. The reward is the drop in the answer's probability, clipped to [0, 1], and
    only for correct answers: evidence that the correct answer depended on the frames.
    Set `model` and `processor` after the trainer is built (`attach`).

    Three rules keep it from being gamed or from hanging a multi-GPU run:
    - parsimony: the drop is scaled by `parsimony(cited, n)`: 1 for one cited frame, 1/n
      for all n. Masking every frame always drops the answer, so without this "cite
      everything" would earn the top reward. An answer citing nothing earns at most 0.5.
    - the think is left out: the answer is teacher-forced after a canonical
      `<think></think><frames>..</frames><answer>` prefix, not after the completion's own
      reasoning. A think that states the answer would otherwise make the answer certain
      with or without the frames and lose its reward to an opaque think.
    - equal forward passes: under DeepSpeed ZeRO-3 every forward gathers parameters from
      every rank, so all ranks must run the same number of forwards. Each call agrees on
      the largest count across ranks (one all-reduce) and pads with throwaway forwards.
    `use_key_frames=False` scores every sample by contrast, key frames or not. `tol`: how
    many frames a citation may be off and still match a key frame (see `grounding_reward`).
    """

    __name__ = "frame_sensitive"

    def __init__(self, model=None, processor=None, mode: str = "mask", seed: int = 0,
                 use_key_frames: bool = True, tol: int = 1):
        if mode not in ("mask", "shuffle"):
            raise ValueError(f"contrast mode must be 'mask' or 'shuffle', not {mode!r}")
        if tol < 0:
            raise ValueError(f"grounding tolerance must be >= 0 frames, not {tol}")
        self.model, self.processor, self.mode, self.seed = model, processor, mode, seed
        self.use_key_frames, self.tol = use_key_frames, tol
        self.forwards = 0  # forward passes run so far (tests check ranks agree)

    def attach(self, model, processor) -> "ContrastReward":
        self.model, self.processor = model, processor
        return self

    def __call__(self, prompts, completions, answer, answer_type, options, n_frames, key_frames,
                 images=None, **_) -> list[float]:
        out, jobs = [], []
        for i, (text, ev) in enumerate(parsed(completions, n_frames, answer_type, options)):
            g = grounding_reward(ev.frames, list(key_frames[i] or []), self.tol) if self.use_key_frames else None
            out.append(0.0 if g is None else g)
            if g is None and self.needs_contrast(ev, answer[i], answer_type[i], images, i):
                jobs.append((i, ev))
        pad = self.padding(len(jobs))
        for i, ev in jobs:
            out[i] = self.contrast(prompts[i], ev, list(images[i]))
        for _ in range(pad):
            self.throwaway_forward(prompts, images)
        return out

    def needs_contrast(self, ev: evidence.Evidence, gold, answer_type, images, i) -> bool:
        return (images is not None and self.model is not None and bool(images[i]) and ev.answer_span is not None
                and answer_score(ev.answer, gold, answer_type) >= 1)

    def contrast(self, prompt, ev: evidence.Evidence, images: list) -> float:
        """parsimony × clip(p(answer | frames) - p(answer | altered frames), 0, 1)."""
        prefix, span = teacher_forced(ev)
        p_real = self.span_prob(prompt, prefix, span, images)
        p_alt = self.span_prob(prompt, prefix, span, self.alter(images, ev.frames))
        return float(max(0.0, min(1.0, p_real - p_alt)) * parsimony(ev.frames, len(images)))

    def alter(self, images: list, cited: list[int]) -> list:
        """Cited frames greyed out; with no usable citation (or in shuffle mode), the frames shuffled."""
        import random

        from PIL import Image

        hits = [f for f in cited if 1 <= f <= len(images)]
        if self.mode == "mask" and hits:
            return [Image.new("RGB", im.size, (128, 128, 128)) if k + 1 in hits else im
                    for k, im in enumerate(images)]
        order = list(range(len(images)))
        random.Random(self.seed).shuffle(order)
        return [images[k] for k in order]

    def padding(self, n_jobs: int) -> int:
        """Throwaway contrast jobs this rank must add so every rank runs as many forwards."""
        import torch.distributed as dist

        if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() < 2:
            return 0
        import torch

        device = next(self.model.parameters()).device if self.model is not None else "cpu"
        if dist.get_backend() == "gloo":
            device = "cpu"
        count = torch.tensor([n_jobs], dtype=torch.long, device=device)
        dist.all_reduce(count, op=dist.ReduceOp.MAX)
        return int(count.item()) - n_jobs

    def throwaway_forward(self, prompts, images) -> None:
        """Two forwards (a contrast job's worth) whose result is discarded; same modules as a real job."""
        from PIL import Image

        frames = list(images[0]) if images is not None and images[0] else []
        prompt = prompts[0]
        if not frames:  # a text-only batch still runs the vision tower, as other ranks do
            frames = [Image.new("RGB", (56, 56), (128, 128, 128))]
            prompt = [{"role": "user", "content": [{"type": "image", "text": ""}, {"type": "text", "text": "?"}]}]
        for _ in range(2):
            self.span_prob(prompt, "<answer>", "A", frames)

    def span_prob(self, prompt, prefix: str, span: str, images: list) -> float:
        """exp(mean log-prob) of `span`, teacher-forced after the prompt, its frames and `prefix`."""
        import torch

        tok = self.processor.tokenizer
        prefix_ids = tok(prefix, add_special_tokens=False)["input_ids"]
        span_ids = tok(span, add_special_tokens=False)["input_ids"]
        if not span_ids:
            return 0.0
        head = self.processor.apply_chat_template(with_images(prompt, images), tokenize=False,
                                                  add_generation_prompt=True)
        inputs = self.processor(text=[head], images=images, return_tensors="pt")
        device = next(self.model.parameters()).device
        tail = torch.tensor([prefix_ids + span_ids])
        ids = torch.cat([inputs["input_ids"], tail], dim=1).to(device)
        extra = {k: v.to(device) for k, v in inputs.items() if k not in ("input_ids", "attention_mask")}
        if "mm_token_type_ids" in extra:  # Qwen2.5-VL marks image tokens; the appended text is type 0
            extra["mm_token_type_ids"] = torch.cat([extra["mm_token_type_ids"], torch.zeros_like(tail).to(device)], 1)
        self.forwards += 1
        with torch.no_grad():
            logits = self.model(input_ids=ids, attention_mask=torch.ones_like(ids), **extra).logits[0]
        logp = torch.log_softmax(logits[-len(span_ids) - 1:-1].float(), dim=-1)
        picked = logp[torch.arange(len(span_ids)), torch.tensor(span_ids, device=device)]
        return float(picked.mean().exp())


def teacher_forced(ev: evidence.Evidence) -> tuple[str, str]:
    """(prefix, answer) to score: the completion's citations and answer, its reasoning left out."""
    prefix = evidence.format_evidence("", ev.frames, "").rsplit("</answer>", 1)[0]
    return prefix, ev.answer_raw or ""


def parsimony(cited: list[int], n: int) -> float:
    """1 for one cited frame, falling linearly to 1/n for all n; 0.5 for no valid citation."""
    hits = {f for f in cited if 1 <= f <= n}
    if not hits or n <= 0:
        return 0.5
    return 1.0 - (len(hits) - 1) / n


def with_images(prompt, images: list) -> list[dict]:
    """The conversational prompt with each image placeholder filled by the next frame."""
    messages = [dict(m) for m in prompt]
    filled = iter(images)
    for m in messages:
        if isinstance(m.get("content"), list):
            m["content"] = [{"type": "image", "image": next(filled)} if p.get("type") == "image"
                            else {"type": "text", "text": p.get("text") or ""} for p in m["content"]]
    return messages


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
