"""A tiny random-weight Qwen2.5-VL, built offline, for tests, benches and smoke runs.

Why it exists: no weights can be downloaded in CI, yet the backends, the runner, the
election and the GRPO wiring must all be exercised on a *real* vision-language model,
with a real vision tower, mrope positions, chat template and processor. This module
builds one from a small config plus a byte-level BPE tokenizer trained locally (with
`tokenizers`) on a built-in corpus in the evidence format, and saves it like any hub
checkpoint (`save_pretrained`), so every code path that loads a local checkpoint can
load it. Its weights are random: its answers mean nothing, only the plumbing is real.

`tiny_model_dir()` builds it once per cache folder (`$RLER_CACHE` or `.cache/` under the
repository root) and returns the path. Concurrent test processes are safe: the build
happens under a file lock in a temporary folder that is renamed into place atomically.

Facts used here (transformers 5.24, see also DESIGN.md "Facts met while building ..."):
- `Qwen2_5_VLProcessor` needs an image processor, a tokenizer and a video processor
  (`Qwen2VLVideoProcessor`, which needs torchvision).
- The model config must carry the image/video/vision start/end token ids of *this*
  tokenizer, and eos/pad in the text config, or generation falls back to Qwen's default
  ids, which lie outside a tiny vocabulary.
- The text model's rotary embedding is split over (temporal, height, width) by
  `mrope_section`, whose entries must sum to head_dim / 2.
- Qwen's chat layout (`<|im_start|>role\\n ... <|im_end|>\\n`, each image as
  `<|vision_start|><|image_pad|><|vision_end|>`, each video with `<|video_pad|>`) is the
  one used by Qwen/Qwen2.5-VL-7B-Instruct's `chat_template.json` on the hub; the template
  below is written from that description.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
BUILD_VERSION = "2"  # bump when the builder changes, so cached checkpoints are rebuilt

# The Qwen2.5-VL special tokens, in Qwen's order; their ids are assigned by our tokenizer.
SPECIAL_TOKENS = [
    "<|endoftext|>", "<|im_start|>", "<|im_end|>",
    "<|object_ref_start|>", "<|object_ref_end|>", "<|box_start|>", "<|box_end|>",
    "<|quad_start|>", "<|quad_end|>", "<|vision_start|>", "<|vision_end|>",
    "<|vision_pad|>", "<|image_pad|>", "<|video_pad|>",
]
# Evidence-protocol tags: ordinary (non-special) added tokens, so decoding keeps them.
PROTOCOL_TAGS = ["<think>", "</think>", "<frames>", "</frames>", "<answer>", "</answer>"]

CHAT_TEMPLATE = (
    "{%- for message in messages -%}"
    "{%- if loop.first and message['role'] != 'system' -%}"
    "{{ '<|im_start|>system\\nYou are a helpful assistant.<|im_end|>\\n' }}"
    "{%- endif -%}"
    "{{ '<|im_start|>' + message['role'] + '\\n' }}"
    "{%- if message['content'] is string -%}"
    "{{ message['content'] }}"
    "{%- else -%}"
    "{%- for part in message['content'] -%}"
    "{%- if part['type'] == 'image' or part['type'] == 'image_url' -%}"
    "{{ '<|vision_start|><|image_pad|><|vision_end|>' }}"
    "{%- elif part['type'] == 'video' -%}"
    "{{ '<|vision_start|><|video_pad|><|vision_end|>' }}"
    "{%- elif part['type'] == 'text' -%}"
    "{{ part['text'] }}"
    "{%- endif -%}"
    "{%- endfor -%}"
    "{%- endif -%}"
    "{{ '<|im_end|>\\n' }}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}"
    "{{ '<|im_start|>assistant\\n' }}"
    "{%- endif -%}"
)


def corpus() -> list[str]:
    """A small built-in text corpus covering what prompts and completions contain.

    It mixes the evidence instructions, frame captions, protocol-formatted completions,
    option lists, digits and synthvid-like words, so the trained BPE has merges for them.
    """
    from rler_eval import evidence

    colours = ["red", "green", "blue", "yellow", "purple", "orange", "white", "black", "cyan", "pink"]
    shapes = ["circle", "square", "triangle", "star", "ball", "box", "cup", "car", "dot", "bar"]
    moves = ["left", "right", "up", "down", "moves", "appears", "first", "last", "flashes",
             "changes", "between", "before", "after", "times", "colour", "color", "object"]
    lines: list[str] = []
    for t in ("option", "yesno", "number", "text"):
        lines.append(evidence.instructions(t))
    for i in range(1, 65):
        lines.append(evidence.frame_caption(i, i * 1.7) + ":")
    for i in range(200):
        c, s, m = colours[i % len(colours)], shapes[(i * 3) % len(shapes)], moves[(i * 7) % len(moves)]
        a, b = 1 + i % 16, 1 + (i * 5) % 16
        think = f"In frame {a} the {c} {s} {m}; in frame {b} it is {colours[(i + 3) % len(colours)]}."
        answer = "ABCD"[i % 4] if i % 3 else str(i % 10)
        lines.append(evidence.format_evidence(think, sorted({a, b}), answer))
        lines.append(f"Question: Which object {m} {moves[i % len(moves)]}? Options:\nA. the {c} {s}\n"
                     f"B. the {colours[(i + 1) % 10]} {shapes[(i + 2) % 10]}\nC. {s}\nD. none of them")
    lines.append(" ".join(str(i) for i in range(0, 1000, 7)))
    lines.append("yes no Yes No true false the a an is are was of in on at to and or with it this that")
    lines.append("The video is sampled as 16 frames. Answer with the option's letter from the given choices directly.")
    return lines


def build_tiny_model(out_dir: str | os.PathLike, seed: int = 0, hidden: int = 64, layers: int = 2,
                     vision_depth: int = 2, vision_hidden: int = 32, vocab_size: int = 1024,
                     extra_corpus: list[str] | None = None, mrope_section: list[int] | None = None) -> Path:
    """Build and save a tiny random Qwen2.5-VL (model, tokenizer, processor) in `out_dir`.

    `vocab_size` is the BPE training target; the saved model's vocabulary is the
    tokenizer's full length (trained tokens + protocol tags). `extra_corpus` adds texts
    (e.g. the training questions) to the tokenizer's corpus. Returns `out_dir`.

    `mrope_section` ([temporal, height, width] rotary pairs, summing to head_dim / 2) defaults
    to Qwen's proportions. Why it is a choice: the sections take the rotary frequencies in
    that order, highest first, so with rope_theta 1e6 and 16-dim heads the default [4, 2, 2]
    turns the width pairs by 3e-5 and 6e-6 radians per column: the language model cannot
    tell a frame's left token from its right one (DESIGN.md, "Position: the width rotary
    pairs"). Text tokens carry the same index in all three sections, so the split changes
    only how image tokens are placed.
    """
    import torch
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import (PreTrainedTokenizerFast, Qwen2_5_VLConfig,
                              Qwen2_5_VLForConditionalGeneration, Qwen2_5_VLProcessor,
                              Qwen2VLImageProcessor, Qwen2VLVideoProcessor)

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)

    # -- tokenizer: byte-level BPE trained on the built-in corpus
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIAL_TOKENS, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(corpus() + list(extra_corpus or []), trainer=trainer)
    tok.add_tokens([AddedToken(t, special=False, normalized=False) for t in PROTOCOL_TAGS])
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|endoftext|>", unk_token=None,
        additional_special_tokens=SPECIAL_TOKENS[1:2] + SPECIAL_TOKENS[3:],
        model_max_length=32768, padding_side="left", clean_up_tokenization_spaces=False,
        extra_special_tokens={"image_token": "<|image_pad|>", "video_token": "<|video_pad|>",
                              "vision_bos_token": "<|vision_start|>", "vision_eos_token": "<|vision_end|>"},
    )
    tokenizer.chat_template = CHAT_TEMPLATE
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS}

    # -- processors: small pixel bounds keep the visual token count modest on the CPU
    image_processor = Qwen2VLImageProcessor(min_pixels=28 * 28, max_pixels=28 * 28 * 256)
    video_processor = Qwen2VLVideoProcessor(min_pixels=28 * 28, max_pixels=28 * 28 * 256, do_sample_frames=False,
                                            cap_pixels_per_frame=True)
    processor = Qwen2_5_VLProcessor(image_processor=image_processor, tokenizer=tokenizer,
                                    video_processor=video_processor, chat_template=CHAT_TEMPLATE)

    # -- model
    heads = max(2, hidden // 16)
    head_dim = hidden // heads
    half = head_dim // 2
    mrope = list(mrope_section or [half - 2 * (half // 3), half // 3, half // 3])
    if len(mrope) != 3 or sum(mrope) != half or min(mrope) < 0:
        raise ValueError(f"mrope_section {mrope}: three non-negative entries summing to head_dim / 2 = {half}")
    text_config = dict(
        vocab_size=len(tokenizer), hidden_size=hidden, intermediate_size=2 * hidden,
        num_hidden_layers=layers, num_attention_heads=heads, num_key_value_heads=max(1, heads // 2),
        max_position_embeddings=32768, rms_norm_eps=1e-6, use_sliding_window=False,
        rope_parameters={"rope_type": "default", "rope_theta": 1000000.0, "mrope_section": mrope},
        bos_token_id=ids["<|endoftext|>"], eos_token_id=ids["<|im_end|>"], pad_token_id=ids["<|endoftext|>"],
    )
    vision_config = dict(
        depth=vision_depth, hidden_size=vision_hidden, intermediate_size=2 * vision_hidden,
        num_heads=max(1, vision_hidden // 16), out_hidden_size=hidden, patch_size=14,
        spatial_merge_size=2, temporal_patch_size=2, window_size=112, tokens_per_second=2,
        fullatt_block_indexes=[vision_depth - 1],
    )
    config = Qwen2_5_VLConfig(
        text_config=text_config, vision_config=vision_config,
        image_token_id=ids["<|image_pad|>"], video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"], vision_end_token_id=ids["<|vision_end|>"],
        tie_word_embeddings=False,
    )
    # generation reads these from the top-level config too
    config.eos_token_id = ids["<|im_end|>"]
    config.pad_token_id = ids["<|endoftext|>"]
    config.bos_token_id = ids["<|endoftext|>"]
    torch.manual_seed(seed)
    model = Qwen2_5_VLForConditionalGeneration(config).eval()
    model.generation_config.eos_token_id = [ids["<|im_end|>"], ids["<|endoftext|>"]]
    model.generation_config.pad_token_id = ids["<|endoftext|>"]
    model.generation_config.bos_token_id = ids["<|endoftext|>"]
    # Sampling on by default, as in Qwen's instruct checkpoints: `transformers serve` only
    # samples when the checkpoint's generation config says so (temperature 0 still means greedy).
    model.generation_config.do_sample = True
    model.generation_config.temperature = 1.0

    model.save_pretrained(out)
    processor.save_pretrained(out)
    (out / "rler_tiny.json").write_text(json.dumps({
        "builder": "rler_eval.testing.build_tiny_model", "version": BUILD_VERSION, "seed": seed,
        "hidden": hidden, "layers": layers, "vision_depth": vision_depth, "vision_hidden": vision_hidden,
        "vocab_size": len(tokenizer), "parameters": sum(p.numel() for p in model.parameters()),
        "note": "random weights: outputs are meaningless, for tests and smoke runs only",
    }, indent=2))
    return out


def cache_root() -> Path:
    return Path(os.environ.get("RLER_CACHE") or REPO_ROOT / ".cache")


@contextlib.contextmanager
def _file_lock(path: Path, timeout: float = 600.0):
    """An exclusive lock on `path` (fcntl where available, else a lock file poll)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        import fcntl
    except ImportError:  # Windows: fall back to an O_EXCL lock file
        deadline = time.time() + timeout
        while True:
            try:
                fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
                break
            except FileExistsError:
                if time.time() > deadline:
                    raise TimeoutError(f"could not lock {path}")
                time.sleep(0.2)
        try:
            yield
        finally:
            os.close(fd)
            os.unlink(path)
        return
    with open(path, "a+") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def tiny_model_dir(seed: int = 0) -> Path:
    """Path of the cached tiny random Qwen2.5-VL, building it on first use."""
    root = cache_root()
    target = root / f"tiny-random-v{BUILD_VERSION}-s{seed}"
    if (target / "rler_tiny.json").is_file():
        return target
    with _file_lock(root / f".tiny-random-s{seed}.lock"):
        if (target / "rler_tiny.json").is_file():  # another process built it meanwhile
            return target
        tmp = Path(tempfile.mkdtemp(prefix=".tiny-build-", dir=root))
        try:
            build_tiny_model(tmp, seed=seed)
            if target.exists():  # a broken earlier build
                shutil.rmtree(target)
            os.replace(tmp, target)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
    return target
