"""The command line: fast help without torch, and one clear line for user errors."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent / "rler-eval"


def run_cli(*args, env=None, timeout=120):
    return subprocess.run([str(BIN), *args], capture_output=True, text=True, cwd=REPO,
                          env={**os.environ, **(env or {})}, timeout=timeout)


def test_help_lists_subcommands_without_importing_torch():
    code = ("import sys; from rler_eval.cli import build_parser; h = build_parser().format_help(); "
            "print('torch' in sys.modules, 'transformers' in sys.modules); print(h)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert out.returncode == 0, out.stderr
    first, helptext = out.stdout.split("\n", 1)
    assert first == "False False"
    for sub in ("run", "merge", "report"):
        assert sub in helptext


def test_run_help_explains_the_options():
    out = run_cli("run", "--help")
    assert out.returncode == 0
    for flag in ("--task", "--model", "--strategy", "--frames", "--limit", "--shard", "--out", "--strict"):
        assert flag in out.stdout


def test_missing_benchmark_data_is_one_clear_message(tmp_path):
    out = run_cli("run", "--task", "mvbench", "--limit", "1", "--out", str(tmp_path / "run"),
                  env={"RLER_DATA": str(tmp_path / "nowhere")})
    assert out.returncode == 2
    assert "Traceback" not in out.stderr
    assert "mvbench" in out.stderr.lower()
    lines = [l for l in out.stderr.splitlines() if "error" in l.lower()]
    assert len(lines) == 1, out.stderr


def test_unknown_task_and_bad_strategy(tmp_path):
    out = run_cli("run", "--task", "no_such_task")
    assert out.returncode == 2 and "unknown task" in out.stderr and "Traceback" not in out.stderr
    out = run_cli("run", "--task", "synthvid", "--strategy", "nonsense@3", "--out", str(tmp_path / "r"))
    assert out.returncode == 2 and "unknown strategy" in out.stderr


@pytest.mark.parametrize("shard", ["3/2", "x", "1-2"])
def test_bad_shard_is_rejected(shard, tmp_path):
    out = run_cli("run", "--task", "synthvid", "--shard", shard, "--out", str(tmp_path / "r"))
    assert out.returncode == 2 and "--shard" in out.stderr
