# Secateur: `make run` opens the window with the demo, `make test` runs lint, the import
# contract and the test suite (with the cluster extra: tests/test_cluster.py starts a local
# Ray; `make run` stays without it). Both create .venv when it is missing. `make package`
# builds the desktop bundle and its tarball, `make package-test` checks them (not part of
# make test: slow).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
# torch is pinned first: this machine holds the CPU build of 2.13.0 on disk, while an
# open range would pull a multi-GB CUDA build.
TORCH  := torch==2.13.0
DEMO_OUT := out/demo-compressed.pt
VERSION  := $(shell sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml)
APP_ID   := io.github.secateur.Secateur
BUNDLE   := dist/secateur
TARBALL  := dist/secateur-$(VERSION)-linux-$(shell uname -m).tar.zst
# zstd level of the tarball: 12 is ~1 min on 2 cores; 19 saves another 10% in ~8 min.
ZSTD_LEVEL ?= 12

.PHONY: run test lint bench demo-model screenshots package package-test clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed-run: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet $(TORCH)
	$(BIN)/pip install --quiet -e .
	touch $@

$(VENV)/.installed-test: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet $(TORCH)
	$(BIN)/pip install --quiet -e '.[test,cluster]'
	touch $@ $(VENV)/.installed-run

$(VENV)/.installed-package: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet $(TORCH)
	$(BIN)/pip install --quiet -e '.[package]'
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

# One folder, dist/secateur: the executable (window and command line), install.sh and share/
# (menu entry, AppStream data, MIME types) for the per-user install; then the tarball.
package: $(VENV)/.installed-package
	rm -rf build/pyinstaller $(BUNDLE) $(TARBALL)
	start=$$(date +%s) && \
	$(BIN)/pyinstaller --noconfirm --log-level WARN --distpath dist --workpath build/pyinstaller \
		packaging/secateur.spec && \
	echo $$(( $$(date +%s) - start )) > dist/secateur.build-seconds
	mkdir -p $(BUNDLE)/share
	cp packaging/install.sh $(BUNDLE)/
	cp packaging/$(APP_ID).desktop packaging/$(APP_ID).metainfo.xml packaging/$(APP_ID).mime.xml \
		$(BUNDLE)/share/
	tar -C dist -cf - secateur | zstd -q -T0 -$(ZSTD_LEVEL) -o $(TARBALL)
	@echo "built $(BUNDLE) in $$(cat dist/secateur.build-seconds) s: $$(du -sh $(BUNDLE) | cut -f1)," \
		"$$(find $(BUNDLE) -type f | wc -l) files; $(TARBALL): $$(du -h $(TARBALL) | cut -f1)"

# Validates the desktop files, runs the bundle offscreen (window, compress, bad input against
# the source install) and prints its figures. Needs desktop-file-utils and appstream.
package-test: $(VENV)/.installed-package
	$(BIN)/python packaging/check_bundle.py --bundle $(BUNDLE)

clean:
	rm -rf out build dist *.egg-info .pytest_cache .ruff_cache
