"""The refutation check (issue 10, item 1): its own short turn, appended to the candidates'
conversation, answered with a verdict, on top of the cached prefill.

With the real tiny transformers model: the check's yes/no log-probs and reply equal those of
a full forward of the whole conversation (so reusing the prefill changes nothing but cost),
and it runs no second prefill. With fake backends that reply like real models (sentences,
evidence-format text), verdicts are read from the reply, and replay reproduces them."""

from __future__ import annotations

import pytest

from rler_eval import election
from rler_eval.election import refute
from rler_eval.election.sources import LiveSource, ReplaySource
from rler_eval.models.base import GenerationRequest
from rler_eval.types import Candidate, Prompt, Sample
from tests.fixtures import evidence_prompt, random_frameset

SAMPLE = Sample(id="r", task="t", question="Which shape appears first?", answer="A",
                options=["red circle", "blue square", "green star"])


def make_prompt(n=4, seed=0, mode="images"):
    return evidence_prompt(SAMPLE, random_frameset(n, seed), mode)


@pytest.fixture(scope="module")
def backend():
    from rler_eval.models.hf import HFBackend
    from rler_eval.testing import tiny_model_dir

    return HFBackend(str(tiny_model_dir()), device="cpu")


def full_conversation_reference(backend, prompt, assistant_text, question, n_tokens):
    """Next-token log-probs and greedy tokens of the whole conversation, prefilled from scratch."""
    import torch

    from rler_eval.models.hf import video_input
    from rler_eval.prompt import chat_messages

    messages, images, framesets = chat_messages(prompt)
    more = messages + [{"role": "assistant", "content": [{"type": "text", "text": assistant_text}]},
                       {"role": "user", "content": [{"type": "text", "text": question}]}]
    text = backend.processor.apply_chat_template(more, tokenize=False, add_generation_prompt=True) + refute.PREFIX
    kwargs = {"text": [text], "return_tensors": "pt"}
    if images:
        kwargs["images"] = images
    if framesets:
        conv = [video_input(fs) for fs in framesets]
        kwargs["videos"], kwargs["video_metadata"] = [v for v, _ in conv], [m for _, m in conv]
    inputs = backend.processor(**kwargs)
    with torch.inference_mode():
        logits = backend.model(**inputs).logits[0, -1].float()
        out = backend.model.generate(**inputs, max_new_tokens=n_tokens, do_sample=False,
                                     eos_token_id=list(backend.stop_ids), pad_token_id=backend.tokenizer.pad_token_id)
    lp = torch.log_softmax(logits, -1)
    ids = out[0, inputs["input_ids"].shape[1]:].tolist()
    ids = ids[:next((i for i, t in enumerate(ids) if t in backend.stop_ids), len(ids))]
    return {w: float(torch.logsumexp(lp[backend._word_ids(w)], 0)) for w in ("yes", "no")}, ids


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["images", "video"])
def test_check_reuses_the_prefill_and_equals_a_full_forward(backend, mode):
    prompt = make_prompt(4, seed=3, mode=mode)
    cand = backend.generate([GenerationRequest(prompt, [0.0], [0], max_new_tokens=12)])[0][0]
    prefills = backend.stats["prefills"]
    question = refute.check_question("A", [1, 2], SAMPLE)
    res = backend.check(prompt, cand.text, question, refute.PREFIX, max_new_tokens=4)
    assert backend.stats["prefills"] == prefills  # the frames were not encoded again
    lps, ids = full_conversation_reference(backend, prompt, cand.text, question, 4)
    assert res["yes_logprob"] == pytest.approx(lps["yes"], abs=1e-3)
    assert res["no_logprob"] == pytest.approx(lps["no"], abs=1e-3)
    assert backend.tokenizer.decode(ids, skip_special_tokens=True) == res["reply"].text
    verdict, source = refute.read_verdict(res["reply"].text, res["yes_logprob"], res["no_logprob"])
    assert verdict in ("yes", "no") and source == "logprobs"


@pytest.mark.slow
def test_rler_with_the_real_tiny_model_gives_every_check_a_verdict(backend):
    prompt = make_prompt(4, seed=4)
    source = LiveSource(backend, prompt, 24, 0, "r")
    prefills = backend.stats["prefills"]
    pred = election.answer("rler@4", SAMPLE, source, 4, {"refute": True})
    checks = pred.refutation["checks"] if pred.refutation else []
    if pred.answer is not None or any(s["answer"] for s in pred.scores):
        assert checks and all(c["verdict"] in ("yes", "no") and c["prefill_reused"] for c in checks)
    assert backend.stats["prefills"] - prefills <= 1  # one prefill for candidates and checks together
    assert pred.model_calls == 1 + len(checks)
    replay = election.answer("rler@4", SAMPLE, ReplaySource.from_prediction(pred.to_dict()), 4, {"refute": True})
    assert replay.answer == pred.answer and replay.refutation == pred.refutation


# ---------------------------------------------------------------- fake backends that talk like models

GOOD = "<think>In frame {f} the {shape} is visible and nothing else is yet.</think>\n<frames>{f}</frames>\n<answer>{a}</answer>"


class ChattyBackend:
    """No `check` method (like an OpenAI-compatible server): the check is one more user turn,
    and the reply is a sentence, an evidence-format reply, or a think-first reply."""

    name = "chatty"

    def __init__(self, answers, replies):
        self.answers, self.replies, self.seen = list(answers), dict(replies), []

    def generate(self, requests):
        out = []
        for req in requests:
            last = req.prompt.content[-1]["text"]
            if "Answer with yes or no" in last:
                self.seen.append(last)
                letter = last.split('Is "')[1][0]
                reply = self.replies[letter]
                out.append([Candidate(reply, None, None, 0.0, req.seeds[0], len(reply.split()))])
                continue
            out.append([Candidate(GOOD.format(f=i % 2 + 1, shape="red circle", a=self.answers[i]), None, None, t, s, 20)
                        for i, (t, s) in enumerate(zip(req.temperatures, req.seeds))])
        return out


def prompt_only():
    return Prompt(content=[{"type": "text", "text": "frames and question"}], n_frames=4, key="k")


def test_sentence_replies_give_verdicts_and_can_elect_the_runner_up():
    replies = {"B": "No. Frame 1 shows the red circle first, not the blue square.",
               "A": "Yes, the red circle appears in frame 1 before anything else."}
    be = ChattyBackend("BBBAA", replies)
    pred = election.answer("rler@5", SAMPLE, LiveSource(be, prompt_only(), 32, 0, "r"), 4, {"refute": True})
    checks = pred.refutation["checks"]
    assert [c["verdict"] for c in checks] == ["no", "yes"] and {c["verdict_from"] for c in checks} == {"reply"}
    assert pred.refutation["outcome"] == "runner-up elected" and pred.answer == "A"
    assert "B. blue square" in be.seen[0] and "Your answer was" in be.seen[0]  # the check names the option
    assert pred.model_calls == 3
    replay = election.answer("rler@5", SAMPLE, ReplaySource.from_prediction(pred.to_dict()), 4, {"refute": True})
    assert replay.answer == "A" and replay.refutation == pred.refutation and replay.model_calls == 3


def test_replies_without_a_verdict_keep_the_vote():
    replies = {"B": "<think>In frame 1 the red circle", "A": "yes"}
    pred = election.answer("rler@5", SAMPLE, LiveSource(ChattyBackend("BBBAA", replies), prompt_only(), 32, 0, "r"),
                           4, {"refute": True})
    assert pred.refutation["checks"][0]["verdict"] is None and pred.answer == "B"
    assert pred.refutation["outcome"] == "kept"


@pytest.mark.parametrize("text,verdict", [
    ("Yes.", "yes"), (" no, frame 2 shows a square", "no"), ("<think>frame 3 shows it</think><answer>Yes</answer>", "yes"),
    ("<frames>1</frames>\n<answer>B</answer>", None), ("I cannot tell", None), ("Nothing matches; no.", "no")])
def test_parse_yes_no(text, verdict):
    assert refute.parse_yes_no(text) == verdict


def test_logprobs_decide_when_given():
    assert refute.read_verdict("<answer>B", -1.0, -2.0) == ("yes", "logprobs")
    assert refute.read_verdict("Yes", -3.0, -0.5) == ("no", "logprobs")
    assert refute.read_verdict("Yes", None, None) == ("yes", "reply")
