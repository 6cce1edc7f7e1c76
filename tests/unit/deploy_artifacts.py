"""The deployment artifacts the test_deploy_*.py files check, loaded offline: Dockerfile,
.dockerignore, docker-compose.yml and the Kubernetes manifests in deploy/k8s.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml
from pydantic_settings import BaseSettings

from tasksaga.api.settings import ApiSettings
from tasksaga.config import CommonSettings, ObjectStoreSettings
from tasksaga.notifier.settings import NotifierSettings
from tasksaga.orchestrator.settings import OrchestratorSettings
from tasksaga.projector.settings import ProjectorSettings
from tasksaga.worker.settings import WorkerSettings

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
K8S_DIR = ROOT / "deploy" / "k8s"

PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
SCRIPTS: dict[str, str] = PYPROJECT["project"]["scripts"]

SERVER_IMAGES = {"kafka": "apache/kafka", "kafka-2": "apache/kafka", "kafka-3": "apache/kafka",
                 "postgres": "postgres", "minio": "minio/minio"}
BROKERS = ("kafka", "kafka-2", "kafka-3")
APP_COMMANDS = {
    "api": "tasksaga-api",
    "orchestrator": "tasksaga-orchestrator",
    "worker": "tasksaga-worker",
    "notifier": "tasksaga-notifier",
    "projector": "tasksaga-projector",
}
SETUP_COMMANDS = ("tasksaga-migrate", "tasksaga-topics")
STORES_FILES = {"api", "worker"}  # the services that talk to MinIO
TOPIC_PARTITIONS = CommonSettings.model_fields["topic_partitions"].default

# The settings classes each container reads its TASKSAGA_* variables with. `migrate` runs
# tasksaga-migrate and tasksaga-topics (a subset of the common variables, CommonSettings).
SERVICE_SETTINGS: dict[str, tuple[type[BaseSettings], ...]] = {
    "api": (ApiSettings, ObjectStoreSettings),
    "orchestrator": (OrchestratorSettings,),
    "worker": (WorkerSettings, ObjectStoreSettings),
    "notifier": (NotifierSettings,),
    "projector": (ProjectorSettings,),
    "migrate": (CommonSettings,),
}
# Service-specific variables the deployment may set before a settings class defines them
# (explicitly, so that a typo is never taken for one). Empty: every one is defined today.
PENDING_SERVICE_VARIABLES: frozenset[str] = frozenset()
# Set in Kubernetes only, from the pod's name: compose has no per-replica name to give (a
# worker scaled with --scale would share one id, and static members sharing an id fence each
# other), so its services use dynamic membership.
K8S_ONLY_VARIABLES = {"TASKSAGA_ORCHESTRATOR_INSTANCE_ID", "TASKSAGA_WORKER_INSTANCE_ID"}


# -- loading ----------------------------------------------------------------------------------


def compose_document() -> dict[str, Any]:
    document = yaml.safe_load(COMPOSE_FILE.read_text())
    assert isinstance(document, dict)
    return document


def compose_services() -> dict[str, dict[str, Any]]:
    services: dict[str, dict[str, Any]] = compose_document()["services"]
    return services


def compose_environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) if "=" in item else (item, "") for item in env)
    return {str(k): "" if v is None else str(v) for k, v in env.items()}


def k8s_files() -> list[Path]:
    return sorted(p for p in K8S_DIR.glob("*.y*ml") if p.name != "kustomization.yaml")


def k8s_documents() -> list[tuple[Path, dict[str, Any]]]:
    documents = []
    for path in k8s_files():
        for document in yaml.safe_load_all(path.read_text()):
            if document is not None:
                documents.append((path, document))
    return documents


def k8s_objects(kind: str) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for _, d in k8s_documents() if d["kind"] == kind}


def k8s_workloads() -> dict[str, dict[str, Any]]:
    """Every pod-running object, by its component label (api, orchestrator, ..., migrate)."""
    found = {}
    for _, document in k8s_documents():
        if document["kind"] in ("Deployment", "StatefulSet", "Job"):
            component = document["metadata"]["labels"]["app.kubernetes.io/component"]
            found[component] = document
    return found


def only_container(workload: dict[str, Any]) -> dict[str, Any]:
    containers = workload["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1, workload["metadata"]["name"]
    container: dict[str, Any] = containers[0]
    return container


def k8s_environment(workload: dict[str, Any]) -> dict[str, str | None]:
    """The container's variables; values from ConfigMaps and the Secret, None for fieldRefs."""
    config_maps = k8s_objects("ConfigMap")
    secrets = {name: s.get("stringData", {}) for name, s in k8s_objects("Secret").items()}
    container = only_container(workload)
    env: dict[str, str | None] = {}
    for source in container.get("envFrom", []):
        env.update(config_maps[source["configMapRef"]["name"]]["data"])
    for item in container.get("env", []):
        if "value" in item:
            env[item["name"]] = str(item["value"])
        elif "secretKeyRef" in item.get("valueFrom", {}):
            ref = item["valueFrom"]["secretKeyRef"]
            env[item["name"]] = secrets[ref["name"]][ref["key"]]
        else:
            env[item["name"]] = None
    return env


def variables_read_by(classes: tuple[type[BaseSettings], ...]) -> set[str]:
    names = set()
    for cls in classes:
        prefix = cls.model_config.get("env_prefix", "")
        for field_name, field in cls.model_fields.items():
            alias = field.validation_alias or field.alias
            names.add((alias if isinstance(alias, str) else prefix + field_name).upper())
    return names


def service_environments() -> Iterator[tuple[str, str, dict[str, str | None]]]:
    """(where, service, variables) for every tasksaga container in compose and Kubernetes."""
    for name in SERVICE_SETTINGS:
        yield "compose", name, dict(compose_environment(compose_services()[name]))
        yield "k8s", name, k8s_environment(k8s_workloads()[name])


def dockerfile_instructions() -> list[tuple[str, str]]:
    logical: list[str] = []
    pending = ""
    for line in DOCKERFILE.read_text().splitlines():
        if not pending and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        logical.append(pending + line)
        pending = ""
    assert not pending, "Dockerfile ends with a line continuation"
    instructions = []
    for line in logical:
        keyword, _, rest = line.strip().partition(" ")
        instructions.append((keyword.upper(), rest.strip()))
    return instructions


def dockerignored(path: str) -> bool:
    """Docker's rule: the last pattern matching the path or one of its parents decides."""
    patterns = []
    for line in DOCKERIGNORE.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            negated = line.startswith("!")
            patterns.append((negated, line.lstrip("!").strip("/")))
    parts = path.split("/")
    candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    excluded = False
    for negated, pattern in patterns:
        regex = re.escape(pattern)
        regex = regex.replace(r"\*\*/", "(.*/)?").replace(r"\*\*", ".*")
        regex = regex.replace(r"\*", "[^/]*").replace(r"\?", "[^/]")
        if any(re.fullmatch(regex, candidate) for candidate in candidates):
            excluded = not negated
    return excluded


def joined(command: Any) -> str:
    return command if isinstance(command, str) else " ".join(command)
