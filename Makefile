# Two commands on a fresh machine with only Python 3.11: `make demo` and `make test`.
# Each bootstraps what it needs: uv in .uv/, then the locked environment in .venv/ (uv.lock).
PYTHON ?= $(shell command -v python3.11 2>/dev/null || command -v python3)
UV_VERSION := 0.13.9
UV := .uv/bin/uv
export UV_PYTHON_DOWNLOADS := never
export UV_PROJECT_ENVIRONMENT := .venv
export TF_CPP_MIN_LOG_LEVEL ?= 2

.PHONY: demo test test-slow test-image test-all install lock serve airflow-up airflow-down clean help

help:
	@echo "make demo       all apps end to end (train, gate, publish, serve, request)"
	@echo "make test       the fast test suite (what CI runs first)"
	@echo "make test-slow  the slow tests (end-to-end demo, bigger data)"
	@echo "make test-image build the production image with podman and train/serve in it (root, Debian)"
	@echo "make serve      serve published models on http://127.0.0.1:8501"
	@echo "make airflow-up Airflow on http://127.0.0.1:8080 with the DAGs of dags/ (make airflow-down stops it)"
	@echo "make lock       re-resolve uv.lock after changing a pyproject.toml"

$(UV):
	$(PYTHON) -m venv .uv
	.uv/bin/python -m pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)

.venv/.synced: $(UV) uv.lock pyproject.toml shared/pyproject.toml $(wildcard solutions/*/pyproject.toml)
	$(UV) sync --frozen --all-packages --python $(PYTHON)
	@touch $@

install: .venv/.synced

lock: $(UV)
	$(UV) lock --python $(PYTHON)

demo: install
	.venv/bin/solutions demo

test: install
	.venv/bin/pytest -m "not slow and not image"

test-slow: install
	.venv/bin/pytest -m "slow and not image"

# Debian's podman and debootstrap build deploy/docker/Dockerfile here (tests/test_image.py says how).
test-image: install
	command -v podman >/dev/null && command -v debootstrap >/dev/null || (apt-get update -q && apt-get install -y -q podman debootstrap)
	.venv/bin/pytest -m image

test-all: install
	.venv/bin/pytest

serve: install
	.venv/bin/solutions serve

airflow-up: install
	scripts/airflow-up.sh

airflow-down:
	scripts/airflow-down.sh

clean:
	rm -rf artifacts .pytest_cache
