"""The archiver's command, for a host with database and object-store access:

    tasksaga-archive run --retention-days 90 [--every 3600] [--partition NAME]
    tasksaga-archive verify                 read every archive back, check it against its manifest
    tasksaga-archive restore TASK_ID        bring a task's history back for audit
    tasksaga-archive list                   the archives recorded, and the partitions of the log

``run`` archives and drops the closed partitions whose tasks all ended more than the retention
age ago, and prunes the inbox and the webhook delivery log by their own retentions. With
``--every`` it runs as a service loop (SIGTERM stops it between passes). Settings come from the
environment: ``TASKSAGA_DATABASE_URL``, ``TASKSAGA_S3_*``, ``TASKSAGA_ARCHIVE_BUCKET``.
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
from datetime import timedelta

from psycopg_pool import ConnectionPool

from tasksaga.adapters.archive import ArchiveNotFound, Archiver
from tasksaga.adapters.archive_format import ArchiveCorrupt
from tasksaga.adapters.lifecycle import stop_on_signals
from tasksaga.adapters.object_store import MinioObjectStore
from tasksaga.adapters.partitions import list_partitions
from tasksaga.adapters.pg_store import open_pool, prune_older_than
from tasksaga.config import ObjectStoreSettings


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tasksaga-archive", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database-url", default=os.environ.get("TASKSAGA_DATABASE_URL"))
    parser.add_argument("--bucket", default=os.environ.get("TASKSAGA_ARCHIVE_BUCKET",
                                                           "tasksaga-archive"))
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="archive and drop old partitions, prune")
    age = run.add_mutually_exclusive_group(required=True)
    age.add_argument("--retention-days", type=float)
    age.add_argument("--retention-seconds", type=float)
    run.add_argument("--partition", help="only this partition")
    run.add_argument("--every", type=float, metavar="SECONDS", help="run again every N s")
    run.add_argument("--inbox-retention-hours", type=float, default=192.0)
    run.add_argument("--delivery-log-retention-hours", type=float, default=720.0)
    commands.add_parser("verify", help="check every archive against its manifest")
    restore = commands.add_parser("restore", help="bring a task's history back for audit")
    restore.add_argument("task_id")
    commands.add_parser("list", help="archives and partitions")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if not args.database_url:
        print("set TASKSAGA_DATABASE_URL or pass --database-url", file=sys.stderr)
        return 2
    try:
        s3 = ObjectStoreSettings()  # from TASKSAGA_S3_*
    except ValueError as error:
        print(f"object store settings (TASKSAGA_S3_*): {error}", file=sys.stderr)
        return 2
    objects = MinioObjectStore(s3.endpoint, s3.access_key, s3.secret_key, s3.secure, s3.region)
    objects.ensure_bucket(args.bucket)
    pool = open_pool(args.database_url, max_size=2, name="archiver")
    try:
        archiver = Archiver(pool, objects, args.bucket)
        if args.command == "run":
            return _run(archiver, args, pool)
        if args.command == "verify":
            bad = 0
            for partition, problem in archiver.verify_all():
                print(f"{partition}: {problem or 'ok'}")
                bad += problem is not None
            return 1 if bad else 0
        if args.command == "restore":
            try:
                count = archiver.restore(args.task_id)
            except (ArchiveNotFound, ArchiveCorrupt) as error:
                print(error, file=sys.stderr)
                return 1
            print(f"restored {count} events of task {args.task_id}; its audit reads them once"
                  " projected")
            return 0
        with pool.connection() as conn, conn.transaction():
            for part in list_partitions(conn):
                print(f"partition {part.name} [{part.lower}, {part.upper})")
            for row in conn.execute(
                    "SELECT partition_name, bucket, object_key, task_count, event_count,"
                    " dropped_at FROM event_archives ORDER BY lower_bound"):
                print(f"archive {row[0]}: s3://{row[1]}/{row[2]}, {row[3]} tasks, "
                      f"{row[4]} events, dropped {row[5]:%Y-%m-%d %H:%M}")
        return 0
    finally:
        pool.close()


def _run(archiver: Archiver, args: argparse.Namespace, pool: ConnectionPool) -> int:
    retention = timedelta(days=args.retention_days) if args.retention_days is not None \
        else timedelta(seconds=args.retention_seconds)
    stop = stop_on_signals() if args.every else threading.Event()
    while True:
        try:
            report = archiver.run(retention, only=args.partition)
        except ValueError as error:  # a bad --partition, an archive failing its check
            print(error, file=sys.stderr)
            return 1
        for line in report.lines():
            print(line, flush=True)
        for table, hours in (("processed_messages", args.inbox_retention_hours),
                             ("webhook_deliveries", args.delivery_log_retention_hours)):
            pruned = prune_older_than(pool, table, hours * 3600)
            if pruned:
                print(f"pruned {pruned} {table} rows", flush=True)
        if not args.every or stop.wait(args.every):
            return 0
