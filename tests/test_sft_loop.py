"""The lean SFT loop: it learns, it trains only on the completion, and a killed stage resumes exactly."""

import pytest

from rler_eval.benchmarks import synthvid as sv
from rler_eval.tasks import card_from_dict


@pytest.fixture(scope="module")
def rows(tmp_path_factory):
    from rler_eval.training.data import build_rows

    root = tmp_path_factory.mktemp("sv")
    card = card_from_dict({"name": "st", "benchmark": "synthvid", "data_root": str(root),
                           "frames": {"n": 4, "max_pixels": 56 * 56}, "args": {"generate": True, "n": 6, "seed": 4}})
    samples = sv.load_samples(card)
    return build_rows(samples, card, with_targets=True, cache_dir=str(root / "cache"))


def fresh():
    from transformers import AutoModelForImageTextToText, AutoProcessor

    from rler_eval.testing import tiny_model_dir

    path = tiny_model_dir()
    return AutoModelForImageTextToText.from_pretrained(path), AutoProcessor.from_pretrained(path)


CFG = {"max_steps": 4, "learning_rate": 0.01, "per_device_train_batch_size": 2, "warmup_steps": 1,
       "logging_steps": 1, "save_steps": 2}


def test_loop_lowers_the_loss_and_changes_the_model(tmp_path, rows):
    import torch

    from rler_eval.training.sft import run_loop

    model, processor = fresh()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    result = run_loop({**CFG, "max_steps": 6, "per_device_train_batch_size": 6}, model, processor, rows, tmp_path)
    losses = [e["loss"] for e in result.state.log_history]
    assert losses[-1] < losses[0], losses
    assert any(not torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert not (tmp_path / "resume").exists()  # a finished stage leaves no resume state


def test_loss_covers_only_the_completion(rows):
    from rler_eval.training.sft import collate, tokenize_rows

    model, processor = fresh()
    data = tokenize_rows(rows[:2], processor, model)
    _, target = collate(data, processor)
    tok = processor.tokenizer
    for i, d in enumerate(data):
        picked = [t for t, m in zip(d["prompt"] + d["completion"], target[i].tolist()) if m]
        assert picked == d["completion"]
        assert tok.decode(picked).startswith("<think>Frames: 1 ")


def killed_then_resumed(cfg: dict, rows, out, monkeypatch, dies_at: int):
    """Run the loop until step `dies_at` raises, then run it again as a new process would."""
    from rler_eval.training import sft

    calls = {"n": 0}
    real = sft.completion_loss

    def dies(*a, **k):
        calls["n"] += 1
        if calls["n"] == dies_at:
            raise KeyboardInterrupt("killed")
        return real(*a, **k)

    monkeypatch.setattr(sft, "completion_loss", dies)
    model, processor = fresh()
    with pytest.raises(KeyboardInterrupt):
        sft.run_loop(dict(cfg), model, processor, rows, out)
    assert (out / "resume" / "position.json").is_file()
    monkeypatch.setattr(sft, "completion_loss", real)
    model, processor = fresh()  # a new process: weights come back from the resume state
    return sft.run_loop(dict(cfg), model, processor, rows, out)


def test_killed_stage_resumes_to_the_same_weights(tmp_path, rows, monkeypatch):
    import torch

    from rler_eval.training import sft

    model, processor = fresh()
    straight = sft.run_loop(dict(CFG), model, processor, rows, tmp_path / "a").model.state_dict()
    resumed = killed_then_resumed(CFG, rows, tmp_path / "b", monkeypatch, dies_at=3)
    assert [e["step"] for e in resumed.state.log_history] == [1, 2, 3, 4]
    for k, v in resumed.model.state_dict().items():
        assert torch.allclose(v, straight[k], atol=1e-6), k


def test_micro_batches_give_the_one_batch_gradient(rows):
    """Length-sorted micro-batches (fewer padded positions) give the one-batch loss and
    gradient: each part's summed loss is scaled by the whole batch's token count."""
    import torch

    from rler_eval.training.sft import backward_in_parts, tokenize_rows

    model, processor = fresh()
    data = tokenize_rows(rows[:5], processor, model)
    assert len({len(d["prompt"]) + len(d["completion"]) for d in data}) > 1  # padding to save
    grads = {}
    for parts in (1, 2, 3):
        model.zero_grad()
        loss = backward_in_parts(model, data, processor, parts)
        grads[parts] = (loss, torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None]))
    for parts in (2, 3):
        assert grads[parts][0] == pytest.approx(grads[1][0], rel=1e-6)
        assert torch.allclose(grads[parts][1], grads[1][1], atol=1e-7, rtol=1e-4)
    assert grads[1][1].abs().max() > 1e-3  # a real gradient, not zeros


def test_training_positions_are_the_evaluation_positions(rows):
    """The loop's 3D mrope positions equal those the model computes from the processor's own
    inputs (as at evaluation); bare ids would give 1D positions (the bug this guards)."""
    import torch

    from rler_eval.training.sft import collate, tokenize_rows

    model, processor = fresh()
    data = tokenize_rows(rows[:2], processor, model)
    inputs, _ = collate(data, processor)
    for i, row in enumerate(rows[:2]):
        text = processor.apply_chat_template(row["prompt"], tokenize=False, add_generation_prompt=True)
        text += row["completion"][0]["content"][0]["text"] + processor.tokenizer.eos_token
        ref = processor(text=[text], images=row["images"], return_tensors="pt")
        assert ref["input_ids"][0].tolist() == data[i]["prompt"] + data[i]["completion"]
        expected, _ = model.model.get_rope_index(ref["input_ids"], mm_token_type_ids=ref["mm_token_type_ids"],
                                                 image_grid_thw=ref["image_grid_thw"])
        n = ref["input_ids"].shape[1]
        assert torch.equal(inputs["position_ids"][:, i, :n], expected[:, 0])
        assert not torch.equal(expected[0, 0], torch.arange(n))  # really 3D: not the 1D fallback


PHASED = {**CFG, "max_steps": 2, "phases": [{"max_steps": 3, "learning_rate": 0.005, "warmup_steps": 1,
                                             "oversample": {"change": 3}}]}


@pytest.mark.parametrize("dies_at", [3, 5])  # 3: resumes at the phase boundary; 5: inside phase 2
def test_phased_stage_resumes_to_the_same_weights(tmp_path, rows, monkeypatch, dies_at):
    import torch

    from rler_eval.training import sft

    model, processor = fresh()
    straight = sft.run_loop(dict(PHASED), model, processor, rows, tmp_path / "a")
    assert [e["phase"] for e in straight.state.log_history] == [0, 0, 1, 1, 1]
    lrs = [e["learning_rate"] for e in straight.state.log_history]
    assert lrs[1] == 0.0 and 0 < lrs[2] <= 0.005  # phase 1 restarts its own schedule at its own rate
    resumed = killed_then_resumed(PHASED, rows, tmp_path / "b", monkeypatch, dies_at)
    assert [e["step"] for e in resumed.state.log_history] == [1, 2, 3, 4, 5]
    for k, v in resumed.model.state_dict().items():
        assert torch.allclose(v, straight.model.state_dict()[k], atol=1e-6), k


def test_oversampling_draws_a_family_k_times_as_often(rows):
    from rler_eval.training.sft import sampling_pool

    data = [{"family": r["family"]} for r in rows]
    pool = sampling_pool(data, {"change": 4})
    for i, d in enumerate(data):
        assert pool.count(i) == (4 if d["family"] == "change" else 1)
    assert "change" in {d["family"] for d in data}
    with pytest.raises(ValueError, match="no training rows of family"):
        sampling_pool(data, {"chnage": 2})


def test_forked_tokenizing_gives_the_rows_tokenized_here(rows, monkeypatch):
    import torch

    from rler_eval.training import sft

    model, processor = fresh()
    here = sft.tokenize_rows(rows, processor, model, workers=0)
    monkeypatch.setattr(sft, "FORK_MIN_ROWS", 0)
    forked = sft.tokenize_rows(rows, processor, model, workers=2)
    # what a worker sends holds no tensor: torch sends each one as a file descriptor, and
    # 24,000 rows ran out of them and hung the pool
    sft._FORKED[:] = [rows, processor, model]
    sent = [sft._tokenize_forked(i) for i in range(len(rows))]
    sft._FORKED.clear()
    assert not any(isinstance(v, torch.Tensor) for item in sent for v in item.values())
    for a, b in zip(here, forked, strict=True):
        assert (a["prompt"], a["completion"], a["family"]) == (b["prompt"], b["completion"], b["family"])
        assert a["images"] is b["images"] and torch.equal(a["positions"], b["positions"])


def test_changed_entries_are_the_words_that_differ_from_the_frame_before():
    text = "<think>Frames: 1 red square left; 2 red square left; 3 red square right; 4 nothing. In frame 1: x."
    assert [text[a:b] for a, b in sv.changed_entries(text)] == ["red square right", "nothing"]
    assert sv.changed_entries("<think>Frames: 1 red square left; 2 red square left. So red.") == []
    assert sv.changed_entries("<think>no inventory</think>") == []


def test_changed_weight_weights_exactly_the_changed_tokens(rows):
    """weighted_loss: weight 1 gives the mean loss's gradient; a weight on a family's changed
    inventory tokens changes the gradient, and the tokens it weights decode to those entries."""
    import torch

    from rler_eval.training.sft import backward_in_parts, tokenize_rows, weighted_loss

    model, processor = fresh()
    data = tokenize_rows(rows, processor, model)
    marked = [d for d in data if d["changed"]]
    assert marked
    for d in marked:  # each marked token lies in a changed entry of the target's text
        words = processor.tokenizer.decode([d["completion"][i] for i in d["changed"]])
        inventory = processor.tokenizer.decode(d["completion"]).split(". ")[0]
        assert all(w in inventory for w in words.split())

    def grad(fn):
        model.zero_grad()
        loss = fn()
        return loss, torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])

    plain = grad(lambda: backward_in_parts(model, data, processor, 1))
    ones = grad(lambda: weighted_loss(model, data, processor, {marked[0]["family"]: 1.0}))
    heavy = grad(lambda: weighted_loss(model, data, processor, {marked[0]["family"]: 10.0}))
    assert ones[0] == pytest.approx(plain[0], rel=1e-6) and heavy[0] == pytest.approx(plain[0], rel=1e-6)
    assert torch.allclose(ones[1], plain[1], atol=1e-7, rtol=1e-4)
    assert not torch.allclose(heavy[1], plain[1], atol=1e-5, rtol=1e-2)
