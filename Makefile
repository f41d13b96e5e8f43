# signx: the two commands are `make repro` and `make test`.
# Both (re)build .venv from requirements.txt when it is missing or older than requirements.txt.
PYTHON ?= python3
VENV := .venv
STAMP := $(VENV)/.requirements.stamp
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)

.PHONY: repro test test-all mutate faults bench lint venv specialists

venv: $(STAMP)

$(STAMP): requirements.txt
	@test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	@echo "installing requirements.txt into $(VENV) (log: $(VENV)/pip.log)"
	@$(VENV)/bin/pip install --disable-pip-version-check -r requirements.txt > $(VENV)/pip.log 2>&1 \
		|| { tail -n 40 $(VENV)/pip.log; exit 1; }
	$(VENV)/bin/python -c "import torch, mediapipe, zarr, dvc, cv2"  # fails the target if the install did not complete
	cp requirements.txt $(STAMP)

repro: $(STAMP)
	dvc repro

# the @slow tests (DVC end to end in a temporary repository, whole corpora) run in CI (CI=true) and in test-all
test: $(STAMP)
	python -m pytest -q $(if $(filter true,$(CI)),,-m "not slow") tests

test-all: $(STAMP)
	python -m pytest -q tests

# realistic bugs planted one at a time in a scratch copy, each against the tests that must catch it
mutate: $(STAMP)
	python tools/mutate.py

# every stage of a tiny `dvc repro` SIGKILLed at random points and rerun, against an uninterrupted run; two repros at
# once; a full disk and a read-only output folder (tmpfs mounts, where allowed). Fast cases: tests/test_faults.py
faults: $(STAMP)
	OMP_NUM_THREADS=1 python tools/faults.py

bench: $(STAMP)
	dvc repro  # the extraction benchmarks read the pipeline's outputs (a no-op when up to date)
	python bench/run_all.py

# Stage I trained on each track subset alone (about 11 Stage I trainings), for the `tracks` stage's comparison
specialists: $(STAMP)
	dvc repro fuse
	python -m pipeline.specialists
	dvc repro tracks

lint: $(STAMP)
	ruff check .
