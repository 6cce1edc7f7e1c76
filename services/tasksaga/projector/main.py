"""tasksaga-projector: the projections of the event log, in a process of their own.

The orchestrator projects in a thread of its own process by default; under load that thread
competes with the message handling for the interpreter, and each batch waits on it. Run this
service and set ``TASKSAGA_ORCHESTRATOR_RUN_PROJECTOR=false`` on the orchestrators to keep
their hot path free of it. It projects every shard, each woken by the shard's NOTIFY on
appends. Replicas may run side by side: one projects a shard at a time (an advisory lock),
another takes over at once when it dies.
"""

from __future__ import annotations

import logging
import threading

from tasksaga.adapters import telemetry
from tasksaga.adapters.avro_codec import AvroCodec
from tasksaga.adapters.lifecycle import stop_on_signals
from tasksaga.adapters.ops_server import postgres_check, start_ops_server, threads_check
from tasksaga.adapters.payload_crypto import payload_cipher_for
from tasksaga.adapters.pg_shards import migrate_shards, open_shard_pools
from tasksaga.config import configure_logging
from tasksaga.projector.settings import ProjectorSettings
from tasksaga.projector.thread import start_projector

log = logging.getLogger("tasksaga.projector")
THREAD_JOIN_TIMEOUT_S = 10.0


def main() -> int:
    settings = ProjectorSettings()
    configure_logging(settings.log_level, "projector")
    telemetry.configure("tasksaga-projector", settings.otel_console)
    shards = settings.shard_config()
    migrate_shards(shards)
    stop = stop_on_signals()
    codec = AvroCodec(settings.contracts_dir, payload_cipher_for(settings))
    pools = open_shard_pools(shards, 2, "projector")
    threads: list[threading.Thread] = []
    for shard, pool in pools.items():
        name = "projector" if len(pools) == 1 else f"projector-{shard}"
        threads.append(start_projector(name, shards.urls[shard], pool, codec, settings, stop))
    start_ops_server(settings.metrics_port, {
        **{"postgres" if len(pools) == 1 else f"postgres-{shard}": postgres_check(pool)
           for shard, pool in pools.items()},
        "threads": threads_check(lambda: threads),
        "running": lambda: not stop.is_set(),
    }, settings.metrics_host)
    log.info("projector running: shards %s", ", ".join(pools))
    try:
        stop.wait()
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=THREAD_JOIN_TIMEOUT_S)
        for pool in pools.values():
            pool.close()
        log.info("projector stopped")
    return stop.exit_code


if __name__ == "__main__":
    raise SystemExit(main())
