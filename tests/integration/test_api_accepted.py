"""A task accepted with 202 is visible at once, as Accepted, on every API replica, before any
projector has seen it (here no orchestrator runs at all)."""

from __future__ import annotations

import uuid

import pytest

from tasksaga.adapters.topics import ensure_topics
from tasksaga.adapters.wire import Topics
from tests.integration.inprocess_api import bearer, inprocess_api

pytestmark = pytest.mark.integration


def test_an_accepted_task_is_visible_at_once_on_another_replica(
    stack_env: dict[str, str], kafka_bootstrap: str, topic_prefix: str,
) -> None:
    tenant = f"acc{uuid.uuid4().hex[:6]}"
    ensure_topics(kafka_bootstrap, [Topics(topic_prefix).task_commands], 1)
    with inprocess_api(stack_env, kafka_bootstrap, topic_prefix) as (first, _), \
            inprocess_api(stack_env, kafka_bootstrap, topic_prefix) as (second, _):
        reply = first.post("/tasks/CreateZip", headers=bearer(tenant),
                           data={"archive_name": "a.zip"},
                           files=[("files", ("a.txt", b"hello", "text/plain"))])
        assert reply.status_code == 202, reply.text
        task_id = reply.json()["task_id"]
        seen = second.get(f"/tasks/{task_id}", headers=bearer(tenant))
        hidden = second.get(f"/tasks/{task_id}", headers=bearer("someone-else"))
        missing = second.get(f"/tasks/{uuid.uuid4()}", headers=bearer(tenant))
    assert seen.status_code == 200, seen.text
    assert seen.json()["status"] == "Accepted"
    assert seen.json()["request"]["archive_name"] == "a.zip"
    assert {s["status"] for s in seen.json()["steps"]} == {"Pending"}
    assert hidden.status_code == 404 and missing.status_code == 404
    assert hidden.text.replace(task_id, "X") == missing.text.replace(
        missing.json()["detail"].split()[-1], "X")


def test_readiness_reports_every_dependency_and_the_projection_lag(
    stack_env: dict[str, str], kafka_bootstrap: str,
) -> None:
    with inprocess_api(stack_env, kafka_bootstrap) as (client, _):
        reply = client.get("/health/ready")
    body = reply.json()
    assert set(body["checks"]) == {"postgres", "kafka", "object_store"}
    assert reply.status_code == 200 and set(body["checks"].values()) == {"ok"}
    assert body["projection_lag"]["events"] >= 0 and body["projection_lag"]["seconds"] >= 0
    print(f"projection lag seen by the API: {body['projection_lag']}")
