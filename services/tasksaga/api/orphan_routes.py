"""The orphan sweep over HTTP: a report of the tenant's objects no live task references
(kept, with an id), then — once the report is at least the grace period old — the sweep that
deletes those still unreferenced (docs/operations.md, "Operator repair")."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query

from tasksaga.adapters.orphan_sweep import SweepBusy, SweepTooEarly
from tasksaga.api.dependencies import Deps
from tasksaga.api.repair_access import repair_services, require_operator
from tasksaga.api.security import Caller

router = APIRouter(prefix="/orphans/reports", tags=["orphan sweep"])


@router.post("", status_code=201)
def report(
    caller: Caller, d: Deps,
    bucket: Annotated[list[str] | None, Query(
        max_length=50, description="buckets to scan (default: every upload step's)")] = None,
    retention_hours: Annotated[float, Query(
        ge=0, description="objects of Completed/Resolved tasks are kept this long")] = 168.0,
) -> dict[str, Any]:
    require_operator(caller)
    buckets = sorted(set(bucket or [s.upload.bucket for t in d.registry
                                    for s in t.upload_steps() if s.upload is not None]))
    if not buckets:
        raise HTTPException(422, "no bucket to scan: name one with bucket=...")
    sweeper = repair_services(d).sweeper
    sweep_id, _ = sweeper.report(caller.tenant, buckets, retention_hours, caller.subject)
    document = sweeper.sweep_document(caller.tenant, sweep_id)
    assert document is not None
    return document


@router.get("/{sweep_id}")
def show_report(sweep_id: str, caller: Caller, d: Deps) -> dict[str, Any]:
    require_operator(caller)
    document = repair_services(d).sweeper.sweep_document(caller.tenant, sweep_id)
    if document is None:
        raise HTTPException(404, f"no orphan report {sweep_id}")
    return document


@router.post("/{sweep_id}/sweep")
def sweep(sweep_id: str, caller: Caller, d: Deps) -> dict[str, Any]:
    require_operator(caller)
    services = repair_services(d)
    try:
        return services.sweeper.sweep(caller.tenant, sweep_id, services.orphan_grace_s,
                                      caller.subject)
    except KeyError:
        raise HTTPException(404, f"no orphan report {sweep_id}") from None
    except (SweepTooEarly, SweepBusy) as error:
        raise HTTPException(409, str(error)) from error
