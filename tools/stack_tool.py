"""Local development stack: Kafka (KRaft), PostgreSQL and MinIO, all under ``<repo>/.stack``.

Standard library only: this runs before any virtualenv exists.  ``tools/stack`` is the CLI;
Python code (tests) can import this module and call :func:`up`, :func:`down`, :func:`status`
and :func:`env`.

Layout (``TASKSAGA_STACK_DIR``, default ``<repo>/.stack``)::

    bin/minio               built by ``go install`` (kept by ``reset``)
    kafka/lib/*.jar         Kafka runtime jars copied by Maven (kept by ``reset``)
    kafka/data              KRaft log dir, formatted once with a fixed cluster id
    pg/data, pg/run         our own PostgreSQL cluster and its unix socket dir
    minio/data              MinIO single-drive data
    logs/<service>.log      server stdout/stderr
    run/<service>.pid       pid files

Ports are baked into Kafka's KRaft metadata when the storage is formatted: after changing
``TASKSAGA_KAFKA_CONTROLLER_PORT`` run ``tools/stack reset``.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import fcntl
import glob
import hashlib
import os
import pwd
import shlex
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
KAFKA_POM = REPO_ROOT / "tools" / "kafka" / "pom.xml"
KAFKA_LOG4J = REPO_ROOT / "tools" / "kafka" / "log4j2.yaml"
KAFKA_VERSION = "4.1.1"  # for messages only; tools/kafka/pom.xml is the source of truth
MINIO_MODULE = "github.com/minio/minio@v0.0.0-20260212201848-7aac2a2c5b7c"
# Fixed so that the formatted storage is reproducible (base64url of a UUIDv5).
KAFKA_CLUSTER_ID = "ISgyQmi1W06deKD-ULbh_g"
SERVICES = ("kafka", "postgres", "minio")

EXIT_MISSING_PREREQUISITE = 2
EXIT_NOT_ALL_RUNNING = 3

STOP_TIMEOUT_S = 60.0
READY_TIMEOUT_S = {"kafka": 180.0, "postgres": 60.0, "minio": 90.0}
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
        )

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


def env(settings: Settings | None = None) -> dict[str, str]:
    """The variables the application needs to reach the stack."""
    s = settings or Settings.from_env()
    return {
        "TASKSAGA_KAFKA_BOOTSTRAP": f"127.0.0.1:{s.kafka_port}",
        "TASKSAGA_DATABASE_URL": (
            f"postgresql://{s.pg_user}:{s.pg_password}@127.0.0.1:{s.pg_port}/{s.pg_db}"
        ),
        "TASKSAGA_S3_ENDPOINT": f"127.0.0.1:{s.minio_port}",
        "TASKSAGA_S3_ACCESS_KEY": s.minio_access_key,
        "TASKSAGA_S3_SECRET_KEY": s.minio_secret_key,
    }


# --------------------------------------------------------------------------------------------
# Small process / network helpers
# --------------------------------------------------------------------------------------------


def say(message: str) -> None:
    print(message, flush=True)


def port_open(port: int, host: str = "127.0.0.1", timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def pid_alive(pid: int, marker: str) -> bool:
    """True if ``pid`` is a live (non-zombie) process whose command line contains ``marker``.

    The marker guards against pid reuse after a reboot or crash (stale pid files).
    """
    with contextlib.suppress(ChildProcessError, OSError):
        # Reap it if it is our own exited child, so it does not linger as a zombie.
        os.waitpid(pid, os.WNOHANG)
    proc = Path(f"/proc/{pid}")
    try:
        state = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
        cmdline = read_cmdline(proc)
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X") and marker in cmdline


def read_cmdline(proc: Path) -> str:
    # The kernel reports an empty command line while a process is in the middle of execve
    # (which a server we just spawned may well be); give it a moment before judging.
    for _ in range(20):
        cmdline = (proc / "cmdline").read_bytes()
        if cmdline:
            break
        time.sleep(0.05)
    return cmdline.replace(b"\0", b" ").decode(errors="replace")


def read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def spawn_detached(argv: Sequence[str], log: Path, cwd: Path, extra_env: Mapping[str, str]) -> int:
    """Start a server in its own session with stdout/stderr appended to ``log``; return its pid.

    ``posix_spawn`` rather than ``subprocess.Popen`` because the child must outlive us and a
    dropped Popen object warns ("subprocess N is still running") in importing test processes.
    """
    with log.open("a") as f:
        f.write(f"\n=== {time.strftime('%Y-%m-%d %H:%M:%S')} tools/stack starting: {argv[0]}\n")
    actions = [
        (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
        (os.POSIX_SPAWN_OPEN, 1, str(log), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644),
        (os.POSIX_SPAWN_DUP2, 1, 2),
    ]
    environ = {**os.environ, **extra_env}
    # posix_spawn has no cwd parameter, so go through a tiny sh that cds and execs.
    script = 'cd "$1" && shift && exec "$@"'
    sh_argv = ["/bin/sh", "-c", script, "sh", str(cwd), *argv]
    return os.posix_spawn("/bin/sh", sh_argv, environ, file_actions=actions, setsid=True)


def terminate(pid: int, marker: str, timeout: float = STOP_TIMEOUT_S) -> None:
    """SIGTERM, wait up to ``timeout``, then SIGKILL."""
    for sig, wait_s in ((signal.SIGTERM, timeout), (signal.SIGKILL, 10.0)):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)
        if wait_until(lambda: not pid_alive(pid, marker), wait_s):
            return
        if sig == signal.SIGTERM:
            say(f"  pid {pid} ignored SIGTERM for {timeout:.0f}s; sending SIGKILL")
    raise StackError(f"could not stop pid {pid}")


def wait_until(predicate: Callable[[], bool], timeout: float, interval: float = 0.2) -> bool:
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)


def run(
    argv: Sequence[str],
    *,
    what: str,
    env_extra: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    stdin: str | None = None,
    timeout: float | None = None,
    capture: bool = True,
) -> str:
    """Run a command to completion; raise StackError naming ``what`` failed, with its output."""
    try:
        done = subprocess.run(
            list(argv),
            input=stdin,
            capture_output=capture,
            text=True,
            cwd=cwd,
            env={**os.environ, **(env_extra or {})},
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise StackError(f"{what}: timed out after {timeout:.0f}s") from None
    output = (done.stdout or "") + (done.stderr or "")
    if done.returncode != 0:
        raise StackError(f"{what} failed (exit {done.returncode}):\n{output.strip()}")
    return output


def tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    try:
        with path.open("rb") as f:
            f.seek(0, os.SEEK_END)
            # Logs can be large; the last 256 KiB hold far more than 100 lines in practice.
            f.seek(max(0, f.tell() - 256 * 1024))
            data = f.read().decode(errors="replace")
    except OSError:
        return ""
    return "\n".join(data.splitlines()[-lines:])


def file_digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# --------------------------------------------------------------------------------------------
# Services
# --------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Missing:
    command: str
    why: str
    how: str

    def __str__(self) -> str:
        return f"  - {self.command}: {self.why}\n      install: {self.how}"


class Service:
    """A server managed through a pid file; subclasses fill in install/start/readiness."""

    name: str = ""

    def __init__(self, settings: Settings) -> None:
        self.s = settings

    # -- to override ---------------------------------------------------------------------------
    @property
    def port(self) -> int:
        raise NotImplementedError

    @property
    def ports(self) -> tuple[int, ...]:
        return (self.port,)

    @property
    def marker(self) -> str:
        """A string in the server's command line that identifies *our* instance."""
        raise NotImplementedError

    def missing_prerequisites(self) -> list[Missing]:
        return []

    def installed(self) -> bool:
        return True

    def install(self) -> None:
        pass

    def start(self) -> None:
        raise NotImplementedError

    def check_ready(self) -> bool:
        """One readiness probe; may raise StackError for a definite failure."""
        raise NotImplementedError

    def stop(self, pid: int) -> None:
        terminate(pid, self.marker)

    # -- shared ----------------------------------------------------------------------------------
    @property
    def log(self) -> Path:
        return self.s.log_file(self.name)

    def pid(self) -> int | None:
        """Pid of our running server, or None. Read-only: safe without the stack lock."""
        pid = read_pid(self.s.pid_file(self.name))
        return pid if pid is not None and pid_alive(pid, self.marker) else None

    def forget_stale_pid(self) -> None:
        """Delete the pid file if its process is gone. Only under the stack lock: unlocked, it
        could race with an `up` that is just writing a fresh pid (and orphan that server)."""
        if self.pid() is None:
            self.s.pid_file(self.name).unlink(missing_ok=True)

    def write_pid(self, pid: int) -> None:
        self.s.run_dir.mkdir(parents=True, exist_ok=True)
        # Write-then-rename, so a concurrent reader never sees a half-written pid.
        scratch = self.s.pid_file(self.name).with_suffix(".pid.tmp")
        scratch.write_text(f"{pid}\n")
        scratch.replace(self.s.pid_file(self.name))

    def ensure_ports_free(self) -> None:
        for port in self.ports:
            if port_open(port):
                raise StackError(
                    f"{self.name}: port {port} is already in use by a process that tools/stack "
                    f"did not start; stop it or choose other TASKSAGA_* ports"
                )

    def wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            if self.pid() is None:
                raise StackError(
                    f"{self.name} exited during startup; last log lines ({self.log}):\n"
                    f"{tail(self.log, 40)}"
                )
            if self.check_ready():
                return
            if time.monotonic() >= deadline:
                raise StackError(
                    f"{self.name} not ready after {timeout:.0f}s; last log lines ({self.log}):\n"
                    f"{tail(self.log, 40)}"
                )
            time.sleep(0.5)


class Kafka(Service):
    name = "kafka"

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
            "-Xmx1g",
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
                KAFKA_CLUSTER_ID,
                "--standalone",
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


class Postgres(Service):
    name = "postgres"

    @property
    def home(self) -> Path:
        return self.s.stack_dir / "pg"

    @property
    def data(self) -> Path:
        return self.home / "data"

    @property
    def socket_dir(self) -> Path:
        return self.home / "run"

    @property
    def port(self) -> int:
        return self.s.pg_port

    @property
    def marker(self) -> str:
        return str(self.data)

    def missing_prerequisites(self) -> list[Missing]:
        missing = []
        if not self.installed() and not shutil.which("apt-get"):
            missing.append(
                Missing(
                    "apt-get",
                    "installs PostgreSQL once (no /usr/lib/postgresql/*/bin/initdb found)",
                    "install the PostgreSQL server (Debian/Ubuntu: apt-get install -y postgresql)",
                )
            )
        if os.geteuid() == 0 and not shutil.which("runuser"):
            missing.append(
                Missing(
                    "runuser",
                    "runs PostgreSQL as the 'postgres' user (it refuses to run as root)",
                    "apt-get install -y util-linux",
                )
            )
        return missing

    def installed(self) -> bool:
        return pg_bin_dir() is not None

    def install(self) -> None:
        say("installing PostgreSQL from Debian packages (first run, ~1 min)…")
        apt_install("postgresql")
        if pg_bin_dir() is None:
            raise StackError("apt-get installed postgresql but no /usr/lib/postgresql/*/bin/initdb")

    def bin(self, program: str) -> str:
        bin_dir = pg_bin_dir()
        if bin_dir is None:
            raise StackError("PostgreSQL binaries not found under /usr/lib/postgresql/*/bin")
        return str(bin_dir / program)

    def pid(self) -> int | None:
        # postmaster.pid is authoritative; run/postgres.pid mirrors it for humans and status.
        for pid_file in (self.data / "postmaster.pid", self.s.pid_file(self.name)):
            pid = read_pid(pid_file)
            if pid is not None and pid_alive(pid, self.marker):
                return pid
        return None

    def start(self) -> None:
        self.prepare_dirs()
        if not (self.data / "PG_VERSION").exists():
            self.initdb()
        self.write_config()
        run(
            as_postgres(
                [self.bin("pg_ctl"), "-D", str(self.data), "-l", str(self.log), "-W", "start"]
            ),
            what="pg_ctl start",
            cwd=self.home,
            timeout=60,
        )
        # pg_ctl -W returns before postmaster.pid exists; wait for it so readiness can track it
        # (if it never appears, wait_ready reports the failure with the log).
        postmaster_pid = self.data / "postmaster.pid"
        wait_until(lambda: read_pid(postmaster_pid) is not None, 30)
        pid = read_pid(postmaster_pid)
        if pid is not None:
            self.write_pid(pid)

    def prepare_dirs(self) -> None:
        for path in (self.home, self.socket_dir):
            path.mkdir(parents=True, exist_ok=True)
        self.s.logs_dir.mkdir(parents=True, exist_ok=True)
        self.log.touch()
        if os.geteuid() != 0:
            return
        owner = pwd.getpwnam("postgres")
        for path in (self.home, self.socket_dir, self.log):
            os.chown(path, owner.pw_uid, owner.pw_gid)
        allow_traverse(self.home)

    def initdb(self) -> None:
        say(f"initializing PostgreSQL cluster in {self.data} (first run)…")
        run(
            as_postgres(
                [
                    self.bin("initdb"),
                    "-D",
                    str(self.data),
                    "-U",
                    "postgres",
                    "--encoding=UTF8",
                    "--locale=C.UTF-8",
                    # The OS user 'postgres' administers over the socket; apps use
                    # passwords over TCP.
                    "--auth-local=peer",
                    "--auth-host=scram-sha-256",
                ]
            ),
            what="initdb",
            cwd=self.home,
            timeout=120,
        )

    def write_config(self) -> None:
        """Rewrite our block at the end of postgresql.conf (last setting wins in that file)."""
        conf = self.data / "postgresql.conf"
        marker = "# --- tasksaga local stack (managed by tools/stack) ---"
        base = conf.read_text().split(marker)[0].rstrip("\n")
        block = [
            marker,
            "listen_addresses = '127.0.0.1'",
            f"port = {self.s.pg_port}",
            f"unix_socket_directories = '{self.socket_dir}'",
            "max_connections = 200",
            "shared_buffers = 256MB",
            # Durability is explicit: tests rely on committed data surviving a crash.
            "fsync = on",
            "synchronous_commit = on",
            "full_page_writes = on",
        ]
        conf.write_text(base + "\n\n" + "\n".join(block) + "\n")

    def check_ready(self) -> bool:
        try:
            run(
                [self.bin("pg_isready"), "-q", "-h", "127.0.0.1", "-p", str(self.port), "-t", "2"],
                what="pg_isready",
                timeout=10,
            )
        except StackError:
            return False
        self.provision()
        self.select_one()
        return True

    def provision(self) -> None:
        """Create or update the app role (LOGIN CREATEDB, not superuser) and its database."""
        sql = """
SELECT format('CREATE ROLE %I', :'app_user')
 WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = :'app_user') \\gexec
SELECT format('ALTER ROLE %I WITH LOGIN CREATEDB NOSUPERUSER PASSWORD %L',
              :'app_user', :'app_password') \\gexec
SELECT format('CREATE DATABASE %I OWNER %I', :'app_db', :'app_user')
 WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = :'app_db') \\gexec
SELECT format('ALTER DATABASE %I OWNER TO %I', :'app_db', :'app_user') \\gexec
"""
        run(
            as_postgres(
                [
                    self.bin("psql"),
                    "-X",
                    "-q",
                    "-v",
                    "ON_ERROR_STOP=1",
                    "-h",
                    str(self.socket_dir),
                    "-p",
                    str(self.port),
                    "-U",
                    "postgres",
                    "-d",
                    "postgres",
                    "-v",
                    f"app_user={self.s.pg_user}",
                    "-v",
                    f"app_password={self.s.pg_password}",
                    "-v",
                    f"app_db={self.s.pg_db}",
                    "-f",
                    "-",
                ]
            ),
            what="creating the app role and database",
            cwd=self.home,
            stdin=sql,
            timeout=30,
        )

    def select_one(self) -> None:
        output = run(
            [
                self.bin("psql"),
                "-X",
                "-tA",
                "-h",
                "127.0.0.1",
                "-p",
                str(self.port),
                "-U",
                self.s.pg_user,
                "-d",
                self.s.pg_db,
                "-c",
                "select 1",
            ],
            what=f"psql 'select 1' as {self.s.pg_user}",
            env_extra={"PGPASSWORD": self.s.pg_password, "PGCONNECT_TIMEOUT": "5"},
            timeout=15,
        )
        if output.strip() != "1":
            raise StackError(f"psql 'select 1' returned {output.strip()!r}")

    def stop(self, pid: int) -> None:
        pg_ctl = [self.bin("pg_ctl"), "-D", str(self.data), "-w", "-t", "60", "stop"]
        try:
            # "fast" = roll back open transactions and shut down cleanly (a checkpoint is taken).
            run(as_postgres([*pg_ctl, "-m", "fast"]), what="pg_ctl stop", cwd=self.home)
        except StackError:
            run(as_postgres([*pg_ctl, "-m", "immediate"]), what="pg_ctl stop", cwd=self.home)


class Minio(Service):
    name = "minio"

    @property
    def binary(self) -> Path:
        return self.s.bin_dir / "minio"

    @property
    def stamp(self) -> Path:
        return self.s.bin_dir / "minio.module"

    @property
    def data(self) -> Path:
        return self.s.stack_dir / "minio" / "data"

    @property
    def port(self) -> int:
        return self.s.minio_port

    @property
    def ports(self) -> tuple[int, ...]:
        return (self.s.minio_port, self.s.minio_console_port)

    @property
    def marker(self) -> str:
        return str(self.data)

    def missing_prerequisites(self) -> list[Missing]:
        if self.installed() or shutil.which("go"):
            return []
        return [
            Missing(
                "go",
                f"builds MinIO once ({MINIO_MODULE}; needs Go >= 1.24)",
                "a current Go toolchain on PATH (Debian 12's golang package is too old)",
            )
        ]

    def installed(self) -> bool:
        try:
            return self.binary.exists() and self.stamp.read_text().strip() == MINIO_MODULE
        except OSError:
            return False

    def install(self) -> None:
        say(
            f"building MinIO with go install into {self.s.bin_dir} "
            "(first run: ~3 min with a cold Go cache, seconds with a warm one)…"
        )
        self.s.bin_dir.mkdir(parents=True, exist_ok=True)
        self.stamp.unlink(missing_ok=True)
        run(
            ["go", "install", MINIO_MODULE],
            what=f"go install {MINIO_MODULE}",
            env_extra={"GOBIN": str(self.s.bin_dir)},
        )
        self.stamp.write_text(MINIO_MODULE + "\n")

    def start(self) -> None:
        self.data.mkdir(parents=True, exist_ok=True)
        argv = [
            str(self.binary),
            "server",
            str(self.data),
            "--address",
            f"127.0.0.1:{self.s.minio_port}",
            "--console-address",
            f"127.0.0.1:{self.s.minio_console_port}",
        ]
        credentials = {
            "MINIO_ROOT_USER": self.s.minio_access_key,
            "MINIO_ROOT_PASSWORD": self.s.minio_secret_key,
            # No internet here; don't let it look for updates.
            "MINIO_UPDATE": "off",
        }
        self.write_pid(spawn_detached(argv, self.log, self.data.parent, credentials))

    def check_ready(self) -> bool:
        url = f"http://127.0.0.1:{self.s.minio_port}/minio/health/ready"
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                return bool(response.status == 200)
        except (urllib.error.URLError, OSError):
            return False


def java() -> str | None:
    java_home = os.environ.get("JAVA_HOME")
    if java_home and os.access(Path(java_home) / "bin" / "java", os.X_OK):
        return str(Path(java_home) / "bin" / "java")
    return shutil.which("java")


def require_java() -> str:
    path = java()
    if path is None:
        raise MissingPrerequisite(
            "java not found (install: apt-get install -y openjdk-17-jre-headless)"
        )
    return path


def pg_bin_dir() -> Path | None:
    """The newest installed PostgreSQL major's bin dir (Debian layout)."""
    found = glob.glob("/usr/lib/postgresql/*/bin/initdb")

    def major(path: str) -> float:
        try:
            return float(Path(path).parts[-3])
        except ValueError:
            return 0.0

    return Path(max(found, key=major)).parent if found else None


# Programs the example step handlers run (the video pipeline), from Debian's packages.
WORKER_PROGRAMS = {"ffmpeg": "ffmpeg", "ffprobe": "ffmpeg"}


def install_worker_programs() -> None:
    packages = sorted({pkg for prog, pkg in WORKER_PROGRAMS.items() if shutil.which(prog) is None})
    if packages:
        say(f"installing {', '.join(packages)} from Debian packages (first run, ~30 s)…")
        apt_install(*packages)


def apt_install(*packages: str) -> None:
    if not glob.glob("/var/lib/apt/lists/*_Packages*"):
        apt_get("update")
    try:
        apt_get("install", "-y", *packages)
    except StackError:
        # Stale package lists are the usual cause; refresh once and retry.
        apt_get("update")
        apt_get("install", "-y", *packages)


def apt_get(*args: str) -> None:
    run(
        ["apt-get", *args],
        what=f"apt-get {args[0]}",
        env_extra={"DEBIAN_FRONTEND": "noninteractive"},
    )


def as_postgres(argv: list[str]) -> list[str]:
    # PostgreSQL refuses to run as root; as any other user it simply runs as that user.
    if os.geteuid() == 0:
        return ["runuser", "-u", "postgres", "--", *argv]
    return argv


def allow_traverse(path: Path) -> None:
    """Let the postgres user reach ``path``: add o+x (search, not list) to ancestors lacking it.

    Needed when the repo lives under a private dir such as /root.
    """
    for parent in [path, *path.parents]:
        mode = parent.stat().st_mode
        if not mode & stat.S_IXOTH:
            say(f"  chmod o+x {parent} (so the postgres user can reach {path})")
            parent.chmod(mode | stat.S_IXOTH)


# --------------------------------------------------------------------------------------------
# Stack operations
# --------------------------------------------------------------------------------------------


def services(settings: Settings) -> list[Service]:
    return [Kafka(settings), Postgres(settings), Minio(settings)]


@contextlib.contextmanager
def stack_lock(settings: Settings) -> Iterator[None]:
    """Serialize up/down/reset so two concurrent invocations cannot double-start a server."""
    settings.run_dir.mkdir(parents=True, exist_ok=True)
    with (settings.run_dir / "stack.lock").open("w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            say("waiting for another tools/stack up/down/reset to finish…")
            fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def check_prerequisites(all_services: Sequence[Service]) -> None:
    missing = [m for service in all_services for m in service.missing_prerequisites()]
    if missing:
        lines = "\n".join(str(m) for m in missing)
        raise MissingPrerequisite(f"missing prerequisite(s) for tools/stack:\n{lines}")


def up(settings: Settings | None = None) -> dict[str, dict[str, object]]:
    """Install what is missing, start what is stopped, and wait until every server is ready."""
    s = settings or Settings.from_env()
    stack = services(s)
    check_prerequisites(stack)
    for path in (s.stack_dir, s.logs_dir, s.run_dir):
        path.mkdir(parents=True, exist_ok=True)
    with stack_lock(s):
        install_worker_programs()
        for service in stack:
            if not service.installed():
                service.install()
        for service in stack:
            service.forget_stale_pid()
        stopped = [service for service in stack if service.pid() is None]
        # Check every port before starting anything, so a conflict leaves nothing half-started.
        for service in stopped:
            service.ensure_ports_free()
        for service in stopped:
            say(f"starting {service.name}…")
            service.start()
        wait_all_ready(stack)
        # Still under the lock, so a concurrent `down` cannot make this report stale.
        result = status(s)
    for service in stack:
        how = "started" if service in stopped else "already running"
        say(
            f"{service.name:<9} up   pid {result[service.name]['pid']!s:<7} "
            f"127.0.0.1:{service.port:<6} ({how})"
        )
    return result


def wait_all_ready(stack: Sequence[Service]) -> None:
    """Probe all servers in parallel: total wait is the slowest one (Kafka), not the sum."""
    errors: dict[str, str] = {}

    def wait(service: Service) -> None:
        try:
            service.wait_ready(READY_TIMEOUT_S[service.name])
        except StackError as error:
            errors[service.name] = str(error)

    threads = [threading.Thread(target=wait, args=(service,)) for service in stack]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise StackError("\n\n".join(errors[name] for name in SERVICES if name in errors))


def down(settings: Settings | None = None) -> None:
    """Stop every running server: SIGTERM (pg_ctl fast for PostgreSQL), wait, then SIGKILL."""
    s = settings or Settings.from_env()
    s.run_dir.mkdir(parents=True, exist_ok=True)
    with stack_lock(s):
        for service in reversed(services(s)):
            pid = service.pid()
            if pid is None:
                service.forget_stale_pid()
                say(f"{service.name:<9} already stopped")
                continue
            say(f"stopping {service.name} (pid {pid})…")
            service.stop(pid)
            s.pid_file(service.name).unlink(missing_ok=True)
            say(f"{service.name:<9} stopped")


def reset(settings: Settings | None = None) -> None:
    """down, then delete all data and logs; installed jars and binaries are kept."""
    s = settings or Settings.from_env()
    down(s)
    kafka = Kafka(s)
    doomed = [
        kafka.data,
        kafka.config,
        kafka.probe_config,
        Postgres(s).home,
        Minio(s).data.parent,
        s.logs_dir,
        s.run_dir,
    ]
    for path in doomed:
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()
    say(f"deleted stack data under {s.stack_dir} (kept {s.bin_dir} and {kafka.lib})")


def status(settings: Settings | None = None) -> dict[str, dict[str, object]]:
    """Per server: running (our process alive and its port accepting connections), pid, port."""
    s = settings or Settings.from_env()
    result: dict[str, dict[str, object]] = {}
    for service in services(s):
        pid = service.pid()
        running = pid is not None and port_open(service.port)
        result[service.name] = {"running": running, "pid": pid, "port": service.port}
    return result


def logs(name: str | None = None, settings: Settings | None = None) -> str:
    s = settings or Settings.from_env()
    parts = []
    for service in [name] if name else list(SERVICES):
        path = s.log_file(service)
        parts.append(f"==> {path} <==\n{tail(path) if path.exists() else '(no log yet)'}")
    return "\n\n".join(parts)


# --------------------------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------------------------


def print_status(result: Mapping[str, Mapping[str, object]]) -> int:
    for name, info in result.items():
        # "starting": our process is alive but its port is not accepting connections yet.
        state = "running" if info["running"] else "stopped" if info["pid"] is None else "starting"
        pid = info["pid"] if info["pid"] is not None else "-"
        say(f"{name:<9} {state:<8} pid {pid!s:<7} port {info['port']}")
    return 0 if all(info["running"] for info in result.values()) else EXIT_NOT_ALL_RUNNING


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="tools/stack", description="Local Kafka + PostgreSQL + MinIO under .stack/."
    )
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("up", help="install on first use, start, wait until ready")
    commands.add_parser("down", help="stop all servers")
    commands.add_parser("status", help="one line per server; exit 0 if all running, else 3")
    commands.add_parser("reset", help="down + delete data (keeps installed binaries)")
    commands.add_parser("env", help="print export lines for the application")
    logs_parser = commands.add_parser("logs", help=f"last {LOG_TAIL_LINES} lines of server logs")
    logs_parser.add_argument("service", nargs="?", choices=SERVICES)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    try:
        if args.command == "up":
            started = time.monotonic()
            up()
            say(f"stack up in {time.monotonic() - started:.1f}s")
        elif args.command == "down":
            down()
        elif args.command == "status":
            return print_status(status())
        elif args.command == "reset":
            reset()
        elif args.command == "env":
            for key, value in env().items():
                say(f"export {key}={shlex.quote(value)}")
        elif args.command == "logs":
            say(logs(args.service))
    except StackError as error:
        print(f"tools/stack {args.command}: {error}", file=sys.stderr, flush=True)
        return error.exit_code
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
