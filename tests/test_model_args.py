"""Model arguments and the backend registry: parsing, checking, plumbing into transformers."""

import sys
import textwrap

import pytest

from rler_eval import models
from rler_eval.errors import InputError
from rler_eval.models import GenerationRequest, load_backend, parse_model_args, split_spec


def test_parse_model_args_reads_values_as_yaml():
    got = parse_model_args('dtype=bfloat16,device_map=auto,gpu_memory_utilization=0.85,use_n=false,'
                           'max_memory={0: 20GiB, 1: 20GiB},limit_mm_per_prompt={"image": 32, "video": 0},'
                           'max_pixels=50176')
    assert got == {"dtype": "bfloat16", "device_map": "auto", "gpu_memory_utilization": 0.85, "use_n": False,
                   "max_memory": {0: "20GiB", 1: "20GiB"}, "limit_mm_per_prompt": {"image": 32, "video": 0},
                   "max_pixels": 50176}
    assert parse_model_args({"dtype": "float32"}) == {"dtype": "float32"}
    assert parse_model_args("") == {} and parse_model_args(None) == {}
    with pytest.raises(InputError, match="KEY=VALUE"):
        parse_model_args("dtype=float32,bfloat16")


def test_specs_pick_the_backend_module():
    assert split_spec("vllm:/ckpt/Qwen2.5-VL-7B")[0].module == "rler_eval.models.vllm_backend"
    assert split_spec("openai:qwen@http://h:8000/v1") == (models.BACKENDS["openai"], "qwen@http://h:8000/v1")
    assert split_spec("hf:/ckpt") == (models.BACKENDS["hf"], "/ckpt")
    assert split_spec("Qwen/Qwen2.5-VL-7B-Instruct") == (models.BACKENDS["hf"], "Qwen/Qwen2.5-VL-7B-Instruct")
    assert split_spec("weird:thing")[1] == "weird:thing"  # an unregistered prefix is part of a path


def test_unknown_model_args_are_refused_with_the_known_ones():
    with pytest.raises(InputError, match=r"tensor_parallel_size.*known: .*attn_implementation.*device_map"):
        load_backend("hf:/nowhere", tensor_parallel_size=2)
    with pytest.raises(InputError, match="gpu_memory_utilization"):
        load_backend("openai:m@http://127.0.0.1:9/v1", gpu_memory_utilization=0.5)
    for prefix in ("hf", "openai", "vllm"):
        assert models.model_args_help(prefix)  # every backend documents its arguments


def test_openai_args_reach_the_backend():
    b = load_backend("openai:m@http://127.0.0.1:9/v1", timeout=7.5, concurrency=4, max_retries=0, use_n=False)
    try:
        assert b.client.timeout.read == 7.5 and b.concurrency == 4 and b.use_n is False
    finally:
        b.close()


def test_a_new_backend_is_one_module(tmp_path, monkeypatch):
    (tmp_path / "echo_backend.py").write_text(textwrap.dedent('''
        """A backend that echoes its model args (test only)."""
        from rler_eval.types import Candidate
        MODEL_ARGS = {"answer": "what every candidate says"}

        class Echo:
            supports_logprobs = False
            def __init__(self, target, answer="A"):
                self.name, self.answer = "echo:" + target, answer
            def generate(self, requests):
                return [[Candidate(text=f"<answer>{self.answer}</answer>", temperature=t) for t in r.temperatures]
                        for r in requests]

        def load(target, **kw):
            return Echo(target, **kw)
        '''))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setitem(models.BACKENDS, "echo", models.BackendEntry("echo", "echo_backend"))
    b = load_backend("echo:x", **parse_model_args("answer=C"))
    assert b.name == "echo:x"
    from rler_eval.types import Prompt
    assert b.generate([GenerationRequest(Prompt(content=[]), [0.0, 1.0])])[0][1].text == "<answer>C</answer>"
    with pytest.raises(InputError, match="answer"):
        load_backend("echo:x", colour="red")
    sys.modules.pop("echo_backend", None)


def test_run_cli_refuses_a_bad_model_arg(tmp_path, capsys):
    from rler_eval.cli import main

    rc = main(["run", "--task", "synthvid", "--model", "tiny-random", "--limit", "1", "--out", str(tmp_path / "r"),
               "--model-args", "tensor_parallel_size=2"])
    assert rc == 2
    assert "not accepted by the hf backend" in capsys.readouterr().err


# ---------------------------------------------------------------- HF plumbing on the tiny model


@pytest.fixture(scope="module")
def prompt():
    import numpy as np

    from rler_eval.prompt import build_prompt
    from rler_eval.types import FrameSet, Sample

    rng = np.random.default_rng(0)
    frames = FrameSet(frames=rng.integers(0, 255, (4, 84, 84, 3), dtype=np.uint8), timestamps=[0.0, 1.0, 2.0, 3.0])
    sample = Sample(id="q", task="t", question="What colour is the ball?", answer="A", options=["red", "blue"])
    return build_prompt(sample, frames)


def test_device_map_reaches_accelerate_and_generates_the_same(prompt, tmp_path, monkeypatch):
    """device_map=auto (what shards a 7B model over GPUs) goes to from_pretrained unchanged. On
    this CPU-only machine "auto" places everything on the CPU, so a second map puts lm_head on
    disk: accelerate then dispatches with hooks across two devices, as it does across GPUs,
    and the decode loop (inputs, KV cache, positions) must give the same tokens."""
    import transformers

    from rler_eval.testing import tiny_model_dir

    seen = []
    real = transformers.AutoModelForImageTextToText.from_pretrained.__func__

    def spy(cls, *a, **kw):
        seen.append(kw)
        return real(cls, *a, **kw)

    monkeypatch.setattr(transformers.AutoModelForImageTextToText, "from_pretrained", classmethod(spy))
    plain = load_backend(str(tiny_model_dir()), device="cpu", dtype="float32")
    auto = load_backend(str(tiny_model_dir()), **parse_model_args("device_map=auto,dtype=float32,max_memory={cpu: 2GiB}"))
    assert seen[1]["device_map"] == "auto" and seen[1]["max_memory"]["cpu"] in ("2GiB", 2 * 1024**3)
    assert "device_map" not in seen[0] and auto.device == "cpu"
    split = load_backend(str(tiny_model_dir()), dtype="float32", offload_folder=str(tmp_path),
                         device_map={"model.visual": "cpu", "model.language_model": "cpu", "lm_head": "disk"})
    assert split.model.hf_device_map["lm_head"] == "disk"  # dispatched with accelerate hooks
    req = GenerationRequest(prompt, [0.0, 1.0, 1.0], [1, 2, 3], max_new_tokens=12)
    want = [c.text for c in plain.generate([req])[0]]
    assert [c.text for c in auto.generate([req])[0]] == want
    assert [c.text for c in split.generate([req])[0]] == want


def test_pixel_bounds_and_batch_size(prompt):
    from rler_eval.testing import tiny_model_dir

    full = load_backend(str(tiny_model_dir()), device="cpu")
    small = load_backend(str(tiny_model_dir()), device="cpu", max_pixels=28 * 28, min_pixels=28 * 28)
    n_full = int(full.encode(prompt)["input_ids"].shape[1])
    n_small = int(small.encode(prompt)["input_ids"].shape[1])
    assert n_small < n_full  # fewer visual tokens per frame

    chunked = load_backend(str(tiny_model_dir()), device="cpu", batch_size=2)
    req = GenerationRequest(prompt, [0.0, 0.7, 1.0, 1.0, 1.2], [5, 6, 7, 8, 9], max_new_tokens=10)
    whole, parts = full.generate([req])[0], chunked.generate([req])[0]
    assert [(c.temperature, c.seed) for c in parts] == [(c.temperature, c.seed) for c in whole]
    assert [c.text for c in parts] == [c.text for c in whole]
    assert chunked.stats["requests"] == 3 and chunked.stats["prefills"] == 1  # 2+2+1 rows, one shared prefill
