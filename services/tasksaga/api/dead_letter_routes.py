"""Dead letters over HTTP: list (paged, by source topic and reason), show (the reason, where
the record came from, its headers and its payload decoded when it decodes), replay (produce
it again to its source topic, once unless asked ``again``).

A letter belongs to the tenant of the task it names; platform operators see every tenant's
and those naming no known task (docs/operations.md, "Operator repair").
"""

from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query

from tasksaga.adapters.dead_letters import LetterFilter, letter_document
from tasksaga.api.dependencies import ApiDependencies, Deps
from tasksaga.api.repair_access import repair_services, require_operator, tenant_scope
from tasksaga.api.security import Caller
from tasksaga.core.authorization import Principal

router = APIRouter(prefix="/dead-letters", tags=["dead letters"])


def _visible(d: ApiDependencies, caller: Principal, letter_id: int) -> dict[str, Any]:
    require_operator(caller)
    row = repair_services(d).dead_letters.get(d.topics.dead_letter, letter_id)
    scope = tenant_scope(caller)
    if row is None or (scope is not None and row["tenant"] != scope):
        raise HTTPException(404, f"no dead letter {letter_id}")
    return row


@router.get("")
def list_dead_letters(
    caller: Caller, d: Deps,
    topic: Annotated[str | None, Query(max_length=300,
                                       description="the source topic, exactly")] = None,
    reason: Annotated[str | None, Query(max_length=200,
                                        description="a part of the reason")] = None,
    after: Annotated[int, Query(ge=0, description="next_after of the previous page")] = 0,
    limit: Annotated[int, Query(ge=1)] = 50,
) -> dict[str, Any]:
    require_operator(caller)
    page = min(limit, d.max_page_size)
    rows = repair_services(d).dead_letters.page(
        LetterFilter(d.topics.dead_letter, tenant_scope(caller), topic, reason), after, page)
    letters = [letter_document(r, None) for r in rows]
    return {"dead_letters": letters, "limit": page,
            "next_after": letters[-1]["id"] if len(letters) == page else None}


@router.get("/{letter_id}")
def show_dead_letter(letter_id: int, caller: Caller, d: Deps) -> dict[str, Any]:
    return letter_document(_visible(d, caller, letter_id), d.codec)


@router.post("/{letter_id}/replay", status_code=202)
def replay_dead_letter(
    letter_id: int, caller: Caller, d: Deps,
    again: Annotated[bool, Query(description="replay a letter replayed before")] = False,
) -> dict[str, Any]:
    """Produce the original record (key, value, headers) to its source topic; its consumer
    dedupes by message id, as for any redelivery."""
    row = _visible(d, caller, letter_id)
    if row["record_value"] is None:
        raise HTTPException(409, f"dead letter {letter_id} has no record value to replay")
    if "value cut to" in row["reason"]:
        raise HTTPException(409, f"dead letter {letter_id} holds a cut value; the whole record "
                                 "is in outbox_dead_letters (see its reason)")
    services = repair_services(d)
    if not services.dead_letters.claim_replay(letter_id, caller.subject, again):
        raise HTTPException(409, f"dead letter {letter_id} was replayed at "
                                 f"{row['replayed_at'].isoformat()} by {row['replayed_by']}; "
                                 "add again=true to replay it once more")
    headers = row["headers"] if isinstance(row["headers"], dict) else json.loads(row["headers"])
    key = None if row["record_key"] is None else bytes(row["record_key"])
    try:
        d.producer.send_and_wait(row["source_topic"], key, bytes(row["record_value"]),
                                 [(k, str(v).encode()) for k, v in headers.items()])
    except Exception as error:
        services.dead_letters.release_replay(letter_id, row)
        raise HTTPException(503, f"the broker did not acknowledge the replay: {error}; "
                                 "nothing was replayed, try again") from error
    return {"id": letter_id, "replayed_to": row["source_topic"], "replayed_by": caller.subject,
            "replay_count": row["replay_count"] + 1}
