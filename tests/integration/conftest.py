"""Model fixtures: the fp32 and int8 model directories, built at most once per session.

`make test` builds them into ./models and passes SEMANTIC_TEST_MODELS (a folder that is
then brought up to date if needed). A bare `pytest` run uses ./models when both variants
there are up to date, and otherwise builds into a temporary folder, leaving ./models
untouched.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from semantic.embedder.model.builder import FP32_DIR, INT8_DIR, build_models, stale_variants

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
