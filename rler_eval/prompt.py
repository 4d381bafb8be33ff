"""Assemble a chat prompt from a sample and its frame set.

Why frames as labelled images: a citation like "Frame 3" is only checkable if the model
saw a frame called "Frame 3". Each frame is preceded by its caption from
`evidence.frame_caption`, so the labels the parser reads are the labels the model saw.
Native video input is kept as an option for comparison with the usual setups.
"""

from __future__ import annotations

import hashlib

import numpy as np

from rler_eval import evidence
from rler_eval.types import FrameSet, Prompt, Sample


def option_lines(options: list[str] | None) -> str:
    return "\n".join(f"{chr(ord('A') + i)}. {opt}" for i, opt in enumerate(options or []))


def question_text(sample: Sample) -> str:
    """The question with its options, in the customary 'A. text' layout."""
    lines = [f"Question: {sample.question.strip()}"]
    if sample.options:
        lines.append("Options:\n" + option_lines(sample.options))
    return "\n".join(lines)


def frame_parts(frameset: FrameSet, mode: str = "images") -> list[dict]:
    """Content parts that show the frames: captioned images, or one native video part."""
    from PIL import Image

    if mode == "video":
        labels = ", ".join(evidence.frame_caption(i, t) for i, t in zip(frameset.labels, frameset.timestamps))
        return [{"type": "video", "video": frameset},
                {"type": "text", "text": f"The video is sampled as {len(frameset)} frames: {labels}."}]
    parts: list[dict] = []
    for label, t, frame in zip(frameset.labels, frameset.timestamps, frameset.frames):
        parts.append({"type": "text", "text": evidence.frame_caption(label, t) + ":"})
        parts.append({"type": "image", "image": Image.fromarray(np.asarray(frame))})
    return parts


def as_rgb_image(image):
    """A prompt image (PIL image, path or uint8 array) as an RGB PIL image; backends share this."""
    import os

    from PIL import Image

    if isinstance(image, (str, os.PathLike)):
        image = Image.open(image)
    elif not isinstance(image, Image.Image):
        image = Image.fromarray(np.asarray(image, dtype=np.uint8))
    return image.convert("RGB")


def chat_messages(prompt: Prompt) -> tuple[list[dict], list, list[FrameSet]]:
    """The prompt as HF-style chat messages (media as placeholders), its RGB images and its
    video frame sets, in order. The in-process and vLLM backends both template these."""
    parts, images, videos = [], [], []
    for part in prompt.content:
        kind = part.get("type")
        if kind == "text":
            parts.append({"type": "text", "text": part["text"]})
        elif kind == "image":
            images.append(as_rgb_image(part["image"]))
            parts.append({"type": "image"})
        elif kind == "video":
            videos.append(part["video"])
            parts.append({"type": "video"})
        else:
            raise ValueError(f"unsupported prompt part type {kind!r}")
    messages = []
    if prompt.system:
        messages.append({"role": "system", "content": [{"type": "text", "text": prompt.system}]})
    messages.append({"role": "user", "content": parts})
    return messages, images, videos


def build_prompt(sample: Sample, frameset: FrameSet | None, card=None, extra_text: str = "") -> Prompt:
    """The default prompt: frames, earlier turns, the question, options, instructions."""
    mode = card.frames.mode if card is not None else "images"
    use_evidence = card is None or card.prompt == "evidence"
    content = frame_parts(frameset, mode) if frameset is not None and len(frameset) else []
    for turn in sample.context:
        content.append({"type": "text", "text": f"Earlier question: {turn['question']}\nAnswer: {turn['answer']}"})
    if extra_text:
        content.append({"type": "text", "text": extra_text})
    text = question_text(sample)
    if use_evidence:
        text += "\n\n" + evidence.instructions(sample.answer_type)
    content.append({"type": "text", "text": text})
    n = len(frameset) if frameset is not None else 0
    return Prompt(content=content, n_frames=n, key=prompt_key(content, frameset))


def prompt_key(content: list[dict], frameset: FrameSet | None) -> str:
    """A stable hash of the prompt: its text parts and the identity of its frames."""
    h = hashlib.sha1()
    for part in content:
        if part.get("type") == "text":
            h.update(part["text"].encode("utf-8", "replace"))
        else:
            h.update(part.get("type", "").encode())
    if frameset is not None:
        h.update(f"{frameset.source}|{frameset.timestamps}|{np.asarray(frameset.frames).shape}".encode())
        h.update(frames_digest(frameset).encode())
    return h.hexdigest()[:16]


def frames_digest(frameset: FrameSet) -> str:
    """What identifies the frames: the digest `load_frames` set, else a sha1 of their bytes (kept)."""
    if frameset.digest is None:
        frameset.digest = hashlib.sha1(np.ascontiguousarray(frameset.frames)).hexdigest()
    return frameset.digest
