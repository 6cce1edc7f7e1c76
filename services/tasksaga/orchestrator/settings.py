from __future__ import annotations

from tasksaga.config import CommonSettings


class OrchestratorSettings(CommonSettings):
    orchestrator_group: str = "orchestrator"
    # Static membership: a restarted instance with the same id gets its partitions back
    # without a rebalance of the whole group.
    orchestrator_instance_id: str | None = None
    orchestrator_pool_size: int = 8
    orchestrator_run_projector: bool = True
