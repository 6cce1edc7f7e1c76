"""Offline checks of the deployment artifacts: Dockerfile, .dockerignore, docker-compose.yml and
the Kubernetes manifests in deploy/k8s. No Docker engine or cluster is needed; the `docker
compose config` and `kubectl kustomize` checks run only where those clients work offline.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import re
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import BaseModel
from pydantic_settings import BaseSettings

import tasksaga
from tasksaga.adapters.avro_codec import DEFAULT_CONTRACTS_DIR
from tasksaga.adapters.migrations import DEFAULT_MIGRATIONS_DIR
from tasksaga.api.settings import ApiSettings
from tasksaga.config import CommonSettings, ObjectStoreSettings
from tasksaga.notifier.settings import NotifierSettings
from tasksaga.orchestrator.settings import OrchestratorSettings
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
    "migrate": (CommonSettings,),
}
# Service-specific variables the deployment may set before a settings class defines them
# (explicitly, so that a typo is never taken for one). Empty: every one is defined today.
PENDING_SERVICE_VARIABLES: frozenset[str] = frozenset()
# Set in Kubernetes only: compose runs a single orchestrator with no static membership.
K8S_ONLY_VARIABLES = {"TASKSAGA_ORCHESTRATOR_INSTANCE_ID"}


# -- loading ----------------------------------------------------------------------------------


def _compose() -> dict[str, Any]:
    document = yaml.safe_load(COMPOSE_FILE.read_text())
    assert isinstance(document, dict)
    return document


def _services() -> dict[str, dict[str, Any]]:
    services: dict[str, dict[str, Any]] = _compose()["services"]
    return services


def _environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) if "=" in item else (item, "") for item in env)
    return {str(k): "" if v is None else str(v) for k, v in env.items()}


def _k8s_files() -> list[Path]:
    return sorted(p for p in K8S_DIR.glob("*.y*ml") if p.name != "kustomization.yaml")


def _k8s_documents() -> list[tuple[Path, dict[str, Any]]]:
    documents = []
    for path in _k8s_files():
        for document in yaml.safe_load_all(path.read_text()):
            if document is not None:
                documents.append((path, document))
    return documents


def _k8s(kind: str) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for _, d in _k8s_documents() if d["kind"] == kind}


def _workloads() -> dict[str, dict[str, Any]]:
    """Every pod-running object, by its component label (api, orchestrator, ..., migrate)."""
    found = {}
    for _, document in _k8s_documents():
        if document["kind"] in ("Deployment", "StatefulSet", "Job"):
            component = document["metadata"]["labels"]["app.kubernetes.io/component"]
            found[component] = document
    return found


def _container(workload: dict[str, Any]) -> dict[str, Any]:
    containers = workload["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1, workload["metadata"]["name"]
    container: dict[str, Any] = containers[0]
    return container


def _k8s_environment(workload: dict[str, Any]) -> dict[str, str | None]:
    """The container's variables; values from ConfigMaps and the Secret, None for fieldRefs."""
    config_maps = _k8s("ConfigMap")
    secrets = {name: s.get("stringData", {}) for name, s in _k8s("Secret").items()}
    container = _container(workload)
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


def _variables_read_by(classes: tuple[type[BaseSettings], ...]) -> set[str]:
    names = set()
    for cls in classes:
        prefix = cls.model_config.get("env_prefix", "")
        for field_name, field in cls.model_fields.items():
            alias = field.validation_alias or field.alias
            names.add((alias if isinstance(alias, str) else prefix + field_name).upper())
    return names


def _service_environments() -> Iterator[tuple[str, str, dict[str, str | None]]]:
    """(where, service, variables) for every tasksaga container in compose and Kubernetes."""
    for name in SERVICE_SETTINGS:
        yield "compose", name, dict(_environment(_services()[name]))
        yield "k8s", name, _k8s_environment(_workloads()[name])


def _dockerfile_instructions() -> list[tuple[str, str]]:
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


def _dockerignored(path: str) -> bool:
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


def _joined(command: Any) -> str:
    return command if isinstance(command, str) else " ".join(command)


# -- docker-compose.yml ---------------------------------------------------------------------------


def test_compose_has_exactly_the_expected_services() -> None:
    expected = {*SERVER_IMAGES, "migrate", *APP_COMMANDS}
    assert set(_services()) == expected


@pytest.mark.parametrize("name", sorted(SERVER_IMAGES))
def test_servers_use_official_images_with_pinned_tags_and_healthchecks(name: str) -> None:
    service = _services()[name]
    repository, _, tag = service["image"].partition(":")
    assert repository == SERVER_IMAGES[name]
    assert tag and tag != "latest", f"{name}: pin an image tag"
    assert "build" not in service
    assert service["healthcheck"]["test"], f"{name} needs a healthcheck"


def test_kafka_is_the_requested_release() -> None:
    assert {_services()[b]["image"] for b in BROKERS} == {"apache/kafka:4.1.1"}


@pytest.mark.parametrize("name", sorted(APP_COMMANDS))
def test_app_services_run_their_console_script_from_the_built_image(name: str) -> None:
    services = _services()
    service = services[name]
    assert service["build"] in (".", {"context": "."}), name
    images = {services[n]["image"] for n in [*APP_COMMANDS, "migrate"]}
    assert len(images) == 1, f"one image for all tasksaga containers, got {images}"
    assert service["command"] == [APP_COMMANDS[name]]
    assert APP_COMMANDS[name] in SCRIPTS


def test_migrate_applies_migrations_then_creates_topics_once() -> None:
    migrate = _services()["migrate"]
    command = _joined(migrate["command"])
    assert migrate["build"] in (".", {"context": "."})
    assert migrate.get("restart") == "no"
    positions = [command.index(script) for script in SETUP_COMMANDS]
    assert positions == sorted(positions), "tasksaga-migrate must run before tasksaga-topics"
    assert all(script in SCRIPTS for script in SETUP_COMMANDS)
    # A failure of any step must fail the service (compose then does not start the others).
    assert "&&" in command and ";" not in command


def test_services_wait_for_healthy_servers_and_a_completed_migrate() -> None:
    services = _services()
    for name in SERVER_IMAGES:
        assert "depends_on" not in services[name]
    expected_migrate = {**dict.fromkeys(BROKERS, "service_healthy"),
                        "postgres": "service_healthy"}
    assert {k: v["condition"] for k, v in services["migrate"]["depends_on"].items()} == (
        expected_migrate
    )
    for name in APP_COMMANDS:
        depends_on = services[name]["depends_on"]
        assert isinstance(depends_on, dict), f"{name}: depends_on needs conditions"
        conditions = {k: v["condition"] for k, v in depends_on.items()}
        expected = {**expected_migrate, "migrate": "service_completed_successfully"}
        if name in STORES_FILES:
            expected["minio"] = "service_healthy"
        assert conditions == expected, name


def test_api_is_published_and_services_stop_gracefully() -> None:
    services = _services()
    assert "8000:8000" in [str(p) for p in services["api"]["ports"]]
    for name in APP_COMMANDS:
        assert services[name].get("stop_grace_period") == "30s", name
        assert "container_name" not in services[name], f"{name}: would prevent --scale"


@pytest.mark.parametrize("node", [1, 2, 3])
def test_kafka_runs_kraft_without_zookeeper(node: int) -> None:
    """Three brokers, each also a controller: topics replicated 3 times, 2 in sync."""
    services = _services()
    name = BROKERS[node - 1]
    env = _environment(services[name])
    assert not any("zookeeper" in name.lower() for name in services)
    assert not any("ZOOKEEPER" in key for key in env)
    assert set(env["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}
    assert env["KAFKA_NODE_ID"] == str(node)
    assert env["KAFKA_CONTROLLER_QUORUM_VOTERS"] == ",".join(
        f"{n}@{b}:9093" for n, b in enumerate(BROKERS, start=1))
    assert set(env["KAFKA_LISTENERS"].split(",")) == {"PLAINTEXT://:9092", "CONTROLLER://:9093"}
    assert env["KAFKA_ADVERTISED_LISTENERS"] == f"PLAINTEXT://{name}:9092"
    assert env["KAFKA_CONTROLLER_LISTENER_NAMES"] == "CONTROLLER"
    assert env["KAFKA_AUTO_CREATE_TOPICS_ENABLE"] == "false"
    assert env["KAFKA_GROUP_INITIAL_REBALANCE_DELAY_MS"] == "0"
    factors = [v for k, v in env.items() if k.endswith("REPLICATION_FACTOR")]
    assert factors and set(factors) == {"3"}
    assert env["KAFKA_MIN_INSYNC_REPLICAS"] == "2"
    app_envs = [_environment(services[n]) for n in [*APP_COMMANDS, "migrate"]]
    assert {e["TASKSAGA_KAFKA_BOOTSTRAP"] for e in app_envs} == {
        ",".join(f"{b}:9092" for b in BROKERS)}
    assert {e["TASKSAGA_TOPIC_REPLICATION_FACTOR"] for e in app_envs} == {"3"}
    assert {e["TASKSAGA_TOPIC_MIN_INSYNC_REPLICAS"] for e in app_envs} == {"2"}


def test_postgres_commits_durably() -> None:
    postgres = _services()["postgres"]
    command = _joined(postgres["command"])
    assert "fsync=on" in command and "synchronous_commit=on" in command
    env = _environment(postgres)
    assert env["POSTGRES_USER"] == env["POSTGRES_PASSWORD"] == env["POSTGRES_DB"] == "tasksaga"
    assert "pg_isready" in _joined(postgres["healthcheck"]["test"])
    url = _environment(_services()["orchestrator"])["TASKSAGA_DATABASE_URL"]
    assert url == "postgresql://tasksaga:tasksaga@postgres:5432/tasksaga"


def test_minio_serves_data_with_a_console_and_matching_credentials() -> None:
    services = _services()
    minio = services["minio"]
    assert _joined(minio["command"]).split()[:2] == ["server", "/data"]
    assert "--console-address" in _joined(minio["command"])
    env = _environment(minio)
    for name in STORES_FILES:
        app = _environment(services[name])
        assert app["TASKSAGA_S3_ENDPOINT"] == "minio:9000"
        assert app["TASKSAGA_S3_ACCESS_KEY"] == env["MINIO_ROOT_USER"]
        assert app["TASKSAGA_S3_SECRET_KEY"] == env["MINIO_ROOT_PASSWORD"]


# -- TASKSAGA_* variables (compose and Kubernetes) -----------------------------------------------


def test_every_tasksaga_variable_is_read_by_the_service_it_is_given_to() -> None:
    ignored = []
    for where, name, env in _service_environments():
        read = _variables_read_by(SERVICE_SETTINGS[name]) | PENDING_SERVICE_VARIABLES
        ignored += [
            f"{where}:{name}:{v}" for v in env if v.startswith("TASKSAGA_") and v not in read
        ]
    assert not ignored, f"set but read by no settings class of that service: {ignored}"


def test_every_config_map_and_secret_key_is_used() -> None:
    used = {variable for _, _, env in _service_environments() for variable in env}
    keys = {k for c in _k8s("ConfigMap").values() for k in c["data"]}
    keys |= {k for c in _k8s("Secret").values() for k in c["stringData"]}
    assert keys <= used, sorted(keys - used)


@pytest.mark.parametrize("name", sorted([*APP_COMMANDS, "migrate"]))
def test_compose_and_k8s_give_a_service_the_same_variables(name: str) -> None:
    compose = {v for v in _environment(_services()[name]) if v.startswith("TASKSAGA_")}
    k8s = {v for v in _k8s_environment(_workloads()[name]) if v.startswith("TASKSAGA_")}
    assert compose == k8s - K8S_ONLY_VARIABLES
    assert ("TASKSAGA_S3_ENDPOINT" in compose) == (name in STORES_FILES)
    assert ("TASKSAGA_WEBHOOK_SECRET" in compose) == (name == "notifier")


def test_settings_accept_the_configured_values(monkeypatch: pytest.MonkeyPatch) -> None:
    for where, name, env in _service_environments():
        for variable in [v for v in os.environ if v.startswith("TASKSAGA_")]:
            monkeypatch.delenv(variable)
        for variable, value in env.items():
            # A value from the downward API (fieldRef) is the pod's name.
            monkeypatch.setenv(variable, "tasksaga-orchestrator-0" if value is None else value)
        loaded = {cls: cls() for cls in SERVICE_SETTINGS[name]}
        common = next(s for s in loaded.values() if isinstance(s, CommonSettings))
        assert common.task_modules == CommonSettings.model_fields["task_modules"].default, (
            where, name)
        assert common.topic_prefix == "tasksaga", (where, name)
        if isinstance(common, ApiSettings):
            assert common.api_host == "0.0.0.0", f"{where}: the API must listen on all interfaces"
            assert common.api_port == 8000
        if isinstance(common, OrchestratorSettings) and where == "k8s":
            assert common.orchestrator_instance_id == "tasksaga-orchestrator-0"


# -- Kubernetes ---------------------------------------------------------------------------------


def test_k8s_documents_are_complete_and_in_one_namespace() -> None:
    documents = _k8s_documents()
    assert documents
    for path, document in documents:
        assert {"apiVersion", "kind", "metadata"} <= set(document), path.name
        if document["kind"] != "Namespace":
            assert document["metadata"]["namespace"] == "tasksaga", path.name
    assert set(_k8s("Namespace")) == {"tasksaga"}
    assert set(_workloads()) == {*APP_COMMANDS, "migrate"}


def test_kustomization_lists_every_manifest() -> None:
    kustomization = yaml.safe_load((K8S_DIR / "kustomization.yaml").read_text())
    assert kustomization["kind"] == "Kustomization"
    assert kustomization["namespace"] == "tasksaga"
    assert sorted(kustomization["resources"]) == sorted(p.name for p in _k8s_files())
    assert [i["name"] for i in kustomization["images"]] == ["tasksaga"]


@pytest.mark.parametrize("component", sorted([*APP_COMMANDS, "migrate"]))
def test_k8s_workloads_are_bounded_non_root_and_stop_gracefully(component: str) -> None:
    workload = _workloads()[component]
    pod = workload["spec"]["template"]["spec"]
    container = _container(workload)
    assert container["image"] == "tasksaga"
    resources = container["resources"]
    for bound in ("requests", "limits"):
        assert {"cpu", "memory"} <= set(resources[bound]), f"{component}: {bound}"
    assert pod["terminationGracePeriodSeconds"] == 30
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    if container["securityContext"].get("readOnlyRootFilesystem"):
        mounts = {m["mountPath"] for m in container.get("volumeMounts", [])}
        assert "/tmp" in mounts, f"{component}: a read-only root needs a writable /tmp"
    labels = workload["spec"]["template"]["metadata"]["labels"]
    if "selector" in workload["spec"]:
        assert workload["spec"]["selector"]["matchLabels"].items() <= labels.items()


@pytest.mark.parametrize("component", sorted(APP_COMMANDS))
def test_k8s_services_run_their_console_script(component: str) -> None:
    container = _container(_workloads()[component])
    assert "command" not in container, "keep the image's tini entrypoint: set args only"
    assert container["args"] == [APP_COMMANDS[component]]


def test_k8s_migrate_job_runs_migrations_then_topics() -> None:
    job = _workloads()["migrate"]
    assert job["kind"] == "Job"
    container = _container(job)
    assert "command" not in container
    command = _joined(container["args"])
    assert command == _joined(_services()["migrate"]["command"]).replace("$$", "$")
    assert job["spec"]["template"]["spec"]["restartPolicy"] in ("OnFailure", "Never")


def test_k8s_api_has_probes_and_a_service() -> None:
    api = _workloads()["api"]
    assert api["kind"] == "Deployment"
    container = _container(api)
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"http": 8000}
    for probe, path in (("readinessProbe", "/health/ready"), ("livenessProbe", "/health/live")):
        http = container[probe]["httpGet"]
        assert http["path"] == path and http["port"] in ("http", 8000), probe
    service = _k8s("Service")["tasksaga-api"]
    pod_labels = api["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= pod_labels.items()
    assert [p["targetPort"] for p in service["spec"]["ports"]] == ["http"]


def test_k8s_orchestrator_is_a_statefulset_named_by_its_pod() -> None:
    orchestrator = _workloads()["orchestrator"]
    assert orchestrator["kind"] == "StatefulSet"
    env = {e["name"]: e for e in _container(orchestrator)["env"]}
    field = env["TASKSAGA_ORCHESTRATOR_INSTANCE_ID"]["valueFrom"]["fieldRef"]["fieldPath"]
    assert field == "metadata.name"
    service = _k8s("Service")[orchestrator["spec"]["serviceName"]]
    assert service["spec"]["clusterIP"] == "None"


def test_workers_scale_within_the_partition_count() -> None:
    # Members of a step queue's group: one per replica, each running up to
    # TASKSAGA_WORKER_CONCURRENCY steps at once.
    worker = _workloads()["worker"]
    assert worker["kind"] == "Deployment"
    assert 0 < worker["spec"]["replicas"] <= TOPIC_PARTITIONS
    assert int(_k8s_environment(worker)["TASKSAGA_WORKER_CONCURRENCY"] or 0) > 0
    assert int(_environment(_services()["worker"])["TASKSAGA_WORKER_CONCURRENCY"]) > 0
    note = f"({TOPIC_PARTITIONS}, TASKSAGA_TOPIC_PARTITIONS)"
    assert note in (K8S_DIR / "worker.yaml").read_text(), "worker.yaml explains the scaling"


def test_k8s_references_resolve_and_secrets_are_marked_as_examples() -> None:
    config_maps, secrets = _k8s("ConfigMap"), _k8s("Secret")
    for component, workload in _workloads().items():
        container = _container(workload)
        for source in container.get("envFrom", []):
            assert source["configMapRef"]["name"] in config_maps, component
        for item in container.get("env", []):
            ref = item.get("valueFrom", {}).get("secretKeyRef")
            if ref:
                assert ref["key"] in secrets[ref["name"]]["stringData"], component
    secret_text = (K8S_DIR / "secret.yaml").read_text()
    assert "REPLACE" in secret_text.split("apiVersion")[0]
    for secret in secrets.values():
        assert "data" not in secret, "keep example values readable (stringData)"
        for key, value in secret["stringData"].items():
            assert "REPLACE" in value, f"{key} must be an obvious placeholder"


# -- Dockerfile and build context ----------------------------------------------------------------


def test_dockerfile_builds_one_non_root_image_of_the_whole_repository() -> None:
    instructions = _dockerfile_instructions()
    by_keyword: dict[str, list[str]] = {}
    for keyword, rest in instructions:
        by_keyword.setdefault(keyword, []).append(rest)
    assert by_keyword["FROM"] == ["python:3.11-slim"]
    assert by_keyword["WORKDIR"] == ["/app"]
    assert ". ." in by_keyword["COPY"]
    runs = " ".join(by_keyword["RUN"])
    assert re.search(r"apt-get install [^&]*\bffmpeg\b", runs)
    assert re.search(r"apt-get install [^&]*\btini\b", runs)
    assert "pip install --no-deps -e ." in runs
    assert by_keyword["USER"][-1].split(":")[0] not in ("root", "0")
    keywords = [k for k, _ in instructions]
    last_run = max(i for i, k in enumerate(keywords) if k == "RUN")
    assert keywords.index("USER") > last_run, "switch to the non-root user after installing"
    assert yaml.safe_load(by_keyword["ENTRYPOINT"][-1]) == ["/usr/bin/tini", "--"]
    [command] = yaml.safe_load(by_keyword["CMD"][-1])
    assert command in SCRIPTS


def test_code_finds_contracts_and_migrations_in_the_copied_tree() -> None:
    # The code looks beside its source tree; with the repository at /app and an editable
    # install, that is /app/contracts and /app/event-store/migrations.
    source_root = Path(tasksaga.__file__).resolve().parents[2]
    assert DEFAULT_CONTRACTS_DIR.relative_to(source_root) == Path("contracts")
    assert DEFAULT_MIGRATIONS_DIR.relative_to(source_root) == Path("event-store/migrations")
    assert list((ROOT / "contracts").glob("*.avsc"))
    assert list((ROOT / "event-store" / "migrations").glob("*.sql"))


@pytest.mark.parametrize(
    "path",
    [
        "pyproject.toml",
        "README.md",  # pyproject's `readme`: the install fails without it
        "services/tasksaga/config.py",
        "examples/tasksaga_examples/__init__.py",
        *sorted(str(p.relative_to(ROOT)) for p in (ROOT / "contracts").glob("*.avsc")),
        *sorted(str(p.relative_to(ROOT)) for p in (ROOT / "event-store/migrations").glob("*.sql")),
    ],
)
def test_build_context_keeps_what_the_image_needs(path: str) -> None:
    assert not _dockerignored(path)


@pytest.mark.parametrize(
    "path",
    [
        ".venv/bin/python",
        ".git/HEAD",
        ".stack/pg/PG_VERSION",
        "tests/unit/test_x.py",
        "services/tasksaga.egg-info/PKG-INFO",
        "services/tasksaga/__pycache__/config.cpython-311.pyc",
        "deploy/k8s/api.yaml",
    ],
)
def test_build_context_leaves_out_local_state(path: str) -> None:
    assert _dockerignored(path)


def test_task_modules_are_installed_by_the_image() -> None:
    where = PYPROJECT["tool"]["setuptools"]["packages"]["find"]["where"]
    default_module = CommonSettings.model_fields["task_modules"].default[0]
    package = default_module.split(".")[0]
    homes = [d for d in ("services", "examples") if (ROOT / d / package).is_dir()]
    assert homes, f"package {package} not found under services/ or examples/"
    assert homes[0] in where, f"pyproject's packages.find.where must include {homes[0]!r}"


# -- entry points ---------------------------------------------------------------------------------


@pytest.mark.parametrize("script", sorted([*APP_COMMANDS.values(), *SETUP_COMMANDS]))
def test_console_scripts_used_by_the_deployment_resolve(script: str) -> None:
    module_name, _, function = SCRIPTS[script].partition(":")
    module = importlib.import_module(module_name)
    assert callable(getattr(module, function)), SCRIPTS[script]


class _Request(BaseModel):
    name: str = ""
