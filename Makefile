# Two commands do all set-up on a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
FRONTEND_SOURCES := $(shell find frontend/src frontend/public -type f 2>/dev/null) \
	frontend/index.html frontend/vite.config.ts frontend/package.json frontend/tsconfig.json
CHROMIUM := /usr/bin/chromium

.PHONY: run test deps dev-deps frontend chromium demo-model bench clean

run: deps frontend demo-model
	$(BIN)/python run.py serve

test: dev-deps frontend chromium
	$(BIN)/python -m pytest $(PYTEST_ARGS)

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(VENV)/.deps: requirements.txt | $(BIN)/python
	$(BIN)/pip install --quiet -r requirements.txt
	touch $@

$(VENV)/.dev-deps: requirements.txt requirements-dev.txt | $(BIN)/python
	$(BIN)/pip install --quiet -r requirements-dev.txt
	touch $@ $(VENV)/.deps

deps: $(VENV)/.deps
dev-deps: $(VENV)/.dev-deps

frontend/node_modules/.package-lock.json: frontend/package-lock.json
	cd frontend && npm ci --no-audit --no-fund

frontend/dist/index.html: frontend/node_modules/.package-lock.json $(FRONTEND_SOURCES)
	cd frontend && npm run build

frontend: frontend/dist/index.html

# Debian's Chromium drives the browser tests (playwright-core downloads no browser), with the fonts the
# screenshots need: CJK glyphs (the Chinese pages) and colour emoji (chat), else they render as boxes.
BROWSER_PACKAGES := chromium fonts-noto-cjk fonts-noto-color-emoji
chromium:
	@{ test -x $(CHROMIUM) && fc-list 2>/dev/null | grep -qi 'Noto Sans CJK' && fc-list 2>/dev/null | grep -qi 'Noto Color Emoji'; } || \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(BROWSER_PACKAGES))

# A tiny random-weight Stable Diffusion model, a ControlNet and a style preset using them, so a fresh machine can
# generate and stylize end to end. Run on an empty models folder, or when the demo's ControlNet or database is
# missing beside its model (`run.py demo-model` adds only what is missing).
DEMO_INCOMPLETE = [ -d data/models/demo-tiny ] && { [ ! -d data/models/controlnets/demo-tiny-control ] || [ ! -f data/visionary.db ]; }
demo-model: deps
	@if [ -z "$$(ls -A data/models 2>/dev/null)" ] || { $(DEMO_INCOMPLETE); }; then $(BIN)/python run.py demo-model; fi

bench: dev-deps
	$(BIN)/python bench/http_api.py

clean:
	rm -rf $(VENV) frontend/node_modules frontend/dist
