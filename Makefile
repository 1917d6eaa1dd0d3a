# imgfeat: `make run` and `make test` are the two commands; everything else is a step of them.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
MODELS := .cache/models/ssd_mobilenet_v2_coco/model.json
export SPARK_LOCAL_IP ?= 127.0.0.1
export PYSPARK_PYTHON := $(CURDIR)/$(PY)
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)
# imgfeat is imported from the checkout (never installed): executors get it as a --py-files zip.
export PYTHONPATH := $(CURDIR)

DATE ?=
INPUT ?=
WAREHOUSE ?=
ENGINE ?= openvino
RUN_ARGS := $(if $(DATE),--date $(DATE)) $(if $(INPUT),--input $(INPUT)) $(if $(WAREHOUSE),--warehouse $(WAREHOUSE)) --engine $(ENGINE)

.PHONY: setup run test bench eval pack airflow airflow-stop compose-secrets java browser clean help

help:
	@echo "make run    set up, then run the image_features DAG on the sample partition"
	@echo "            (or: make run DATE=YYYY-MM-DD INPUT=<dir|uri> WAREHOUSE=<dir|uri>)"
	@echo "make test   set up, then run the test suite"
	@echo "make bench  set up, then benchmark stages and end-to-end against the bare models"
	@echo "make eval   set up, then learn codes and print their quality against projection and ITQ"
	@echo "make setup  venv from requirements.txt, models fetched and converted (cached)"
	@echo "make airflow       start a local Airflow (UI http://127.0.0.1:8080, login admin, password in"
	@echo "                   var/airflow/secrets.json, generated at first start); make airflow-stop"
	@echo "make compose-secrets  generate var/compose/ (docker-compose.yml's secrets) if absent"
	@echo "make pack   build/ archives for cluster mode: Python env (venv-pack), models, library zip"
	@echo "make browser  Debian's chromium and chromium-driver for the UI tests (apt, as root; make test runs it)"

java:
	@java -version 2>&1 | grep -qE 'version "(17|21)' || { \
	  echo "Java 17 is required (Spark 3.5). Install it with: apt-get install -y openjdk-17-jre-headless"; exit 1; }

$(STAMP): requirements.txt requirements-bigdl.txt pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.txt
	$(PY) -m pip install -q --no-deps -r requirements-bigdl.txt
	@touch $@

# The UI tests drive a real headless Chromium: Debian's, with its chromedriver (apt, as root).
browser:
	@command -v chromium >/dev/null && command -v chromedriver >/dev/null || { \
	  echo "installing Debian's chromium and chromium-driver (the UI tests' browser; log: var/logs/apt.log)"; \
	  mkdir -p var/logs && { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q \
	    --no-install-recommends chromium chromium-driver; } >var/logs/apt.log 2>&1 || { \
	  echo "could not install chromium (see var/logs/apt.log); as root: apt-get install chromium chromium-driver"; exit 1; }; }

# Idempotent and quick when the model directory is complete; adds what an older cache lacks.
setup: java $(STAMP)
	@$(PY) -m imgfeat.cli setup

run: setup
	$(PY) -m imgfeat.cli run $(RUN_ARGS)

# Two workers (tests/conftest.py says how the tests are grouped); TEST_WORKERS=0 runs them in one process.
TEST_WORKERS ?= 2
test: setup browser
	$(PY) -m pytest -q -rs --durations=15 $(if $(filter-out 0,$(TEST_WORKERS)),-n $(TEST_WORKERS)) $(PYTEST_ARGS)

bench: setup
	$(PY) -m devtools.bench $(BENCH_ARGS)

eval: setup
	$(PY) -m devtools.eval $(EVAL_ARGS)

airflow: setup
	$(PY) -m devtools.airflow_services start

airflow-stop:
	$(PY) -m devtools.airflow_services stop

# docker-compose.yml reads its JWT secret, Fernet key and admin password from these files
# (git-ignored, mode 0600). Standard library only: no venv needed. Never overwrites them.
compose-secrets:
	$(PYTHON) -m imgfeat.credentials compose

# For YARN cluster mode: upload these to HDFS and point IMGFEAT_PYTHON_ARCHIVE / IMGFEAT_MODEL_ARCHIVE
# at them (README, "Pointing it at YARN and HDFS"). The archive links to a Python 3.11 at this
# machine's prefix; PYTHON_PREFIX=/usr points it at the nodes' own Python 3.11 instead.
PYTHON_PREFIX ?=
pack: setup
	@mkdir -p build
	$(VENV)/bin/venv-pack --quiet --force -p $(VENV) -o build/imgfeat-env.tar.gz $(if $(PYTHON_PREFIX),--python-prefix $(PYTHON_PREFIX))
	tar -czf build/imgfeat-models.tar.gz -C $(dir $(MODELS)) .
	$(PY) -m imgfeat.packaging
	@ls -sh build/imgfeat-env.tar.gz build/imgfeat-models.tar.gz

clean:
	rm -rf var build .pytest_cache
