"""The orphan sweep over HTTP: a report of the tenant's objects no live task references
(kept, with an id), then — once the report is at least the grace period old — the sweep that
deletes those still unreferenced (docs/operations.md, "Operator repair")."""

from __future__ import annotations

import re
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query

from tasksaga.adapters.orphan_sweep import SweepBusy, SweepTooEarly
from tasksaga.api.dependencies import Deps
from tasksaga.api.repair_access import repair_services, require_operator
from tasksaga.api.security import Caller

router = APIRouter(prefix="/orphans/reports", tags=["orphan sweep"])

# S3's bucket naming rules: what MinIO would refuse is refused here, with its reason.
BUCKET_NAME = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
MAX_RETENTION_HOURS = 24 * 366 * 10


def _checked_buckets(buckets: list[str]) -> list[str]:
    wrong = [b for b in buckets if not BUCKET_NAME.fullmatch(b) or ".." in b]
    if wrong:
        raise HTTPException(422, f"not a bucket name: {wrong[:5]!r}; a bucket name is 3 to 63 "
                                 "lowercase letters, digits, dots and hyphens, starting and "
                                 "ending with a letter or digit")
    return buckets


@router.post("", status_code=201)
def report(
    caller: Caller, d: Deps,
    bucket: Annotated[list[str] | None, Query(
        max_length=50, description="buckets to scan (default: every upload step's)")] = None,
    retention_hours: Annotated[float, Query(
        ge=0, le=MAX_RETENTION_HOURS,
        description="objects of Completed/Resolved tasks are kept this long")] = 168.0,
) -> dict[str, Any]:
    require_operator(caller)
    declared = [s.upload.bucket for t in d.registry for s in t.upload_steps()
                if s.upload is not None]
    buckets = sorted(set(_checked_buckets(bucket) if bucket else declared))
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
