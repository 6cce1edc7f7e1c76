"""What the API accepts and refuses, over HTTP against the running system."""

from __future__ import annotations

import uuid

from tests.e2e.conftest import System


def test_the_same_idempotency_key_gives_the_same_task(system: System) -> None:
    key = str(uuid.uuid4())
    first = system.submit_zip({"a.txt": b"a"}, idempotency_key=key)
    task_id = first.json()["task_id"]
    system.wait_terminal(task_id)
    again = system.submit_zip({"a.txt": b"a"}, idempotency_key=key)
    assert again.status_code == 202
    assert again.json()["task_id"] == task_id
    assert again.json()["already_submitted"] is True


def test_an_unknown_task_type_is_a_404_naming_the_known_ones(system: System) -> None:
    reply = system.client.post("/tasks/NoSuchTask", json={})
    assert reply.status_code == 404
    assert "known task types: CreateZip, VideoTranscode" in reply.json()["detail"]


def test_a_missing_file_is_a_422_that_names_the_field(system: System) -> None:
    reply = system.client.post("/tasks/CreateZip", data={"archive_name": "a.zip"},
                               files=[("other", ("x", b"x"))])
    assert reply.status_code == 422
    assert "'other'" in reply.json()["detail"]
    reply = system.client.post("/tasks/CreateZip", json={"archive_name": "a.zip"})
    assert reply.status_code == 422
    assert "multipart/form-data" in reply.json()["detail"]


def test_an_invalid_field_is_a_422_before_any_upload(system: System) -> None:
    reply = system.client.post("/tasks/CreateZip", data={"archive_name": "not a zip name"},
                               files=[("files", ("a.txt", b"a"))])
    assert reply.status_code == 422
    assert "archive_name" in reply.json()["detail"]


def test_cancelling_a_finished_task_is_a_409_and_an_unknown_one_a_404(system: System) -> None:
    task_id = system.submit_zip({"a.txt": b"a"}).json()["task_id"]
    system.wait_terminal(task_id)
    reply = system.client.post(f"/tasks/{task_id}/cancel")
    assert reply.status_code == 409
    assert "already ended: Completed" in reply.json()["detail"]
    assert system.client.post(f"/tasks/{uuid.uuid4()}/cancel").status_code == 404
    assert system.client.get(f"/tasks/{uuid.uuid4()}").status_code == 404
