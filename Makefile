# captioner: `make demo` trains and evaluates on the built-in data; `make test` runs the tests.
VENV   := .venv
PYTHON := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: help install browser demo test test-fast lint benchmark clean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*##' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

install: $(STAMP)  ## create .venv/ and install the package (editable) with its test extras

$(STAMP): pyproject.toml
	test -x $(PYTHON) || python3 -m venv $(VENV)
	$(PYTHON) -m pip install --quiet --upgrade pip
	$(PYTHON) -m pip install --quiet -e ".[test]"
	touch $(STAMP)

demo: $(STAMP)  ## generate the synthetic data, train and evaluate the demo model, tag a synthetic video (outputs/demo/)
	$(VENV)/bin/captioner-train experiment=demo hydra.run.dir=outputs/demo
	$(VENV)/bin/captioner-evaluate checkpoint=outputs/demo/model.pt report=true metrics.meteor=false hydra.run.dir=outputs/demo/evaluation
	$(PYTHON) -m captioner.synthetic.videos data/synthetic_videos 1
	$(VENV)/bin/captioner-tag checkpoint=outputs/demo/model.pt video=data/synthetic_videos/video_000.webm out_dir=outputs/demo/video
	@echo
	@echo "the training curve:     outputs/demo/training_curve.png"
	@echo "the evaluation report:  outputs/demo/evaluation/report.html"
	@echo "the video page:         outputs/demo/video/video_000.html"

test: $(STAMP) browser  ## run the whole test suite
	$(PYTHON) -m pytest

browser:  ## headless Chromium and its driver for the page tests (apt-get, as root; elsewhere those tests skip)
	@if command -v chromium >/dev/null && command -v chromedriver >/dev/null; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		{ apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
			chromium chromium-driver >/dev/null; } || echo "note: apt-get could not install chromium: the browser tests will skip"; \
	else echo "note: no chromium/chromedriver and not root: the browser tests will skip"; fi

lint: $(STAMP)  ## pycodestyle and pyflakes checks (ruff, settings in pyproject.toml)
	$(VENV)/bin/ruff check .

benchmark: $(STAMP)  ## print the benchmarks' figures (needs outputs/demo/model.pt: make demo)
	$(PYTHON) -m pip install --quiet -e ".[test,bench]"
	$(PYTHON) benchmarks/decode_speed.py
	$(PYTHON) benchmarks/video_tagging.py

test-fast: $(STAMP)  ## the tests without the end-to-end CLI runs
	$(PYTHON) -m pytest -m "not slow"

clean:  ## remove generated data and outputs (keeps .venv/)
	rm -rf outputs data/synthetic .pytest_cache
