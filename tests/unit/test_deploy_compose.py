"""Offline checks of docker-compose.yml: the servers, the one tasksaga image, start order,
and Kafka, Postgres and MinIO configured as the services expect. No Docker engine is needed.
"""

from __future__ import annotations

import pytest

from tests.unit.deploy_artifacts import (
    APP_COMMANDS,
    BROKERS,
    SCRIPTS,
    SERVER_IMAGES,
    SETUP_COMMANDS,
    STORES_FILES,
    compose_environment,
    compose_services,
    joined,
)


def test_compose_has_exactly_the_expected_services() -> None:
    expected = {*SERVER_IMAGES, "migrate", *APP_COMMANDS}
    assert set(compose_services()) == expected


@pytest.mark.parametrize("name", sorted(SERVER_IMAGES))
def test_servers_use_official_images_with_pinned_tags_and_healthchecks(name: str) -> None:
    service = compose_services()[name]
    repository, _, tag = service["image"].partition(":")
    assert repository == SERVER_IMAGES[name]
    assert tag and tag != "latest", f"{name}: pin an image tag"
    assert "build" not in service
    assert service["healthcheck"]["test"], f"{name} needs a healthcheck"


def test_kafka_is_the_requested_release() -> None:
    assert {compose_services()[b]["image"] for b in BROKERS} == {"apache/kafka:4.1.1"}


@pytest.mark.parametrize("name", sorted(APP_COMMANDS))
def test_app_services_run_their_console_script_from_the_built_image(name: str) -> None:
    services = compose_services()
    service = services[name]
    assert service["build"] in (".", {"context": "."}), name
    images = {services[n]["image"] for n in [*APP_COMMANDS, "migrate"]}
    assert len(images) == 1, f"one image for all tasksaga containers, got {images}"
    assert service["command"] == [APP_COMMANDS[name]]
    assert APP_COMMANDS[name] in SCRIPTS


def test_migrate_applies_migrations_then_creates_topics_once() -> None:
    migrate = compose_services()["migrate"]
    command = joined(migrate["command"])
    assert migrate["build"] in (".", {"context": "."})
    assert migrate.get("restart") == "no"
    positions = [command.index(script) for script in SETUP_COMMANDS]
    assert positions == sorted(positions), "tasksaga-migrate must run before tasksaga-topics"
    assert all(script in SCRIPTS for script in SETUP_COMMANDS)
    # A failure of any step must fail the service (compose then does not start the others).
    assert "&&" in command and ";" not in command


def test_services_wait_for_healthy_servers_and_a_completed_migrate() -> None:
    services = compose_services()
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
    services = compose_services()
    assert "8000:8000" in [str(p) for p in services["api"]["ports"]]
    for name in APP_COMMANDS:
        assert services[name].get("stop_grace_period") == "30s", name
        assert "container_name" not in services[name], f"{name}: would prevent --scale"


@pytest.mark.parametrize("node", [1, 2, 3])
def test_kafka_runs_kraft_without_zookeeper(node: int) -> None:
    """Three brokers, each also a controller: topics replicated 3 times, 2 in sync."""
    services = compose_services()
    name = BROKERS[node - 1]
    env = compose_environment(services[name])
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
    app_envs = [compose_environment(services[n]) for n in [*APP_COMMANDS, "migrate"]]
    assert {e["TASKSAGA_KAFKA_BOOTSTRAP"] for e in app_envs} == {
        ",".join(f"{b}:9092" for b in BROKERS)}
    assert {e["TASKSAGA_TOPIC_REPLICATION_FACTOR"] for e in app_envs} == {"3"}
    assert {e["TASKSAGA_TOPIC_MIN_INSYNC_REPLICAS"] for e in app_envs} == {"2"}


def test_postgres_commits_durably() -> None:
    postgres = compose_services()["postgres"]
    command = joined(postgres["command"])
    assert "fsync=on" in command and "synchronous_commit=on" in command
    env = compose_environment(postgres)
    assert env["POSTGRES_USER"] == env["POSTGRES_PASSWORD"] == env["POSTGRES_DB"] == "tasksaga"
    assert "pg_isready" in joined(postgres["healthcheck"]["test"])
    url = compose_environment(compose_services()["orchestrator"])["TASKSAGA_DATABASE_URL"]
    assert url == "postgresql://tasksaga:tasksaga@postgres:5432/tasksaga"


def test_minio_serves_data_with_a_console_and_matching_credentials() -> None:
    services = compose_services()
    minio = services["minio"]
    assert joined(minio["command"]).split()[:2] == ["server", "/data"]
    assert "--console-address" in joined(minio["command"])
    env = compose_environment(minio)
    for name in STORES_FILES:
        app = compose_environment(services[name])
        assert app["TASKSAGA_S3_ENDPOINT"] == "minio:9000"
        assert app["TASKSAGA_S3_ACCESS_KEY"] == env["MINIO_ROOT_USER"]
        assert app["TASKSAGA_S3_SECRET_KEY"] == env["MINIO_ROOT_PASSWORD"]
