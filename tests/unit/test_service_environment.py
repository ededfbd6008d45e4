"""The environment a spawned service gets: the spawner's address wins, and the children
of `semantic dev` log as their parent does."""

from __future__ import annotations

from pathlib import Path

from semantic.tools.cli.dev import DevSettings, children_environment, missing_model_settings
from semantic.tools.devstack.service import service_environment


def test_the_spawner_address_wins_and_metrics_and_http_take_no_fixed_port_unless_asked() -> None:
    base = {"PATH": "/bin", "SEMANTIC_GRPC_PORT": "6000", "SEMANTIC_LOG_LEVEL": "info"}
    env = service_environment(base, {"SEMANTIC_LOG_LEVEL": "warning"}, "127.0.0.1", 7001)
    assert env == {
        "PATH": "/bin",
        "SEMANTIC_GRPC_HOST": "127.0.0.1",
        "SEMANTIC_GRPC_PORT": "7001",
        "SEMANTIC_METRICS_PORT": "0",
        "SEMANTIC_HTTP_HOST": "127.0.0.1",
        "SEMANTIC_HTTP_PORT": "0",
        "SEMANTIC_LOG_LEVEL": "warning",
    }
    asked = service_environment({}, {"SEMANTIC_METRICS_PORT": "9100"}, "127.0.0.1", 7001)
    assert asked["SEMANTIC_METRICS_PORT"] == "9100"
    http = service_environment({}, {"SEMANTIC_HTTP_PORT": "8081"}, "127.0.0.1", 7001)
    assert http["SEMANTIC_HTTP_PORT"] == "8081"


def test_dev_children_log_in_the_parent_format_and_level() -> None:
    settings = DevSettings(log_format="console", log_level="debug")
    environ = {"SEMANTIC_LOG_FORMAT": "json", "SEMANTIC_LOG_LEVEL": "info", "HOME": "/h"}
    env = children_environment(settings, environ, dsn="postgresql://x/db", nats_url="nats://n")
    assert env["SEMANTIC_LOG_FORMAT"] == "console"
    assert env["SEMANTIC_LOG_LEVEL"] == "debug"
    assert (env["DATABASE_URL"], env["NATS_URL"], env["HOME"]) == (
        "postgresql://x/db",
        "nats://n",
        "/h",
    )
    assert env["SEMANTIC_EMBEDDER_ADDRESS"] == f"127.0.0.1:{settings.dev_embedder_port}"


def test_dev_children_run_without_auth_unless_the_environment_sets_it() -> None:
    settings = DevSettings()
    assert children_environment(settings, {}, dsn="d", nats_url="n")["SEMANTIC_AUTH_MODE"] == (
        "disabled"
    )
    jwt = children_environment(settings, {"SEMANTIC_AUTH_MODE": "jwt"}, dsn="d", nats_url="n")
    assert jwt["SEMANTIC_AUTH_MODE"] == "jwt"


def test_dev_names_the_model_settings_the_start_folder_cannot_serve(tmp_path: Path) -> None:
    """`semantic dev` refuses to start from a folder without the built model (the services
    resolve the relative defaults there), naming the settings that would point elsewhere."""
    assert [m.split(" ")[0] for m in missing_model_settings({}, tmp_path)] == [
        "SEMANTIC_EMBEDDER_MODEL_DIRS",
        "SEMANTIC_SEARCH_TOKENIZER",
    ]
    given = {"SEMANTIC_EMBEDDER_MODEL_DIRS": "/m", "SEMANTIC_SEARCH_TOKENIZER": "/m/t.json"}
    assert missing_model_settings(given, tmp_path) == []
    model = tmp_path / "models" / "all-minilm-l6-v2"
    model.mkdir(parents=True)
    (model / "tokenizer.json").write_text("{}")
    assert missing_model_settings({}, tmp_path) == []
