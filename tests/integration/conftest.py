"""Model fixtures (the fp32 and int8 model directories, built at most once per session)
and the indexer tests' NATS client and environment.

`make test` builds them into ./models and passes SEMANTIC_TEST_MODELS (a folder that is
then brought up to date if needed). A bare `pytest` run uses ./models when both variants
there are up to date, and otherwise builds into a temporary folder, leaving ./models
untouched.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from pathlib import Path

import nats
import numpy as np
import pytest
from foreign_kit import DOCS, Stack, start_stack
from indexer_kit import indexer_env, reset_streams
from nats.aio.client import Client as NatsClient

from semantic.common.embedder_client import EmbedderClient
from semantic.tools.devstack.nats import EmbeddedNats
from semantic.tools.modelbuild.builder import FP32_DIR, INT8_DIR, build_models, stale_variants

REPO_MODELS = Path(__file__).resolve().parents[2] / "models"


@pytest.fixture(scope="session")
def model_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder holding both built variants."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing here may reach a model hub
    configured = os.environ.get("SEMANTIC_TEST_MODELS")
    if configured:
        build_models(Path(configured))
        return Path(configured)
    if not stale_variants(REPO_MODELS):
        return REPO_MODELS
    root = tmp_path_factory.mktemp("models")
    build_models(root)
    return root


@pytest.fixture(scope="session")
def fp32_model_dir(model_root: Path) -> Path:
    """The default model, fp32."""
    return model_root / FP32_DIR


@pytest.fixture(scope="session")
def int8_model_dir(model_root: Path) -> Path:
    """The int8 variant of the default model."""
    return model_root / INT8_DIR


@pytest.fixture
async def nc(nats_server: EmbeddedNats) -> AsyncIterator[NatsClient]:
    """A NATS client on a server whose indexer streams were deleted (a fresh start)."""
    await reset_streams(nats_server.url)
    client = await nats.connect(nats_server.url)
    try:
        yield client
    finally:
        await client.close()


@pytest.fixture
def env(
    database_url: str, nats_server: EmbeddedNats, embedder_address: str, fp32_model_dir: Path
) -> dict[str, str]:
    """The environment of an indexer on this test's database."""
    return indexer_env(database_url, nats_server.url, embedder_address, fp32_model_dir)


# --- the foreign-store tests (test_foreign_stores, test_foreign_pgvector) --------------------
# Other modules that define a `stack` fixture of their own override this one.


@pytest.fixture
async def stack(
    database_url: str, embedder_address: str, fp32_model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[Stack]:
    async with start_stack(database_url, embedder_address, fp32_model_dir, monkeypatch) as running:
        yield running


@pytest.fixture(scope="module")
def model_vectors(embedder_address: str) -> dict[str, np.ndarray]:
    """The real model's vector of each foreign-store document (title + " " + body, as the
    service embeds)."""

    async def embed() -> dict[str, np.ndarray]:
        client = EmbedderClient(embedder_address)
        try:
            texts = [f"{title} {body}" for title, body in DOCS.values()]
            embedded = await client.embed(texts, input_type="document")
        finally:
            await client.close()
        return dict(zip(DOCS, embedded.vectors.astype(np.float32), strict=True))

    return asyncio.run(embed())
