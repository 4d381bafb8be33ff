"""The refutation check: after the vote, ask the model whether the elected answer holds.

Why it looks like this (issue 10): the first version appended "reply with yes or no only"
after the evidence-format instructions and allowed 8 new tokens, so every model answered in
the evidence format and no check ever produced a verdict. Now the check is its own short
turn, appended to the candidates' conversation: the model's elected completion as the
assistant turn, then a user turn asking yes or no, then a forced "Answer:" prefix. A
backend that can (the transformers backend) runs it on top of the candidates' cached
prefill and returns the log-probs of "yes" and "no" after the prefix; the verdict is read
from those, else from the reply text. On "no", the runner-up is checked; it replaces the
winner only if its own check says "yes".
"""

from __future__ import annotations

import re

from rler_eval.election.vote import Vote, best_member, representative

CHECK_QUESTION = ('Look at the frames again. Is "{answer}" the correct answer to the question{frames}? '
                  "Answer with yes or no.")
PREFIX = "Answer:"
# Off by default: on rler-tiny (synthvid, 500 questions) it says "no" for nearly every winner
# (it was never trained on yes/no), and its few overturns were mostly right -> wrong (README,
# "The election on rler-tiny"), while taking 1.9-3x the model calls.
# `--set refute=true` turns it on; re-measure with `make results-election` after a model change.
DEFAULT_ON = False


def answer_text(answer: str, sample) -> str:
    """The answer as the check names it: 'B. the yellow circle' for an option, else as is."""
    if sample.answer_type == "option" and sample.options and len(answer) == 1:
        i = ord(answer) - ord("A")
        if 0 <= i < len(sample.options):
            return f"{answer}. {sample.options[i]}"
    return answer


def check_question(answer: str, frames: list[int], sample) -> str:
    cited = f", as frames {', '.join(map(str, frames))} show" if frames else ""
    return CHECK_QUESTION.format(answer=answer_text(answer, sample), frames=cited)


_TAGS = re.compile(r"<\s*/?\s*(?:think|frames|answer)\s*>", re.I)


def parse_yes_no(text: str | None) -> str | None:
    """'yes'/'no' from a reply: the <answer> tag if any, else the first yes or no word."""
    if not text:
        return None
    m = re.search(r"<\s*answer\s*>\s*\W*(yes|no)\b", text, re.I)
    if m:
        return m.group(1).lower()
    m = re.search(r"\b(yes|no)\b", _TAGS.sub(" ", text), re.I)
    return m.group(1).lower() if m else None


def read_verdict(reply_text: str | None, yes_lp: float | None, no_lp: float | None) -> tuple[str | None, str | None]:
    """(verdict, where it came from): the yes/no log-probs when given, else the reply text."""
    if yes_lp is not None and no_lp is not None:
        return ("yes" if yes_lp >= no_lp else "no"), "logprobs"
    v = parse_yes_no(reply_text)
    return v, ("reply" if v else None)


def refutation(sample, source, cands, rows: list[dict], v: Vote, cfg) -> dict | None:
    """Check the winner; on "no", check the runner-up and elect it only on its "yes"."""
    if v.winner is None:
        return None
    checks = [check(sample, source, cands, rows, v.winner, v.answer, cfg)]
    outcome, elected = "kept", v.answer
    if checks[0]["verdict"] == "no":
        outcome = "refuted, no runner-up; kept"
        if len(v.ranking) > 1:
            label = v.ranking[1]
            ans = representative(rows, label, sample.answer_type)
            checks.append(check(sample, source, cands, rows, label, ans, cfg))
            if checks[1]["verdict"] == "yes":
                outcome, elected = "runner-up elected", ans
            else:
                outcome = "refuted, runner-up not supported; kept"
    return {"checks": checks, "outcome": outcome, "elected": elected}


def check(sample, source, cands, rows, label, answer, cfg) -> dict:
    """One check of cluster `label`, replying to its best candidate's own completion."""
    idx = best_member(rows, label)
    question = check_question(answer, rows[idx]["frames"], sample)
    res = source.check(question, cands[idx].text, cfg.refute_tokens, idx)
    out = {"answer": answer, "question": question, "reply_to": idx, "verdict": None, "verdict_from": None,
           "yes_logprob": None, "no_logprob": None, "reply": None}
    if res is not None:
        reply = res["reply"]
        out.update(yes_logprob=res.get("yes_logprob"), no_logprob=res.get("no_logprob"),
                   reply=reply.to_dict() if reply is not None else None, prefill_reused=res.get("prefill_reused"))
        out["verdict"], out["verdict_from"] = read_verdict(reply.text if reply is not None else None,
                                                           out["yes_logprob"], out["no_logprob"])
    return out
