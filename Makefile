# Secateur: `make run` opens the window with the demo, `make test` runs lint, the import
# contract and the test suite. Both create .venv when it is missing.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
# torch is pinned first: this machine holds the CPU build of 2.13.0 on disk, while an
# open range would pull a multi-GB CUDA build.
TORCH  := torch==2.13.0
DEMO_OUT := out/demo-compressed.pt

.PHONY: run test lint bench demo-model screenshots clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed-run: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet $(TORCH)
	$(BIN)/pip install --quiet -e .
	touch $@

$(VENV)/.installed-test: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet $(TORCH)
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@ $(VENV)/.installed-run

run: $(VENV)/.installed-run
	@if [ -z "$$DISPLAY$$WAYLAND_DISPLAY" ] && [ -z "$$QT_QPA_PLATFORM" ]; then \
		echo "No display found (DISPLAY and WAYLAND_DISPLAY are unset): running the headless demo instead."; \
		mkdir -p out && $(BIN)/secateur compress --demo --recipe resources/recipes/demo.yaml \
			--output $(DEMO_OUT) --report out/demo-report.json --force; \
	else \
		$(BIN)/secateur --demo --recipe resources/recipes/demo.yaml; \
	fi

lint: $(VENV)/.installed-test
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

# pytest exits 5 when it collected no test; make treats every non-zero exit as a failure.
test: lint
	QT_QPA_PLATFORM=offscreen $(BIN)/python -m pytest -q

bench: $(VENV)/.installed-test
	$(BIN)/python benchmarks/run_all.py

demo-model: $(VENV)/.installed-test
	$(BIN)/python scripts/train_demo.py

screenshots: $(VENV)/.installed-run
	QT_QPA_PLATFORM=offscreen $(BIN)/python scripts/make_screenshots.py

clean:
	rm -rf out build dist *.egg-info .pytest_cache .ruff_cache
