"""Live progress: task events and step progress streamed to watchers (SSE and WebSocket).

``messages`` turns log events and heartbeats into the messages watchers see (pure),
``hub`` fans them out to per-task watcher queues in memory, ``session`` joins the replay
from the Postgres log to the live fan-out without a gap or a duplicate, ``feed`` is the one
Kafka consumer per API process, ``tickets`` the short-lived stream tickets for browsers and
``routes`` the HTTP and WebSocket endpoints. docs/api.md describes the protocol.
"""
