"""Supervised warm start on evidence-format targets: TRL's SFTTrainer, or a lean loop.

Why: a small model sampled from scratch almost never emits a parsable
<think>/<frames>/<answer> completion, so GRPO would see all-zero format rewards and
learn nothing. SFT on synthvid's rationales (which cite the key frames) teaches the
format, and most of the perception, first; GRPO then shapes the answers and citations.

Two engines, chosen by the recipe's `sft: {engine: ...}`:
- "trl" (default): TRL's SFTTrainer, for real models on GPUs (accelerate, DeepSpeed).
- "loop": the bundled rler-tiny's engine on 2 CPU cores. SFTTrainer re-templates and
  re-tokenizes every row each step, and computes logits at all ~320 positions. This loop
  tokenizes each row once, turns only the frames into pixels per batch, and computes the
  vocabulary projection only where the loss is taken (the completion). It saves a
  checkpoint every `save_steps`, so an interrupted stage resumes where it stopped.
"""

from __future__ import annotations

import json
import math
import os
import random
import time
from pathlib import Path

LOOP_DEFAULTS = {"max_steps": 1000, "learning_rate": 2e-3, "per_device_train_batch_size": 16,
                 "warmup_steps": 100, "weight_decay": 0.0, "logging_steps": 50, "save_steps": 250,
                 "max_grad_norm": 1.0, "seed": 0, "threads": 0, "oversample": None, "phases": None,
                 "micro_batches": 1, "changed_weight": None}
# What a later phase may set; each phase starts a fresh AdamW and its own warmup + cosine decay.
PHASE_KEYS = ("max_steps", "learning_rate", "warmup_steps", "oversample", "changed_weight")


def run_sft(recipe, model, processor, rows: list[dict], output_dir: Path, args=None):
    """Train on prompt/completion/images rows; returns the trainer, or a `LoopResult` for the
    loop engine (both expose `.model`, `.state.log_history` and `.save_model()`)."""
    cfg = dict(recipe.sft or {})
    if cfg.pop("engine", "trl") == "loop":
        return run_loop(cfg, model, processor, rows, Path(output_dir))
    from trl import SFTTrainer

    from rler_eval.training.data import to_dataset
    from rler_eval.training.recipe import sft_config

    recipe.sft = cfg
    keep = ("prompt", "completion", "images")
    dataset = to_dataset([{k: r[k] for k in keep} for r in rows])
    args = args or sft_config(recipe, output_dir, remove_unused_columns=False)
    trainer = SFTTrainer(model=model, args=args, train_dataset=dataset, processing_class=processor)
    trainer.train()
    return trainer


# ---------------------------------------------------------------- the lean loop


class LoopResult:
    """What the stage runner reads from a trainer: the model, TRL-style log history, saving.

    The loop runs in one process, so it is always the main process and has no one to wait for.
    """

    def __init__(self, model, log_history):
        self.model = model
        self.state = type("State", (), {"log_history": log_history})()
        self.accelerator = type("NoAccelerator", (), {"wait_for_everyone": staticmethod(lambda: None)})()

    def save_model(self, out: str) -> None:
        self.model.save_pretrained(out)

    @staticmethod
    def is_world_process_zero() -> bool:
        return True


def tokenize_rows(rows: list[dict], processor, model, workers: int | None = None) -> list[dict]:
    """Each row as prompt ids (image placeholders expanded), completion ids, its frames and,
    for Qwen2-VL-family models, its 3D rotary positions (`rope_positions`). The model is
    required: without it a Qwen2-VL-family row would silently train on 1D positions.

    Rows are tokenized by `workers` forked processes (default: one per core, at most 4) when
    there are many: 24,000 rows took 2.5 minutes in one process. Workers inherit the rows,
    processor and model, and send back only ids and positions."""
    import multiprocessing as mp

    import torch
    from tqdm import tqdm

    workers = min(4, os.cpu_count() or 1) if workers is None else workers
    progress = {"desc": "tokenize", "unit": "q", "mininterval": 10, "total": len(rows)}
    if workers <= 1 or len(rows) < FORK_MIN_ROWS or "fork" not in mp.get_all_start_methods():
        return [tokenize_row(row, processor, model) for row in tqdm(rows, **progress)]
    _FORKED[:] = [rows, processor, model]
    try:
        with mp.get_context("fork").Pool(workers, initializer=_one_thread) as pool:
            out = list(tqdm(pool.imap(_tokenize_forked, range(len(rows)), chunksize=200), **progress))
    finally:
        _FORKED.clear()
    for item, row in zip(out, rows):
        item["images"] = row["images"]
        if item["positions"] is not None:
            item["positions"] = torch.from_numpy(item["positions"])
    return out


FORK_MIN_ROWS = 1000  # below this, starting the workers costs more than it saves
_FORKED: list = []  # (rows, processor, model) for forked tokenizing workers


def _one_thread() -> None:
    import torch

    torch.set_num_threads(1)  # a worker per core already; torch's own threads would oversubscribe


def _tokenize_forked(i: int) -> dict:
    rows, processor, model = _FORKED
    item = tokenize_row(rows[i], processor, model)
    del item["images"]  # the parent still holds them
    # numpy, not a tensor: torch would pass each tensor as a shared-memory file descriptor,
    # and 24,000 of them ran out of descriptors ("received 0 items of ancdata") and hung the pool
    if item["positions"] is not None:
        item["positions"] = item["positions"].numpy()
    return item


def tokenize_row(row: dict, processor, model) -> dict:
    """One row's ids, completion ids, frames, family and mrope positions (see tokenize_rows)."""
    tok = processor.tokenizer
    pad_img = tok.convert_tokens_to_ids(processor.image_token)
    text = processor.apply_chat_template(row["prompt"], tokenize=False, add_generation_prompt=True)
    completion = row["completion"][0]["content"][0]["text"] + tok.eos_token
    grid = processor.image_processor(images=row["images"][:1], return_tensors="pt")["image_grid_thw"]
    per_image = int(grid[0].prod()) // processor.image_processor.merge_size ** 2
    ids = []
    for t in tok(text, add_special_tokens=False)["input_ids"]:
        ids.extend([t] * per_image if t == pad_img else [t])
    try:  # one pass gives the ids and, from a fast tokenizer, where each token sits in the text
        enc = tok(completion, add_special_tokens=False, return_offsets_mapping=True)
    except NotImplementedError:  # a slow (Python) tokenizer has no offsets: no weighting
        enc = tok(completion, add_special_tokens=False)
    item = {"prompt": ids, "completion": enc["input_ids"], "images": row["images"], "family": row.get("family"),
            "changed": changed_tokens(completion, enc.get("offset_mapping"))}
    item["positions"] = rope_positions(model, ids + item["completion"], pad_img, grid.repeat(len(row["images"]), 1))
    return item


def changed_tokens(completion: str, offsets) -> list[int] | None:
    """Indices of the completion tokens (character `offsets` per token) inside changed inventory
    entries (`synthvid.changed_entries`), or None when there are none: what `changed_weight` weights."""
    from rler_eval.benchmarks.synthvid import changed_entries

    spans = changed_entries(completion) if offsets is not None else []
    if not spans:
        return None
    return [i for i, (a, b) in enumerate(offsets) if any(a < e and b > s for s, e in spans)] or None


def rope_positions(model, ids: list[int], image_token: int, grids):
    """The row's (3, length) mrope positions as the model computes them at evaluation, or None.

    Why: Qwen2.5-VL places each frame's tokens on a (time, height, width) grid only when it
    is told which tokens are image tokens (`mm_token_type_ids`, which the processor returns
    at evaluation); without that it silently falls back to 1D positions, so a model trained
    on bare ids met other positions when evaluated. Computed once per row: the model's own
    `get_rope_index` loops in Python over each sequence, too slow to run every step.
    """
    import inspect

    import torch

    index = getattr(getattr(model, "model", None), "get_rope_index", None)
    if index is None:
        return None  # not a Qwen2-VL-family model: plain 1D positions
    tensor = torch.tensor([ids])
    kwargs = {"image_grid_thw": grids}
    if "mm_token_type_ids" in inspect.signature(index).parameters:
        kwargs["mm_token_type_ids"] = (tensor == image_token).int()
    with torch.no_grad():
        positions, _ = index(tensor, **kwargs)
    return positions[:, 0].to(torch.int32)


def collate(batch: list[dict], processor):
    """Right-padded ids, the completion mask, the frames as pixel patches, and the rows' mrope
    positions (padding positions are masked out, so their value does not matter)."""
    import torch

    seqs = [b["prompt"] + b["completion"] for b in batch]
    length = max(map(len, seqs))
    ids = torch.full((len(batch), length), processor.tokenizer.pad_token_id, dtype=torch.long)
    mask = torch.zeros_like(ids)
    target = torch.zeros_like(ids, dtype=torch.bool)
    for i, (b, seq) in enumerate(zip(batch, seqs)):
        ids[i, :len(seq)] = torch.tensor(seq)
        mask[i, :len(seq)] = 1
        target[i, len(b["prompt"]):len(seq)] = True
    pixels = processor.image_processor(images=[im for b in batch for im in b["images"]], return_tensors="pt")
    inputs = {"input_ids": ids, "attention_mask": mask, "pixel_values": pixels["pixel_values"],
              "image_grid_thw": pixels["image_grid_thw"]}
    if all(b.get("positions") is not None for b in batch):
        positions = torch.zeros((3, len(batch), length), dtype=torch.long)
        for i, b in enumerate(batch):
            positions[:, i, :b["positions"].shape[1]] = b["positions"]
        inputs["position_ids"] = positions
    return inputs, target


def completion_loss(model, inputs, target, reduction: str = "mean"):
    """Next-token cross-entropy over completion tokens, projecting only those positions."""
    import torch.nn.functional as F

    hidden = model.model(**inputs).last_hidden_state
    pred = target[:, 1:]  # position t predicts token t+1
    logits = model.lm_head(hidden[:, :-1][pred])
    return F.cross_entropy(logits, inputs["input_ids"][:, 1:][pred], reduction=reduction)


def weighted_loss(model, batch: list[dict], processor, weights: dict) -> float:
    """Backpropagate the completion loss with the tokens of changed inventory entries weighted
    `weights[family]` times (others 1); divided by the token count, like the mean loss.
    Returns the unweighted mean loss, comparable with the other phases' logs."""
    import torch

    inputs, target = collate(batch, processor)
    scale = torch.ones(target.shape)
    for i, b in enumerate(batch):
        w = float(weights.get(b.get("family"), 1.0))
        if w != 1.0 and b.get("changed"):
            scale[i, torch.tensor(b["changed"]) + len(b["prompt"])] = w
    ce = completion_loss(model, inputs, target, reduction="none")  # one value per predicted token, in order
    (ce * scale[:, 1:][target[:, 1:]]).sum().div(len(ce)).backward()
    return ce.mean().item()


def backward_in_parts(model, batch: list[dict], processor, parts: int) -> float:
    """Backpropagate the batch's mean completion loss in `parts` length-sorted micro-batches;
    returns the loss.

    Why: padding to the batch's longest row wastes work, and attention cost grows with the
    square of the length. Splitting a length-sorted batch of 16 in two pads each half to its
    own longest row: 17% less time per step in a benchmark, 7% in a real run on 2 cores
    (DESIGN.md, "v5 trial"). Each part's summed loss is divided by the whole batch's token
    count, so the gradient is the one-batch gradient (the same up to float rounding; tested).
    """
    if parts <= 1:  # the one-batch path, in draw order: the float rounding of earlier checkpoints
        loss = completion_loss(model, *collate(batch, processor))
        loss.backward()
        return loss.item()
    rows = sorted(batch, key=lambda b: len(b["prompt"]) + len(b["completion"]))
    # tokens the loss is taken on: every completion token, each predicted from the one before it
    n = sum(len(b["completion"]) for b in rows)
    total = 0.0
    for i in range(parts):
        part = rows[i * len(rows) // parts:(i + 1) * len(rows) // parts]
        if part:
            loss = completion_loss(model, *collate(part, processor), reduction="sum") / n
            loss.backward()
            total += loss.item()
    return total


def run_loop(cfg: dict, model, processor, rows: list[dict], out: Path) -> LoopResult:
    """The lean SFT loop: one or more phases over pre-tokenized rows, resumable at any save.

    `oversample: {family: k}` draws a row of that family k times as often (rows carry their
    synthvid family); `changed_weight: {family: w}` weights the loss on the words of that
    family's inventory entries that differ from the frame before w times (`weighted_loss`;
    micro_batches does not apply to it); `phases: [{max_steps, learning_rate, warmup_steps,
    oversample, changed_weight}, ...]` continue after `max_steps` with a fresh optimiser and schedule, e.g. a short final phase
    that concentrates on the family the model still gets wrong.
    """
    import torch

    unknown = set(cfg) - set(LOOP_DEFAULTS)
    if unknown:
        raise ValueError(f"sft (engine: loop): unknown setting(s) {sorted(unknown)}; known: {sorted(LOOP_DEFAULTS)}")
    cfg = {**LOOP_DEFAULTS, **cfg}
    phases = loop_phases(cfg)
    if cfg["threads"]:
        torch.set_num_threads(int(cfg["threads"]))
    data = tokenize_rows(rows, processor, model)
    steps, bs = sum(p["max_steps"] for p in phases), int(cfg["per_device_train_batch_size"])
    state = read_position(out) or {"step": 0, "log": [], "rng": None}
    rng = random.Random(int(cfg["seed"]))
    if state["rng"] is not None:
        rng.setstate(_as_rng_state(state["rng"]))
    torch.manual_seed(int(cfg["seed"]) + state["step"])
    model.train()
    losses, t0, k, opt, sched = [], time.time(), None, None, None
    for step in range(state["step"] + 1, steps + 1):
        if k != (k := phase_at(phases, step)):  # a new phase, or the first step of this run
            opt, sched = optimiser(model, phases[k], cfg)
            pool = sampling_pool(data, phases[k]["oversample"])
            if step == state["step"] + 1 and state["step"]:  # resuming: mid-phase, the optimiser too
                resume(out, model, *((opt, sched) if state.get("phase", 0) == k else ()))
        batch = [data[pool[rng.randrange(len(pool))]] for _ in range(bs)]
        if phases[k]["changed_weight"]:
            loss = weighted_loss(model, batch, processor, {str(f): w for f, w in phases[k]["changed_weight"].items()})
        else:
            loss = backward_in_parts(model, batch, processor, int(cfg["micro_batches"]))
        torch.nn.utils.clip_grad_norm_(model.parameters(), float(cfg["max_grad_norm"]))
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        losses.append(loss)
        if step % int(cfg["logging_steps"]) == 0 or step == steps:
            entry = {"step": step, "loss": round(sum(losses) / len(losses), 5), "phase": k,
                     "learning_rate": sched.get_last_lr()[0], "elapsed_s": round(time.time() - t0, 1)}
            state["log"].append(entry)
            print(f"sft {json.dumps(entry)}", flush=True)
            losses = []
        if step % int(cfg["save_steps"]) == 0 and step < steps:
            checkpoint(out, model, opt, sched, {"step": step, "phase": k, "log": state["log"], "rng": rng.getstate()})
    model.eval()
    import shutil
    shutil.rmtree(out / "resume", ignore_errors=True)  # finished: the stage's saved model is the result
    return LoopResult(model, state["log"])


def loop_phases(cfg: dict) -> list[dict]:
    """The base phase from `cfg`, then each of `cfg['phases']` (unset keys: the base's)."""
    base = {key: cfg[key] for key in PHASE_KEYS}
    phases = [base]
    for i, extra in enumerate(cfg["phases"] or []):
        unknown = set(extra) - set(PHASE_KEYS)
        if unknown:
            raise ValueError(f"sft phases[{i}]: unknown setting(s) {sorted(unknown)}; known: {list(PHASE_KEYS)}")
        phases.append({**base, **extra})
    for p in phases:
        p["max_steps"] = int(p["max_steps"])
    return phases


def phase_at(phases: list[dict], step: int) -> int:
    """Index of the phase that runs global step `step` (1-based)."""
    end = 0
    for k, p in enumerate(phases):
        end += p["max_steps"]
        if step <= end:
            return k
    return len(phases) - 1


def optimiser(model, phase: dict, cfg: dict):
    """A fresh AdamW with linear warmup, then cosine decay to 0 over the phase."""
    import torch

    opt = torch.optim.AdamW(model.parameters(), lr=float(phase["learning_rate"]),
                            weight_decay=float(cfg["weight_decay"]), betas=(0.9, 0.98))
    warm, n = max(1, int(phase["warmup_steps"])), phase["max_steps"]
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / warm) * 0.5 * (1 + math.cos(math.pi * min(1.0, s / n))))
    return opt, sched


def sampling_pool(data: list[dict], oversample: dict | None) -> list[int]:
    """The loop's draw pool over its rows' families (`data.oversampled`, shared with GRPO)."""
    from rler_eval.training.data import oversampled

    return oversampled([d.get("family") for d in data], oversample, "sft")


def checkpoint(out: Path, model, opt, sched, state: dict) -> None:
    """Model, optimiser and position, written to a temp folder and then renamed into place."""
    import shutil

    import torch

    tmp, final = out / "resume.tmp", out / "resume"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    torch.save({"model": model.state_dict(), "opt": opt.state_dict(), "sched": sched.state_dict()}, tmp / "state.pt")
    (tmp / "position.json").write_text(json.dumps(state, default=list))
    shutil.rmtree(final, ignore_errors=True)
    tmp.rename(final)


def read_position(out: Path) -> dict | None:
    path = out / "resume" / "position.json"
    return json.loads(path.read_text()) if path.is_file() else None


def resume(out: Path, model, opt=None, sched=None) -> None:
    """Load the saved model (and, within the same phase, the optimiser and schedule)."""
    import torch

    path = out / "resume"
    blob = torch.load(path / "state.pt", weights_only=True)
    model.load_state_dict(blob["model"])
    if opt is not None:
        opt.load_state_dict(blob["opt"])
        sched.load_state_dict(blob["sched"])
    print(f"sft: resuming from step {read_position(out)['step']} ({path})", flush=True)


def _as_rng_state(raw):
    """random.Random state from its JSON form (tuples became lists)."""
    return (raw[0], tuple(raw[1]), raw[2])
