"""Model fixtures: the fp32 and int8 model directories, built once if not present.

`make test` builds them into ./models and passes SEMANTIC_TEST_MODELS; a bare `pytest`
run uses ./models when it is up to date and otherwise builds into a temporary folder.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from semantic.embedder.model.builder import FP32_DIR, INT8_DIR, build_models

REPO_MODELS = Path(__file__).resolve().parents[2] / "models"


@pytest.fixture(scope="session")
def model_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder holding both built variants."""
    configured = os.environ.get("SEMANTIC_TEST_MODELS")
    root = Path(configured) if configured else REPO_MODELS
    try:
        build_models(root)
    except OSError:
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
