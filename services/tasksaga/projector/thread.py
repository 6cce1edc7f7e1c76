"""One shard's projector as a thread: catch up whenever the shard's appends NOTIFY."""

from __future__ import annotations

import threading

from psycopg_pool import ConnectionPool

from tasksaga.adapters.avro_codec import AvroCodec
from tasksaga.adapters.lifecycle import ServiceStop, start_thread
from tasksaga.adapters.outbox_relay import run_on_notify
from tasksaga.adapters.pg_store import EVENTS_CHANNEL
from tasksaga.adapters.projections import Projector
from tasksaga.projector.settings import ProjectionSettings


def start_projector(name: str, url: str, pool: ConnectionPool, codec: AvroCodec,
                    settings: ProjectionSettings, stop: ServiceStop) -> threading.Thread:
    projector = Projector(pool, codec, settings.projector_cache_bytes)
    return start_thread(name, lambda: run_on_notify(
        url, EVENTS_CHANNEL, projector.catch_up, stop, name=name,
        gather_s=settings.projector_gather_ms / 1000), stop)
