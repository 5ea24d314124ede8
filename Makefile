# dreambooth-operator — `make help` lists every target.
SHELL := /bin/bash
.DEFAULT_GOAL := help

VENV   ?= .venv
PYTHON := $(VENV)/bin/python
UV     := $(VENV)/bin/uv
PYTEST := $(VENV)/bin/pytest
# Pinned installer; its cache makes a fresh clone's install take seconds after the first.
UV_VERSION := 0.13.9
INSTALL_STAMP := $(VENV)/.installed

.PHONY: help install demo test test-unit test-integration lint e2e containers bench crds chart binaries images cluster-up cluster-down clean

help: ## List every target with one line each
	@grep -hE '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  \033[36m%-18s\033[0m %s\n", $$1, $$2}'

install: $(INSTALL_STAMP) ## Create .venv with the packages (editable), test tools, and the Debian packages the tests use
$(INSTALL_STAMP): api/pyproject.toml operator/pyproject.toml trainer-image/pyproject.toml cli/pyproject.toml \
		requirements-test.txt trainer-image/requirements.txt trainer-image/Dockerfile
	hack/install-system-packages.sh
	test -x $(PYTHON) || python3 -m venv $(VENV)
	$(VENV)/bin/pip install --quiet uv==$(UV_VERSION)
	@# The trainer image's pins are constraints here too: the tests run what the image ships,
	@# torch included (the version of the image's pytorch/pytorch base).
	echo "torch==$$(grep -o 'pytorch/pytorch:[0-9.]*[0-9]' trainer-image/Dockerfile | cut -d: -f2)" > $(VENV)/torch.txt
	$(UV) pip install --python $(PYTHON) -e api -e operator -e trainer-image -e cli -r requirements-test.txt \
		-c trainer-image/requirements.txt -c $(VENV)/torch.txt
	@# DeepSpeed's build imports torch, so it goes in after torch, without build isolation;
	@# at the version the trainer image pins in its Dockerfile.
	$(UV) pip install --python $(PYTHON) --no-build-isolation "$$(grep -o 'deepspeed==[0-9.]*' trainer-image/Dockerfile)"
	touch $@

binaries: install ## Find or build the pinned control-plane binaries (cached outside the repo)
	$(PYTHON) -m tests.support binaries

demo: install ## Run the cloody job locally on a tiny model (no cluster, ~1-2 min on 2 cores); prints the grid
	$(VENV)/bin/dreambooth run -f examples/cloody-job.yaml --workdir demo-output --tiny

test: install ## Run all tests (starts its own control planes, MinIO, Prometheus and a real node)
	@# Side by side: the Go builds are CPU-bound, the image builds mostly downloads and disk.
	$(MAKE) --no-print-directory -j2 binaries images
	$(PYTEST) tests

test-unit: install ## Run the unit tests only (no servers)
	$(PYTEST) tests/unit

test-integration: binaries ## Run the integration tests (real control plane, MinIO, Prometheus)
	$(PYTEST) tests/integration

e2e: binaries ## Run the end-to-end tests (pods as processes of the test node agent)
	$(PYTEST) tests/e2e

containers: binaries images ## Run the container tier: the images on a real node (kubelet, containerd)
	$(PYTEST) tests/containers

lint: install ## Lint: ruff, dead code (vulture, allowlist reviewed), CRDs in step with the models
	$(VENV)/bin/ruff check api operator trainer-image cli tests bench hack
	$(VENV)/bin/vulture api operator trainer-image cli tests bench hack/vulture_allowlist.py --min-confidence 60
	$(PYTHON) -m dreambooth_api.crdgen --check

bench: install ## Run the CPU benchmarks under bench/ (they print figures)
	@for script in bench/*_cpu.py; do echo "== $$script"; $(PYTHON) $$script || exit 1; done

crds: install ## Regenerate crds/ from the pydantic models and copy them into the chart
	$(PYTHON) -m dreambooth_api.crdgen
	rm -f charts/dreambooth-operator/crds/*.yaml
	cp crds/*.yaml charts/dreambooth-operator/crds/

chart: binaries ## Lint the Helm chart and run its tests
	$$($(PYTHON) -m tests.support binaries helm | awk '$$1=="helm"{print $$2}') lint --strict charts/dreambooth-operator
	$(PYTEST) tests/chart

images: install ## Build the operator and trainer images with podman, offline (stand-in bases from Debian)
	hack/images.sh

cluster-up: binaries ## Start a local control plane + MinIO + Prometheus (state in .cluster/)
	$(PYTHON) -m tests.support up

cluster-down: install ## Stop what cluster-up started and remove its state
	$(PYTHON) -m tests.support down

clean: ## Remove the virtualenv and caches (not the binary cache in ~/.cache)
	rm -rf $(VENV) .pytest_cache .ruff_cache
