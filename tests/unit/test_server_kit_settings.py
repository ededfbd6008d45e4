"""ServerKit.from_settings: a service's kit takes its addresses and grace from settings."""

import pytest

from semantic.common.server import ServerKit
from semantic.common.settings import BaseServiceSettings


def test_the_kit_binds_where_the_settings_say(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SEMANTIC_GRPC_HOST", "127.0.0.2")
    monkeypatch.setenv("SEMANTIC_GRPC_PORT", "6001")
    monkeypatch.setenv("SEMANTIC_METRICS_HOST", "127.0.0.3")
    monkeypatch.setenv("SEMANTIC_METRICS_PORT", "6002")
    monkeypatch.setenv("SEMANTIC_SHUTDOWN_GRACE_SECONDS", "2.5")
    kit = ServerKit.from_settings(BaseServiceSettings(), name="probe", service_names=["a.B"])
    assert (kit.name, list(kit.service_names)) == ("probe", ["a.B"])
    assert (kit.host, kit.port) == ("127.0.0.2", 6001)
    assert (kit.metrics_host, kit.metrics_port) == ("127.0.0.3", 6002)
    assert kit.grace_seconds == 2.5
    assert list(kit.extra_interceptors) == []
