"""Answer extractors shared by the benchmark adapters, each matching one official rule.

Why one module: every benchmark's official scorer has its own small, quirky way of reading
an option letter, a yes/no or a number out of free text, and those quirks move the
reported numbers. Each rule is written here once, named after the benchmark whose
official code defines it, and reused by every adapter (and by `rler-eval score`), so two
adapters never disagree about "the same" extraction and each rule can be tested against
the official behaviour in one place. Sources are cited per function and in
docs/FACTS.md ("benchmarks-A").

Conventions:
- Extractors take plain text and never raise; "nothing found" is "" or None as documented.
- `answer_text(response)` implements the project rule shared by all adapters: when a
  response is in the evidence format, only its <answer> span is scored; otherwise the
  benchmark's own extraction is applied to the whole response.
"""

from __future__ import annotations

import math
import random
import re
import string

from rler_eval import evidence

LETTERS = string.ascii_uppercase


# ---------------------------------------------------------------- which text is scored


def answer_span(response: str | None) -> str | None:
    """The text inside the response's <answer> tag, or None when it has no answer tag.

    Uses the protocol parser (`evidence.parse`): the last complete <answer>...</answer>
    wins, an unclosed tag runs to the next protocol tag or the end.
    """
    if not response:
        return None
    ev = evidence.parse(response, answer_type="text")
    if ev.answer_raw is None and not _has_answer_tag(response):
        return None
    return ev.answer_raw or ""


def _has_answer_tag(text: str) -> bool:
    return re.search(r"<\s*answer\s*>", text, re.I) is not None


def answer_text(response: str | None) -> tuple[str, bool]:
    """(text to extract from, whether it came from an <answer> span)."""
    span = answer_span(response)
    if span is not None:
        return span, True
    return (response or ""), False


def letters_for(n_options: int) -> list[str]:
    return list(LETTERS[:max(0, n_options)])


# ---------------------------------------------------------------- option letters, per benchmark

# Video-MME, official `eval_your_results.py` (github.com/thanku-all/parse_answer, linked from
# MME-Benchmarks/Video-MME README "Evaluation"). The list is reproduced with the official
# file's missing commas: adjacent string literals concatenate in Python, so two entries are
# the joined phrases below, and "The best option is" / "Best answer:" alone are NOT removed.
VIDEOMME_PREFIXES = (
    "The best answer is",
    "The correct answer is",
    "The answer is",
    "The answer",
    "The best option isThe correct option is",
    "Best answer:Best option:",
    "Answer:",
    "Option:",
    "The correct answer",
    "The correct option",
)


def videomme_letter(text: str | None, letters: str = "ABCD") -> str:
    """Video-MME's official extraction: remove answer prefixes, then the first capital A-D.

    The first capital among `letters` anywhere in the remaining text wins (so "Based on
    ..., B" reads "B" only if no earlier capital A-D occurs, and "A man ..." reads "A").
    With more than 10 words and no such capital, or with none at all, it returns "".
    """
    s = (text or "").strip()
    for prefix in VIDEOMME_PREFIXES:
        s = s.replace(prefix, "")
    pattern = "[" + re.escape(letters) + "]"
    if len(s.split()) > 10 and not re.search(pattern, s):
        return ""
    m = re.search(pattern, s)
    return m.group(0) if m else ""


# LongVideoBench, lmms-eval `lmms_eval/tasks/longvideobench/utils.py`
# (parse_multi_choice_response, "same as original LongVideoBench paper"): its prefix list has
# all commas, and it searches capitals A-E regardless of how many options the question has.
LVB_PREFIXES = (
    "The best answer is",
    "The correct answer is",
    "The answer is",
    "The answer",
    "The best option is",
    "The correct option is",
    "Best answer:",
    "Best option:",
)


def longvideobench_letter(text: str | None, n_options: int, seed_key: str) -> tuple[str, bool]:
    """LongVideoBench's extraction: (letter, whether it was a random fallback).

    After removing the prefixes, the first capital A-E anywhere wins (even "E" on a 4-option
    question, as in the official code). When none is found (or the text has more than 10
    words and no A-E) the official code picks `random.choice(all_choices)`; here that choice
    is seeded by `seed_key` (e.g. "<seed>:<question id>") so a score is reproducible.
    """
    s = (text or "").strip()
    for prefix in LVB_PREFIXES:
        s = s.replace(prefix, "")
    m = None if (len(s.split()) > 10 and not re.search("[ABCDE]", s)) else re.search("[ABCDE]", s)
    if m:
        return m.group(0), False
    choices = letters_for(n_options) or ["A"]
    return random.Random(seed_key).choice(choices), True


def lvbench_letter(text: str | None) -> str:
    """LVBench's official `polish_answer` (THUDM/LVBench lvbench/utils/answer_util.py).

    Cut at the first ")", take what follows a "(" if any, then the first space-separated
    word, and return its first character ("" when nothing is left). The result is compared
    to the answer letter exactly, so "b" or "O" (from "Option B") are wrong.
    """
    s = (text or "").strip()
    s = s.split(")")[0].strip()
    if "(" in s:
        s = s.split("(")[1].strip()
    s = s.split(" ")[0]
    return s[0] if s else ""


def mvbench_match(text: str | None, gt_letter: str) -> bool:
    """MVBench's official `check_ans` (OpenGVLab/Ask-Anything video_chat2/mvbench.ipynb).

    The official pipeline prefills the assistant turn with "Best option:(" and scores
    "(" + the first line of the model's continuation. Its first space-separated word,
    lower-cased, is correct when (without dots) it is a substring of "(x)" for the gold
    letter x, or when "(x)" is a substring of it. One guard comes from the later official
    VideoChat2 evaluator (tasks/eval/mvbench): a word with no option letter a-g is wrong;
    without it an empty reply ("(" is a substring of "(x)") would count as correct.
    """
    word = _mvbench_word(text)
    if not any(c in word for c in "abcdefg"):
        return False
    gt = f"({gt_letter.lower()})"
    return word.replace(".", "") in gt or gt in word


def _mvbench_word(text: str | None) -> str:
    lines = (text or "").strip().split("\n")
    return ("(" + lines[0]).lower().split(" ")[0]


def mvbench_letter(text: str | None, n_options: int) -> str:
    """The option letter MVBench's `check_ans` would accept for this reply ("" if none)."""
    for letter in letters_for(n_options):
        if mvbench_match(text, letter):
            return letter
    return ""


def generic_letter(text: str | None, options: list[str] | None) -> str:
    """The protocol's own reading of an option answer (letter, "(c)", or the option text)."""
    return evidence.normalize_answer(text, "option", options) or ""


# ---------------------------------------------------------------- yes / no


def yes_no(text: str | None) -> str:
    """"yes" or "no" when the text starts with one of them (after punctuation), else the
    only one of the two words that occurs in it; "" when absent or both occur."""
    s = (text or "").strip().lower()
    m = re.match(r"[\W_]*(yes|no)\b", s)
    if m:
        return m.group(1)
    found = set(re.findall(r"\b(yes|no)\b", s))
    return found.pop() if len(found) == 1 else ""


# ---------------------------------------------------------------- numbers

_NUMBER = re.compile(r"-?\d+(?:\.\d+)?")
_NUMBER_WORDS = {w: i for i, w in enumerate(
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen "
    "fifteen sixteen seventeen eighteen nineteen".split())}
_NUMBER_WORDS.update({"twenty": 20, "thirty": 30, "forty": 40, "fifty": 50, "sixty": 60,
                      "seventy": 70, "eighty": 80, "ninety": 90, "hundred": 100, "thousand": 1000})


def to_float(value) -> float | None:
    """float(value), or None when it does not convert (VSI-Bench's `to_float`)."""
    try:
        out = float(value)
    except (TypeError, ValueError, OverflowError):
        return None
    return out


def first_word_number(text: str | None) -> float | None:
    """VSI-Bench's official numeric reading (vision-x-nyu/thinking-in-space
    lmms_eval/tasks/vsibench/utils.py): `float(text.split(' ')[0].rstrip('.').strip())`.
    Only a reply that starts with the number parses ("3.5 meters" -> 3.5, "About 3" -> None).
    Note: Python's float() also accepts "nan" and "inf"; those are returned as given.
    """
    if text is None:
        return None
    return to_float(text.split(" ")[0].rstrip(".").strip())


def first_number(text: str | None) -> float | None:
    """The first number in the text, digits or English number words, whichever comes first
    (lmms-eval's current VSI-Bench `extract_number`): "There are 3 boxes" -> 3.0,
    "twenty-one" -> 21.0, "three hundred and twenty-one" -> 321.0; None when absent."""
    if text is None:
        return None
    s = str(text).strip().lower()
    digit = _NUMBER.search(s)
    run_start, run = None, []
    for m in re.finditer(r"[a-z]+", s):
        tok = m.group(0)
        if run_start is None:
            if tok in _NUMBER_WORDS:
                run_start = m.start()
                run.append(tok)
        elif tok == "and":
            continue
        elif tok in _NUMBER_WORDS:
            run.append(tok)
        else:
            break
    if digit is not None and (run_start is None or digit.start() < run_start):
        return float(digit.group(0))
    if run_start is None:
        return None
    total, current = 0, 0
    for tok in run:
        value = _NUMBER_WORDS[tok]
        if value == 100:
            current = max(current, 1) * 100
        elif value == 1000:
            total += max(current, 1) * 1000
            current = 0
        else:
            current += value
    return float(total + current)


def mra(pred: float | None, target: float | None, start: float = 0.5, end: float = 0.95,
        interval: float = 0.05) -> float:
    """Mean relative accuracy exactly as VSI-Bench computes it.

    Official (thinking-in-space and lmms-eval vsibench utils.py): the thresholds are
    `np.linspace(start, end, int((end - start) / interval + 2))` -> 0.50, 0.55, ..., 0.95
    (10 values), and a threshold θ counts when `abs(pred - target) / target <= 1 - θ`,
    evaluated in float64 exactly in that order. So a prediction off by exactly half the
    target passes only θ = 0.50 (0.5 <= 1 - 0.5) and scores 0.1, while an error of 45%
    fails θ = 0.55 because 1 - 0.55 is 0.44999999999999996 in float64.

    Boundary cases: an unparsable prediction (None) scores 0.0, as the official
    `except TypeError -> WORST_CASE` does. A target of 0 makes the official code raise
    ZeroDivisionError (uncaught); here it scores 1.0 for an exact 0 and 0.0 otherwise.
    A negative target gives a negative ratio that passes every θ, as in the official code.
    NaN predictions fail every θ (comparisons with NaN are false).
    """
    import numpy as np

    if pred is None or target is None:
        return 0.0
    pred, target = float(pred), float(target)
    thetas = np.linspace(start, end, int((end - start) / interval + 2))
    if target == 0:
        return 1.0 if pred == 0 else 0.0
    if math.isinf(pred):
        return 0.0
    rel = abs(pred - target) / target
    return float((rel <= 1 - thetas).mean())


# ---------------------------------------------------------------- free text


# One implementation, in evidence.py (the election clusters free text with it too).
normalize_text = evidence.normalize_text
token_f1 = evidence.token_f1


# ---------------------------------------------------------------- reading official files
# Small helpers the adapters share so that every missing or malformed file gives the same
# kind of message: what is expected where, and how to get it.


def require(path, card, what: str):
    """`path` if it exists, else DataMissingError naming it and the download command."""
    from pathlib import Path

    from rler_eval.errors import DataMissingError

    path = Path(path)
    if path.exists():
        return path
    hint = card.download_hint or "see the task card"
    raise DataMissingError(
        f"task {card.name}: {what} not found at {path} (data root {card.root}, from data_root "
        f"'{card.data_root}'; set RLER_DATA to the folder that holds it). "
        f"On a machine with internet access, get it with: {hint}")


def read_json(path):
    """A JSON file, or InputError naming the file and the position of the syntax error."""
    import json

    from rler_eval.errors import InputError

    try:
        with open(path, encoding="utf-8") as fh:
            return json.load(fh)
    except json.JSONDecodeError as e:
        raise InputError(f"{path}: invalid JSON at line {e.lineno} column {e.colno}: {e.msg}") from None
    except UnicodeDecodeError as e:
        raise InputError(f"{path}: not UTF-8 text (byte {e.start}: {e.reason})") from None


class BadRow(dict):
    """A row that could not be read (undecodable bytes, broken JSON) in a file whose other
    rows can: `message` says where and why; `rows.guard` turns it into an error record."""

    def __init__(self, message: str):
        super().__init__()
        self.message = message


def read_jsonl(path, lenient: bool = False) -> list[dict]:
    """A JSON-lines file (blank lines skipped), or InputError naming the file and line.

    With `lenient`, a line that is not UTF-8, not JSON or not an object comes back as a
    BadRow in its place, so one damaged line costs one sample, not the benchmark.
    """
    import json

    from rler_eval.errors import InputError

    rows = []
    with open(path, "rb") as fh:
        for lineno, raw in enumerate(fh, 1):
            problem = None
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                line, problem = "", f"not UTF-8 text (byte {e.start} of the line)"
            if not problem and not line.strip():
                continue
            if not problem:
                try:
                    row = json.loads(line)
                    if not isinstance(row, dict):
                        problem = f"expected a JSON object, got {type(row).__name__}"
                except json.JSONDecodeError as e:
                    problem = f"invalid JSON: {e.msg}"
            if problem and not lenient:
                raise InputError(f"{path}:{lineno}: {problem}")
            rows.append(BadRow(f"{path}:{lineno}: {problem}") if problem else row)
    return rows


def field(doc: dict, name: str, where: str, kind=None):
    """doc[name], or InputError naming `where` (file and row) and the missing field."""
    from rler_eval.errors import InputError

    if not isinstance(doc, dict):
        raise InputError(f"{where}: expected a JSON object, got {type(doc).__name__}")
    if name not in doc or doc[name] is None:
        raise InputError(f"{where}: missing field '{name}'")
    value = doc[name]
    if kind is not None and not isinstance(value, kind):
        want = kind.__name__ if isinstance(kind, type) else "/".join(k.__name__ for k in kind)
        raise InputError(f"{where}: field '{name}' should be {want}, got {type(value).__name__}")
    return value
