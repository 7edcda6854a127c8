"""The deploy kit is linted offline: the Dockerfile's rules, the compose file against the
Compose specification's JSON schema (shipped by check-jsonschema), the Kubernetes manifests
against their OpenAPI schemas (shipped by kubernetes-validate), and yamllint over every file."""

from __future__ import annotations

import importlib.resources
import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml
from dockerfile_parse import DockerfileParser
from yamllint import linter
from yamllint.config import YamlLintConfig

from lakeproxy.config import Settings
from tests.server import ROOT, free_port, lake_serve

DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "k8s"
YAML_FILES = sorted([*DEPLOY.glob("*.yml"), *DEPLOY.glob("*.yaml"), *K8S.glob("*.yaml")])
YAMLLINT = YamlLintConfig("""
extends: default
rules:
  line-length: {max: 120}
  document-start: disable
  truthy: {check-keys: false}
""")


# Dockerfile


@pytest.fixture(scope="module")
def dockerfile() -> Iterator[DockerfileParser]:
    with (ROOT / "Dockerfile").open("rb") as f:
        yield DockerfileParser(fileobj=f)


def stages(parser: DockerfileParser) -> list[list[dict[str, Any]]]:
    out: list[list[dict[str, Any]]] = []
    for instruction in parser.structure:
        if instruction["instruction"] == "FROM":
            out.append([])
        if out:
            out[-1].append(instruction)
    return out


def only(stage: list[dict[str, Any]], name: str) -> list[str]:
    return [i["value"] for i in stage if i["instruction"] == name]


def test_dockerfile_is_multi_stage_on_python_slim(dockerfile: DockerfileParser) -> None:
    parts = stages(dockerfile)
    assert len(parts) >= 2
    for stage in parts:
        (base,) = only(stage, "FROM")
        assert re.match(r"python:3\.11-slim(\S*)?( AS \w+)?$", base, re.IGNORECASE), base
    build, runtime = parts[0], parts[-1]
    assert re.search(r"\bAS build$", only(build, "FROM")[0], re.IGNORECASE)
    assert any("pip wheel" in run for run in only(build, "RUN"))
    installs = [run for run in only(runtime, "RUN") if "pip install" in run]
    assert installs and all("from=build" in run or "--from=build" in run for run in installs)
    assert not only(runtime, "ADD") and not only(build, "ADD")
    for stage in parts:
        for copy in only(stage, "COPY"):
            sources = [s for s in copy.split()[:-1] if not s.startswith("--")]
            if "--from=" not in copy:
                assert all((ROOT / s).exists() for s in sources), copy


def test_runtime_stage_is_non_root_with_a_volume_and_lake_serve(
    dockerfile: DockerfileParser,
) -> None:
    runtime = stages(dockerfile)[-1]
    (user,) = only(runtime, "USER")
    assert user.split(":")[0] not in ("root", "0")
    assert "/data" in " ".join(only(runtime, "VOLUME"))
    (entrypoint,) = only(runtime, "ENTRYPOINT")
    assert json.loads(entrypoint) == ["lake", "serve", "--host", "0.0.0.0"]
    env = dockerfile.envs
    assert env["LAKE_DATA_DIR"] == "/data"
    assert env["PYTHONDONTWRITEBYTECODE"] == "1"


def healthcheck_command(parser: DockerfileParser) -> list[str]:
    (check,) = only(stages(parser)[-1], "HEALTHCHECK")
    assert "--interval=" in check and "--timeout=" in check
    command = json.loads(check[check.index("CMD") + 3:].strip())
    assert isinstance(command, list)
    return command


def test_healthcheck_uses_python_urllib_on_healthz(dockerfile: DockerfileParser) -> None:
    command = healthcheck_command(dockerfile)
    assert command[:2] == ["python", "-c"]
    assert "urllib.request" in command[2] and "/healthz" in command[2]
    assert not any(tool in " ".join(command) for tool in ("curl", "wget"))


def test_healthcheck_command_really_checks_a_server(
    dockerfile: DockerfileParser, tmp_path: Path
) -> None:
    script = healthcheck_command(dockerfile)[2]
    with lake_serve(tmp_path / "data") as server:
        port = server.endpoint.rsplit(":", 1)[1]
        ok = subprocess.run([sys.executable, "-c", script], timeout=30, capture_output=True,
                            env={**os.environ, "LAKE_PORT": port})
        assert ok.returncode == 0, ok.stderr
    down = subprocess.run([sys.executable, "-c", script], timeout=30, capture_output=True,
                          env={**os.environ, "LAKE_PORT": str(free_port())})
    assert down.returncode != 0


def test_dockerignore_keeps_the_context_small() -> None:
    ignored = {line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()
               if line.strip() and not line.startswith("#")}
    assert {".git", ".venv", "tests", "lake-data"} <= ignored
    assert not {"lakeproxy", "pyproject.toml", "README.md"} & ignored


# Compose


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    document = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())
    assert isinstance(document, dict)
    return document


def compose_schema() -> dict[str, Any]:
    vendor = importlib.resources.files("check_jsonschema.builtin_schemas.vendor")
    schema = json.loads(vendor.joinpath("compose-spec.json").read_text())
    assert isinstance(schema, dict)
    return schema


def test_compose_file_follows_the_compose_specification(compose: dict[str, Any]) -> None:
    schema = compose_schema()
    validator = jsonschema.validators.validator_for(schema)(schema)
    errors = sorted(validator.iter_errors(compose), key=lambda e: list(e.path))
    assert not errors, [f"{list(e.path)}: {e.message}" for e in errors]


def test_compose_schema_catches_mistakes(compose: dict[str, Any]) -> None:
    broken = json.loads(json.dumps(compose))
    broken["services"]["lake1"]["healthcheck"]["intervall"] = "5s"
    broken["services"]["haproxy"]["depends_on"]["lake1"]["condition"] = "service_ready"
    schema = compose_schema()
    validator = jsonschema.validators.validator_for(schema)(schema)
    assert len(list(validator.iter_errors(broken))) >= 2


def test_compose_wires_postgres_s3_two_replicas_and_a_balancer(
    compose: dict[str, Any],
) -> None:
    services = compose["services"]
    replicas = [name for name, s in services.items()
                if s.get("build", {}).get("dockerfile") == "Dockerfile"]
    assert len(replicas) >= 2
    assert services["postgres"]["image"].startswith("postgres:")
    assert "minio" in services["minio"]["image"]
    for name in replicas:
        service = services[name]
        env = service["environment"]
        assert env["LAKE_METADATA_URL"].startswith("postgresql://")
        assert env["LAKE_DEFAULT_NAMESPACE"].startswith("s3://")
        assert env["LAKE_S3_ENDPOINT"] == "http://minio:9000"
        assert "/readyz" in " ".join(service["healthcheck"]["test"])
        assert service["depends_on"]["postgres"]["condition"] == "service_healthy"
        assert "ports" not in service  # reachable only through the balancer
    balancer = services["haproxy"]
    assert {balancer["depends_on"][r]["condition"] for r in replicas} == {"service_healthy"}
    assert [p for name, s in services.items() for p in s.get("ports", [])] == ["8000:8000"]
    for name in ("postgres", "minio", "haproxy", *replicas):
        assert "test" in services[name]["healthcheck"], name
    config = (DEPLOY / "haproxy.cfg").read_text()
    assert "option httpchk GET /readyz" in config
    for name in replicas:
        assert re.search(rf"^\s*server {name} {name}:8000\b", config, re.MULTILINE)
    assert "deny" in config and "/metrics" in config


def test_every_secret_compose_needs_has_a_placeholder() -> None:
    text = (DEPLOY / "docker-compose.yml").read_text()
    required = set(re.findall(r"\$\{(\w+):\?", text))
    example = dict(line.split("=", 1) for line in (DEPLOY / "env.example").read_text()
                   .splitlines() if line and not line.startswith("#"))
    assert required == set(example)
    assert all("CHANGE" in value.upper() for value in example.values())


@pytest.mark.skipif(
    shutil.which("docker") is None
    or subprocess.run(["docker", "compose", "version"], capture_output=True).returncode != 0,
    reason="no docker CLI with the compose plugin on this machine",
)
def test_docker_compose_config_accepts_the_file() -> None:
    example = dict(line.split("=", 1) for line in (DEPLOY / "env.example").read_text()
                   .splitlines() if line and not line.startswith("#"))
    result = subprocess.run(
        ["docker", "compose", "-f", str(DEPLOY / "docker-compose.yml"), "config", "--quiet"],
        capture_output=True, text=True, timeout=60, env={**os.environ, **example})
    assert result.returncode == 0, result.stderr


# Kubernetes


def manifests() -> list[tuple[Path, dict[str, Any]]]:
    out = []
    for path in sorted(K8S.glob("*.yaml")):
        for document in yaml.safe_load_all(path.read_text()):
            if document:
                out.append((path, document))
    return out


def by_kind(kind: str) -> dict[str, Any]:
    (found,) = [doc for _, doc in manifests() if doc["kind"] == kind]
    return found


@pytest.mark.parametrize("path_and_doc", manifests(), ids=lambda p: p[0].name)
def test_manifest_matches_its_kubernetes_schema(path_and_doc: tuple[Path, dict[str, Any]]) -> None:
    _, document = path_and_doc
    version = kubernetes_validate.latest_version()
    kubernetes_validate.validate(document, version, strict=True)


def test_kubernetes_schema_catches_mistakes() -> None:
    deployment = json.loads(json.dumps(by_kind("Deployment")))
    deployment["spec"]["template"]["spec"]["containers"][0]["readinesProbe"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, kubernetes_validate.latest_version(),
                                     strict=True)


def test_manifests_hold_the_expected_kinds() -> None:
    kinds = sorted(doc["kind"] for _, doc in manifests())
    assert kinds == ["ConfigMap", "Deployment", "PodDisruptionBudget", "Secret", "Service"]


def test_deployment_probes_resources_and_security() -> None:
    deployment = by_kind("Deployment")
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert {"cpu", "memory"} <= container["resources"]["requests"].keys()
    assert "memory" in container["resources"]["limits"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] != 0
    security = container["securityContext"]
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"]["drop"] == ["ALL"]
    mounts = {m["mountPath"] for m in container["volumeMounts"]}
    assert {"/tmp", "/data"} <= mounts  # writable places on a read-only root
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    for kind in ("Service", "PodDisruptionBudget"):
        spec = by_kind(kind)["spec"]
        selector = spec["selector"].get("matchLabels", spec["selector"])
        assert selector.items() <= labels.items(), kind
    assert deployment["spec"]["replicas"] >= 2
    assert by_kind("PodDisruptionBudget")["spec"]["minAvailable"] < deployment["spec"]["replicas"]


def test_configmap_is_a_valid_lakeproxy_configuration(tmp_path: Path) -> None:
    text = by_kind("ConfigMap")["data"]["lake.toml"]
    (tmp_path / "lake.toml").write_text(text)
    settings = Settings.load(tmp_path / "lake.toml", env={})
    assert settings.data_dir == Path("/data") and settings.log_format == "json"
    assert (settings.default_namespace or "").startswith("s3://")
    pod = by_kind("Deployment")["spec"]["template"]["spec"]
    assert pod["terminationGracePeriodSeconds"] > settings.shutdown_timeout + 5
    env = {e["name"]: e["value"] for e in pod["containers"][0]["env"]}
    mount = next(m for m in pod["containers"][0]["volumeMounts"] if m["name"] == "config")
    assert env["LAKE_CONFIG"] == f"{mount['mountPath']}/lake.toml"
    assert tomllib.loads(text)


def test_secret_holds_only_marked_placeholders() -> None:
    secret = by_kind("Secret")
    assert "PLACEHOLDER" in (K8S / "secret.yaml").read_text()
    for name, value in secret["stringData"].items():
        assert "CHANGE" in value.upper(), name
        assert name.startswith(("LAKE_", "AWS_")), name


# YAML style


@pytest.mark.parametrize("path", YAML_FILES, ids=lambda p: str(p.relative_to(DEPLOY)))
def test_yamllint(path: Path) -> None:
    problems = list(linter.run(path.read_text(), YAMLLINT, str(path)))
    assert not problems, [f"{p.line}:{p.column} {p.message}" for p in problems]


def test_example_configuration_file_loads() -> None:
    settings = Settings.load(DEPLOY / "lake.example.toml", env={})
    assert (settings.host, settings.log_format, settings.sqlite_synchronous) == (
        "0.0.0.0", "json", "FULL")
