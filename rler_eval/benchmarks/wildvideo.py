"""WildVideo: open-ended questions on in-the-wild videos, single- and multi-turn, EN and CN.

Why this adapter exists: WildVideo's answers are free text, so its official protocol
(yangsongyuan18/WildVideo `lmms_eval/`) scores every answer with an LLM judge at
temperature 0 (default model gpt-4o-mini). Multi-turn dialogues give the earlier turns
with their ground-truth answers (here `Sample.context`) and score only the last turn.
This module builds the customary prompts, asks the judge through `judge.py` (cached), and
with no judge configured scores with a documented rule-based fallback, saying so in the
metrics. Facts and sources: docs/FACTS.md ("Benchmarks B").

Judge output contract (`card.args.judge_mode`):
- "score" (default; the current official evaluator): the judge replies with a number in
  [0, 1]; the sample scores that number (clamped). A reply that is not a bare number
  scores 0 and is counted in `judge_failed`, as the official code does.
- "binary" (the first official release and the task brief): "Correct" -> 1, "Incorrect" -> 0.

Rule-based fallback (no judge): 1.0 when the normalised prediction equals the normalised
answer or contains it; otherwise the token-F1 between them (character-F1 for Chinese
text). In "binary" mode the fallback is 1.0 when that F1 is at least 0.5, else 0.0.

Layout read (under the card's data root, e.g. $RLER_DATA/wildvideo), one config per task
(`card.args.config` in single_en, multi_en, single_cn, multi_cn):

    <config>/test-*.parquet | <config>.jsonl | <config>.json
        single: rows {video_id, question, answer, type, lang, turn_type}
        multi:  rows {video_id, rounds: [{round, question, answer, type}], lang, turn_type}
                (a multi row without rounds is read as its flat question/answer; rows whose
                lang/turn_type is not the config's are skipped, as in the official utils)
    video/<video_id>.mp4    (also videos/<video_id>.mp4)
"""

from __future__ import annotations

import re
import sys
from collections import Counter

from rler_eval import evidence
from rler_eval.benchmarks import base, extract, judge, tables
from rler_eval.benchmarks.rows import guard
from rler_eval.errors import InputError
from rler_eval.prompt import frame_parts, prompt_key
from rler_eval.tasks import TaskCard
from rler_eval.types import FrameSet, Prompt, Sample

CONFIGS = ("single_en", "multi_en", "single_cn", "multi_cn")

# Prompts in the official structure (single_*_utils.py / multi_*_utils.py doc_to_text);
# the wording is this project's. Multi-turn: the history as "[Turn k] Q/A" pairs, then the
# current question.
SINGLE = {"en": "Answer the question about the video as accurately and concisely as you can.\n\n"
                "Question: {question}\nAnswer:",
          "cn": "请根据视频内容，准确、简洁地回答下面的问题。\n\n问题：{question}\n回答："}
MULTI_HEAD = {"en": "Here is an earlier conversation about this video, followed by the current question. "
                    "Answer the current question from the video.\n",
              "cn": "以下是关于这个视频的多轮问答记录和当前问题。请结合视频和历史对话，只回答当前问题。\n"}
MULTI_TURN = {"en": "[Turn {r}] Q: {q}\n[Turn {r}] A: {a}\n", "cn": "[轮次 {r}] 问：{q}\n[轮次 {r}] 答：{a}\n"}
MULTI_TAIL = {"en": "Current question (Turn {r}): {q}\nAnswer:", "cn": "当前问题（轮次 {r}）：{q}\n请直接用中文回答。\n回答："}

JUDGE_SYSTEM = "You are an automatic evaluator for WildVideo answers."
JUDGE_SCORE = (
    "You are given a question about a video, its ground-truth answer, and the prediction of a video question "
    "answering model. Rate how correct the prediction is with a single number between 0 and 1: 1 means fully "
    "correct, 0 means wrong, values in between mean partly correct. Output only the number, with at most two "
    "decimals, and nothing else.\n\n{q}Ground-Truth Answer:\n{a}\n\nModel Prediction:\n{p}\n"
)
JUDGE_BINARY = (
    "You are given a question about a video, its ground-truth answer, and the prediction of a video question "
    "answering model. Decide whether the prediction can count as correct given the question and the ground-truth "
    "answer; allow different wording with the same meaning. Reply with exactly \"Correct\" or \"Incorrect\" and "
    "nothing else.\n\n{q}Ground-Truth Answer:\n{a}\n\nModel Prediction:\n{p}\n"
)


# ---------------------------------------------------------------- reading


def config_of(card: TaskCard) -> str:
    cfg = (card.args or {}).get("config", "single_en")
    if cfg not in CONFIGS:
        raise InputError(f"task {card.name}: args.config {cfg!r} is not one of {CONFIGS}")
    return cfg


def load_samples(card: TaskCard) -> list[Sample]:
    cfg = config_of(card)
    root = extract.require(card.root, card, "the WildVideo data root")
    files = tables.find_files(root, cfg)
    if not files:
        extract.require(root / cfg, card, f"WildVideo's {cfg} annotations ({cfg}/test-*.parquet or {cfg}.jsonl)")
    rows = [(f, i, row) for f in files for i, row in enumerate(tables.read_rows(f))]
    kept = [(f, i, row) for f, i, row in rows if belongs(row, cfg)]
    if len(kept) < len(rows):
        print(f"{card.name}: skipped {len(rows) - len(kept)} row(s) whose lang/turn_type is not {cfg} "
              f"(as the official utilities do)", file=sys.stderr)
    return [guard(lambda: _to_sample(row, card, cfg, f"{f} row {i}", k), card, f"{f} row {i}", row)
            for k, (f, i, row) in enumerate(kept)]


def belongs(row: dict, cfg: str) -> bool:
    """The official process_results skips a row whose `lang` or `turn_type` is not the
    config's; an absent value counts as the config's own."""
    turn, lang = cfg.split("_")
    if isinstance(row, extract.BadRow):
        return True
    return str(row.get("lang") or lang) == lang and str(row.get("turn_type") or turn) == turn


def doc_to_sample(doc: dict, card: TaskCard, index: int = 0) -> Sample:
    return _to_sample(doc, card, config_of(card), f"doc {index}", index)


def _to_sample(row: dict, card: TaskCard, cfg: str, where: str, index: int) -> Sample:
    vid = str(extract.field(row, "video_id", where, (str, int)))
    lang = cfg.split("_")[1]
    context = []
    rounds = row.get("rounds")
    if cfg.startswith("multi") and rounds:  # without rounds, the official utils read the flat question/answer
        if not isinstance(rounds, list) or not all(isinstance(r, dict) for r in rounds):
            raise InputError(f"{where}: field 'rounds' should be a non-empty list of {{round, question, answer}}")
        rounds = sorted(rounds, key=lambda r: r.get("round", 0))
        for k, r in enumerate(rounds):
            for name in ("question", "answer"):
                extract.field(r, name, f"{where} rounds[{k}]", (str, int, float))
        last = rounds[-1]
        context = [{"question": str(r["question"]), "answer": str(r["answer"]), "round": r.get("round", k + 1)}
                   for k, r in enumerate(rounds[:-1])]
        question, answer = str(last["question"]), str(last["answer"])
        qtype = last.get("type") or row.get("type") or "Unknown"
    else:
        question = str(extract.field(row, "question", where, (str, int, float)))
        answer = str(extract.field(row, "answer", where, (str, int, float)))
        qtype = row.get("type") or "Unknown"
    root = card.root
    video = root / "video" / f"{vid}.mp4"
    if not video.exists() and (root / "videos" / f"{vid}.mp4").exists():
        video = root / "videos" / f"{vid}.mp4"
    sid = str(row.get("id") or row.get("question_id") or f"{cfg}/{index:05d}")
    return Sample(id=sid, task=card.name, question=question, answer=answer, answer_type="text", video=str(video),
                  context=context, category={"type": str(qtype)}, doc={**row, "lang": row.get("lang", lang)})


# ---------------------------------------------------------------- prompting


def build_prompt(sample: Sample, frameset: FrameSet | None, card: TaskCard | None = None) -> Prompt:
    """Frames, then the official-structure text; evidence instructions unless plain."""
    mode = card.frames.mode if card is not None else "images"
    content = frame_parts(frameset, mode) if frameset is not None and len(frameset) else []
    lang = "cn" if str(sample.doc.get("lang", "en")).lower() in ("cn", "zh") else "en"
    if sample.context:
        text = MULTI_HEAD[lang] + "\n"
        for k, turn in enumerate(sample.context):
            text += MULTI_TURN[lang].format(r=turn.get("round", k + 1), q=turn["question"], a=turn["answer"]) + "\n"
        text += MULTI_TAIL[lang].format(r=len(sample.context) + 1, q=sample.question)
    else:
        text = SINGLE[lang].format(question=sample.question)
    if card is None or card.prompt != "plain":
        text += "\n\n" + evidence.instructions("text")
    content.append({"type": "text", "text": text})
    n = len(frameset) if frameset is not None else 0
    return Prompt(content=content, n_frames=n, key=prompt_key(content, frameset))


# ---------------------------------------------------------------- scoring


def score(sample: Sample, response: str | None, card: TaskCard | None = None) -> dict:
    """The judge's score for the last turn's answer (the <answer> span when present).

    `extracted` is {"answer", "by", "verdict"}: the scored text, what scored it (judge
    model or "rule-based fallback") and the judge's raw reply.
    """
    card = card or judge.card_of(sample)
    text, _ = extract.answer_text(response)
    pred = text.strip()
    mode = ((card.args or {}).get("judge_mode") if card is not None else None) or "score"
    j = judge.get_judge(card)
    if j is not None:
        q = f"Question:\n{sample.question}\n\n" if sample.question else ""
        prompt = (JUDGE_BINARY if mode == "binary" else JUDGE_SCORE).format(q=q, a=sample.answer, p=pred)
        reply = j.ask(prompt, JUDGE_SYSTEM)
        value = judge.correct_incorrect(reply) if mode == "binary" else judge.unit_score(reply)
        return {"score": value or 0.0, "extracted": {"answer": pred[:1000], "by": j.config.model, "verdict": reply,
                                                      "failed": value is None}}
    value = fallback_score(pred, sample.answer)
    if mode == "binary":
        value = 1.0 if value >= 0.5 else 0.0
    return {"score": value, "extracted": {"answer": pred[:1000], "by": judge.FALLBACK, "verdict": None}}


_CJK = re.compile(r"[\u3400-\u9fff\uf900-\ufaff]")


def fallback_score(pred: str, gold: str) -> float:
    """The documented rule-based fallback: 1.0 on (normalised) equality or containment of
    the answer in the prediction, else token-F1 (character-F1 when either text is Chinese)."""
    p, g = _norm(pred), _norm(gold)
    if not p or not g:
        return 0.0
    if p == g or (f" {g} " in f" {p} " if not _CJK.search(g) else g in p):
        return 1.0
    if _CJK.search(p) or _CJK.search(g):
        pc, gc = Counter(p.replace(" ", "")), Counter(g.replace(" ", ""))
        same = sum((pc & gc).values())
        if not same:
            return 0.0
        prec, rec = same / sum(pc.values()), same / sum(gc.values())
        return 2 * prec * rec / (prec + rec)
    return extract.token_f1(p, g)


def _norm(s: str) -> str:
    s = extract.normalize_text(s)
    return re.sub(r"[，。！？、；：“”‘’（）《》]", " ", s).strip()


# ---------------------------------------------------------------- aggregate


def aggregate(rows: list[dict], card: TaskCard | None = None) -> dict:
    """Mean score ("overall_acc" in the official output) and the mean per question type,
    plus what judged the rows and how many judge replies failed to parse."""
    out = base.aggregate(rows, card)
    by, failed = Counter(), 0
    for r in rows:
        e = r.get("extracted")
        if isinstance(e, dict):
            by[e.get("by")] += 1
            failed += bool(e.get("failed"))
    out["config"] = config_of(card) if card is not None else None
    out["judged_by"] = dict(by)
    out["judge_failed"] = failed
    out["judge_mode"] = ((card.args or {}).get("judge_mode") if card is not None else None) or "score"
    out["judge"] = ", ".join(sorted(by)) if by else judge.describe(card)
    return out
