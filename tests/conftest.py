"""Test-wide settings and shared fixtures.

Nothing is written into the checkout: generated data ($RLER_DATA, e.g. the default synthvid
set) goes to a temporary folder of this session, removed at exit, and caches (the tiny
model, decoded frames) to a per-user folder under the system's temporary directory, reused
across sessions since every entry there is keyed by its inputs. Hub access is off.
"""

import atexit
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
# A dependency may install a top-level `tests` package (latex2sympy2 does), which would shadow
# this folder's `tests.fixtures`; bind the name to this folder before any test imports it.
if not str(getattr(sys.modules.get("tests"), "__path__", [""])[0]).startswith(str(REPO)):
    import types

    sys.modules["tests"] = types.ModuleType("tests")
    sys.modules["tests"].__path__ = [str(REPO / "tests")]
sys.path.insert(0, str(Path(__file__).resolve().parent))  # sibling imports (from test_election_e2e import ...)
_DATA = tempfile.mkdtemp(prefix="rler-eval-test-data-")
atexit.register(shutil.rmtree, _DATA, ignore_errors=True)
os.environ["RLER_DATA"] = _DATA  # never the user's data folder: tests generate into it
os.environ.setdefault("RLER_CACHE", str(Path(tempfile.gettempdir()) / f"rler-eval-test-cache-{os.getuid()}"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("MPLBACKEND", "Agg")

os.environ["HYPOTHESIS_STORAGE_DIRECTORY"] = os.path.join(_DATA, ".hypothesis")

from hypothesis import configuration as _hyp_config  # noqa: E402

_hyp_config.set_hypothesis_home_dir(os.environ["HYPOTHESIS_STORAGE_DIRECTORY"])  # not ./.hypothesis


@pytest.fixture()
def no_judge(monkeypatch):
    """No LLM judge configured: scores come from the rules and the documented fallback."""
    for key in ("RLER_JUDGE_BASE_URL", "RLER_JUDGE_MODEL"):
        monkeypatch.delenv(key, raising=False)


SERVER_START_S = 300  # generous: CI machines may be slow, and the server imports all of transformers


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def server(tmp_path_factory):
    """One real `transformers serve` of the tiny model on a loopback port for the whole session.

    Used by the OpenAI-compatible backend and the LLM judge tests; retried on a port clash,
    terminated (then killed) at the end. Yields {"url": ".../v1", "model": path, "log": path}.
    """
    import httpx

    from rler_eval.testing import tiny_model_dir

    model = tiny_model_dir()
    exe = Path(sys.executable).parent / "transformers"
    log = tmp_path_factory.mktemp("serve") / "serve.log"
    env = dict(os.environ, HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false")

    def start():
        port = free_port()  # another process may take it before the server binds: then retry
        with open(log, "w") as fh:
            proc = subprocess.Popen([str(exe), "serve", str(model), "--host", "127.0.0.1", "--port", str(port),
                                     "--device", "cpu"], stdout=fh, stderr=subprocess.STDOUT, env=env)
        return proc, f"http://127.0.0.1:{port}"

    proc, url = start()
    tries, deadline = 1, time.time() + SERVER_START_S
    try:
        while True:
            if proc.poll() is not None:
                if tries < 3 and "address already in use" in log.read_text().lower():
                    proc, url = start()
                    tries += 1
                    continue
                pytest.fail(f"transformers serve exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
            try:
                if httpx.get(url + "/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.time() > deadline:
                pytest.fail(f"transformers serve not ready after {SERVER_START_S} s:\n{log.read_text()[-3000:]}")
            time.sleep(0.5)
        yield {"url": url + "/v1", "model": str(model), "log": log}
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)
