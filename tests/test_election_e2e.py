"""End to end: `rler-eval run --strategy rler` on synthvid writes a complete audit trail, and
`rler-eval elect` reproduces its answers exactly from the records (tiny model, and a seeded
protocol-following fake backend so that valid answers and refutations are exercised)."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from rler_eval.types import Candidate

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent / "rler-eval"
AUDIT_KEYS = ("candidates", "scores", "vote", "margin", "refutation", "model_calls", "generated_tokens",
              "n_candidates", "election")


@pytest.fixture(scope="module")
def card_path(tmp_path_factory):
    root = tmp_path_factory.mktemp("synth_el")
    card = {"name": "synth_el", "benchmark": "synthvid", "data_root": str(root / "data"), "split": "test",
            "frames": {"n": 4, "max_pixels": 56 * 56}, "max_new_tokens": 24, "strategy": "greedy",
            "args": {"generate": True, "n": 6, "seed": 5}}
    path = root / "synth_el.yaml"
    path.write_text(yaml.safe_dump(card))
    return path


def lines(run: Path) -> list[dict]:
    return [json.loads(x) for x in (run / "samples.jsonl").read_text().splitlines()]


def same_election(a: dict, b: dict) -> None:
    pa, pb = a["prediction"], b["prediction"]
    assert a["answer"] == b["answer"] and a["score"] == b["score"]
    for key in ("scores", "vote", "margin", "refutation", "n_candidates", "model_calls", "generated_tokens"):
        assert pa[key] == pb[key], key


@pytest.mark.slow
def test_cli_run_rler_then_elect_reproduces(card_path, tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    live, replay = tmp_path / "live", tmp_path / "replay"
    r = subprocess.run([str(BIN), "run", "--task", str(card_path), "--model", "tiny-random", "--limit", "3",
                        "--strategy", "rler", "--set", "k_max=4", "--out", str(live)],
                       capture_output=True, text=True, cwd=REPO, timeout=600, env=env)
    assert r.returncode == 0, r.stderr[-2000:]
    recs = lines(live)
    assert len(recs) == 3 and all(x["status"] == "ok" for x in recs)
    for rec in recs:
        pred = rec["prediction"]
        assert all(k in pred for k in AUDIT_KEYS)
        assert 2 <= pred["n_candidates"] <= 4 and len(pred["scores"]) == pred["n_candidates"]
        for c, s in zip(pred["candidates"], pred["scores"]):
            assert {"text", "temperature", "seed", "token_logprobs"} <= set(c)
            assert {"E", "C", "T", "R", "weight", "answer"} <= set(s)
        assert pred["answer"] is not None or pred["abstain_reason"]
    metrics = json.loads((live / "metrics.json").read_text())
    assert {"candidates_per_question", "candidates_distribution", "model_calls_per_question",
            "generated_tokens_per_question"} <= set(metrics)
    r = subprocess.run([str(BIN), "elect", "--from", str(live), "--strategy", "rler", "--set", "k_max=4",
                        "--out", str(replay)], capture_output=True, text=True, cwd=REPO, timeout=300, env=env)
    assert r.returncode == 0, r.stderr[-2000:]
    for a, b in zip(recs, lines(replay)):
        same_election(a, b)
    r = subprocess.run([str(BIN), "elect", "--from", str(live), "--strategy", "rler", "--set", "nope=1"],
                       capture_output=True, text=True, cwd=REPO, timeout=300, env=env)
    assert r.returncode != 0 and "unknown election setting 'nope'" in r.stderr


class ProtocolBackend:
    """Seeded fake model that answers in the evidence protocol; says "no" to some checks."""

    name = "protocol-fake"

    def generate(self, requests):
        out = []
        for req in requests:
            text = req.prompt.content[-1].get("text", "")
            if "Answer with yes or no" in text:  # the refutation turn: a sentence, as models reply
                reply = random.Random(text).choice(["Yes, frame 2 shows the shape there.",
                                                    "No. In frame 3 the shape is somewhere else.",
                                                    "<think>Frame 1 shows it moving</think> yes"])
                out.append([Candidate(reply, None, None, 0.0, req.seeds[0], len(reply.split()))])
                continue
            cands = []
            for t, s in zip(req.temperatures, req.seeds):
                rng = random.Random(s * 7 + int(t * 10))
                f = rng.randint(1, 4)
                body = f"<think>In frame {f} the shape moves.</think>\n<frames>{f}</frames>\n" \
                       f"<answer>{rng.choice('AB')}</answer>"
                cands.append(Candidate(body, [-rng.random()] * 5, None, t, s, 5))
            out.append(cands)
        return out


def test_run_with_valid_answers_and_refutation_replays_exactly(card_path, tmp_path):
    from rler_eval.replay import replay_run
    from rler_eval.runner import run
    from rler_eval.tasks import load_task

    card = load_task(str(card_path))
    _, live = run(card, "fake", "rler", {"refute": True}, out=tmp_path / "live", backend=ProtocolBackend())
    recs = lines(live)
    assert all(r["status"] == "ok" for r in recs)
    checks = [c for r in recs for c in (r["prediction"]["refutation"] or {}).get("checks", [])]
    assert checks and all(c["verdict"] in ("yes", "no") for c in checks)
    assert all(r["answer"] is not None for r in recs)
    _, out = replay_run(live, "rler", {"refute": True}, tmp_path / "replay")
    for a, b in zip(recs, lines(out)):
        same_election(a, b)
    # replaying other strategies from the same records works without a model
    _, out = replay_run(live, "majority@2", {}, tmp_path / "maj")
    assert all(r["prediction"]["n_candidates"] <= 2 for r in lines(out))
