# graft: `make run` sets up .venv and runs the transfer pipeline on the built-in data;
# `make test` sets up .venv and runs every test. Both are idempotent.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.graft-installed

.PHONY: setup browser run run-photo test test-unit test-docker image docker-engine stack-up stack-down bench bench-transfer bench-throughput mlflow-ui dashboard dashboard-stop clean-state help

help:
	@echo "make run         set up .venv, then run the transfer pipeline on builtin:mnist -> builtin:digits"
	@echo "make run-photo   the photo example: RGB sample photographs on a torchvision ResNet-18 (configs/photo.yaml)"
	@echo "make test        set up .venv, then run all tests (but the docker-marked one)"
	@echo "make test-docker build the step image if needed, run the pipeline with every step in it (needs dockerd)"
	@echo "make image       build the step image graft-step (infra/docker/build-image.sh; local Debian base, locked wheels)"
	@echo "make stack-up    start the team stack here: ZenML server on MySQL + MLflow server on PostgreSQL (infra/README.md)"
	@echo "make stack-down  stop both team servers"
	@echo "make bench       time the demo run (bench/demo_runtime.py)"
	@echo "make bench-throughput  graft's training loop vs a hand-written loop; orchestration overhead (bench/throughput.py)"
	@echo "make bench-transfer  label efficiency of the strategies on four source -> target pairs, 0..10 labels/class (bench/label_efficiency.py)"
	@echo "make mlflow-ui   open the MLflow UI on the store graft run uses (\$$GRAFT_HOME or .graft/; http://127.0.0.1:5000)"
	@echo "make dashboard   start the local ZenML dashboard on .graft/zenml (http://127.0.0.1:8237)"
	@echo "make dashboard-stop  stop it and return to the local store"
	@echo "make clean-state delete .graft/ (runs, registry, caches)"

# One pip call resolves everything against the lock file (a second call would re-resolve and can
# upgrade opentelemetry-api under mlflow).
$(INSTALLED): pyproject.toml requirements.lock
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --disable-pip-version-check -q -c requirements.lock -e ".[dev]"
	@touch $@

setup: $(INSTALLED)

run: setup
	$(BIN)/graft run

run-photo: setup
	$(BIN)/graft run --config configs/photo.yaml

# The report test opens the HTML report in Debian's headless Chromium (no browser download).
browser:
	@command -v chromium >/dev/null || (apt-get install -y -qq chromium >/dev/null || (apt-get update -qq && apt-get install -y -qq chromium >/dev/null))

# Prints the suite's wall-clock time, pass or fail.
test: setup browser
	@start=$$(date +%s); GRAFT_PROGRESS=0 $(BIN)/python -m pytest -m "not docker"; status=$$?; \
	echo "make test: $$(( $$(date +%s) - start )) s"; exit $$status

# Starts the Docker engine (Debian's docker.io) when none answers: .ci/run runs as root on a fresh machine.
docker-engine:
	@infra/docker/engine.sh

image: setup docker-engine
	@PYTHON=$(CURDIR)/$(BIN)/python infra/docker/build-image.sh

test-docker: image
	GRAFT_PROGRESS=0 $(BIN)/python -m pytest -m docker -s

stack-up: setup
	@PYTHON=$(CURDIR)/$(BIN)/python infra/stack-up.sh

stack-down:
	@infra/stack-down.sh

test-unit: setup
	GRAFT_PROGRESS=0 $(BIN)/python -m pytest tests/unit

bench: setup
	$(BIN)/python bench/demo_runtime.py

bench-throughput: setup
	$(BIN)/python bench/throughput.py

bench-transfer: setup
	$(BIN)/python bench/label_efficiency.py

mlflow-ui: setup
	$(BIN)/graft ui

dashboard: setup
	ZENML_CONFIG_PATH=$(CURDIR)/.graft/zenml ZENML_ANALYTICS_OPT_IN=false ZENML_AUTO_OPEN_DASHBOARD=false $(BIN)/zenml login --local

dashboard-stop: setup
	ZENML_CONFIG_PATH=$(CURDIR)/.graft/zenml $(BIN)/zenml logout --local

clean-state:
	rm -rf .graft
