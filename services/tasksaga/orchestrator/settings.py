from __future__ import annotations

from pydantic import Field, field_validator

from tasksaga.adapters.partitions import PartitionPeriod
from tasksaga.config import CommonSettings
from tasksaga.projector.settings import ProjectionSettings


class OrchestratorSettings(CommonSettings, ProjectionSettings):
    orchestrator_group: str = "orchestrator"
    # Static membership: a restarted instance with the same id gets its partitions back
    # without a rebalance of the whole group.
    orchestrator_instance_id: str | None = None
    orchestrator_pool_size: int = 8
    orchestrator_run_projector: bool = True
    # Chains (tasksaga.core.chains): a worker runs the steps after a step itself when nothing
    # needs the orchestrator between them. Off: every step's command passes through here. (A
    # worker older than chains answers the first step alone; the orchestrator then dispatches
    # the next ones itself, at attempt 2.)
    orchestrator_chain_steps: bool = True
    # Caches bounded by bytes (approximate state sizes), not entries: a state holds its
    # request and every step's data.
    orchestrator_state_cache_bytes: int = Field(default=128 * 1024 * 1024, gt=0)
    # Live bodies of code-first workflows kept between messages (docs/workflows.md): a task
    # beyond it replays its history on its next message.
    orchestrator_workflow_cache_entries: int = Field(default=10_000, gt=0)
    # Retention of the inbox (processed_messages) and of the webhook delivery log. The inbox
    # must outlive every redelivery: a message can come back as long as a topic keeps it (the
    # broker's retention.ms, 7 days by default) and a consumer group may rewind to it, so the
    # default is 8 days; raise it with the topics' retention. See docs/architecture.md.
    inbox_retention_hours: float = Field(default=192.0, gt=0)
    delivery_log_retention_hours: float = Field(default=720.0, gt=0)
    maintenance_interval_s: float = Field(default=60.0, gt=0)
    # The event log's partitions: how much time each covers ("month", "day" or seconds such
    # as "3600s"), and how far ahead of now the maintenance keeps them created.
    event_partition: str = Field(default="month", description="month, day or '<n>s'")
    event_partition_ahead_s: float = Field(default=35 * 86400.0, gt=0)

    @field_validator("event_partition")
    @classmethod
    def _valid_period(cls, value: str) -> str:
        PartitionPeriod.parse(value)  # a clear message at start, not at the first maintenance
        return value
    # Outbox: the orchestrator sends its records right after each commit (and deletes their
    # rows once acknowledged); its relay sweeps rows older than the sweep age, which only a
    # failed send or a crash leaves. False: the relay alone publishes (woken by NOTIFY).
    outbox_direct_publish: bool = True
    outbox_sweep_age_s: float = Field(default=5.0, ge=0)
    # Consumer lag watch (every group of this deployment): alert once a group's oldest
    # unconsumed record is older than this fraction of its topic's retention.
    lag_watch_interval_s: float = Field(default=30.0, gt=0)
    lag_alert_ratio: float = Field(default=0.5, gt=0, lt=1)
    # How often the orchestrator checks that a worker consumes each capability route (its
    # steps wait otherwise): a log line when one has none, the capable_consumers gauge.
    capability_watch_interval_s: float = Field(default=15.0, gt=0)
    # The workers' consumer group name (TASKSAGA_WORKER_GROUP of the workers), to watch them.
    worker_group: str = "worker"
