"""The single-broker Kafka server (KRaft, broker and controller in one process)."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from .common import KAFKA_CLUSTER_ID, KAFKA_LOG4J, KAFKA_POM, KAFKA_VERSION, StackError
from .procs import Missing, Service, file_digest, port_open, run, say, spawn_detached
from .system import java, require_java


class Kafka(Service):
    name = "kafka"
    heap = "1g"
    cluster_id = KAFKA_CLUSTER_ID

    @property
    def home(self) -> Path:
        return self.s.stack_dir / "kafka"

    @property
    def lib(self) -> Path:
        return self.home / "lib"

    @property
    def data(self) -> Path:
        return self.home / "data"

    @property
    def config(self) -> Path:
        return self.home / "server.properties"

    @property
    def probe_config(self) -> Path:
        return self.home / "probe.properties"

    @property
    def stamp(self) -> Path:
        return self.lib / ".installed-from-pom.sha256"

    @property
    def port(self) -> int:
        return self.s.kafka_port

    @property
    def ports(self) -> tuple[int, ...]:
        return (self.s.kafka_port, self.s.kafka_controller_port)

    @property
    def marker(self) -> str:
        return str(self.config)

    @property
    def classpath(self) -> str:
        return f"{self.lib}/*"

    def missing_prerequisites(self) -> list[Missing]:
        missing = []
        if not java():
            missing.append(
                Missing(
                    "java", "runs Kafka (Java 17+)", "apt-get install -y openjdk-17-jre-headless"
                )
            )
        if not self.installed() and not shutil.which("mvn"):
            missing.append(
                Missing("mvn", "downloads the Kafka jars once", "apt-get install -y maven")
            )
        return missing

    def installed(self) -> bool:
        try:
            return self.stamp.read_text().strip() == file_digest(KAFKA_POM)
        except OSError:
            return False

    def install(self) -> None:
        say(
            f"installing Kafka {KAFKA_VERSION} jars with Maven into {self.lib} (first run, ~1 min)…"
        )
        self.home.mkdir(parents=True, exist_ok=True)
        # Copy into a scratch dir and swap it in, so an interrupted install is never "installed".
        scratch = Path(tempfile.mkdtemp(prefix="lib.", dir=self.home))
        try:
            run(
                [
                    "mvn",
                    "-B",
                    "-q",
                    "-f",
                    str(KAFKA_POM),
                    "dependency:copy-dependencies",
                    "-DincludeScope=runtime",
                    f"-DoutputDirectory={scratch}",
                ],
                what="mvn dependency:copy-dependencies",
            )
            (scratch / self.stamp.name).write_text(file_digest(KAFKA_POM) + "\n")
            shutil.rmtree(self.lib, ignore_errors=True)
            scratch.rename(self.lib)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)

    def start(self) -> None:
        self.data.mkdir(parents=True, exist_ok=True)
        self.config.write_text(self.server_properties())
        self.probe_config.write_text(
            # Fail a probe fast instead of the admin client's default 60s of retries.
            "request.timeout.ms=5000\ndefault.api.timeout.ms=10000\n"
        )
        if not (self.data / "meta.properties").exists():
            self.format_storage()
        argv = [
            require_java(),
            "-Xms256m",
            f"-Xmx{self.heap}",
            # The JVM flags kafka-run-class.sh uses for the broker.
            "-XX:+UseG1GC",
            "-XX:MaxGCPauseMillis=20",
            "-XX:InitiatingHeapOccupancyPercent=35",
            "-XX:+ExplicitGCInvokesConcurrent",
            "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={KAFKA_LOG4J}",
            f"-Dkafka.logs.dir={self.s.logs_dir}",
            "-cp",
            self.classpath,
            "kafka.Kafka",
            str(self.config),
        ]
        self.write_pid(spawn_detached(argv, self.log, self.home, {}))

    def format_storage(self) -> None:
        say(f"formatting Kafka KRaft storage in {self.data} (first run)…")
        # What `kafka-storage.sh format --standalone` runs in Kafka 4.1.
        self.run_storage_format(["--standalone"])

    def run_storage_format(self, quorum_args: list[str]) -> None:
        run(
            [
                require_java(),
                "-cp",
                self.classpath,
                "kafka.tools.StorageTool",
                "format",
                "--config",
                str(self.config),
                "--cluster-id",
                self.cluster_id,
                *quorum_args,
                "--ignore-formatted",
            ],
            what="kafka.tools.StorageTool format",
            timeout=120,
        )

    def server_properties(self) -> str:
        broker = f"127.0.0.1:{self.s.kafka_port}"
        controller = f"127.0.0.1:{self.s.kafka_controller_port}"
        settings = {
            "process.roles": "broker,controller",
            "node.id": "1",
            "controller.quorum.bootstrap.servers": controller,
            "listeners": f"PLAINTEXT://{broker},CONTROLLER://{controller}",
            "advertised.listeners": f"PLAINTEXT://{broker},CONTROLLER://{controller}",
            "inter.broker.listener.name": "PLAINTEXT",
            "controller.listener.names": "CONTROLLER",
            "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
            "log.dirs": str(self.data),
            "num.partitions": "6",
            "default.replication.factor": "1",
            "offsets.topic.replication.factor": "1",
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1",
            "share.coordinator.state.topic.replication.factor": "1",
            "share.coordinator.state.topic.min.isr": "1",
            "min.insync.replicas": "1",
            "auto.create.topics.enable": "false",
            "group.initial.rebalance.delay.ms": "0",
        }
        lines = [f"{key}={value}" for key, value in settings.items()]
        return "# Written by tools/stack on every start; edit tools/stack_tool.py instead.\n" + (
            "\n".join(lines) + "\n"
        )

    def check_ready(self) -> bool:
        # The port opens before the broker has caught up with the metadata log; a real admin
        # request (list topics) only succeeds once the broker serves metadata.
        if not port_open(self.s.kafka_port):
            return False
        try:
            run(
                [
                    require_java(),
                    "-Xshare:auto",
                    "-XX:TieredStopAtLevel=1",
                    "-XX:+UseSerialGC",
                    "-Xmx256m",
                    "-cp",
                    self.classpath,
                    "org.apache.kafka.tools.TopicCommand",
                    "--bootstrap-server",
                    f"127.0.0.1:{self.s.kafka_port}",
                    "--command-config",
                    str(self.probe_config),
                    "--list",
                ],
                what="kafka TopicCommand --list",
                timeout=30,
            )
        except StackError:
            return False
        return True

