# Two entry points for a fresh machine:
#   make run   install everything, then run the whole toy workflow (snakemake)
#   make test  install everything, then run the test suite
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
CORES ?= all

.PHONY: install run test lint bench clean publish pull

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

# torch first, pinned: it is the local CPU wheel; any other spec downloads CUDA builds.
$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e '.[test]'
	@command -v java >/dev/null 2>&1 || { echo "installing Java (PTB tokenizer for CIDEr)"; \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq default-jre-headless) >/dev/null; }
	touch $@

install: $(VENV)/.installed

run: install
	PATH=$(CURDIR)/$(BIN):$$PATH $(BIN)/snakemake --profile profiles/default --cores $(CORES)
	PATH=$(CURDIR)/$(BIN):$$PATH $(BIN)/snakemake --profile profiles/default --cores $(CORES) --report report.html
	@echo "HTML report (table, figures, captions): report.html"

# Share a run through a DVC remote (docs/workflow.md, "Sharing through a remote"):
#   make publish   after `make run`: dvc.lock records it (nothing reruns); dvc.lock, metrics/ and
#                  results/ are staged in git; then `git commit` and `dvc push`
#   make pull      in a clone: `dvc pull`, then Snakemake marks the pulled outputs up to date
publish: install
	PATH=$(CURDIR)/$(BIN):$$PATH $(BIN)/python workflow/scripts/dvc_share.py publish

pull: install
	PATH=$(CURDIR)/$(BIN):$$PATH $(BIN)/python workflow/scripts/dvc_share.py pull

test: install
	PATH=$(CURDIR)/$(BIN):$$PATH $(BIN)/python -m pytest

lint: install
	PATH=$(CURDIR)/$(BIN):$$PATH $(BIN)/snakemake --lint

# Every benchmark of BENCHMARKS.md, one after the other (CPU, ~30 min on 2 cores; outputs in
# benchmarks/out/). Run on an otherwise idle machine: ratios are side by side, seconds are not.
bench: install
	$(BIN)/python benchmarks/decode.py
	$(BIN)/python benchmarks/extract.py
	$(BIN)/python benchmarks/frame_storage.py --clips 12
	$(BIN)/python benchmarks/frame_storage.py --arch vit-b32 --clips 4
	$(BIN)/python benchmarks/feature_reads.py
	$(BIN)/python benchmarks/train_step.py
	$(BIN)/python benchmarks/loader.py   # consumption = the fastest preset of train_step.json
	$(BIN)/python benchmarks/peers.py

clean:
	rm -rf data models metrics results logs .snakemake report.html
