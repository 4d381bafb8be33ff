"""The evidence protocol: prompt instructions, a tolerant parser, and the scores T R C E G.

Why one module: training rewards and the inference-time election must judge evidence
identically, or the policy learns one thing and is elected by another. Everything that
reads a completion goes through `parse`, and every score is a pure function of the
parsed `Evidence` (plus log-probs for C). See DESIGN.md, "The evidence protocol".

The parser never raises: any string, however broken, becomes an `Evidence` record whose
flags say which parts were well formed.
"""

from __future__ import annotations

import math
import re
import string
from collections import Counter
from dataclasses import asdict, dataclass, field

# ---------------------------------------------------------------- prompt instructions

ANSWER_HINTS = {
    "option": "the letter of the correct option only",
    "yesno": "yes or no",
    "number": "a number only",
    "text": "a short answer",
}

INSTRUCTIONS = (
    "Each frame above is labelled 'Frame k (mm:ss.s)'. Reason about what the frames show, "
    "naming the frames you rely on (for example 'in Frame 3 ...'). Then list the frame "
    "numbers that support your answer, and give the final answer. Reply in exactly this form:\n"
    "<think>your reasoning, citing frames by number</think>\n"
    "<frames>the supporting frame numbers, comma-separated</frames>\n"
    "<answer>{hint}</answer>"
)

NEUTRAL_CONFIDENCE = 0.5  # C when the backend returns no log-probs: neither trusted nor distrusted
THINK_WORDS = (3, 400)  # think text must have this many words (inclusive bounds) to count as well formed
REASONED_WORDS = 8  # a think text this long counts as fully reasoned in T and R; shorter ones score less
MAX_CITED = 512  # citations beyond this are ignored, keeping pathological inputs cheap


def instructions(answer_type: str = "option") -> str:
    """The evidence-format instructions appended to every question prompt."""
    return INSTRUCTIONS.format(hint=ANSWER_HINTS.get(answer_type, ANSWER_HINTS["text"]))


def frame_caption(label: int, seconds: float) -> str:
    """The caption shown before frame `label`; the parser and the model share this form."""
    seconds = max(0.0, float(seconds))
    minutes, sec = divmod(seconds, 60.0)
    return f"Frame {label} ({int(minutes):02d}:{sec:04.1f})"


def format_evidence(think: str, frames: list[int], answer: str) -> str:
    """A completion in the protocol's format (used for SFT targets and tests)."""
    cited = ", ".join(str(f) for f in frames)
    return f"<think>{think}</think>\n<frames>{cited}</frames>\n<answer>{answer}</answer>"


# ---------------------------------------------------------------- parsing


@dataclass
class Evidence:
    """A completion parsed into the protocol's parts, with well-formedness flags."""

    think: str | None = None
    frames: list[int] = field(default_factory=list)  # cited labels, de-duplicated, in order
    answer_raw: str | None = None  # text inside the last <answer> tag, or a fallback span
    answer: str | None = None  # normalised answer (letter, yes/no, number, text), None if invalid
    has_think: bool = False
    has_frames: bool = False
    has_answer: bool = False
    tags_in_order: bool = False
    in_range: list[bool] = field(default_factory=list)  # per cited frame, given n_frames
    mentioned: list[int] = field(default_factory=list)  # frames named in the think text
    answer_span: tuple[int, int] | None = None  # char span of the answer in the completion

    def to_dict(self) -> dict:
        return asdict(self)


_TAG = {name: (re.compile(rf"<\s*{name}\s*>", re.I), re.compile(rf"<\s*/\s*{name}\s*>", re.I))
        for name in ("think", "frames", "answer")}
_NUMBER_LIST = re.compile(r"\d{1,6}(?:\s*(?:-|–|to)\s*\d{1,6})?", re.I)
_MENTION = re.compile(
    r"\bframes?\s*#?\s*(\d{1,6}(?:\s*(?:,|and|&|or|-|–|to)\s*#?\s*\d{1,6})*)", re.I
)
_BRACKETED = re.compile(r"^\s*[\(\[]\s*([A-Za-z])\s*[\)\]]")  # "(c) ..." in any case
_LETTER = re.compile(r"^\s*([A-Z])(?:[\s\.:,)]|$)")  # "B", "B. cat", "B) cat"; capitals only
_NUM = re.compile(r"[-+]?\d[\d,]*\.?\d*(?:[eE][-+]?\d+)?|[-+]?\.\d+")


def _span(text: str, name: str) -> tuple[int, int, bool] | None:
    """(start, end, closed) of the first well-opened tag's inner text; None if absent.

    For `answer` the *last* complete tag wins, since models sometimes restate answers.
    An unclosed tag runs to the next protocol tag or the end of the text.
    """
    open_re, close_re = _TAG[name]
    opens = list(open_re.finditer(text)) if name == "answer" else [open_re.search(text)]
    opens = [m for m in opens if m]
    for m in reversed(opens) if name == "answer" else opens:
        close = close_re.search(text, m.end())
        if close:
            return m.end(), close.start(), True
    if not opens:
        return None
    start = opens[-1].end() if name == "answer" else opens[0].end()
    nxt = re.compile(r"<\s*/?\s*(?:think|frames|answer)\s*>", re.I).search(text, start)
    return start, (nxt.start() if nxt else len(text)), False


def _numbers(s: str, limit: int = MAX_CITED) -> list[int]:
    """Integers in a citation list, expanding ranges like '3-5', de-duplicated in order."""
    out: list[int] = []
    for m in _NUMBER_LIST.finditer(s):
        parts = re.split(r"\s*(?:-|–|to)\s*", m.group(0), flags=re.I)
        lo = int(parts[0])
        hi = int(parts[-1]) if len(parts) > 1 else lo
        if hi < lo or hi - lo > limit:
            hi = lo
        for v in range(lo, hi + 1):
            if v not in out:
                out.append(v)
            if len(out) >= limit:
                return out
    return out


def mentioned_frames(think: str) -> list[int]:
    """Frame numbers the reasoning names ('frame 3', 'frames 2 and 5', 'frames 4-6')."""
    out: list[int] = []
    for m in _MENTION.finditer(think or ""):
        for v in _numbers(m.group(1)):
            if v not in out:
                out.append(v)
        if len(out) >= MAX_CITED:
            break
    return out


def parse(text: object, n_frames: int | None = None, answer_type: str = "option",
          options: list[str] | None = None) -> Evidence:
    """Turn any completion into an `Evidence` record. Never raises."""
    try:
        return _parse(text if isinstance(text, str) else str(text), n_frames, answer_type, options)
    except Exception:  # the contract is total; a parser bug must not crash a run
        return Evidence()


def _parse(text: str, n_frames, answer_type, options) -> Evidence:
    ev = Evidence()
    spans = {name: _span(text, name) for name in ("think", "frames", "answer")}
    if spans["think"]:
        s, e, _ = spans["think"]
        ev.think, ev.has_think = text[s:e].strip(), True
    if spans["frames"]:
        s, e, _ = spans["frames"]
        ev.frames, ev.has_frames = _numbers(text[s:e]), True
    if spans["answer"]:
        s, e, closed = spans["answer"]
        raw = text[s:e]
        lead = len(raw) - len(raw.lstrip())
        ev.answer_raw = raw.strip()
        ev.answer_span = (s + lead, s + lead + len(ev.answer_raw))
        ev.has_answer = closed and bool(ev.answer_raw)
    starts = [spans[n][0] for n in ("think", "frames", "answer") if spans[n]]
    ev.tags_in_order = len(starts) > 0 and starts == sorted(starts)
    if n_frames is not None:
        ev.in_range = [1 <= f <= n_frames for f in ev.frames]
    ev.mentioned = mentioned_frames(ev.think or "")
    source = ev.answer_raw if ev.answer_raw else _fallback_answer_text(text)
    ev.answer = normalize_answer(source, answer_type, options)
    return ev


def _fallback_answer_text(text: str) -> str:
    """Without an <answer> tag, read the answer from the text after any reasoning."""
    closing = list(re.finditer(r"<\s*/\s*(?:think|frames)\s*>", text, re.I))
    tail = text[closing[-1].end():] if closing else text
    return tail.strip()[:2000]


# ---------------------------------------------------------------- answer normalisation


def normalize_answer(raw: str | None, answer_type: str = "option",
                     options: list[str] | None = None) -> str | None:
    """Normalise an answer string for its question type; None when it is not valid.

    option: a letter among the offered options (also accepts the option's text);
    yesno: "yes" or "no"; number: a canonical decimal string; text: stripped text.
    """
    if raw is None:
        return None
    raw = raw.strip()
    if not raw:
        return None
    if answer_type == "option":
        return _option_letter(raw, options)
    if answer_type == "yesno":
        m = re.match(r"\W*(yes|no)\b", raw, re.I)
        return m.group(1).lower() if m else None
    if answer_type == "number":
        value = parse_number(raw)
        return None if value is None else format_number(value)
    return raw[:1000]


def _option_letter(raw: str, options: list[str] | None) -> str | None:
    n = len(options) if options else 26
    valid = {chr(ord("A") + i) for i in range(n)}
    m = _BRACKETED.match(raw) or _LETTER.match(raw)
    if not m and len(raw.strip(" .")) == 1:
        m = re.match(r"\s*([a-z])", raw)  # a lone lower-case letter
    if m and m.group(1).upper() in valid:
        return m.group(1).upper()
    if options:
        low = raw.lower().strip(" .")
        for i, opt in enumerate(options):
            if opt and low == opt.lower().strip(" ."):
                return chr(ord("A") + i)
    m = re.search(r"(?:answer|option)\s*(?:is|:)?\s*[\(\[]?([A-Z])\b", raw)
    if m and m.group(1) in valid:
        return m.group(1)
    return None


def parse_number(raw: str) -> float | None:
    """The first number in `raw` (commas as thousands separators), or None."""
    for m in _NUM.finditer(raw):
        token = m.group(0).replace(",", "")
        try:
            value = float(token)
        except ValueError:
            continue
        if math.isfinite(value):
            return value
    return None


def format_number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() and abs(value) < 1e15 else f"{value:.6g}"


def answer_is_valid(ev: Evidence) -> bool:
    return ev.answer is not None


def normalize_text(text: str | None) -> str:
    """SQuAD-style normalisation: lower case, no punctuation, no articles, single spaces."""
    s = (text or "").lower()
    s = "".join(ch for ch in s if ch not in _PUNCT)
    s = re.sub(r"\b(a|an|the)\b", " ", s)
    return " ".join(s.split())


_PUNCT = set(string.punctuation)


def token_f1(pred: str | None, gold: str | None) -> float:
    """Token-level F1 of normalised texts (SQuAD definition); 1.0 when both are empty.

    The one token F1 of the project: benchmark scorers, rewards and the election's free-text
    answer clusters all use it."""
    p, g = normalize_text(pred).split(), normalize_text(gold).split()
    if not p and not g:
        return 1.0
    if not p or not g:
        return 0.0
    same = sum((Counter(p) & Counter(g)).values())
    if same == 0:
        return 0.0
    precision, recall = same / len(p), same / len(g)
    return 2 * precision * recall / (precision + recall)


# ---------------------------------------------------------------- scores, each in [0, 1]


def transparency(ev: Evidence, options: list[str] | None = None) -> float:
    """T: the mean of five checks, each in [0, 1] (DESIGN.md, tightened so real outputs differ).

    tags: the share of the three tags present, halved when they are out of order;
    think: 0 outside THINK_WORDS, else rising with length up to REASONED_WORDS (a one-word
    or format-only think scores low); answer: valid for the question type;
    mention: the share of cited frames that the think text names (0 with no citation);
    agreement: 0 when the think text states an answer that contradicts the <answer> tag.
    """
    tags = (ev.has_think + ev.has_frames + ev.has_answer) / 3 * (1.0 if ev.tags_in_order else 0.5)
    think = _think_score(ev.think)
    answer = 1.0 if ev.answer is not None and ev.has_answer else 0.0
    mention = len(set(ev.mentioned) & set(ev.frames)) / len(set(ev.frames)) if ev.frames else 0.0
    stated = stated_answer(ev.think, options)
    agreement = 0.0 if stated is not None and ev.answer is not None and stated != ev.answer else 1.0
    return (tags + think + answer + mention + agreement) / 5


def _think_score(think: str | None) -> float:
    words = len((think or "").split())
    if not THINK_WORDS[0] <= words <= THINK_WORDS[1]:
        return 0.0
    return min(1.0, words / REASONED_WORDS)


_STATED = re.compile(r"\b(?:answer\s+is|option)\s*:?\s*\(?([A-Z])\b(?![\w'])")


def stated_answer(think: str | None, options: list[str] | None = None) -> str | None:
    """The option letter the reasoning itself concludes with ('... option B', 'answer is C'), if any."""
    found = _STATED.findall(think or "")
    if not found:
        return None
    n = len(options) if options else 26
    return found[-1] if ord(found[-1]) - ord("A") < n else None


def is_well_formed(ev: Evidence) -> bool:
    """Strict format gate: all three tags, in order, a think text within THINK_WORDS words,
    and a valid answer."""
    words = len((ev.think or "").split())
    return ev.has_think and ev.has_frames and ev.has_answer and ev.tags_in_order \
        and THINK_WORDS[0] <= words <= THINK_WORDS[1] and ev.answer is not None


def non_redundancy(text: str | None) -> float:
    """R: 1 - share of repeated word 4-grams, minus half the share of repeated sentences,
    scaled down for texts under REASONED_WORDS words (too short to show reasoning at all)."""
    words = re.findall(r"\w+", (text or "").lower())[:20000]
    grams = [tuple(words[i:i + 4]) for i in range(len(words) - 3)]
    repeated = 0.0
    if grams:
        counts = Counter(grams)
        repeated = sum(c - 1 for c in counts.values()) / len(grams)
    sentences = [s.strip().lower() for s in re.split(r"[.!?\n]+", text or "") if len(s.split()) >= 2]
    dup_sent = 0.0
    if sentences:
        dup_sent = (len(sentences) - len(set(sentences))) / len(sentences)
    length = min(1.0, len(words) / REASONED_WORDS)
    return max(0.0, min(1.0, (1.0 - repeated - 0.5 * dup_sent) * length))


def redundancy_text(ev: Evidence, completion: str) -> str:
    """The text R is computed on: the think text, or the whole completion without one."""
    return ev.think if ev.has_think and ev.think else completion


def confidence(token_logprobs: list[float] | None, tokens: list[str] | None = None,
               completion: str = "", ev: Evidence | None = None) -> float:
    """C: exp(mean token log-prob) over the answer span, else over the whole completion.

    Without log-probs it is NEUTRAL_CONFIDENCE. The span is located by the decoded token
    texts; when they do not concatenate to the completion, the whole completion is used.
    """
    lps = [lp for lp in (token_logprobs or []) if lp is not None and math.isfinite(lp)]
    if not lps:
        return NEUTRAL_CONFIDENCE
    span_lps = _answer_span_logprobs(token_logprobs, tokens, completion, ev)
    chosen = span_lps or lps
    return float(min(1.0, max(0.0, math.exp(sum(chosen) / len(chosen)))))


def _answer_span_logprobs(lps, tokens, completion, ev) -> list[float]:
    if not tokens or ev is None or ev.answer_span is None or len(tokens) != len(lps):
        return []
    if "".join(tokens) != completion:
        return []
    start, end = ev.answer_span
    out, pos = [], 0
    for tok, lp in zip(tokens, lps):
        nxt = pos + len(tok)
        if nxt > start and pos < end and lp is not None and math.isfinite(lp):
            out.append(lp)
        pos = nxt
    return out


def frame_validity(ev: Evidence, n_frames: int | None) -> float:
    """The share of cited frames that exist in the prompt; 0 with no citation."""
    if not ev.frames:
        return 0.0
    if n_frames is None:
        return 1.0
    return sum(1 <= f <= n_frames for f in ev.frames) / len(ev.frames)


def _matched(a: list[int], b: list[int], tol: int) -> int:
    """How many of `a` lie within ±tol of some frame of `b` (a set lookup: this runs K² times)."""
    near = {y + d for y in b for d in range(-tol, tol + 1)}
    return sum(x in near for x in a)


def frame_jaccard(a: list[int], b: list[int], tol: int = 1) -> float:
    """Jaccard agreement of two citation sets where frames within `tol` count as equal."""
    if not a or not b:
        return 0.0
    inter = (_matched(a, b, tol) + _matched(b, a, tol)) / 2
    union = len(a) + len(b) - inter
    return float(inter / union) if union > 0 else 0.0


def grounding_f1(cited: list[int], key: list[int], tol: int = 1) -> float | None:
    """G: F1 of cited frames against annotated key frames (±tol). None without key frames."""
    if not key:
        return None
    if not cited:
        return 0.0
    precision = _matched(cited, key, tol) / len(cited)
    recall = _matched(key, cited, tol) / len(key)
    return 0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall)


def cross_support(index: int, frames: list[list[int]], answers: list[str | None], tol: int = 1,
                  jaccard: list[list[float]] | None = None) -> float:
    """How well candidate `index`'s citations are corroborated by candidates with its answer.

    support = mean Jaccard with same-answer peers - 0.5 * mean Jaccard with different-answer
    peers, clipped to [0, 1]. Only valid candidates count (an answer of None is neither a peer
    nor a dissenter). With no same-answer peer the first mean is 0, so a lone dissenter never
    outranks a corroborated answer on E; with no different answer the second is 0. Frames also
    cited for other answers discriminate less, hence the penalty. `jaccard` (a precomputed
    pairwise frame_jaccard matrix) saves the K^2 recomputation inside an election.
    """
    if answers[index] is None:
        return 0.0
    same, diff = [], []
    for j, ans in enumerate(answers):
        if j == index or ans is None:
            continue
        jac = jaccard[index][j] if jaccard is not None else frame_jaccard(frames[index], frames[j], tol)
        (same if ans == answers[index] else diff).append(jac)
    s = sum(same) / len(same) if same else 0.0
    d = sum(diff) / len(diff) if diff else 0.0
    return max(0.0, min(1.0, s - 0.5 * d))


def jaccard_matrix(frames: list[list[int]], tol: int = 1) -> list[list[float]]:
    """Pairwise frame_jaccard, each symmetric pair computed once (K=8: 28 pairs, not 56)."""
    n = len(frames)
    m = [[0.0] * n for _ in range(n)]
    for i in range(n):
        for j in range(i + 1, n):
            m[i][j] = m[j][i] = frame_jaccard(frames[i], frames[j], tol)
    return m


def consistency(evidences: list[Evidence], n_frames: int | None, tol: int = 1,
                answers: list[str | None] | None = None) -> list[float]:
    """E for each candidate of one question: validity × cross-candidate support.

    `answers` overrides the parsed answers (the election passes its answer clusters)."""
    frames = [ev.frames for ev in evidences]
    answers = [ev.answer for ev in evidences] if answers is None else answers
    jac = jaccard_matrix(frames, tol)
    return [frame_validity(ev, n_frames) * cross_support(i, frames, answers, tol, jac)
            for i, ev in enumerate(evidences)]
