"""The capacity model of docs/scaling.md: CPU per step transition, measured by the bench's
shards phase, turned into how many processes a target rate of step transitions needs.

Pure arithmetic, no I/O: the measured figures and the assumptions are arguments.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

# The processes the model sizes; every other group of the CPU table (kafka, generator, the
# rest of the machine) is reported but not sized here.
ORCHESTRATOR = "orchestrator"
WORKER = "worker"
POSTGRES = "postgres"


def us_per_step(cpu_cores: Mapping[str, float], transitions_per_s: float) -> dict[str, float]:
    """CPU microseconds per step transition of each process group (cores / transitions/s)."""
    if transitions_per_s <= 0:
        raise ValueError(f"transitions_per_s must be positive to divide CPU by it, got "
                         f"{transitions_per_s}: the run completed no steps in its window")
    return {name: round(cores / transitions_per_s * 1e6, 1) for name, cores in cpu_cores.items()}


@dataclass(frozen=True)
class Assumptions:
    """What the projection takes for granted (docs/scaling.md states each)."""

    core_utilisation: float = 0.6  # run each process at this share of its core, for headroom
    orchestrator_cores: float = 1.0  # one Python process: one core at most (the GIL)
    worker_cores: float = 1.0
    postgres_cores_per_shard: float = 8.0  # a shard is a machine of its own
    # spare partitions, to add orchestrators later without repartitioning the topics
    partitions_per_orchestrator: int = 4

    def __post_init__(self) -> None:
        if not 0 < self.core_utilisation <= 1:
            raise ValueError(f"core_utilisation must be in (0, 1], got {self.core_utilisation}")
        for name in ("orchestrator_cores", "worker_cores", "postgres_cores_per_shard"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        if self.partitions_per_orchestrator < 1:
            raise ValueError("partitions_per_orchestrator must be at least 1, got "
                             f"{self.partitions_per_orchestrator}")


@dataclass(frozen=True)
class Plan:
    target_steps_per_s: float
    orchestrators: int
    workers: int
    shards: int
    partitions: int


def plan_for(target_steps_per_s: float, per_step_us: Mapping[str, float],
             assumptions: Assumptions = Assumptions()) -> Plan:
    """The processes ``target_steps_per_s`` step transitions/s need at the measured CPU cost.

    Each kind of process gets ``ceil(target x µs per step / usable µs per second of one)``;
    partitions are ``partitions_per_orchestrator`` per orchestrator (a partition is owned by one
    orchestrator at a time, so there must be at least as many as orchestrators and workers).
    """
    if target_steps_per_s <= 0:
        raise ValueError(f"target_steps_per_s must be positive, got {target_steps_per_s}")
    missing = [n for n in (ORCHESTRATOR, WORKER, POSTGRES) if n not in per_step_us]
    if missing:
        raise ValueError(f"per_step_us has no figure for {', '.join(missing)}: give the CPU "
                         "µs per step of each (bench results: shards.*.us_per_step)")
    a = assumptions

    def count(process: str, cores: float) -> int:
        demand_us = target_steps_per_s * per_step_us[process]
        return max(1, math.ceil(demand_us / (cores * a.core_utilisation * 1e6)))

    orchestrators = count(ORCHESTRATOR, a.orchestrator_cores)
    workers = count(WORKER, a.worker_cores)
    shards = count(POSTGRES, a.postgres_cores_per_shard)
    partitions = max(orchestrators * a.partitions_per_orchestrator, workers)
    return Plan(target_steps_per_s, orchestrators, workers, shards, partitions)
