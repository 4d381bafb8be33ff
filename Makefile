# rler-eval: common commands. `make help` lists them.
# A fresh clone: `make setup && make test`, then `make eval`.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# The torch build to install first. This machine's disk holds these two; on another
# machine choose your own, e.g. TORCH_SPEC="torch torchvision --index-url https://download.pytorch.org/whl/cu124".
TORCH_SPEC ?= torch==2.14.1 torchvision==0.29.1
EXTRAS ?= dev

TASK ?= synthvid
MODEL ?= $(shell test -f checkpoints/rler-tiny/config.json && echo checkpoints/rler-tiny || echo tiny-random)
STRATEGY ?=
FRAMES ?=
LIMIT ?=
OUT ?=
RUNS ?= results/runs
RECIPE ?= train/tiny_cpu.yaml
PYTEST_ARGS ?=

RUN_FLAGS = --task $(TASK) --model $(MODEL) \
	$(if $(STRATEGY),--strategy $(STRATEGY)) $(if $(FRAMES),--frames $(FRAMES)) \
	$(if $(LIMIT),--limit $(LIMIT)) $(if $(OUT),--out $(OUT))

.PHONY: help setup browser test eval report show bench synth sweep train tiny-model results-tiny results-election election-fixture fixtures clean

help:
	@echo "make setup        create $(VENV): $(TORCH_SPEC), then pip install -e '.[$(EXTRAS)]'; chromium (apt) for the viewer test"
	@echo "make test         run the test suite"
	@echo "make eval         evaluate MODEL on TASK (default: $(TASK) with $(MODEL)); STRATEGY, FRAMES, LIMIT, OUT"
	@echo "make report       leaderboard (markdown, CSV, PNG) from RUNS, with 95% bootstrap intervals"
	@echo "make show         HTML evidence viewer of one run: make show RUN=results/runs/<run>"
	@echo "make bench        print performance figures (video decode, cache, generation, election)"
	@echo "make synth        write a synthvid set to data/synthvid-custom"
	@echo "make sweep        sweep strategies over recorded runs (RUNS)"
	@echo "make train        run a training recipe (RECIPE=$(RECIPE))"
	@echo "make tiny-model   train the bundled rler-tiny model with train/tiny_cpu.yaml"
	@echo "make results-tiny evaluate SFT-only vs SFT+GRPO and greedy/majority/rler on synthvid -> results/rler_tiny.md"
	@echo "make results-election  live rler@8 and rler (refutation on) on synthvid + replays -> results/election_rler_tiny.md, sweep"
	@echo "make election-fixture  record tests/fixtures/election/ (300 trimmed rler@8 candidate sets of MODEL)"
	@echo "make fixtures     write official-schema fixture data for every benchmark to data/fixtures"

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --upgrade pip

setup: $(BIN)/python browser
	$(BIN)/pip install $(TORCH_SPEC)
	$(BIN)/pip install -e ".[$(EXTRAS)]"

# Headless Chromium for the evidence viewer's browser test (tests/test_show.py): Debian's
# `chromium` package, installed with apt-get when missing (as root, e.g. in CI).
browser:
	@command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || \
	if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends chromium; \
	else echo "install Debian's chromium package (sudo apt-get install chromium) for tests/test_show.py"; fi

test:
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

eval:
	$(BIN)/rler-eval run $(RUN_FLAGS)

report:
	$(BIN)/rler-eval report $(RUNS)

show:
	@test -n "$(RUN)" || { echo "usage: make show RUN=results/runs/<run folder>"; exit 2; }
	$(BIN)/rler-eval show $(RUN)

bench:
	$(BIN)/python bench/bench_video.py
	$(BIN)/python bench/bench_generate.py
	$(BIN)/python bench/bench_election.py
	$(BIN)/python bench/bench_prefetch.py

synth:
	$(BIN)/rler-eval synth --out data/synthvid-custom --n 100 --seed 0

sweep:
	$(BIN)/rler-eval sweep $(RUNS)

train:
	$(BIN)/rler-eval train --recipe $(RECIPE)

tiny-model:
	$(BIN)/rler-eval train --recipe train/tiny_cpu.yaml

# The figures of results/rler_tiny.md: needs `make tiny-model` first (for the SFT-only stage).
# Every run resumes, so an interrupted `make results-tiny` picks up where it stopped.
TINY_RUNS = results/runs/tiny
TINY = checkpoints/rler-tiny
TINY_SFT = runs/train/rler-tiny/sft
TINY_LIMIT ?= 200
# the whole held-out split (500 questions) greedy for both stages, then the 200-question runs
results-tiny:
	$(BIN)/rler-eval run --task synthvid --model $(TINY_SFT) --strategy greedy --out $(TINY_RUNS)/sft-only_greedy_all500
	$(BIN)/rler-eval run --task synthvid --model $(TINY) --strategy greedy --out $(TINY_RUNS)/rler-tiny_greedy_all500
	$(BIN)/rler-eval run --task synthvid --limit $(TINY_LIMIT) --model $(TINY_SFT) --strategy greedy --out $(TINY_RUNS)/sft-only_greedy
	$(BIN)/rler-eval run --task synthvid --limit $(TINY_LIMIT) --model $(TINY_SFT) --strategy greedy --ablate-frames blank --out $(TINY_RUNS)/sft-only_greedy_blank
	$(BIN)/rler-eval run --task synthvid --limit $(TINY_LIMIT) --model $(TINY_SFT) --strategy rler --out $(TINY_RUNS)/sft-only_rler
	$(BIN)/rler-eval run --task synthvid --limit $(TINY_LIMIT) --model $(TINY_SFT) --strategy rler@8 --out $(TINY_RUNS)/sft-only_rler8
	$(BIN)/rler-eval run --task synthvid --limit $(TINY_LIMIT) --model $(TINY) --strategy greedy --out $(TINY_RUNS)/rler-tiny_greedy
	$(BIN)/rler-eval run --task synthvid --limit $(TINY_LIMIT) --model $(TINY) --strategy greedy --ablate-frames blank --out $(TINY_RUNS)/rler-tiny_greedy_blank
	$(BIN)/rler-eval run --task synthvid --limit $(TINY_LIMIT) --model $(TINY) --strategy greedy --ablate-frames shuffle --out $(TINY_RUNS)/rler-tiny_greedy_shuffle
	$(BIN)/rler-eval run --task synthvid --limit $(TINY_LIMIT) --model $(TINY) --strategy rler@8 --out $(TINY_RUNS)/rler-tiny_rler8
	$(BIN)/rler-eval run --task synthvid --limit $(TINY_LIMIT) --model $(TINY) --strategy rler --out $(TINY_RUNS)/rler-tiny_rler
	$(BIN)/rler-eval elect --from $(TINY_RUNS)/rler-tiny_rler8 --strategy majority@3 --out $(TINY_RUNS)/rler-tiny_majority3
	$(BIN)/rler-eval elect --from $(TINY_RUNS)/rler-tiny_rler8 --strategy majority@8 --out $(TINY_RUNS)/rler-tiny_majority8
	$(BIN)/rler-eval elect --from $(TINY_RUNS)/rler-tiny_rler8 --strategy best_of@8 --out $(TINY_RUNS)/rler-tiny_best_of8
	$(BIN)/python -m rler_eval.training.tiny_report $(TINY_RUNS) --out results/rler_tiny.md --append results/grpo_tuning.md
	$(BIN)/rler-eval sweep $(TINY_RUNS)/rler-tiny_rler8 --out results/sweep_rler_tiny

# The election figures of the README (issue 10): two live runs, the rest replayed from rler@8.
ELECTION_RUNS = results/runs/election
results-election:
	$(BIN)/rler-eval run --task synthvid --model $(MODEL) --strategy rler@8 --set refute=true --out $(ELECTION_RUNS)/rler8
	$(BIN)/rler-eval run --task synthvid --model $(MODEL) --strategy rler --set refute=true --out $(ELECTION_RUNS)/rler
	$(BIN)/python bench/election_results.py report $(ELECTION_RUNS) results/election_rler_tiny.md
	$(BIN)/rler-eval sweep $(ELECTION_RUNS)/rler8 --out results/sweep_election_rler_tiny

# The recorded candidate sets the election tests replay (re-record after a model change);
# reuses the first 300 questions of results-election's rler@8 run when it exists.
election-fixture:
	$(BIN)/rler-eval run --task synthvid --model $(MODEL) --strategy rler@8 --set refute=true --limit 300 --out $(ELECTION_RUNS)/rler8
	$(BIN)/python bench/election_results.py fixture $(ELECTION_RUNS)/rler8 tests/fixtures/election 300

fixtures:
	$(BIN)/python -m tests.fixtures --out data/fixtures
	@echo "now e.g.: make eval TASK=mvbench RLER_DATA=data/fixtures"

clean:
	rm -rf .pytest_cache .hypothesis build dist *.egg-info
