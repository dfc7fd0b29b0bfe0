# make run   - the whole system on this machine (moto, local SMTP, HTTP API); no AWS, no Docker
# make test  - lint, types (mypy), template checks, sam build (when python3.13 is found) and the test suite
# make bench - send throughput, worker throughput, reminder fan-out, cold start (bench/README.md)
# Both install what they need on first use: .venv for the app and tests, .venv-tools for the SAM CLI.

SHELL := /bin/bash
.DEFAULT_GOAL := help
export SAM_CLI_TELEMETRY := 0
export PYTHONPATH := $(CURDIR)/layers/mailer:$(CURDIR)

# The Lambda runtime is python3.13: use it where it is installed (pyenv or PATH), else say so.
# A candidate must actually run: pyenv's python3.13 shim exists even when 3.13 is not selected.
PY313 := $(shell for p in "$$(pyenv root 2>/dev/null)"/versions/3.13*/bin/python3.13 "$$(command -v python3.13)"; do \
	[ -x "$$p" ] && "$$p" -c 'import sys; assert sys.version_info[:2] == (3, 13)' 2>/dev/null && { echo "$$p"; break; }; done)
APP_PYTHON := $(if $(PY313),$(PY313),python3)
TOOLS_PYTHON ?= python3

VENV := .venv
TOOLS := .venv-tools
BIN := $(VENV)/bin

.PHONY: help run test lint validate build pytest bench clean

help:
	@echo "make run    start the local stack (API on :3000, SMTP on :1025, mail in var/mail)"
	@echo "make test   ruff, mypy, cfn-lint, sam validate --lint, sam build, pytest"
	@echo "make build  sam build (needs python3.13)"
	@echo "make bench  benchmarks: throughput, fan-out, cold start and memory (a few minutes)"
	@echo "make clean  remove virtual environments and build output"
	@echo "python3.13: $(if $(PY313),$(PY313),not found)"

$(BIN)/.installed: requirements-dev.txt layers/mailer/requirements.txt
	@echo "== installing the app and test environment in $(VENV) ($$($(APP_PYTHON) --version))"
	$(APP_PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	@touch $@

$(TOOLS)/bin/.installed: requirements-tools.txt
	@echo "== installing the SAM CLI in $(TOOLS) (kept apart: it pins its own boto3 and pydantic)"
	$(TOOLS_PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/pip install --quiet --disable-pip-version-check -r requirements-tools.txt
	@touch $@

# Dovecot is the IMAP server the bounce-mailbox tests start on loopback ports of their own
# (tests/support/imap_server.py). The packaged service is stopped and disabled right after the
# install (its postinst may start it), so nothing is left listening on 143 or 993.
SUDO := $(if $(filter 0,$(shell id -u)),,sudo)
SYSTEM_PATH := $(PATH):/usr/sbin:/sbin

$(VENV)/.dovecot: | $(BIN)/.installed
	@PATH="$(SYSTEM_PATH)" command -v dovecot >/dev/null || { \
		echo "== installing dovecot-imapd (the test and local IMAP server)"; \
		($(SUDO) apt-get update -qq && $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dovecot-imapd) || exit 1; \
		if [ -d /run/systemd/system ]; then \
			$(SUDO) systemctl disable --now dovecot.service dovecot.socket >/dev/null 2>&1 || true; \
		elif [ -x /etc/init.d/dovecot ]; then \
			$(SUDO) /etc/init.d/dovecot stop >/dev/null 2>&1 || true; \
			$(SUDO) update-rc.d dovecot disable >/dev/null 2>&1 || true; \
		fi; \
		if [ -f /run/dovecot/master.pid ] && [ -d /proc/$$(cat /run/dovecot/master.pid) ]; then \
			echo "!! the packaged dovecot service still runs (pid $$(cat /run/dovecot/master.pid)): stop it"; exit 1; \
		fi; \
	}
	@touch $@

$(BIN)/.bench-installed: $(BIN)/.installed requirements-bench.txt
	@echo "== installing the benchmarks' extras in $(VENV)"
	$(BIN)/pip install --quiet --disable-pip-version-check -r requirements-bench.txt
	@touch $@

run: $(BIN)/.installed $(VENV)/.dovecot
	$(BIN)/python -m local.run

lint: $(BIN)/.installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/cfn-lint template.yaml
	$(BIN)/mypy layers/mailer/mailer
	@# Every handler is a module named app: one mypy run each.
	@for handler in functions/*/app.py; do $(BIN)/mypy --no-error-summary $$handler || exit 1; done

validate: $(TOOLS)/bin/.installed
	$(TOOLS)/bin/sam validate --lint

build: $(TOOLS)/bin/.installed
ifeq ($(PY313),)
	@echo "!! python3.13 not found (neither on PATH nor as pyenv 3.13.0): skipping sam build."
	@echo "!! Install it (pyenv install 3.13) to build the arm64 layer; the tests still run on $$(python3 --version)."
else
	PATH="$(dir $(PY313)):$$PATH" $(TOOLS)/bin/sam build
endif

pytest: $(BIN)/.installed $(VENV)/.dovecot
	$(BIN)/pytest

test: lint validate build pytest

# Not part of `make test`: benchmarks report ratios, they never gate (see bench/README.md).
bench: $(BIN)/.bench-installed
	$(BIN)/python -m bench $(BENCH_ARGS)

clean:
	rm -rf $(VENV) $(TOOLS) .aws-sam .pytest_cache .ruff_cache
