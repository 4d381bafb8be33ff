"""TempCompass: temporal perception in four task formats, scored per format and per dimension.

Why this adapter exists: TempCompass asks about the same short videos in four formats
(multi-choice, yes/no, caption matching, captioning) across five temporal dimensions
(action, speed, direction, order, attribute_change). Its official scorer first applies
hand-written matching rules and hands only what they cannot match to an LLM judge; the
captioning format is always judged (the judge answers a multi-choice question from the
model's caption alone). This module reproduces the rules exactly, routes the rest to
`judge.py`, and, with no judge configured, applies a documented rule-based fallback.
Facts and sources: docs/FACTS.md ("Benchmarks B").

One task card per format; `card.args.format` is one of FORMATS. Layouts read (under the
card's data root, e.g. $RLER_DATA/tempcompass):

    <format>/test-*.parquet     Hugging Face lmms-lab/TempCompass: rows {video_id, question,
                                answer, dim} (+ mc_question, mc_answer for captioning)
    questions/<format>.json     or the GitHub release: {video_id: {dim: [{question, answer}]}}
    videos/<video_id>.mp4

Fallback for rows the rules cannot match (no judge configured; `args.fallback`):
- "rules" (default): multi-choice and caption matching read the answer the protocol's way
  (a letter, "(b)", "answer is B", or exactly one option's text); yes/no takes the only one
  of "yes"/"no" in the reply; captioning picks the multi-choice option whose text occurs
  in the caption (else the option with the single highest token-F1 against it).
- "zero": the official `--disable_llm` behaviour, an unmatched reply scores 0.
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

from rler_eval import evidence
from rler_eval.benchmarks import base, extract, judge, tables
from rler_eval.benchmarks.rows import guard
from rler_eval.errors import InputError
from rler_eval.prompt import frame_parts, prompt_key
from rler_eval.tasks import TaskCard
from rler_eval.types import FrameSet, Prompt, Sample

FORMATS = ("multi-choice", "yes_no", "caption_matching", "captioning")
DIMS = ("action", "speed", "direction", "order", "attribute_change")

# Appended to the question in the official inference scripts (run_qwen2_vl.py `answer_prompt`;
# lmms-eval tempcompass/_default_template_yaml post_prompt). Captioning questions already end
# with "Generated Caption:".
ANSWER_PROMPT = {
    "multi-choice": "\nPlease directly give the best option:",
    "yes_no": "\nPlease answer yes or no:",
    "caption_matching": "\nPlease directly give the best option:",
    "captioning": "",
}

# The judge prompts below are this project's wording of the official instructions (same
# inputs, same output contract: "Correct"/"Incorrect", or "Reasoning: ... / Answer: ...").
JUDGE_SYSTEM = "You are an AI assistant for question answering."
JUDGE_KIND = {"multi-choice": "Multi-Choice", "yes_no": "Yes/No", "caption_matching": "Caption Matching"}
JUDGE_PROMPT = (
    "You are given a {kind} question, its ground-truth answer, and the prediction of a question "
    "answering model. Using the question and the ground-truth answer, decide whether the prediction "
    'is correct. Reply "Correct" if it is correct and "Incorrect" if it is not.\n'
    "{kind} Question:\n{question}\nGround-Truth Answer: {answer}\nModel Prediction: {prediction}"
)
CAPTION_JUDGE_PROMPT = (
    "You are given a description of a video and a multi-choice question about the video. Using only "
    "the description, choose the correct option and briefly say why. If no option is correct, or the "
    'description does not say enough to answer, reply "None of the choices are correct".\n'
    "Reply in this format:\nReasoning: [why you chose the answer]\nAnswer: [the option, e.g. B. text]\n\n"
    "Video Description:{caption}\nMulti-Choice Question:\n{question}\nAnswer:"
)


# ---------------------------------------------------------------- reading


def task_format(card: TaskCard) -> str:
    fmt = (card.args or {}).get("format", "multi-choice")
    if fmt not in FORMATS:
        raise InputError(f"task {card.name}: args.format {fmt!r} is not one of {FORMATS}")
    return fmt


def load_samples(card: TaskCard) -> list[Sample]:
    fmt = task_format(card)
    root = extract.require(card.root, card, "the TempCompass data root")
    rows, where = read_rows(root, fmt, card)
    samples, seen = [], Counter()
    for i, row in enumerate(rows):
        vid, dim = str(row.get("video_id")), str(row.get("dim"))
        seen[(vid, dim)] += 1
        sid = f"{fmt}/{vid}/{dim}/{seen[(vid, dim)] - 1}"
        samples.append(guard(lambda: _to_sample(row, card, fmt, f"{where} row {i}", sid), card, f"{where} row {i}", row))
    return samples


def read_rows(root: Path, fmt: str, card: TaskCard) -> tuple[list[dict], str]:
    """Flat rows from the HF parquet layout, else the GitHub questions/<format>.json."""
    shards = tables.find_files(root, fmt)
    if shards:
        rows = [r for f in shards for r in tables.read_rows(f)]
        return rows, str(shards[0].parent if len(shards) > 1 else shards[0])
    path = extract.require(root / "questions" / f"{fmt}.json", card,
                           f"TempCompass {fmt} questions ({fmt}/test-*.parquet or questions/{fmt}.json)")
    nested = extract.read_json(path)
    mc = extract.read_json(extract.require(root / "questions" / "multi-choice.json", card,
                                           "questions/multi-choice.json (captioning is scored with it)")) \
        if fmt == "captioning" else None
    return flatten(nested, mc, str(path)), str(path)


def flatten(nested: dict, mc: dict | None, where: str) -> list[dict]:
    """{video_id: {dim: [{question, answer}]}} -> rows {video_id, dim, question, answer}.

    For captioning, each row also gets the first multi-choice question of its video and
    dimension (`mc_question`, `mc_answer`), which is what the official eval_captioning.py
    scores the caption against.
    """
    if not isinstance(nested, dict):
        raise InputError(f"{where}: expected an object {{video_id: {{dim: [questions]}}}}")
    rows = []
    for vid, dims in nested.items():
        for dim, items in (dims or {}).items():
            for item in items or []:
                row = {"video_id": vid, "dim": dim, "question": item.get("question"), "answer": item.get("answer")}
                if mc is not None:
                    first = ((mc.get(vid) or {}).get(dim) or [None])[0]
                    if first is None:
                        raise InputError(f"{where}: no multi-choice question for video {vid} dim {dim} "
                                         f"(captioning is scored with questions/multi-choice.json)")
                    row["mc_question"], row["mc_answer"] = first["question"], first["answer"]
                rows.append(row)
    return rows


def doc_to_sample(doc: dict, card: TaskCard, index: int = 0) -> Sample:
    fmt = task_format(card)
    return _to_sample(doc, card, fmt, f"doc {index}", f"{fmt}/{doc.get('video_id')}/{doc.get('dim')}/{index}")


def _to_sample(row: dict, card: TaskCard, fmt: str, where: str, sid: str) -> Sample:
    vid = str(extract.field(row, "video_id", where, (str, int)))
    question = extract.field(row, "question", where, str)
    answer = extract.field(row, "answer", where, str)
    dim = extract.field(row, "dim", where, str)
    doc = dict(row)
    if fmt == "multi-choice":
        stem, options = split_options(question, where)
        letter = answer.strip()[:1]
        if letter not in extract.LETTERS[:len(options)]:
            raise InputError(f"{where}: field 'answer' {answer!r} does not start with an option letter "
                             f"A-{extract.LETTERS[len(options) - 1]}")
        kind = dict(answer=letter, answer_type="option", options=options, question=stem)
    elif fmt == "yes_no":
        if answer.strip().lower() not in ("yes", "no"):
            raise InputError(f"{where}: field 'answer' should be 'yes' or 'no', got {answer!r}")
        kind = dict(answer=answer.strip().lower(), answer_type="yesno", options=None, question=question)
    elif fmt == "caption_matching":
        labels, captions = caption_options(question, where)
        labelled = [f"{lab}: {cap}" for lab, cap in zip(labels, captions)]
        if answer not in labelled:
            raise InputError(f"{where}: field 'answer' {answer!r} is not one of the question's options {labelled}")
        kind = dict(answer=extract.LETTERS[labelled.index(answer)], answer_type="option", options=captions,
                    question=question.split("\n")[0])
    else:  # captioning: judged against the multi-choice question of the same video and dimension
        mc_q = extract.field(row, "mc_question", where, str)
        mc_a = extract.field(row, "mc_answer", where, str)
        split_options(mc_q, where + " (mc_question)")
        doc.update(mc_question=mc_q, mc_answer=mc_a)
        kind = dict(answer=answer, answer_type="text", options=None, question=question)
    root = card.root
    video = root / "videos" / f"{vid}.mp4"
    if not video.exists() and (root / f"{vid}.mp4").exists():
        video = root / f"{vid}.mp4"
    return Sample(id=sid, task=card.name, video=str(video), category={"dim": dim}, doc=doc, **kind)


_OPTION_LINE = re.compile(r"^([A-Z])\.\s?(.*)$")


def split_options(question: str, where: str) -> tuple[str, list[str]]:
    """"stem\\nA. x\\nB. y" -> ("stem", ["x", "y"]); InputError when no option lines follow."""
    lines = question.split("\n")
    options = []
    while lines and _OPTION_LINE.match(lines[-1].strip()):
        options.insert(0, _OPTION_LINE.match(lines.pop().strip()).group(2))
    if not options:
        raise InputError(f"{where}: field 'question' has no option lines ('A. ...') after the question")
    return "\n".join(lines).strip(), options


def caption_options(question: str, where: str) -> tuple[list[str], list[str]]:
    """Labels and captions of a caption-matching question ("Caption A: text" lines)."""
    labels, captions = [], []
    for line in question.split("\n")[1:]:
        if ": " not in line:
            raise InputError(f"{where}: caption-matching option line {line!r} has no 'Label: caption' form")
        label, caption = line.split(": ", 1)
        labels.append(label)
        captions.append(caption)
    if len(labels) < 2:
        raise InputError(f"{where}: caption-matching question has fewer than two option lines")
    return labels, captions


# ---------------------------------------------------------------- prompting


def build_prompt(sample: Sample, frameset: FrameSet | None, card: TaskCard | None = None) -> Prompt:
    """Frames, then the official question; evidence instructions or the official suffix.

    With the evidence prompt, options are shown as "A. text" (caption-matching captions are
    relabelled A, B, ... so that the answer is a letter like every other option answer).
    """
    fmt = task_format(card) if card is not None else "multi-choice"
    mode = card.frames.mode if card is not None else "images"
    content = frame_parts(frameset, mode) if frameset is not None and len(frameset) else []
    plain = card is not None and card.prompt == "plain"
    if plain or sample.answer_type != "option":
        text = sample.doc.get("question", sample.question)
    else:
        text = sample.question + "\n" + "\n".join(f"{extract.LETTERS[i]}. {o}" for i, o in enumerate(sample.options))
    text += ANSWER_PROMPT[fmt] if plain else "\n\n" + evidence.instructions(sample.answer_type)
    content.append({"type": "text", "text": text})
    n = len(frameset) if frameset is not None else 0
    return Prompt(content=content, n_frames=n, key=prompt_key(content, frameset))


# ---------------------------------------------------------------- the official rules


def mc_rule(pred: str, answer: str) -> float | None:
    """eval_multi-choice.py's rules: 1/0 when a rule applies, None when none does."""
    if pred == answer:
        return 1.0
    if pred in ("A", "B", "C", "D"):
        return float(pred == answer[:1])
    if any(pred.startswith(p) for p in ("A.", "B.", "C.", "D.")):
        return float(pred.split(".")[0] == answer[:1])
    if any(pred.startswith(p) for p in ("A)", "B)", "C)", "D)")):
        return float(pred.split(")")[0] == answer[:1])
    return None


def yes_no_rule(pred: str) -> str | None:
    """eval_yes_no.py `extract_pred`: "yes"/"no" when the lower-cased reply starts with it.

    As in the official code, "not sure" and "nothing" start with "no" and read as "no".
    """
    low = pred.lower()
    if low.startswith("yes"):
        return "yes"
    if low.startswith("no"):
        return "no"
    return None


def caption_matching_rule(pred: str, question: str, answer: str) -> float | None:
    """The official `eval_rule` (eval_caption_matching.py at e1b4631; the same in lmms-eval):
    the reply must equal a whole option line, an option's caption (also after ") "), or an
    option label, with or without its word ("Caption A" or "A", also without dots); the last
    match wins."""
    lines = question.split("\n")[1:]
    sents = [o.split(": ")[1] for o in lines]
    inds = [o.split(": ")[0] for o in lines]
    inds += [i.replace("Sentence ", "").replace("Option ", "").replace("Caption ", "") for i in inds]
    got = None
    for line in lines:
        if line == pred:
            got = line
    for sent in sents:
        if sent == pred or (") " in pred and sent == pred.split(") ")[1]):
            got = sent
    for ind in inds:
        if ind == pred or ind == pred.replace(".", ""):
            got = ind
    if got is None:
        return None
    head = answer.split(": ")[0]
    ok = got == answer or got == answer.split(":")[0] or got == answer.split(": ")[1] or \
        (len(head.split()) > 1 and got == head.split()[1])
    return float(ok)


def captioning_rating(reply: str | None, mc_answer: str) -> float | None:
    """eval_captioning.py `parse_llm_output`: the judge's "Answer:" line must name the gold
    option ("B" before ". ") and mention exactly one of "A." "B." "C." "D."; None when the
    reply is empty (the official rating -1, counted as a judge failure and scored 0)."""
    if not reply:
        return None
    answer = None
    for line in reply.split("\n"):
        line = line.strip()
        if "Answer" in line:
            answer = line.replace("Answer:", "").strip()
    if answer is None:
        answer = reply
    count = sum(answer.count(p) for p in ("A.", "B.", "C.", "D."))
    return float(answer.split(". ")[0] == mc_answer.split(". ")[0] and count == 1)


# ---------------------------------------------------------------- scoring


def score(sample: Sample, response: str | None, card: TaskCard | None = None) -> dict:
    """Rules first (on the <answer> span when present), then the judge or the fallback.

    `extracted` is the matched answer (a string) when a rule matched; otherwise a dict
    {"answer", "by", "verdict"} saying what scored the row ("by": the judge model, or
    "rule-based fallback", or "zero" for the official --disable_llm mode).
    """
    card = card or judge.card_of(sample)
    text, _ = extract.answer_text(response)
    pred = text.replace("</s>", "").strip()
    fmt = _format_of(sample)
    doc = sample.doc
    if fmt == "captioning":
        return _score_caption(sample, pred, card)
    if fmt == "multi-choice":
        rating = mc_rule(pred, doc["answer"])
        if rating is not None:
            return {"score": rating, "extracted": pred[:1] if pred != doc["answer"] else sample.answer}
    elif fmt == "yes_no":
        got = yes_no_rule(pred)
        if got is not None:
            return {"score": float(got == sample.answer), "extracted": got}
    else:
        rating = caption_matching_rule(pred, doc["question"], doc["answer"])
        if rating is not None:
            return {"score": rating, "extracted": pred}
        # the evidence prompt shows captions as lettered options: read a lone letter as its index
        letter = _lone_letter(pred, len(sample.options or []))
        if letter:
            return {"score": float(letter == sample.answer), "extracted": letter}
    return _judge_or_fallback(sample, pred, fmt, card)


def _format_of(sample: Sample) -> str:
    """The format, from the sample itself: multi-choice answers read "B. text"."""
    if sample.answer_type == "yesno":
        return "yes_no"
    if sample.answer_type == "text":
        return "captioning"
    return "multi-choice" if _OPTION_LINE.match(sample.doc.get("answer", "")) else "caption_matching"


def _lone_letter(pred: str, n: int) -> str | None:
    m = re.fullmatch(r"\(?([A-Z])[\.\)]?", pred)
    return m.group(1) if m and m.group(1) in extract.LETTERS[:n] else None


def _judge_or_fallback(sample: Sample, pred: str, fmt: str, card: TaskCard | None) -> dict:
    doc = sample.doc
    j = judge.get_judge(card)
    if j is not None:
        prompt = JUDGE_PROMPT.format(kind=JUDGE_KIND[fmt], question=doc["question"], answer=doc["answer"],
                                     prediction=pred)
        reply = j.ask(prompt, JUDGE_SYSTEM)
        verdict = judge.correct_incorrect(reply)
        return {"score": verdict or 0.0, "extracted": {"answer": pred[:500], "by": j.config.model, "verdict": reply,
                                                        "failed": verdict is None}}
    if _fallback_mode(card) == "zero":
        return {"score": 0.0, "extracted": {"answer": pred[:500], "by": "zero", "verdict": None}}
    if fmt == "yes_no":
        got = extract.yes_no(pred) or None
        ok = got == sample.answer
    else:
        got = evidence.normalize_answer(pred, "option", sample.options) or _contained_option(pred, sample.options)
        ok = got == sample.answer
    return {"score": float(ok), "extracted": {"answer": got, "by": judge.FALLBACK, "verdict": None}}


def _contained_option(pred: str, options: list[str] | None) -> str | None:
    """The letter of the only option whose normalised text occurs in the reply."""
    low = extract.normalize_text(pred)
    hits = [i for i, o in enumerate(options or []) if extract.normalize_text(o) and
            f" {extract.normalize_text(o)} " in f" {low} "]
    return extract.LETTERS[hits[0]] if len(hits) == 1 else None


def _fallback_mode(card: TaskCard | None) -> str:
    return ((card.args or {}).get("fallback") if card is not None else None) or "rules"


def _score_caption(sample: Sample, caption: str, card: TaskCard | None) -> dict:
    doc = sample.doc
    if not caption:  # the official scorer gives a missing caption 0 without asking the judge
        return {"score": 0.0, "extracted": {"answer": None, "by": "empty caption", "verdict": None}}
    j = judge.get_judge(card)
    if j is not None:
        reply = j.ask(CAPTION_JUDGE_PROMPT.format(caption=caption, question=doc["mc_question"]), JUDGE_SYSTEM)
        rating = captioning_rating(reply, doc["mc_answer"])
        return {"score": rating or 0.0, "extracted": {"answer": caption[:500], "by": j.config.model,
                                                       "verdict": reply, "failed": rating is None}}
    if _fallback_mode(card) == "zero":
        return {"score": 0.0, "extracted": {"answer": caption[:500], "by": "zero", "verdict": None}}
    stem, options = split_options(doc["mc_question"], sample.id)
    chosen = caption_choice(caption, options)
    gold = doc["mc_answer"].split(". ")[0].strip()
    return {"score": float(chosen == gold), "extracted": {"answer": chosen, "by": judge.FALLBACK, "verdict": None}}


def caption_choice(caption: str, options: list[str]) -> str | None:
    """The fallback's reading of a caption: the only option whose text it contains, else the
    option with the single highest token-F1 against it (None on a tie or no overlap)."""
    contained = _contained_option(caption, options)
    if contained:
        return contained
    f1 = [extract.token_f1(caption, o) for o in options]
    best = max(f1) if f1 else 0.0
    if best <= 0 or f1.count(best) > 1:
        return None
    return extract.LETTERS[f1.index(best)]


# ---------------------------------------------------------------- aggregate


def aggregate(rows: list[dict], card: TaskCard | None = None) -> dict:
    """Accuracy over all rows and per dimension (eval_utils.print_result's "avg" and per
    aspect), the rule match rate, and what judged the rest."""
    out = base.aggregate(rows, card)
    by: Counter = Counter()
    failed = 0
    for r in rows:
        e = r.get("extracted")
        if isinstance(e, dict):
            by[e.get("by")] += 1
            failed += bool(e.get("failed"))
    matched = sum(1 for r in rows if r.get("status", "ok") == "ok" and isinstance(r.get("extracted"), str))
    out["format"] = task_format(card) if card is not None else None
    out["match_success_rate"] = matched / len(rows) if rows else 0.0
    out["judged_by"] = dict(by)
    out["judge_failed"] = failed
    used = sorted(k for k in by if k != "empty caption")
    out["judge"] = ", ".join(used) if used else judge.describe(card)
    return out
