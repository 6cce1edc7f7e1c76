"""What the operator-repair routes share: their services, and who may use the routes that
belong to no task type (dead letters, the orphan sweep)."""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import HTTPException

from tasksaga.adapters.dead_letters import DeadLetterIndex
from tasksaga.adapters.orphan_sweep import OrphanSweeper
from tasksaga.api.dependencies import ApiDependencies
from tasksaga.core.authorization import OPERATOR_ROLE, PLATFORM_OPERATOR_ROLE, Principal


@dataclass
class RepairServices:
    dead_letters: DeadLetterIndex
    sweeper: OrphanSweeper
    orphan_grace_s: float = 86_400.0


def repair_services(d: ApiDependencies) -> RepairServices:
    if d.repair is None:
        raise HTTPException(503, "operator repair is not configured on this API process")
    return d.repair


def require_operator(caller: Principal) -> None:
    """Routes of no task type need the operator role itself (or the platform's)."""
    if not caller.roles & {OPERATOR_ROLE, PLATFORM_OPERATOR_ROLE}:
        raise HTTPException(403, f"this needs the {OPERATOR_ROLE} role")


def tenant_scope(caller: Principal) -> str | None:
    """The tenant whose records the caller sees; None: every tenant's (platform operators)."""
    return None if PLATFORM_OPERATOR_ROLE in caller.roles else caller.tenant
