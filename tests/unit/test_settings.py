"""Settings: read once from the environment, typed, frozen, secrets redacted."""

from pathlib import Path

import pytest
from pydantic import ValidationError

from semantic.common.settings import BaseServiceSettings, redact_url


def test_conventional_database_and_nats_variables_are_read(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql://app:hunter2@db:5432/semantic")
    monkeypatch.setenv("NATS_URL", "nats://nats:4222")
    monkeypatch.setenv("SEMANTIC_GRPC_PORT", "6000")
    settings = BaseServiceSettings()
    assert settings.dsn() == "postgresql://app:hunter2@db:5432/semantic"
    assert settings.nats_url == "nats://nats:4222"
    assert settings.grpc_port == 6000


def test_redacted_settings_never_show_the_password(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql://app:hunter2@db:5432/semantic")
    shown = BaseServiceSettings().redacted()
    assert shown["database_url"] == "postgresql://app:***@db:5432/semantic"
    assert "hunter2" not in repr(BaseServiceSettings())


def test_settings_are_frozen() -> None:
    settings = BaseServiceSettings()
    with pytest.raises(ValidationError):
        settings.grpc_port = 1  # type: ignore[misc]


def test_bad_value_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SEMANTIC_GRPC_PORT", "not-a-port")
    with pytest.raises(ValidationError, match="grpc_port"):
        BaseServiceSettings()


def test_dotenv_file_is_read_and_environment_wins(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / ".env").write_text("SEMANTIC_LOG_LEVEL=debug\nSEMANTIC_METRICS_PORT=9999\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("SEMANTIC_METRICS_PORT", "9100")
    settings = BaseServiceSettings()
    assert settings.log_level == "debug"
    assert settings.metrics_port == 9100


def test_missing_database_url_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.delenv("SEMANTIC_DATABASE_URL", raising=False)
    with pytest.raises(ValueError, match="DATABASE_URL is not set"):
        BaseServiceSettings().dsn()


def test_redact_url_leaves_urls_without_password_alone() -> None:
    assert redact_url("nats://nats:4222") == "nats://nats:4222"
