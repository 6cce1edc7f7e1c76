"""The ZIP example across the four processes."""

from __future__ import annotations

import hashlib
import io
import os
import zipfile

from tasksaga.adapters.object_store import MinioObjectStore
from tests.e2e.conftest import System


def _store(system: System) -> MinioObjectStore:
    env = system.env
    return MinioObjectStore(env["TASKSAGA_S3_ENDPOINT"], env["TASKSAGA_S3_ACCESS_KEY"],
                            env["TASKSAGA_S3_SECRET_KEY"])


def test_the_zip_task_completes_and_the_archive_holds_exactly_the_uploaded_files(
    system: System,
) -> None:
    files = {"a.txt": b"alpha\n" * 1000, "b.bin": os.urandom(200_000), "c.csv": b"1,2\n3,4\n"}
    reply = system.submit_zip(files)
    assert reply.status_code == 202
    assert reply.headers["Location"] == f"/tasks/{reply.json()['task_id']}"
    status = system.wait_terminal(reply.json()["task_id"])
    assert status["status"] == "Completed"
    response = status["response"]
    # The archive is an artifact: its checksummed parts, concatenated in order, are the ZIP.
    store = _store(system)
    data = b"".join(chunk for key in response["archive_parts"]
                    for chunk in store.open_stream(response["archive_bucket"], key))
    assert len(data) == response["archive_size"]
    assert hashlib.sha256(data).hexdigest() == response["archive_sha256"]
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        assert {name: archive.read(name) for name in archive.namelist()} == files
    assert [s["status"] for s in status["steps"]] == ["Completed"] * 3
    # The API published each upload as an artifact (CreateArchive read them from there).
    for content in files.values():
        assert store.exists("artifacts", f"sha256/{hashlib.sha256(content).hexdigest()}/000000")


def test_failure_at_the_last_step_compensates_in_reverse_and_the_audit_shows_it(
    system: System,
) -> None:
    # Random content: an archive no other task holds, so releasing it deletes its parts.
    content = os.urandom(64)
    reply = system.submit_zip({"x.txt": content}, fail=True)
    task_id = reply.json()["task_id"]
    status = system.wait_terminal(task_id)
    assert status["status"] == "Failed"
    steps = {s["step"]: s for s in status["steps"]}
    assert steps["PublishManifest"]["status"] == "Failed"
    assert steps["CreateArchive"]["status"] == "Compensated"
    assert steps["UploadFiles"]["status"] == "Compensated"
    store = _store(system)
    archive = steps["CreateArchive"]["data"]
    assert archive["parts"], "CreateArchive recorded no artifact parts"
    for key in archive["parts"]:  # the compensation released the artifact's last reference
        assert not store.exists(archive["bucket"], key)
    for upload in steps["UploadFiles"]["data"]["files"]:
        assert not store.exists(upload["bucket"], upload["key"])
    # ... and the upload's artifact, which the API published, was released with it.
    assert not store.exists("artifacts", f"sha256/{hashlib.sha256(content).hexdigest()}/000000")

    audit = system.client.get(f"/tasks/{task_id}/audit").json()["entries"]
    kinds = [(e["event_type"], e["step"]) for e in audit]
    assert kinds == [
        ("TaskSubmitted", None),
        ("StepCompleted", "UploadFiles"),
        ("StepDispatched", "CreateArchive"),
        ("StepCompleted", "CreateArchive"),
        ("StepDispatched", "PublishManifest"),
        ("StepFailed", "PublishManifest"),
        ("CompensationStarted", None),
        ("StepCompensationDispatched", "CreateArchive"),
        ("StepCompensated", "CreateArchive"),
        ("StepCompensationDispatched", "UploadFiles"),
        ("StepCompensated", "UploadFiles"),
        ("TaskFailed", None),
    ]
    assert [e["version"] for e in audit] == list(range(1, len(audit) + 1))
