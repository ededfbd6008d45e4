"""Errors of the model package: building, loading and describing model directories.

    SemanticError                         (semantic.common.errors)
    └── ModelError                        base of this package; never raised directly
        ├── ModelFileMissing(path)        a model directory lacks model.onnx, tokenizer.json ...
        ├── ManifestInvalid(path, problem)  manifest.json is unreadable or breaks its schema
        ├── ModelChecksumMismatch(path, recorded, actual)  model.onnx is not the one described
        ├── ModelIncompatible(path, problem)  the graph does not fit the manifest or runtime
        └── ModelBuildError(problem)      the weights could not be turned into a model

Adapters catch onnxruntime, tokenizers and pydantic errors and re-raise one of these with
``from``.
"""

from __future__ import annotations

from pathlib import Path

from semantic.common.errors import SemanticError


class ModelError(SemanticError):
    """Base of every model-directory error."""


class ModelFileMissing(ModelError):
    """A file a model directory must hold is not there."""

    def __init__(self, path: Path) -> None:
        self.path = path
        super().__init__(
            f"model directory {path.parent} has no {path.name} "
            "(a model directory holds model.onnx, tokenizer.json and manifest.json; "
            "build the default one with `semantic model build`)"
        )


class ManifestInvalid(ModelError):
    """manifest.json cannot be read or does not follow the manifest schema."""

    def __init__(self, path: Path, problem: str) -> None:
        self.path = path
        self.problem = problem
        super().__init__(f"invalid model manifest {path}: {problem}")


class ModelChecksumMismatch(ModelError):
    """model.onnx does not have the sha256 its manifest records."""

    def __init__(self, path: Path, recorded: str, actual: str) -> None:
        self.path = path
        self.recorded = recorded
        self.actual = actual
        super().__init__(
            f"{path} has sha256 {actual[:12]}…, its manifest records {recorded[:12]}…; "
            "rebuild the directory or update the manifest"
        )


class ModelIncompatible(ModelError):
    """The ONNX graph or tokenizer cannot be used as the manifest describes."""

    def __init__(self, path: Path, problem: str) -> None:
        self.path = path
        self.problem = problem
        super().__init__(f"model {path} cannot be used: {problem}")


class ModelBuildError(ModelError):
    """The source weights could not be converted into a model directory."""

    def __init__(self, problem: str) -> None:
        self.problem = problem
        super().__init__(f"model build failed: {problem}")
