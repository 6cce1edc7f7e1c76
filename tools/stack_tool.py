"""Local development stack: Kafka (KRaft), PostgreSQL and MinIO, all under ``<repo>/.stack``.

Standard library only: this runs before any virtualenv exists.  ``tools/stack`` is the CLI;
Python code (tests) can import this module and call :func:`up`, :func:`down`, :func:`status`
and :func:`env`. The code lives in ``tools/stacklib/`` (one module per server, the operations,
the CLI); this module is its public face.

``--brokers 3`` (or ``TASKSAGA_STACK_BROKERS=3``; ``up(brokers=3)`` from Python) runs Kafka as
a three-node KRaft cluster instead, for the broker-failure tests: nodes ``kafka-1..3`` under
``kafka-cluster/node<N>``, broker ports ``TASKSAGA_KAFKA_CLUSTER_PORT`` (19192), +2, +4 and
controller ports one above each, beside the single broker, sharing PostgreSQL and MinIO.
Topics there default to replication factor 3 and min.insync.replicas 2, and ``env`` says so.

Layout (``TASKSAGA_STACK_DIR``, default ``<repo>/.stack``)::

    bin/minio               built by ``go install`` (kept by ``reset``)
    bin/helm                the chart tests' helm, pinned ``go install`` (``tools/stack helm``)
    kafka/lib/*.jar         Kafka runtime jars copied by Maven (kept by ``reset``)
    kafka/data              KRaft log dir, formatted once with a fixed cluster id
    kafka-cluster/node<N>   the 3-broker cluster's nodes (--brokers 3): data, server.properties
    pg/data, pg/run         our own PostgreSQL cluster and its unix socket dir
    minio/data              MinIO single-drive data
    logs/<service>.log      server stdout/stderr
    run/<service>.pid       pid files

Ports are baked into Kafka's KRaft metadata when the storage is formatted: after changing
``TASKSAGA_KAFKA_CONTROLLER_PORT`` run ``tools/stack reset``.
"""

from __future__ import annotations

from stacklib.cli import main, parse_args, print_status
from stacklib.common import (
    EXIT_MISSING_PREREQUISITE,
    EXIT_NOT_ALL_RUNNING,
    KAFKA_CLUSTER_ID,
    KAFKA_VERSION,
    LOG_TAIL_LINES,
    MINIO_MODULE,
    READY_TIMEOUT_S,
    REPO_ROOT,
    SERVICES,
    MissingPrerequisite,
    Settings,
    StackError,
    env,
)
from stacklib.kafka import Kafka
from stacklib.kafka_cluster import KafkaNode, cluster_bootstrap
from stacklib.minio import Minio
from stacklib.ops import down, logs, reset, services, status, up
from stacklib.postgres import Postgres
from stacklib.procs import Missing, Service

__all__ = [
    "EXIT_MISSING_PREREQUISITE", "EXIT_NOT_ALL_RUNNING", "KAFKA_CLUSTER_ID", "KAFKA_VERSION",
    "LOG_TAIL_LINES", "MINIO_MODULE", "READY_TIMEOUT_S", "REPO_ROOT", "SERVICES", "Kafka",
    "KafkaNode", "Minio", "Missing", "MissingPrerequisite", "Postgres", "Service", "Settings",
    "StackError", "cluster_bootstrap", "down", "env", "logs", "main", "parse_args",
    "print_status", "reset", "services", "status", "up",
]

if __name__ == "__main__":
    import sys

    sys.exit(main())
