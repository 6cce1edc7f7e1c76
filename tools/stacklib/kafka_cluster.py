"""The three-node Kafka cluster for broker-failure tests (``tools/stack up --brokers 3``).

Each node is a KRaft broker and controller in one process (node ids 1..3, a static quorum of
the three controllers), with its own directory ``kafka-cluster/node<N>``, log ``kafka-<N>.log``,
pid file and ports (``Settings.cluster_ports``). They share the single broker's installed jars.
Killing one node (SIGTERM or SIGKILL, by the pid ``status`` reports) leaves a quorum of two and
every partition with an in-sync replica; ``up --brokers 3`` starts it again.

Readiness asks the node itself for cluster metadata over the Kafka protocol (standard library
only: a Metadata v4 request on a socket) and waits until the node lists itself among the live
brokers, which it does once it has caught up with the metadata log and is unfenced.
"""

from __future__ import annotations

import socket
import struct
from pathlib import Path

from .common import (
    CLUSTER_MIN_INSYNC,
    CLUSTER_REPLICATION,
    KAFKA_CLUSTER_ID_3,
    Settings,
    cluster_bootstrap,
)
from .kafka import Kafka
from .procs import port_open

__all__ = ["KafkaNode", "cluster_bootstrap", "live_brokers"]

_METADATA, _METADATA_VERSION = 3, 4  # Kafka 4 removed Metadata v0-v3 (KIP-896)


class KafkaNode(Kafka):
    heap = "512m"  # three JVMs on a small machine
    cluster_id = KAFKA_CLUSTER_ID_3

    def __init__(self, settings: Settings, node: int) -> None:
        super().__init__(settings)
        if not 1 <= node <= settings.brokers:
            raise ValueError(f"node {node} is not one of the cluster's 1..{settings.brokers}")
        self.node = node
        self.name = f"kafka-{node}"

    @property
    def home(self) -> Path:
        return self.s.stack_dir / "kafka-cluster" / f"node{self.node}"

    @property
    def lib(self) -> Path:
        return self.s.stack_dir / "kafka" / "lib"  # one installation for every Kafka server

    @property
    def port(self) -> int:
        return self.s.cluster_ports(self.node)[0]

    @property
    def ports(self) -> tuple[int, ...]:
        return self.s.cluster_ports(self.node)

    def format_storage(self) -> None:
        # A static quorum (controller.quorum.voters): no --standalone, no dynamic voters.
        self.run_storage_format([])

    def server_properties(self) -> str:
        broker, controller = (f"127.0.0.1:{p}" for p in self.ports)
        voters = ",".join(f"{n}@127.0.0.1:{self.s.cluster_ports(n)[1]}"
                          for n in range(1, self.s.brokers + 1))
        replication, min_isr = str(CLUSTER_REPLICATION), str(CLUSTER_MIN_INSYNC)
        settings = {
            "process.roles": "broker,controller",
            "node.id": str(self.node),
            "controller.quorum.voters": voters,
            "listeners": f"PLAINTEXT://{broker},CONTROLLER://{controller}",
            "advertised.listeners": f"PLAINTEXT://{broker},CONTROLLER://{controller}",
            "inter.broker.listener.name": "PLAINTEXT",
            "controller.listener.names": "CONTROLLER",
            "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
            "log.dirs": str(self.data),
            "num.partitions": "6",
            "default.replication.factor": replication,
            "min.insync.replicas": min_isr,
            "offsets.topic.replication.factor": replication,
            "transaction.state.log.replication.factor": replication,
            "transaction.state.log.min.isr": min_isr,
            "share.coordinator.state.topic.replication.factor": replication,
            "share.coordinator.state.topic.min.isr": min_isr,
            # Acknowledged means on min.insync.replicas brokers: never elect a replica that
            # was out of sync, even if that leaves a partition unavailable for a while.
            "unclean.leader.election.enable": "false",
            "auto.create.topics.enable": "false",
            "group.initial.rebalance.delay.ms": "0",
        }
        lines = [f"{key}={value}" for key, value in settings.items()]
        return ("# Written by tools/stack on every start; edit tools/stacklib/kafka_cluster.py"
                " instead.\n" + "\n".join(lines) + "\n")

    def check_ready(self) -> bool:
        if not port_open(self.port):
            return False
        brokers = live_brokers(self.port)
        return brokers is not None and self.node in brokers


def live_brokers(port: int, host: str = "127.0.0.1", timeout: float = 3.0) -> set[int] | None:
    """The node ids a broker reports as live (Metadata v4, no topics), or None when it does
    not answer (yet)."""
    client_id = b"tasksaga-stack"
    header = struct.pack(">hhih", _METADATA, _METADATA_VERSION, 1, len(client_id)) + client_id
    body = struct.pack(">ib", 0, 0)  # no topics, no auto-creation
    request = header + body
    try:
        with socket.create_connection((host, port), timeout=timeout) as conn:
            conn.sendall(struct.pack(">i", len(request)) + request)
            size = struct.unpack(">i", _read(conn, 4))[0]
            response = _read(conn, size)
    except (OSError, struct.error, ConnectionError):
        return None
    try:
        # correlation id, throttle time, then the brokers array: node id, host, port, rack
        offset = 8
        (count,) = struct.unpack_from(">i", response, offset)
        offset += 4
        nodes = set()
        for _ in range(count):
            node, host_len = struct.unpack_from(">ih", response, offset)
            offset += 6 + host_len + 4  # node id + host length, host, port
            (rack_len,) = struct.unpack_from(">h", response, offset)
            offset += 2 + max(rack_len, 0)
            nodes.add(node)
        return nodes
    except struct.error:
        return None


def _read(conn: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = conn.recv(size - len(data))
        if not chunk:
            raise ConnectionError("the broker closed the connection")
        data += chunk
    return data
