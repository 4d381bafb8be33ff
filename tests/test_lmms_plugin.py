"""The lmms-eval plugin: `python -m lmms_eval --model rler` on a local task, offline, end to end.

The entry point is read from pyproject.toml into a temporary dist-info on PYTHONPATH, so the
test checks the declaration a `pip install` would publish, even where the venv's editable
install predates it.
"""

import json
import os
import subprocess
import sys
import textwrap
import tomllib
from pathlib import Path

import pytest

from tests.fixtures import video

pytest.importorskip("lmms_eval")  # the `lmms` extra (also in `dev`)

REPO = Path(__file__).resolve().parent.parent
RLER_TINY = REPO / "checkpoints" / "rler-tiny"


def test_options_and_audit_helpers():
    from rler_eval.integrations.lmms_plugin import audit_block, parse_options, split_args
    from rler_eval.types import Candidate, Prediction

    assert parse_options("Question: what?\nOption:\n(A) red\n(B) blue ball\n") == ["red", "blue ball"]
    assert parse_options("A. one\nB. two\nC. three") == ["one", "two", "three"]
    assert parse_options("Is it red? Answer yes or no.") is None
    own, election, backend = split_args({"pretrained": "p", "k_max": 8, "delta": 0.3, "dtype": "float32"})
    assert own == {"pretrained": "p"} and election == {"k_max": 8, "delta": 0.3} and backend == {"dtype": "float32"}
    pred = Prediction(answer="B", candidates=[Candidate(text="<think>x</think><answer>B</answer>")], strategy="rler")
    block = audit_block(pred)
    assert block.startswith("<think>") and block.endswith("</think>") and block.count("<") == 2
    assert json.loads(block[len("<think>"):-len("</think>")])["rler_audit"]["candidates"][0]["text"].startswith("<think>")


def dist_info(root: Path) -> Path:
    """A dist-info whose entry_points.txt is pyproject.toml's lmms_eval.models group."""
    eps = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["entry-points"]["lmms_eval.models"]
    info = root / "rler_eval-0.1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: rler-eval\nVersion: 0.1.0\n")
    (info / "entry_points.txt").write_text("[lmms_eval.models]\n" + "".join(f"{k} = {v}\n" for k, v in eps.items()))
    return root


def local_task(root: Path) -> Path:
    """A task folder for --include_path: JSON data through HF datasets, generated videos."""
    rows = []
    for i in range(4):
        clip = video(root / "videos" / f"v{i}.mp4", seconds=2.0, seed=i)
        rows.append({"id": i, "video": str(clip), "question": f"Which colour shows first in clip {i}?",
                     "candidates": ["red", "green", "blue", "white"], "answer": "ABCD"[i % 4]})
    (root / "data.json").write_text(json.dumps(rows))
    task = root / "task"
    task.mkdir()
    (task / "utils.py").write_text(textwrap.dedent('''
        def doc_to_visual(doc):
            return [doc["video"]]

        def doc_to_text(doc, lmms_eval_specific_kwargs=None):
            opts = "".join(f"({'ABCD'[i]}) {c}\\n" for i, c in enumerate(doc["candidates"]))
            return "Question: " + doc["question"] + "\\nOption:\\n" + opts + "Answer with the option's letter."

        def process_results(doc, results):
            pred = results[0].strip()
            return {"exact_match": float(pred[:1] == doc["answer"])}
        '''))
    (task / "rler_local.yaml").write_text(textwrap.dedent(f'''
        task: rler_local
        dataset_path: json
        dataset_kwargs:
          data_files:
            test: {root / "data.json"}
        test_split: test
        output_type: generate_until
        doc_to_visual: !function utils.doc_to_visual
        doc_to_text: !function utils.doc_to_text
        doc_to_target: answer
        process_results: !function utils.process_results
        generation_kwargs:
          max_new_tokens: 16
        metric_list:
          - metric: exact_match
            aggregation: mean
            higher_is_better: true
        '''))
    return task


@pytest.mark.slow
def test_lmms_eval_runs_the_election_and_logs_its_audit(tmp_path):
    task = local_task(tmp_path)
    out = tmp_path / "out"
    model = RLER_TINY if (RLER_TINY / "config.json").exists() else None
    if model is None:
        from rler_eval.testing import tiny_model_dir
        model = tiny_model_dir()
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", TRANSFORMERS_OFFLINE="1",
               HF_HOME=str(tmp_path / "hf"), WANDB_MODE="disabled", TOKENIZERS_PARALLELISM="false",
               RLER_CACHE=str(tmp_path / "cache"),
               PYTHONPATH=os.pathsep.join([str(dist_info(tmp_path / "meta")), str(REPO), os.environ.get("PYTHONPATH", "")]))
    cmd = [sys.executable, "-m", "lmms_eval", "--model", "rler",
           "--model_args", f"pretrained={model},strategy=rler,k_max=8,max_new_tokens=48,frames=4",
           "--tasks", "rler_local", "--include_path", str(task), "--limit", "4", "--log_samples",
           "--output_path", str(out), "--batch_size", "1"]
    proc = subprocess.run(cmd, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=1800)
    log = proc.stdout[-3000:] + proc.stderr[-5000:]
    assert proc.returncode == 0 and "Error during evaluation" not in proc.stdout + proc.stderr, log
    logged = sorted(out.rglob("*rler_local*.jsonl"))
    assert logged, f"no logged samples under {out}: {sorted(p.name for p in out.rglob('*'))}\n{log}"
    samples = [json.loads(line) for line in logged[0].read_text().splitlines() if line.strip()]
    assert len(samples) == 4
    for s in samples:
        raw = first(s["resps"])
        assert raw.startswith("<think>{\"rler_audit\"")
        audit = json.loads(raw[len("<think>"):raw.index("</think>")])["rler_audit"]
        assert audit["strategy"] == "rler" and 2 <= audit["n_candidates"] <= 8
        assert len(audit["scores"]) == audit["n_candidates"] and audit["election"]["config"]["k_max"] == 8
        scored = first(s["filtered_resps"])
        assert "rler_audit" not in scored  # the scorer saw the answer, not the audit
        if audit["answer"] is not None:
            assert scored == audit["answer"] and audit["answer"] in "ABCD"
        assert float(s["exact_match"]) == float(scored[:1] == s["target"])
    results = json.loads(next(out.rglob("*results.json")).read_text())
    assert results["results"]["rler_local"]["exact_match,none"] == pytest.approx(
        sum(float(s["exact_match"]) for s in samples) / 4)


def first(value):
    """The first response: lmms-eval 0.7.3 logs a lone response as a string, several as a list."""
    while isinstance(value, list):
        value = value[0]
    return value
