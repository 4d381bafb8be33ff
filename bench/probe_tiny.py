"""Where rler-tiny puts its probability at the two choices GRPO would have to change.

Why: GRPO can only raise what the policy already samples. On the held-out synthvid split the
v8 SFT stage loses most of its points in two places (results/grpo_tuning.md):
- color_at: it cites a frame for the asked moment ("In frame N ..."). Is that choice tied to
  the asked time at all? Printed: the mean probability of the key frame's number, and how often
  it is the most likely one, per asked time.
- first_appear: every wrong answer names a colour that matches exactly one option (the right
  one) with the wrong shape, so it matches no option. Would sampling ever give the option's
  shape? Printed: its probability right after "So the answer is the <colour>".

Both read the greedy completions of a finished `rler-eval run --strategy greedy` and score the
model's next-token distribution at that point of the completion (teacher forcing).

    python bench/probe_tiny.py MODEL RUN_DIR [--limit 60]
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def next_token_probs(backend, bench, card, record, prefix: str):
    """The model's next-token distribution after the prompt and `prefix` of its completion."""
    import torch

    from rler_eval.prompt import chat_messages
    from rler_eval.runner import load_sample_frames, sample_from_dict

    sample = sample_from_dict(record["sample"])
    frames = load_sample_frames(sample, card, None)
    messages, images, _ = chat_messages(bench.build_prompt(sample, frames, card))
    text = backend.processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    inputs = backend.processor(text=[text + prefix], images=images, return_tensors="pt")
    with torch.no_grad():
        return torch.softmax(backend.model(**inputs).logits[0, -1].float(), -1)


def word_id(tokenizer, word: str) -> int:
    return tokenizer.convert_tokens_to_ids("Ġ" + word)


def color_at(backend, bench, card, records, limit: int) -> None:
    """P(key frame's number) where the completion names the frame it reads."""
    digits = [word_id(backend.processor.tokenizer, str(i)) for i in range(1, 9)]
    by_time = defaultdict(list)
    for r in [r for r in records if r["category"]["family"] == "color_at"][:limit]:
        text = r["prediction"]["candidates"][0]["text"]
        at = re.search(r"\. In frame", text)
        asked = re.search(r"at (\d+\.\d) s\?", r["sample"]["question"])
        if not at or not asked or len(r["key_frames"]) != 1:
            continue
        probs = next_token_probs(backend, bench, card, r, text[:at.end()])[digits].tolist()
        key = r["key_frames"][0]
        by_time[asked.group(1)].append((probs[key - 1], max(range(8), key=probs.__getitem__) + 1 == key, probs))
    print("color_at: P(key frame) at 'In frame', by asked time")
    for t in sorted(by_time, key=float):
        rows = by_time[t]
        mean = [round(statistics.mean(p[2][i] for p in rows), 2) for i in range(8)]
        print(f"  {t} s  n={len(rows):2d}  P(key) {statistics.mean(p[0] for p in rows):.2f}  "
              f"key most likely {sum(p[1] for p in rows)}/{len(rows)}  mean P(frame 1..8) {mean}")
    flat = [p for rows in by_time.values() for p in rows]
    print(f"  all: P(key) {statistics.mean(p[0] for p in flat):.3f}, key most likely "
          f"{sum(p[1] for p in flat)}/{len(flat)}")


def first_appear(backend, bench, card, records) -> None:
    """P(the matching option's shape) where a wrong answer names a colour and its own shape."""
    tok = backend.processor.tokenizer
    shapes = {s: word_id(tok, s) for s in ("square", "circle", "triangle")}
    rows = []
    for r in records:
        if r["category"]["family"] != "first_appear" or (r.get("score") or 0) > 0:
            continue
        text = r["prediction"]["candidates"][0]["text"]
        said = re.search(r"So the answer is the (\w+)", text)
        if not said:
            continue
        options = [o for o in r["sample"]["options"] if o.split()[1:2] == [said.group(1)]]
        right = r["sample"]["options"][ord(r["sample"]["answer"]) - ord("A")]
        if len(options) != 1 or options[0].split()[-1] not in shapes:
            continue
        probs = next_token_probs(backend, bench, card, r, text[:said.end()])
        rows.append((options[0] == right, probs[shapes[options[0].split()[-1]]].item()))
    print(f"first_appear, wrong answers whose colour matches one option: {len(rows)}; that option is the "
          f"right one in {sum(ok for ok, _ in rows)}; mean P(its shape) after 'the <colour>' "
          f"{statistics.mean(p for _, p in rows) if rows else float('nan'):.4f}, max "
          f"{max((p for _, p in rows), default=float('nan')):.4f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model", help="checkpoint folder, e.g. checkpoints/rler-tiny")
    ap.add_argument("run", type=Path, help="folder of a finished greedy synthvid run (samples.jsonl)")
    ap.add_argument("--limit", type=int, default=60, help="color_at questions to probe [60]")
    args = ap.parse_args()
    from rler_eval.benchmarks import get_benchmark
    from rler_eval.models.hf import load
    from rler_eval.tasks import load_task

    card = load_task("synthvid")
    bench = get_benchmark(card.benchmark)
    records = [json.loads(line) for line in (args.run / "samples.jsonl").open()]
    backend = load(args.model)
    color_at(backend, bench, card, records, args.limit)
    first_appear(backend, bench, card, records)


if __name__ == "__main__":
    main()
