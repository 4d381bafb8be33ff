"""The cached LLM judge: verdict parsing, configuration, and the HTTP client against a real
OpenAI-compatible server (`transformers serve` with the tiny random model) on loopback.

The tiny model is random, so these tests check the plumbing (request sent, reply parsed
into a verdict or a clear "unparseable", cache hit on the second call), not the verdict.
"""

import json

import pytest

from rler_eval.benchmarks import judge
from rler_eval.benchmarks.judge import Judge, JudgeConfig
from rler_eval.types import Sample


def test_correct_incorrect_follows_tempcompass_rule():
    assert judge.correct_incorrect("Correct") == 1.0
    assert judge.correct_incorrect("Incorrect.") == 0.0
    assert judge.correct_incorrect("The prediction is Correct") == 1.0
    assert judge.correct_incorrect("It is Incorrect, not Correct") == 0.0  # "Incorrect" present -> 0
    assert judge.correct_incorrect("correct") is None  # case-sensitive, as the official rule
    assert judge.correct_incorrect("") is None and judge.correct_incorrect(None) is None


def test_unit_score_is_a_bare_number_within_range():
    assert judge.unit_score("0.8") == 0.8
    assert judge.unit_score(" 1 \n") == 1.0
    assert judge.unit_score("1.7") is None and judge.unit_score("-3") is None  # off scale: a failure, no clamp
    assert judge.unit_score("Score: 0.8") is None  # official: non-numeric reply -> failed, 0
    assert judge.unit_score("nan") is None and judge.unit_score(None) is None


def test_configuration_from_env_and_card(monkeypatch, tmp_path):
    for k in ("RLER_JUDGE_BASE_URL", "RLER_JUDGE_MODEL", "RLER_JUDGE", "RLER_JUDGE_API_KEY", "OPENAI_API_KEY"):
        monkeypatch.delenv(k, raising=False)
    assert judge.get_judge() is None and judge.describe() == judge.FALLBACK
    monkeypatch.setenv("RLER_JUDGE_MODEL", "gpt-4o-mini")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-x")
    j = judge.get_judge()
    assert j.config.base_url == judge.OPENAI_URL and j.config.api_key == "sk-x" and j.config.temperature == 0.0
    monkeypatch.setenv("RLER_JUDGE", "off")
    assert judge.get_judge() is None

    class Card:
        args = {"judge": {"base_url": "http://127.0.0.1:9/v1", "model": "m"}}
    monkeypatch.delenv("RLER_JUDGE")
    j = judge.get_judge(Card)
    assert (j.config.base_url, j.config.model) == ("http://127.0.0.1:9/v1", "m")
    assert judge.get_judge(Card) is j  # one client per configuration


def test_cache_key_depends_on_every_request_field(tmp_path):
    a = Judge(JudgeConfig("http://x/v1", "m", cache_dir=str(tmp_path)))
    b = Judge(JudgeConfig("http://x/v1", "m2", cache_dir=str(tmp_path)))
    k = a.request_key("sys", "p")
    assert k == a.request_key("sys", "p")
    assert len({k, a.request_key("sys2", "p"), a.request_key("sys", "p2"), b.request_key("sys", "p")}) == 4


from conftest import free_port  # noqa: E402


def test_unreachable_server_gives_none_and_caches_nothing(tmp_path):
    j = Judge(JudgeConfig(f"http://127.0.0.1:{free_port()}/v1", "m", cache_dir=str(tmp_path), max_retries=1,
                          timeout=5))
    assert j.ask("Is this right?") is None
    assert j.stats == {"http_calls": 2, "cache_hits": 0, "failures": 1}
    assert not list(tmp_path.rglob("*.json"))


# ---------------------------------------------------------------- a real server on loopback


# the `server` fixture (a real `transformers serve` on loopback) is in tests/conftest.py


@pytest.mark.slow
def test_real_server_reply_verdict_and_cache(server, tmp_path):
    j = Judge(JudgeConfig(server["url"], server["model"], cache_dir=str(tmp_path), max_tokens=8, max_retries=0))
    prompt = 'Question: What colour?\nGround-Truth Answer: red\nModel Prediction: red\nReply "Correct" or "Incorrect".'
    reply = j.ask(prompt, "You are a judge.")
    assert isinstance(reply, str) and j.stats["http_calls"] == 1 and j.stats["cache_hits"] == 0
    # a random model's reply is a verdict or clearly unparseable, never an exception
    assert judge.correct_incorrect(reply) in (0.0, 1.0, None)
    assert judge.unit_score(reply) is None or 0.0 <= judge.unit_score(reply) <= 1.0
    cached = list(tmp_path.rglob("*.json"))
    assert len(cached) == 1 and json.loads(cached[0].read_text())["prompt"] == prompt
    again = Judge(JudgeConfig(server["url"], server["model"], cache_dir=str(tmp_path), max_tokens=8))
    assert again.ask(prompt, "You are a judge.") == reply
    assert again.stats == {"http_calls": 0, "cache_hits": 1, "failures": 0}


@pytest.mark.slow
def test_real_server_through_wildvideo_and_tempcompass_scoring(server, tmp_path, monkeypatch):
    from rler_eval.benchmarks import tempcompass, wildvideo
    from rler_eval.tasks import card_from_dict

    monkeypatch.setenv("RLER_JUDGE_BASE_URL", server["url"])
    monkeypatch.setenv("RLER_JUDGE_MODEL", server["model"])
    monkeypatch.setenv("RLER_JUDGE_CACHE", str(tmp_path))
    monkeypatch.delenv("RLER_JUDGE", raising=False)
    card = card_from_dict({"name": "wv", "benchmark": "wildvideo",
                           "args": {"config": "single_en", "judge": {"max_tokens": 6}}})
    s = Sample(id="q1", task="wv", question="What is held?", answer="A red cup.", answer_type="text",
               category={"type": "Object"})
    r = wildvideo.score(s, "<answer>a red cup</answer>", card)
    e = r["extracted"]
    assert e["by"] == server["model"] and isinstance(e["verdict"], str) and e["answer"] == "a red cup"
    assert e["failed"] == (judge.unit_score(e["verdict"]) is None)
    assert r["score"] == (judge.unit_score(e["verdict"]) or 0.0)
    m = wildvideo.aggregate([{"id": "q1", "status": "ok", **r, "category": s.category}], card)
    assert m["judge"] == server["model"] and m["judged_by"] == {server["model"]: 1}
    assert m["judge_failed"] == int(e["failed"])
    # TempCompass: a rule-matched reply never reaches the judge; an unmatched one does
    tc = card_from_dict({"name": "tc", "benchmark": "tempcompass",
                         "args": {"format": "yes_no", "judge": {"max_tokens": 6}}})
    y = Sample(id="y", task="tc", question="Is the man dunking?", answer="yes", answer_type="yesno",
               doc={"question": "Is the man dunking?", "answer": "yes"})
    j = judge.get_judge(tc)
    calls = j.stats["http_calls"] + j.stats["cache_hits"]
    assert tempcompass.score(y, "Yes, he is.", tc) == {"score": 1.0, "extracted": "yes"}
    assert j.stats["http_calls"] + j.stats["cache_hits"] == calls
    out = tempcompass.score(y, "He is clearly dunking the ball.", tc)
    assert out["extracted"]["by"] == server["model"]
    assert out["score"] == (judge.correct_incorrect(out["extracted"]["verdict"]) or 0.0)
    assert j.stats["http_calls"] + j.stats["cache_hits"] == calls + 1
