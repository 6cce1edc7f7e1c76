"""Our own PostgreSQL cluster from Debian's package, with the app role and database."""

from __future__ import annotations

import os
import pwd
import shutil
from pathlib import Path

from .common import Settings, StackError
from .procs import Missing, Service, pid_alive, read_pid, run, say, wait_until
from .system import allow_traverse, apt_install, as_postgres, pg_bin_dir


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
        # pg_ctl -W returns before the new server has written postmaster.pid, and a killed
        # server's file is still there: wait for a pid that is alive and a postmaster, so
        # readiness (and the bench's CPU accounting) track this server, not the dead one
        # (if it never appears, wait_ready reports the failure with the log).
        postmaster_pid = self.data / "postmaster.pid"

        def live_pid() -> int | None:
            pid = read_pid(postmaster_pid)
            return pid if pid is not None and pid_alive(pid, self.marker) else None

        wait_until(lambda: live_pid() is not None, 30)
        pid = live_pid()
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
            f"port = {self.port}",
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



class PostgresShard(Postgres):
    """A further cluster for the event store's shards (docs/scaling.md): shard 2 listens on
    the PostgreSQL port + 1, with its data under .stack/pg-2, the same role and database."""

    def __init__(self, settings: Settings, shard: int) -> None:
        super().__init__(settings)
        if shard < 2:
            raise StackError(f"shard {shard}: shard 1 is the stack's own PostgreSQL")
        self.shard = shard
        self.name = f"postgres-{shard}"

    @property
    def home(self) -> Path:
        return self.s.stack_dir / f"pg-{self.shard}"

    @property
    def port(self) -> int:
        return self.s.pg_port + self.shard - 1
