"""The video pipeline (seed 001) for real: ffprobe, parallel ffmpeg transcodes, a conditional
4K rendition, partial compensation, cancellation and a worker killed mid-transcode."""

from __future__ import annotations

import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tasksaga.adapters.object_store import MinioObjectStore
from tasksaga_examples.video import catalog
from tasksaga_examples.video_pipeline import make_test_video
from tests.e2e.conftest import System, running_system

TRANSCODES = ("Transcode720p", "Transcode1080p", "Transcode4K")


@pytest.fixture(scope="module")
def video(stack_env: dict[str, str]) -> Iterator[System]:
    with running_system(stack_env, TASKSAGA_VIDEO_RETRY_DELAY_MS="200",
                        TASKSAGA_VIDEO_HEARTBEAT_TIMEOUT_S="4",
                        TASKSAGA_WORKER_CONCURRENCY="4") as running:
        yield running


@pytest.fixture(scope="module")
def sources(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    directory = tmp_path_factory.mktemp("videos")
    made = {"1080p": (1920, 1080, 3.0), "2160p": (3840, 2160, 3.0),
            "long2160p": (3840, 2160, 8.0)}
    paths = {}
    for name, (width, height, seconds) in made.items():
        paths[name] = directory / f"{name}.mp4"
        make_test_video(str(paths[name]), width, height, seconds)
    return paths


def store_of(system: System) -> MinioObjectStore:
    env = system.env
    return MinioObjectStore(env["TASKSAGA_S3_ENDPOINT"], env["TASKSAGA_S3_ACCESS_KEY"],
                            env["TASKSAGA_S3_SECRET_KEY"])


def submit(system: System, source: Path, **fields: str) -> str:
    with source.open("rb") as handle:
        reply = system.client.post(
            "/tasks/VideoTranscode",
            data={"title": f"test {source.name}", **fields},
            files=[("video_file", (source.name, handle, "video/mp4"))],
        )
    assert reply.status_code == 202, reply.text
    task_id: str = reply.json()["task_id"]
    return task_id


def steps(status: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {s["step"]: s for s in status["steps"]}


def audit(system: System, task_id: str) -> list[dict[str, Any]]:
    entries: list[dict[str, Any]] = system.client.get(f"/tasks/{task_id}/audit").json()["entries"]
    return entries


def height_of(store: MinioObjectStore, rendition: dict[str, Any], directory: Path) -> int:
    """The height of a rendition, an artifact: its parts, concatenated in order, are the MP4."""
    path = directory / f"{rendition['sha256']}.mp4"
    with path.open("wb") as mp4:
        for key in rendition["parts"]:
            for chunk in store.open_stream(rendition["bucket"], key):
                mp4.write(chunk)
    assert path.stat().st_size == rendition["size"]
    out = subprocess.run(["ffprobe", "-v", "error", "-select_streams", "v:0", "-show_entries",
                          "stream=height", "-of", "csv=p=0", str(path)],
                         capture_output=True, text=True, check=True, timeout=60)
    return int(out.stdout.strip())


def holders_of(system: System, sha256: str) -> set[str]:
    with psycopg.connect(system.env["TASKSAGA_DATABASE_URL"]) as conn:
        rows = conn.execute("SELECT holder FROM artifact_refs WHERE sha256 = %s",
                            (sha256,)).fetchall()
    return {holder for (holder,) in rows}


def wait_for(predicate: Any, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def wait_until_transcoding(system: System, task_id: str) -> None:
    def transcoding() -> bool:
        status = system.status(task_id)
        return status is not None and any(
            steps(status)[name].get("progress") for name in TRANSCODES)

    wait_for(transcoding, 120, "a transcode reporting progress")


def test_a_1080p_source_skips_4k_and_the_snapshot_says_why(
    video: System, sources: dict[str, Path]
) -> None:
    task_id = submit(video, sources["1080p"])
    status = video.wait_terminal(task_id, 120)
    assert status["status"] == "Completed", status["end_reason"]
    assert set(status["response"]["renditions"]) == {"720p", "1080p"}
    assert steps(status)["Transcode4K"]["status"] == "Skipped"
    (snapshot,) = status["conditions"]
    assert snapshot["step"] == "Transcode4K"
    assert snapshot["description"] == "Source >= 4K"
    assert snapshot["function"] == "is_source_4k_or_higher"
    assert snapshot["result"] is False
    assert snapshot["context_summary"] == "Width=1920, Height=1080"
    summaries = [e["summary"] for e in audit(video, task_id)]
    assert any("Source >= 4K" in s and "Width=1920, Height=1080" in s for s in summaries)
    store = store_of(video)
    for key in status["response"]["thumbnail_keys"]:
        assert store.exists("transcoded-videos", key)
    assert catalog.entry_exists(task_id, video.env["TASKSAGA_DATABASE_URL"])


def test_a_4k_source_yields_three_renditions_of_the_right_size(
    video: System, sources: dict[str, Path], tmp_path: Path
) -> None:
    task_id = submit(video, sources["2160p"])
    status = video.wait_terminal(task_id, 180)
    assert status["status"] == "Completed", status["end_reason"]
    renditions = status["response"]["renditions"]
    assert set(renditions) == {"720p", "1080p", "4K"}
    store = store_of(video)
    heights = {name: height_of(store, rendition, tmp_path)
               for name, rendition in renditions.items()}
    assert heights == {"720p": 720, "1080p": 1080, "4K": 2160}
    assert status["conditions"][0]["result"] is True


@pytest.mark.parametrize("source", ["1080p", "2160p"])
def test_a_failing_1080p_transcode_compensates_only_what_completed_in_reverse(
    video: System, sources: dict[str, Path], source: str
) -> None:
    task_id = submit(video, sources[source], fail_step="Transcode1080p", fail_times="99")
    status = video.wait_terminal(task_id, 180)
    assert status["status"] == "Failed"
    by_step = steps(status)
    assert by_step["Transcode1080p"]["status"] == "Failed"
    assert by_step["Transcode1080p"]["attempt"] == 6  # 1 + 5 retries (seed: MaxRetries = 5)
    # A sibling transcode either completed (then it is compensated) or was still running when
    # the group became unsatisfiable (then it was told to stop, and is not compensated):
    # which one depends on how fast ffmpeg is next to six quick failures.
    siblings = ["Transcode720p"] + (["Transcode4K"] if source == "2160p" else [])
    for name in siblings:
        sibling = by_step[name]
        stopped = sibling["status"] == "Failed" and sibling["error_type"] == "Cancelled"
        assert sibling["status"] == "Compensated" or stopped, sibling
    assert by_step["UploadVideo"]["status"] == "Compensated"
    assert by_step["GenerateThumbnails"]["status"] == "NotRun"  # never ran
    if source == "1080p":
        assert by_step["Transcode4K"]["status"] == "Skipped"  # skipped: untouched
    store = store_of(video)
    for name in ("Transcode720p", "Transcode4K"):
        data = by_step[name]["data"]
        if data is not None:  # compensated: the step no longer holds its rendition (another
            # task with the same source may hold the same bytes: they are stored once)
            assert f"{task_id}:{name}" not in holders_of(video, data["sha256"]), \
                f"{name} still holds its rendition"
    upload = by_step["UploadVideo"]["data"]["files"][0]
    assert not store.exists(upload["bucket"], upload["key"])

    entries = audit(video, task_id)
    completed = [e["step"] for e in entries if e["event_type"] == "StepCompleted"]
    compensated = [e["step"] for e in entries if e["event_type"] == "StepCompensated"]
    with_compensation = [s for s in reversed(completed) if s != "ExtractMetadata"]
    assert compensated == with_compensation
    failed = [e for e in entries if e["event_type"] == "StepFailed"]
    assert all(e["step"] == "Transcode1080p" or "Cancelled" in e["summary"] for e in failed)


def _ffmpeg_running_for(task_id: str) -> bool:
    found = subprocess.run(["pgrep", "-f", f"ffmpeg.*{task_id}"], capture_output=True,
                           check=False)
    return found.returncode == 0


def test_cancellation_mid_transcode_stops_ffmpeg_and_compensates(
    video: System, sources: dict[str, Path]
) -> None:
    task_id = submit(video, sources["long2160p"])

    wait_until_transcoding(video, task_id)
    assert _ffmpeg_running_for(task_id)
    reply = video.client.post(f"/tasks/{task_id}/cancel", params={"reason": "test cancel"})
    assert reply.status_code == 202
    status = video.wait_terminal(task_id, 120)
    assert status["status"] == "Cancelled"
    assert not _ffmpeg_running_for(task_id)
    by_step = steps(status)
    assert by_step["UploadVideo"]["status"] == "Compensated"
    assert by_step["GenerateThumbnails"]["status"] == "NotRun"
    stopped = [name for name in TRANSCODES if by_step[name]["error_type"] == "Cancelled"]
    assert stopped, by_step
    kinds = [e["event_type"] for e in audit(video, task_id)]
    assert "CancellationRequested" in kinds and "StepCancellationRequested" in kinds
    assert kinds[-1] == "TaskCancelled"
    assert video.client.post(f"/tasks/{task_id}/cancel").status_code == 409


def test_a_worker_killed_mid_transcode_is_retried_after_its_heartbeat_timeout(
    video: System, sources: dict[str, Path]
) -> None:
    task_id = submit(video, sources["long2160p"])

    wait_until_transcoding(video, task_id)
    video.services.kill("worker", signal.SIGKILL)

    def heartbeat_missed() -> bool:
        return any(e["event_type"] == "StepFailed" and "HeartbeatMissed" in e["summary"]
                   for e in audit(video, task_id))

    wait_for(heartbeat_missed, 60, "the orchestrator to notice the missing heartbeats")
    video.services.start("worker")
    status = video.wait_terminal(task_id, 240)
    assert status["status"] == "Completed", status["end_reason"]
    # The retry was dispatched; whichever attempt finished first completed the step (the
    # restarted worker also re-runs the killed attempt's command, which Kafka redelivers).
    retried = [e for e in audit(video, task_id)
               if e["event_type"] == "StepDispatched" and "(attempt 2)" in e["summary"]]
    assert retried


def test_a_compensation_that_keeps_failing_ends_compensation_failed_in_status(
    video: System, sources: dict[str, Path]
) -> None:
    task_id = submit(video, sources["1080p"], fail_step="UpdateCatalog", fail_times="99",
                     fail_compensation_of="Transcode720p")
    status = video.wait_terminal(task_id, 180)
    assert status["status"] == "CompensationFailed"
    assert status["failure"]["step"] == "Transcode720p"
    assert status["failure"]["trace_id"]  # the failed attempt's trace
    assert "compensation of step Transcode720p failed" in status["end_reason"]
    assert "SimulatedFailure" in status["end_reason"]
    record = steps(status)["Transcode720p"]
    assert record["status"] == "CompensationFailed"
    assert record["compensation_attempt"] == 2  # the task's MaxRetries = 1

    reply = video.client.post(f"/tasks/{task_id}/retry-compensation")
    assert reply.status_code == 202

    def retried() -> bool:
        status = video.status(task_id)
        return status is not None and \
            steps(status)["Transcode720p"]["compensation_attempt"] == 3 and \
            status["status"] == "CompensationFailed"

    wait_for(retried, 60, "the operator's retry (one more attempt) to run and fail again")
    kinds = [e["event_type"] for e in audit(video, task_id)]
    assert kinds.count("TaskCompensationFailed") == 2
    assert "CompensationRetryRequested" in kinds
