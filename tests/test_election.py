"""Election tests with no model: the strategies' contracts, ties, the scores E T R on
hand-made candidates, and property tests (order independence without ties, monotonicity,
score range, abstention). What RLER does on real recorded candidate sets is in
test_election_fixture.py; the refutation check in test_election_refute.py; the end-to-end
run in test_election_e2e.py."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rler_eval import election, evidence
from rler_eval.election.sources import ReplaySource
from rler_eval.errors import TaskError
from rler_eval.types import Candidate, Prompt, Sample

N_FRAMES = 16
LETTERS = "ABCD"
WORDS = "the cup moves left while ball stays red square turns blue then circle appears near edge".split()


def make_text(answer, frames, well_formed, rng, repeat=False):
    names = ", ".join(str(f) for f in frames)
    body = " ".join(rng.choice(WORDS) for _ in range(12))
    think = f"In frame {frames[0]} {body}." if frames else body
    if repeat:
        think = " ".join([think] * 3)
    if not well_formed:  # typical malformations: no frames tag, or no think
        return f"{think} so the answer is <answer>{answer}</answer>" if rng.random() < 0.5 \
            else f"<frames>{names}</frames><answer>{answer}</answer>"
    return f"<think>{think}</think>\n<frames>{names}</frames>\n<answer>{answer}</answer>"


# ---------------------------------------------------------------- contracts


def test_specs_and_overrides():
    assert election.parse_spec("majority@8") == ("majority", 8)
    assert election.parse_spec("rler") == ("rler", None)
    for bad in ("vote@3", "majority", "rler@0", "rler@x"):
        with pytest.raises(TaskError):
            election.parse_spec(bad)
    with pytest.raises(TaskError, match="unknown election setting 'wE'"):
        election.make_config({"wE": 1})
    with pytest.raises(TaskError, match="bad value"):
        election.make_config({"delta": "big"})
    with pytest.raises(TaskError, match="renamed to 'c_exponent'"):
        election.make_config({"w_C": 0})
    cfg = election.make_config({"delta": "0.4", "refute": "false", "temperatures": "0,0.5"})
    assert cfg.delta == 0.4 and cfg.refute is False and cfg.temperatures == (0.0, 0.5)


def test_adaptive_stops_early_when_confident_and_goes_on_otherwise():
    sample = Sample(id="s", task="t", question="?", answer="B", options=["a", "b", "c"])
    rng = random.Random(0)
    agree = [Candidate(make_text("B", [2, 3], True, rng), [-0.1] * 4, None, 0.0, 0, 4) for _ in range(8)]
    pred = election.answer("rler", sample, ReplaySource(agree), 8, {"refute": False})
    assert pred.n_candidates == 2 and pred.election["stop"] == "confident" and pred.answer == "B"
    split = [Candidate(make_text("AB"[i % 2], [2, 3], True, rng), [-0.1] * 4, None, 0.0, i, 4) for i in range(8)]
    pred = election.answer("rler", sample, ReplaySource(split), 8, {"refute": False, "k_max": 6, "delta": 0.9})
    assert pred.n_candidates == 6 and pred.election["stop"] == "k_max"
    pred = election.answer("rler", sample, ReplaySource(split), 8, {"refute": False, "delta": 0.3})
    assert pred.n_candidates == 3 and pred.election["stop"] == "confident"  # A, B, A: margin >= 1/3
    pred = election.answer("rler", sample, ReplaySource(split[:4]), 8, {"refute": False, "delta": 0.9})
    assert pred.election["stop"] == "exhausted" and pred.n_candidates == 4


def test_numbers_and_text_votes():
    num = Sample(id="n", task="t", question="?", answer="10", answer_type="number")
    texts = ["<answer>10</answer>", "<answer>10.2</answer>", "<answer>9.9</answer>", "<answer>40</answer>"]
    pred = election.answer("majority@4", num, ReplaySource([Candidate(t) for t in texts]), 4)
    assert pred.answer == "10" and pred.vote["10"] == 3
    txt = Sample(id="x", task="t", question="?", answer="a red ball", answer_type="text")
    texts = ["<answer>a red ball</answer>", "<answer>the red ball</answer>", "<answer>blue cube</answer>"]
    pred = election.answer("majority@3", txt, ReplaySource([Candidate(t) for t in texts]), 4)
    assert pred.answer in ("a red ball", "the red ball") and max(pred.vote.values()) == 2


# ---------------------------------------------------------------- properties

answers_st = st.sampled_from(["A", "B", "C", "D", "E", "maybe", ""])
cand_st = st.builds(
    lambda ans, frames, wf, lp, seed: Candidate(
        make_text(ans, frames or [1], wf, random.Random(seed)), [lp] * 3, None, 0.7, seed, 3),
    answers_st, st.lists(st.integers(-2, 20), max_size=4), st.booleans(),
    st.floats(-5, 0), st.integers(0, 1000))
SAMPLE = Sample(id="p", task="t", question="?", answer="A", options=["a", "b", "c", "d"])
FIXED = ["majority@8", "best_of@8", "rler@8"]


@settings(max_examples=60, deadline=None)
@given(st.lists(cand_st, min_size=1, max_size=8), st.randoms(use_true_random=False),
       st.sampled_from(FIXED))
def test_fixed_k_is_order_independent_unless_tied(cands, rnd, spec):
    """Only an exact tie may depend on the draw order (it goes to the earliest drawn)."""
    shuffled = list(cands)
    rnd.shuffle(shuffled)
    a = election.answer(spec, SAMPLE, ReplaySource(cands), 8, {"refute": False})
    b = election.answer(spec, SAMPLE, ReplaySource(shuffled), 8, {"refute": False})
    if a.election.get("tie_break") != "first drawn" and b.election.get("tie_break") != "first drawn" \
            and spec != "best_of@8":
        assert a.answer == b.answer
    elif spec == "best_of@8":
        cs = sorted((s["C"] for s in a.scores if s["cluster"] is not None), reverse=True)
        if len(cs) < 2 or cs[0] != cs[1]:
            assert a.answer == b.answer


@settings(max_examples=60, deadline=None)
@given(st.lists(cand_st, min_size=1, max_size=7), st.sampled_from(["majority@8", "rler@8"]))
def test_adding_a_copy_of_a_winning_candidate_keeps_the_winner(cands, spec):
    a = election.answer(spec, SAMPLE, ReplaySource(cands), 8, {"refute": False})
    if a.answer is None:
        return
    best = max((i for i, s in enumerate(a.scores) if s["answer"] == a.answer), key=lambda i: a.scores[i]["weight"])
    b = election.answer(spec, SAMPLE, ReplaySource(cands + [cands[best]]), 8, {"refute": False})
    assert b.answer == a.answer


@settings(max_examples=60, deadline=None)
@given(st.lists(cand_st, min_size=1, max_size=8))
def test_scores_stay_in_unit_interval(cands):
    pred = election.answer("rler@8", SAMPLE, ReplaySource(cands), 8, {"refute": False})
    frames = [s["frames"] for s in pred.scores]
    labels = [s["cluster"] for s in pred.scores]
    for i, s in enumerate(pred.scores):
        for k in ("E", "C", "T", "R", "weight"):
            assert 0.0 <= s[k] <= 1.0, (k, s)
        # E is exactly validity x evidence.cross_support (the one implementation)
        ev = evidence.parse(cands[i].text, 8, "option", SAMPLE.options)
        expected = evidence.frame_validity(ev, 8) * evidence.cross_support(i, frames, labels, 1)
        assert s["E"] == pytest.approx(expected, abs=1e-6)
        if s["cluster"] is not None and sum(x == s["cluster"] for x in labels) == 1:
            assert s["E"] == 0.0  # a lone answer has no corroboration


@settings(max_examples=30, deadline=None)
@given(st.lists(st.text(max_size=40), min_size=1, max_size=8), st.sampled_from(FIXED + ["rler", "greedy"]))
def test_all_invalid_abstains(texts, spec):
    cands = [Candidate(f"<answer>Z{t}</answer>" if i % 2 else t.replace("A", "")) for i, t in enumerate(texts)]
    cands = [c for c in cands if election.score_candidates([c], SAMPLE, 8, election.ElectionConfig())[0]["answer"] is None]
    if not cands:
        return
    pred = election.answer(spec, SAMPLE, ReplaySource(cands), 8, {})
    assert pred.answer is None and pred.abstain_reason


# ---------------------------------------------------------------- ties (issue 10, item 3)

OPTS4 = Sample(id="t", task="t", question="?", answer="B", options=["a", "b", "c", "d"])


def cand(answer, frames=(2,), lp=-0.3, think="In frame 2 the circle moves to the left edge of the scene."):
    text = evidence.format_evidence(think, list(frames), answer)
    return Candidate(text, [lp] * 4 if lp is not None else None, None, 0.0, 0, 4)


def test_even_majority_tie_goes_to_confidence_then_first_drawn_never_the_alphabet():
    # B drawn first, A second: equal counts, equal confidence -> the first drawn (B), not "A"
    pred = election.answer("majority@2", OPTS4, ReplaySource([cand("B"), cand("A")]), 8)
    assert pred.answer == "B" and pred.election["tie_break"] == "first drawn"
    pred = election.answer("majority@2", OPTS4, ReplaySource([cand("A"), cand("B")]), 8)
    assert pred.answer == "A"
    # equal counts, A more confident -> A, whatever the order
    for cands in ([cand("B", lp=-1.0), cand("A", lp=-0.1)], [cand("A", lp=-0.1), cand("B", lp=-1.0)]):
        pred = election.answer("majority@2", OPTS4, ReplaySource(cands), 8)
        assert pred.answer == "A" and pred.election["tie_break"] == "confidence"


def test_best_of_without_logprobs_says_it_degrades_to_first_drawn():
    cands = [cand("C", lp=None), cand("A", lp=None), cand("B", lp=None)]
    pred = election.answer("best_of@3", OPTS4, ReplaySource(cands), 8)
    assert pred.answer == "C" and "first drawn" in pred.election["note"]
    cands = [Candidate("no answer here", None), cand("D", lp=None), cand("A", lp=None)]
    assert election.answer("best_of@3", OPTS4, ReplaySource(cands), 8).answer == "D"
    with_lp = [cand("C", lp=-0.9), cand("A", lp=-0.2), cand("B", lp=-0.2)]
    pred = election.answer("best_of@3", OPTS4, ReplaySource(with_lp), 8)
    assert pred.answer == "A" and pred.election["note"] is None  # highest C; A and B tie -> earliest


# ---------------------------------------------------------------- E (issue 10, item 2)


def test_lone_dissenter_never_outranks_a_supported_answer_on_E():
    # the dissenter cites the same frames as everyone: the old neutral 0.5 let it match the majority
    cands = [cand("B", (2, 3)), cand("B", (5, 6)), cand("A", (2, 3))]
    rows = election.score_candidates(cands, OPTS4, 8, election.ElectionConfig())
    assert rows[2]["E"] == 0.0 and min(rows[0]["E"], rows[1]["E"]) >= rows[2]["E"]
    # corroborated citations raise E; citations shared with another answer lower it
    cands = [cand("B", (2, 3)), cand("B", (2, 3)), cand("A", (7,)), cand("A", (2, 3))]
    rows = election.score_candidates(cands, OPTS4, 8, election.ElectionConfig())
    assert rows[0]["E"] == pytest.approx(1 - 0.5 * 0.5)  # same-answer peer 1.0, others mean 0.5
    assert rows[2]["E"] == 0.0  # its same-answer peer cites other frames, B's peers share them


def test_invalid_candidates_are_not_dissent():
    good = [cand("B", (2, 3)), cand("B", (2, 3))]
    base = election.score_candidates(good, OPTS4, 8, election.ElectionConfig())
    junk = good + [Candidate("<think>frame 2 and frame 3</think><frames>2, 3</frames><answer>Q</answer>", [-0.1])]
    rows = election.score_candidates(junk, OPTS4, 8, election.ElectionConfig())
    assert rows[2]["answer"] is None and rows[2]["weight"] == 0.0
    assert [r["E"] for r in rows[:2]] == [r["E"] for r in base] == [1.0, 1.0]


def test_weight_cap_binds_at_k2():
    cfg = election.ElectionConfig(weight_cap=2.0)
    cands = [cand("B", lp=-0.01), cand("A", lp=-3.0)]
    rows = election.score_candidates(cands, OPTS4, 8, cfg)
    assert rows[0]["raw_weight"] > 2 * rows[1]["weight"]
    assert rows[0]["weight"] == pytest.approx(2 * rows[1]["weight"], abs=2e-6)


# ---------------------------------------------------------------- T and R (issue 10, item 2)


@pytest.mark.parametrize("think", ["B", "f3", "Frame 3", "In frame 3."])
def test_one_word_or_format_only_think_scores_below_a_reasoned_one(think):
    reasoned = "In frame 3 the red square is at the left edge and in frame 5 it is at the right."
    good = evidence.parse(evidence.format_evidence(reasoned, [3, 5], "B"), 8, "option", OPTS4.options)
    poor = evidence.parse(evidence.format_evidence(think, [3], "B"), 8, "option", OPTS4.options)
    assert evidence.transparency(poor) < evidence.transparency(good) - 0.1
    assert evidence.non_redundancy(poor.think) < evidence.non_redundancy(good.think) - 0.3
    assert evidence.is_well_formed(good) and (len(think.split()) >= 3 or not evidence.is_well_formed(poor))


def test_T_sees_a_think_that_contradicts_its_answer_and_unnamed_citations():
    text = "In frame 2 the square is yellow. So the answer is yellow, option {}."
    agree = evidence.parse(evidence.format_evidence(text.format("B"), [2], "B"), 8, "option", OPTS4.options)
    clash = evidence.parse(evidence.format_evidence(text.format("D"), [2], "B"), 8, "option", OPTS4.options)
    unnamed = evidence.parse(evidence.format_evidence(text.format("B"), [1], "B"), 8, "option", OPTS4.options)
    assert evidence.stated_answer(clash.think) == "D"
    t = evidence.transparency
    assert t(agree, OPTS4.options) == 1.0 and t(clash, OPTS4.options) == 0.8 and t(unnamed, OPTS4.options) == 0.8


# ---------------------------------------------------------------- official extraction (issue 10, item 4)


def test_reply_without_answer_tag_is_read_by_the_official_extractor():
    from rler_eval.benchmarks import get_benchmark
    from rler_eval.runner import official_extractor, score_prediction

    vm = get_benchmark("videomme")
    sample = Sample(id="v", task="videomme", question="?", answer="B", options=["a", "b", "c", "d"])
    replies = ["I think B is right", "The answer is (C)", "B", "b. something", "<think>x</think> no idea"]
    for text in replies:
        official = vm.score(sample, text)
        for raw in (False, True):
            pred = election.answer("greedy", sample, ReplaySource([Candidate(text)]), 0,
                                   extract=official_extractor(vm, sample))
            got = score_prediction(vm, sample, pred, raw_reply=raw)
            assert got["score"] == official["score"], (text, raw)
            assert pred.answer == official["extracted"], text  # the same reading, before any vote
    # without the extractor "I think B is right" is an abstention: the bug this fixes
    assert election.answer("greedy", sample, ReplaySource([Candidate("I think B is right")]), 0).answer is None


def test_election_package_imports_no_benchmark_runner_or_task_module():
    import ast
    from pathlib import Path

    pkg = Path(election.__file__).parent
    banned = ("rler_eval.benchmarks", "rler_eval.runner", "rler_eval.tasks")
    for path in pkg.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            assert not any(n.startswith(banned) for n in names), (path.name, names)
