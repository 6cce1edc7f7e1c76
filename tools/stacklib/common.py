"""Constants, errors and settings of the local stack (TASKSAGA_* variables)."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
KAFKA_POM = REPO_ROOT / "tools" / "kafka" / "pom.xml"
KAFKA_LOG4J = REPO_ROOT / "tools" / "kafka" / "log4j2.yaml"
KAFKA_VERSION = "4.1.1"  # for messages only; tools/kafka/pom.xml is the source of truth
MINIO_MODULE = "github.com/minio/minio@v0.0.0-20260212201848-7aac2a2c5b7c"
# The chart tests' helm (tools/stacklib/helm.py), pinned like MinIO.
HELM_MODULE = "helm.sh/helm/v3/cmd/helm@v3.22.0"
# Fixed so that the formatted storage is reproducible (base64url of a UUIDv5).
KAFKA_CLUSTER_ID = "ISgyQmi1W06deKD-ULbh_g"
SERVICES = ("kafka", "postgres", "minio")
# The broker-test cluster: three KRaft nodes, each broker and controller.
CLUSTER_SIZE = 3
BROKER_CHOICES = (1, CLUSTER_SIZE)
MAX_PG_SHARDS = 4  # PostgreSQL clusters tools/stack runs at most (--pg-shards)
CLUSTER_REPLICATION = 3
CLUSTER_MIN_INSYNC = 2
# A different id from the single broker's, so one's storage can never be started as the other.
KAFKA_CLUSTER_ID_3 = "c3RhY2stdGhyZWUtbm9kZQ"

EXIT_MISSING_PREREQUISITE = 2
EXIT_NOT_ALL_RUNNING = 3

STOP_TIMEOUT_S = 60.0
READY_TIMEOUT_S = {"kafka": 180.0, "postgres": 60.0, "minio": 90.0}


def ready_timeout_s(service: str) -> float:
    """kafka-1..3 wait as long as kafka."""
    return READY_TIMEOUT_S[service.split("-")[0]]
LOG_TAIL_LINES = 100


class StackError(Exception):
    """A failure the CLI reports as one clear message (no traceback)."""

    exit_code = 1


class MissingPrerequisite(StackError):
    exit_code = EXIT_MISSING_PREREQUISITE



# --------------------------------------------------------------------------------------------
# Settings
# --------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Settings:
    stack_dir: Path
    kafka_port: int = 19092
    kafka_controller_port: int = 19093
    pg_port: int = 15432
    pg_user: str = "tasksaga"
    pg_password: str = "tasksaga"
    pg_db: str = "tasksaga"
    minio_port: int = 19000
    minio_console_port: int = 19001
    minio_access_key: str = "tasksaga"
    minio_secret_key: str = "tasksaga-secret"
    # 1: the single broker; 3: the three-node KRaft cluster (kafka-1..3) for broker tests.
    brokers: int = 1
    kafka_cluster_port: int = 19192
    # PostgreSQL clusters for the event store's shards: 1 (the default), or more on the next
    # ports (shard 2 on pg_port + 1 = 15433, ...), for sharding tests (docs/scaling.md).
    pg_shards: int = 1

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        environ = os.environ if environ is None else environ
        defaults = cls(stack_dir=REPO_ROOT / ".stack")

        def text(name: str, default: str) -> str:
            return environ.get(name) or default

        def number(name: str, default: int) -> int:
            raw = environ.get(name)
            if not raw:
                return default
            try:
                return int(raw)
            except ValueError:
                raise StackError(f"{name}={raw!r} is not a port number") from None

        stack_dir = Path(text("TASKSAGA_STACK_DIR", str(defaults.stack_dir))).expanduser()
        return cls(
            # Absolute, because the path ends up in pid-file checks and server command lines.
            stack_dir=stack_dir.resolve(),
            kafka_port=number("TASKSAGA_KAFKA_PORT", defaults.kafka_port),
            kafka_controller_port=number(
                "TASKSAGA_KAFKA_CONTROLLER_PORT", defaults.kafka_controller_port
            ),
            pg_port=number("TASKSAGA_PG_PORT", defaults.pg_port),
            pg_user=text("TASKSAGA_PG_USER", defaults.pg_user),
            pg_password=text("TASKSAGA_PG_PASSWORD", defaults.pg_password),
            pg_db=text("TASKSAGA_PG_DB", defaults.pg_db),
            minio_port=number("TASKSAGA_MINIO_PORT", defaults.minio_port),
            minio_console_port=number("TASKSAGA_MINIO_CONSOLE_PORT", defaults.minio_console_port),
            minio_access_key=text("TASKSAGA_MINIO_ACCESS_KEY", defaults.minio_access_key),
            minio_secret_key=text("TASKSAGA_MINIO_SECRET_KEY", defaults.minio_secret_key),
            brokers=check_brokers(number("TASKSAGA_STACK_BROKERS", defaults.brokers),
                                  "TASKSAGA_STACK_BROKERS"),
            kafka_cluster_port=number("TASKSAGA_KAFKA_CLUSTER_PORT",
                                      defaults.kafka_cluster_port),
            pg_shards=check_pg_shards(number("TASKSAGA_STACK_PG_SHARDS", defaults.pg_shards),
                                      "TASKSAGA_STACK_PG_SHARDS"),
        )

    def with_brokers(self, brokers: int | None) -> Settings:
        """These settings with ``brokers`` (the --brokers option) when it is given."""
        if brokers is None:
            return self
        return dataclasses.replace(self, brokers=check_brokers(brokers, "--brokers"))

    def with_pg_shards(self, pg_shards: int | None) -> Settings:
        """These settings with ``pg_shards`` (the --pg-shards option) when it is given."""
        if pg_shards is None:
            return self
        return dataclasses.replace(self, pg_shards=check_pg_shards(pg_shards, "--pg-shards"))

    def cluster_ports(self, node: int) -> tuple[int, int]:
        """(broker port, controller port) of cluster node 1..N."""
        base = self.kafka_cluster_port + 2 * (node - 1)
        return base, base + 1

    @property
    def bin_dir(self) -> Path:
        return self.stack_dir / "bin"

    @property
    def logs_dir(self) -> Path:
        return self.stack_dir / "logs"

    @property
    def run_dir(self) -> Path:
        return self.stack_dir / "run"

    def log_file(self, service: str) -> Path:
        return self.logs_dir / f"{service}.log"

    def pid_file(self, service: str) -> Path:
        return self.run_dir / f"{service}.pid"


def check_brokers(brokers: int, source: str) -> int:
    if brokers not in BROKER_CHOICES:
        raise StackError(f"{source}={brokers}: the stack runs 1 broker or a cluster of "
                         f"{CLUSTER_SIZE} (replication factor 3, min.insync.replicas 2)")
    return brokers


def check_pg_shards(pg_shards: int, source: str) -> int:
    if not 1 <= pg_shards <= MAX_PG_SHARDS:
        raise StackError(f"{source}={pg_shards}: the stack runs 1 to {MAX_PG_SHARDS} "
                         "PostgreSQL clusters (one per event store shard)")
    return pg_shards


def pg_url(settings: Settings, shard: int = 1) -> str:
    """The app's URL of PostgreSQL cluster ``shard`` (1: the stack's own)."""
    s = settings
    return (f"postgresql://{s.pg_user}:{s.pg_password}@127.0.0.1:{s.pg_port + shard - 1}"
            f"/{s.pg_db}")


def cluster_bootstrap(settings: Settings) -> str:
    return ",".join(f"127.0.0.1:{settings.cluster_ports(node)[0]}"
                    for node in range(1, settings.brokers + 1))


def env(settings: Settings | None = None, brokers: int | None = None) -> dict[str, str]:
    """The variables the application needs to reach the stack (with ``brokers=3``, the
    cluster's bootstrap servers and the replication its topics must have)."""
    s = (settings or Settings.from_env()).with_brokers(brokers)
    cluster = {
        "TASKSAGA_TOPIC_REPLICATION_FACTOR": str(CLUSTER_REPLICATION),
        "TASKSAGA_TOPIC_MIN_INSYNC_REPLICAS": str(CLUSTER_MIN_INSYNC),
    } if s.brokers > 1 else {}
    return {
        "TASKSAGA_KAFKA_BOOTSTRAP": (cluster_bootstrap(s) if s.brokers > 1
                                     else f"127.0.0.1:{s.kafka_port}"),
        "TASKSAGA_DATABASE_URL": pg_url(s),
        "TASKSAGA_S3_ENDPOINT": f"127.0.0.1:{s.minio_port}",
        "TASKSAGA_S3_ACCESS_KEY": s.minio_access_key,
        "TASKSAGA_S3_SECRET_KEY": s.minio_secret_key,
        **cluster,
        # With several clusters, the event store's shards (docs/scaling.md), the first first.
        **({"TASKSAGA_SHARDS": ";".join(f"pg{n}={pg_url(s, n)}"
                                        for n in range(1, s.pg_shards + 1))}
           if s.pg_shards > 1 else {}),
    }

