# Operator Console. `make help` lists the targets.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV ?= .venv
PY := $(CURDIR)/$(VENV)/bin/python
export OPCON_HOME ?= $(CURDIR)/.opcon
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)
MLFLOW_HOST ?= 127.0.0.1
MLFLOW_PORT ?= 5000
export API_HOST ?= 127.0.0.1
export API_PORT ?= 8000
export API_WORKERS ?= 2
UI_HOST ?= 127.0.0.1
UI_PORT ?= 8501
export OPCON_API_URL ?= http://$(API_HOST):$(API_PORT)
export OPCON_MLFLOW_UI_URL ?= http://$(MLFLOW_HOST):$(MLFLOW_PORT)
JOB_WORKERS ?= 1
LOGS := $(OPCON_HOME)/logs
# the MLflow server's login: config, env file and user database (python -m ml.mlflow_auth writes them)
MLFLOW_AUTH := $(OPCON_HOME)/mlflow/auth

.PHONY: help setup system-packages services data model run mlflow-ui test lint bench screenshots clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F ':.*## ' '{printf "  make %-16s %s\n", $$1, $$2}'

# the pins (runtime and dev: the tests need both), then this checkout as an editable install of
# the package `operator-console`, built without its dependencies so that nothing but the pins lands
$(VENV)/.installed: requirements.txt requirements-dev.txt pyproject.toml
	@command -v git >/dev/null || (apt-get update -qq && apt-get install -y -qq git)
	@test -x $(PY) || $(PYTHON) -m venv $(VENV) || \
		(apt-get update -qq && apt-get install -y -qq python3-venv && $(PYTHON) -m venv $(VENV))
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements-dev.txt
	$(PY) -m pip install -q --no-deps --editable .
	@# the path file that earlier versions of this rule wrote in place of the editable install
	@rm -f "$$($(PY) -c 'import site; print(site.getsitepackages()[0])')/operator-console.pth"
	$(PY) -m pip check
	@touch $@

setup: $(VENV)/.installed ## create .venv, install the pins and the package (editable)

# Debian packages the tests and benchmarks drive: the browser, Prometheus and promtool, wrk
SYSTEM_PACKAGES := chromium:/usr/bin/chromium prometheus:/usr/bin/promtool wrk:/usr/bin/wrk
system-packages: ## install the Debian packages the tests need when missing (apt-get, as root)
	@missing=$$(for entry in $(SYSTEM_PACKAGES); do test -x $${entry#*:} || echo $${entry%%:*}; done); \
	if [ -n "$$missing" ]; then echo "installing $$missing"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; fi

services: ## PostgreSQL and Redis on 127.0.0.1 for the tests (installed and started when missing)
	@bash tests/services.sh

data: setup ## bring the raw data into the workspace (DVC pull or generate), track and push it
	@$(PY) -m ml.bootstrap

model: setup ## data, then train and register a first champion if there is none
	@$(PY) -m ml.bootstrap --train

dataset: setup ## switch to your own labelled CSV: make dataset CSV=path TARGET=column [ID=column]
	@test -n "$(CSV)" -a -n "$(TARGET)" || (echo "usage: make dataset CSV=path TARGET=column [ID=column]" >&2; exit 2)
	@$(PY) -m ml.dataset use "$(CSV)" --target "$(TARGET)" $(if $(ID),--id-column "$(ID)")

run: model ## set everything up and start the console (:8501), MLflow UI (:5000), the API (:8000), a job worker
	@mkdir -p $(LOGS)
	@$(PY) -c "from control_api.settings import from_env, token_path; settings = from_env(); \
		print('API token      ', token_path(settings.state_dir), '(or set OPCON_API_TOKEN)')"
	@$(PY) -m control_api.identity.bootstrap
	@$(PY) -m ml.mlflow_auth
	@trap 'kill 0' INT TERM EXIT; \
	$(VENV)/bin/mlflow --env-file "$(MLFLOW_AUTH)/server.env" server --app-name basic-auth \
		--backend-store-uri "sqlite:///$(OPCON_HOME)/mlflow/mlflow.db" \
		--default-artifact-root "$(OPCON_HOME)/mlflow/artifacts" \
		--host $(MLFLOW_HOST) --port $(MLFLOW_PORT) --workers 1 > $(LOGS)/mlflow.log 2>&1 & \
	PROMETHEUS_MULTIPROC_DIR=$(OPCON_HOME)/prometheus $(VENV)/bin/gunicorn -c control_api/gunicorn_conf.py \
		'control_api:create_app()' > $(LOGS)/api.log 2>&1 & \
	$(PY) -m control_api.jobs.worker --workers $(JOB_WORKERS) > $(LOGS)/worker.log 2>&1 & \
	$(PY) -m ml.stage_host > $(LOGS)/stage-host.log 2>&1 & \
	$(VENV)/bin/streamlit run ui/streamlit_app.py --server.address $(UI_HOST) --server.port $(UI_PORT) \
		--server.headless true --browser.gatherUsageStats false > $(LOGS)/ui.log 2>&1 & \
	for i in $$(seq 1 120); do curl -fs -o /dev/null http://$(API_HOST):$(API_PORT)/ready && \
		curl -fs -o /dev/null http://$(MLFLOW_HOST):$(MLFLOW_PORT)/health && \
		curl -fs -o /dev/null http://$(UI_HOST):$(UI_PORT)/_stcore/health && break; sleep 1; done; \
	echo "console (UI)    http://$(UI_HOST):$(UI_PORT)"; \
	echo "MLflow UI       http://$(MLFLOW_HOST):$(MLFLOW_PORT)"; \
	echo "MLflow login    user viewer (read-only), password in $(OPCON_HOME)/mlflow/viewer_password"; \
	echo "control API     http://$(API_HOST):$(API_PORT)  (docs: /docs, ready: /ready)"; \
	echo "job worker      $(JOB_WORKERS) thread(s); logs in $(LOGS)   (Ctrl-C stops everything)"; \
	wait

# test modules run in parallel processes, a module at a time each (they share expensive fixtures);
# most of a module's time is waiting on servers and subprocesses, so more processes than cores pay
TEST_PROCESSES ?= 3
test: data system-packages services ## set up and run the whole test suite
	$(PY) -m pytest -n $(TEST_PROCESSES) --dist loadfile $(PYTEST_ARGS)

lint: setup ## ruff
	$(VENV)/bin/ruff check .

bench: data system-packages ## benchmarks (figures printed side by side)
	$(PY) bench/pipeline.py
	$(PY) bench/serve.py
	$(PY) bench/drift.py
	$(PY) bench/feedback.py
	$(PY) bench/ui.py

screenshots: data system-packages ## regenerate docs/screenshots with the browser test
	OPCON_UPDATE_SCREENSHOTS=1 $(PY) -m pytest tests/e2e -q

clean: ## remove the virtualenv, the editable install's metadata and the default state dir
	rm -rf $(VENV) .opcon operator_console.egg-info
