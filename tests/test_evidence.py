"""The evidence protocol: the parser is total, and each score orders completions as designed."""

import math

from hypothesis import given, settings, strategies as st

from rler_eval import evidence
from rler_eval.evidence import parse

GOOD = ("<think>In Frame 2 the red square enters; by Frame 5 it has left the scene.</think>\n"
        "<frames>2, 5</frames>\n<answer>B</answer>")
OPTIONS = ["red", "blue", "green", "yellow"]

tag = st.sampled_from(["<think>", "</think>", "<frames>", "</frames>", "<answer>", "</answer>",
                       "< think >", "</ANSWER>", "Frame 3", "frames 1-4", "<", ">", "/"])
messy = st.lists(st.one_of(st.text(max_size=40), tag), max_size=60).map("".join)


@settings(max_examples=300, deadline=None)
@given(messy, st.one_of(st.none(), st.integers(0, 64)), st.sampled_from(["option", "yesno", "number", "text"]))
def test_parser_never_raises_and_scores_stay_in_unit_interval(text, n, answer_type):
    ev = parse(text, n, answer_type, OPTIONS)
    for score in (evidence.transparency(ev), evidence.non_redundancy(text),
                  evidence.frame_validity(ev, n), evidence.confidence([-0.1, -2.0], None, text, ev)):
        assert 0.0 <= score <= 1.0
    if n is not None:
        assert len(ev.in_range) == len(ev.frames)


@settings(max_examples=5, deadline=None)
@given(st.text(min_size=1, max_size=5))
def test_parser_handles_huge_unicode_and_nested_input(piece):
    huge = ("<think>" + "é🙂 frame 3 " * 12000 + "<think>nested</think>" + piece) * 2
    assert len(huge) > 100_000
    ev = parse(huge, 8)
    assert ev.has_think
    assert evidence.non_redundancy(ev.think) < 0.5  # massively repeated text


def test_well_formed_completion_parses_fully():
    ev = parse(GOOD, n_frames=8, answer_type="option", options=OPTIONS)
    assert (ev.has_think, ev.has_frames, ev.has_answer, ev.tags_in_order) == (True, True, True, True)
    assert ev.frames == [2, 5] and ev.in_range == [True, True]
    assert ev.answer == "B" and ev.mentioned == [2, 5]
    assert evidence.transparency(ev) == 1.0 and evidence.is_well_formed(ev)


def test_missing_and_broken_tags_lower_transparency():
    full = evidence.transparency(parse(GOOD, 8, "option", OPTIONS))
    no_frames = evidence.transparency(parse(GOOD.replace("<frames>2, 5</frames>", ""), 8, "option", OPTIONS))
    unordered = evidence.transparency(parse("<answer>B</answer><frames>2</frames><think>Frame 2 shows it</think>",
                                            8, "option", OPTIONS))
    plain = evidence.transparency(parse("B", 8, "option", OPTIONS))
    assert full > no_frames > plain and full > unordered
    assert parse("B", 8, "option", OPTIONS).answer == "B"  # bare answers still parse


def test_answer_normalisation_by_type():
    assert evidence.normalize_answer("(c) green", "option", OPTIONS) == "C"
    assert evidence.normalize_answer("yellow", "option", OPTIONS) == "D"
    assert evidence.normalize_answer("E", "option", OPTIONS) is None  # not an offered option
    assert evidence.normalize_answer("The answer is B.", "option", OPTIONS) == "B"
    assert evidence.normalize_answer("Yes, it does", "yesno") == "yes"
    assert evidence.normalize_answer("maybe", "yesno") is None
    assert evidence.normalize_answer("about 1,250.0 cm", "number") == "1250"
    assert evidence.normalize_answer("  ", "text") is None


def test_frame_ranges_and_out_of_range_citations():
    ev = parse("<think>frames 3-5 and frame 9</think><frames>3-5, 9</frames><answer>A</answer>", 8)
    assert ev.frames == [3, 4, 5, 9] and ev.in_range == [True, True, True, False]
    assert evidence.frame_validity(ev, 8) == 0.75
    assert evidence.frame_validity(parse("<answer>A</answer>"), 8) == 0.0


def test_last_answer_tag_wins_and_unclosed_answer_is_not_well_formed():
    ev = parse("<answer>A</answer> wait, no <answer>C</answer>", 4, "option", OPTIONS)
    assert ev.answer == "C"
    ev2 = parse("<think>Frame 1 shows it clearly here</think><frames>1</frames><answer>C", 4, "option", OPTIONS)
    assert ev2.answer == "C" and not ev2.has_answer and not evidence.is_well_formed(ev2)


def test_non_redundancy_penalises_repetition():
    varied = "The cube moves left in frame 2, then turns blue in frame 4, and exits in frame 7."
    looped = "The cube moves left. " * 10
    assert evidence.non_redundancy(varied) == 1.0
    assert evidence.non_redundancy(looped) < 0.3


def test_confidence_uses_answer_span_when_tokens_align():
    text = "<think>x</think><answer>B</answer>"
    tokens = ["<think>", "x", "</think>", "<answer>", "B", "</answer>"]
    lps = [-0.1, -3.0, -0.1, -0.1, -0.05, -0.1]
    ev = parse(text)
    assert math.isclose(evidence.confidence(lps, tokens, text, ev), math.exp(-0.05))
    # misaligned tokens fall back to the whole completion; no log-probs give the neutral value
    assert math.isclose(evidence.confidence(lps, ["zz"] * 6, text, ev), math.exp(sum(lps) / len(lps)))
    assert evidence.confidence(None, None, text, ev) == evidence.NEUTRAL_CONFIDENCE


def test_grounding_f1_with_tolerance():
    assert evidence.grounding_f1([3, 4], [4]) == 1.0
    assert evidence.grounding_f1([1], [6]) == 0.0
    assert evidence.grounding_f1([], [6]) == 0.0
    assert evidence.grounding_f1([2], []) is None
    assert 0 < evidence.grounding_f1([2, 8], [2, 5]) < 1


def test_consistency_rewards_agreeing_citations():
    agree = [parse(f"<frames>{f}</frames><answer>A</answer>") for f in ("2, 3", "2, 3", "3")]
    dissent = parse("<frames>7</frames><answer>B</answer>")
    e = evidence.consistency(agree + [dissent], n_frames=8)
    assert all(0 <= x <= 1 for x in e)
    assert e[0] > e[3]  # corroborated citations beat a lone dissent
    lone = evidence.consistency([parse("<answer>A</answer>")], 8)
    assert lone == [0.0]  # no citation, no evidence


def test_caption_and_format_round_trip():
    assert evidence.frame_caption(3, 72.5) == "Frame 3 (01:12.5)"
    text = evidence.format_evidence("In Frame 3 the ball is red.", [3], "A")
    ev = parse(text, 8, "option", OPTIONS)
    assert ev.answer == "A" and ev.frames == [3] and evidence.is_well_formed(ev)
