#!/usr/bin/env python3
"""`make demo`: the local stack, the four services, the ZIP and video examples end to end.

ZIP: submits three files, shows progress, downloads the archive from MinIO and verifies every
entry byte for byte; then the variant that fails at its last step, with its compensation.
Video: a 4K source (three renditions, heights checked with ffprobe), a 1080p source (4K
skipped, with the condition snapshot), and Transcode1080p forced to fail (retries, then partial
compensation of what completed). Barista: the code-first workflow of seed 002 (pay, coffee
and milk poured in parallel, serve), with its awaits as steps and its recorded uuid.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys
import tempfile
import time
import zipfile
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))

import local_system
import stack_tool
from localrun import REPO, ServiceProcesses, local_token, service_env
from tasksaga.adapters.migrations import apply_migrations
from tasksaga.adapters.object_store import MinioObjectStore
from tasksaga_examples.video_pipeline import make_test_video

TERMINAL = {"Completed", "Failed", "Cancelled", "CompensationFailed", "NeedsAttention"}


def make_sample_files(directory: Path) -> dict[str, bytes]:
    files = {
        "readme.txt": b"tasksaga demo: these files travel API -> MinIO -> worker -> ZIP\n" * 50,
        "numbers.csv": "\n".join(f"{i},{i * i}" for i in range(20_000)).encode(),
        "random.bin": os.urandom(3 * 1024 * 1024),
    }
    for name, content in files.items():
        (directory / name).write_bytes(content)
    return files


def submit_zip(client: httpx.Client, directory: Path, names: list[str], fail: bool) -> str:
    handles = [(directory / n).open("rb") for n in names]
    try:
        reply = client.post(
            "/tasks/CreateZip",
            data={"archive_name": "demo.zip", "fail_at_last_step": str(fail).lower()},
            files=[("files", (n, h, "application/octet-stream")) for n, h in zip(names, handles,
                                                                                    strict=True)],
        )
    finally:
        for handle in handles:
            handle.close()
    if reply.status_code != 202:
        raise SystemExit(f"submit refused: {reply.status_code} {reply.text}")
    task_id: str = reply.json()["task_id"]
    print(f"  accepted: task {task_id} (202, status at {reply.json()['status_url']})")
    return task_id


def follow(client: httpx.Client, task_id: str, timeout_s: float = 120.0) -> dict[str, Any]:
    """Print the task's status each time it changes (steps, progress), until it ends."""
    deadline = time.monotonic() + timeout_s
    seen: list[str] = []
    while time.monotonic() < deadline:
        reply = client.get(f"/tasks/{task_id}")
        if reply.status_code == 200:
            status = reply.json()
            line = "  " + status["status"].ljust(13) + "  " + "  ".join(
                f"{s['step']}={s['status']}" + (
                    f"({s['progress']:.0%})"
                    if s["status"] == "Running" and s.get("progress") is not None else "")
                for s in status["steps"])
            if not seen or seen[-1] != line:
                print(line)
                seen.append(line)
            if status["status"] in TERMINAL:
                return status  # type: ignore[no-any-return]
        time.sleep(0.2)
    raise SystemExit(f"task {task_id} did not finish within {timeout_s} s")


def verify_archive(store: MinioObjectStore, bucket: str, parts: list[str],
                   originals: dict[str, bytes]) -> None:
    """The archive is an artifact: its parts, concatenated in order, are the ZIP."""
    with tempfile.TemporaryFile() as spool:
        for key in parts:
            for chunk in store.open_stream(bucket, key):
                spool.write(chunk)
        spool.seek(0)
        with zipfile.ZipFile(spool) as archive:
            names = sorted(archive.namelist())
            if names != sorted(originals):
                raise SystemExit(f"archive holds {names}, expected {sorted(originals)}")
            for name in names:
                if archive.read(name) != originals[name]:
                    raise SystemExit(f"archive entry {name} differs from the uploaded file")
                digest = hashlib.sha256(originals[name]).hexdigest()[:16]
                print(f"    {name:12} {len(originals[name]):>9} bytes  sha256 {digest}…  ok")


def submit_video(client: httpx.Client, path: Path, **fields: str) -> str:
    with path.open("rb") as handle:
        reply = client.post("/tasks/VideoTranscode",
                            data={"title": f"demo {path.name}", **fields},
                            files=[("video_file", (path.name, handle, "video/mp4"))])
    if reply.status_code != 202:
        raise SystemExit(f"submit refused: {reply.status_code} {reply.text}")
    task_id: str = reply.json()["task_id"]
    print(f"  accepted: task {task_id}")
    return task_id


def video_height(store: MinioObjectStore, rendition: dict[str, Any]) -> int:
    """A rendition is an artifact: its parts, concatenated in order, are the MP4."""
    import subprocess

    with tempfile.NamedTemporaryFile(suffix=".mp4") as mp4:
        for key in rendition["parts"]:
            for chunk in store.open_stream(rendition["bucket"], key):
                mp4.write(chunk)
        mp4.flush()
        probe = subprocess.run(
            ["ffprobe", "-v", "error", "-select_streams", "v:0", "-show_entries",
             "stream=height", "-of", "csv=p=0", mp4.name],
            capture_output=True, text=True, check=True, timeout=60)
    return int(probe.stdout.strip())


def run_video_examples(client: httpx.Client, store: MinioObjectStore, directory: Path) -> str:
    sources = {"4k.mp4": (3840, 2160), "1080p.mp4": (1920, 1080)}
    for name, (width, height) in sources.items():
        make_test_video(str(directory / name), width, height, 3.0)

    print("== video pipeline: a 4K source (generated by ffmpeg), three renditions in parallel")
    task_id = submit_video(client, directory / "4k.mp4")
    status = follow(client, task_id, 300)
    if status["status"] != "Completed":
        raise SystemExit(f"video task ended {status['status']}: {status['end_reason']}")
    for resolution, rendition in sorted(status["response"]["renditions"].items()):
        height = video_height(store, rendition)
        print(f"    {resolution:6} artifact sha256 {rendition['sha256'][:16]}…, "
              f"{len(rendition['parts'])} part(s)  ({height} lines)")
    print(f"    thumbnails: {', '.join(status['response']['thumbnail_keys'])}")

    print("== video pipeline: a 1080p source, so the 4K step is skipped")
    task_id = submit_video(client, directory / "1080p.mp4")
    status = follow(client, task_id, 300)
    for snapshot in status["conditions"]:
        print(f"    condition {snapshot['description']!r} ({snapshot['function']}) = "
              f"{snapshot['result']} [{snapshot['context_summary']}]")
    print(f"    renditions: {', '.join(sorted(status['response']['renditions']))}")

    print("== video pipeline: Transcode1080p forced to fail 6 times (5 retries, then "
          "partial compensation)")
    task_id = submit_video(client, directory / "1080p.mp4", fail_step="Transcode1080p",
                          fail_times="6")
    status = follow(client, task_id, 300)
    print(f"  ended {status['status']}: {status['end_reason']}")
    for entry in client.get(f"/tasks/{task_id}/audit").json()["entries"]:
        if entry["event_type"] in ("StepFailed", "StepCompensated", "StepSkipped",
                                   "CompensationStarted", "TaskFailed"):
            print(f"    v{entry['version']:<3} {entry['summary']}")
    return task_id


def run_barista(client: httpx.Client) -> None:
    """A code-first workflow (tasksaga_examples/barista.py), through the same API."""
    print("== Barista workflow (code-first): pay, pour coffee and milk in parallel, serve")
    reply = client.post("/tasks/Barista", json={"drink": "flat white", "customer": "ann"})
    if reply.status_code != 202:
        raise SystemExit(f"the barista was refused: {reply.status_code} {reply.text}")
    status = follow(client, reply.json()["task_id"])
    if status["status"] != "Completed":
        raise SystemExit(f"the barista ended {status['status']}: {status['end_reason']}")
    for entry in client.get(f"/tasks/{status['task_id']}/audit").json()["entries"]:
        print(f"    v{entry['version']:<3} {entry['summary']}")
    print(f"  served: {status['response']}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--keep", action="store_true",
                        help="leave the services running afterwards (`make down` stops them)")
    keep = parser.parse_args(argv).keep
    if keep and local_system.running():
        raise SystemExit("tasksaga services are already running (`make up`?): `make down` "
                         "first, or run the demo without KEEP")
    started = time.monotonic()
    print("== local stack (Kafka, Postgres, MinIO)")
    stack_tool.up()
    env = stack_tool.env()
    api_port = int(os.environ.get("TASKSAGA_DEMO_API_PORT", "18080"))
    apply_migrations(env["TASKSAGA_DATABASE_URL"])
    # Shorter retry delays than the seed's 2 s so the failing video run takes seconds.
    services = ServiceProcesses(
        service_env(env, api_port, TASKSAGA_VIDEO_RETRY_DELAY_MS="300",
                    TASKSAGA_TASK_MODULES="tasksaga_examples.zip_archive,"
                    "tasksaga_examples.video_pipeline,tasksaga_examples.barista"),
        REPO / ".run" / "demo-logs", api_port)
    store = MinioObjectStore(env["TASKSAGA_S3_ENDPOINT"], env["TASKSAGA_S3_ACCESS_KEY"],
                             env["TASKSAGA_S3_SECRET_KEY"])
    passed = False
    try:
        print("== starting api, orchestrator, step-worker, notifier")
        services.start_all()
        print(f"  API at {services.api_url}, dashboard at {services.api_url}/ui")
        # Authentication is on: the demo signs a token with this machine's local key
        # (.stack/local-secrets.json), as `tasksaga-token` does.
        token = local_token(tenant="demo", subject="demo-user",
                            secret=services.env["TASKSAGA_AUTH_HS256_SECRET"])
        print("  bearer token for tenant 'demo' (make token prints one for your own calls)")
        with tempfile.TemporaryDirectory() as tmp, httpx.Client(
            base_url=services.api_url, timeout=60,
            headers={"Authorization": f"Bearer {token}"},
        ) as client:
            unauthenticated = httpx.get(f"{services.api_url}/tasks", timeout=10)
            print(f"  without a token: {unauthenticated.status_code} "
                  f"({unauthenticated.headers.get('www-authenticate', '')[:60]}...)")
            if unauthenticated.status_code != 401:
                raise SystemExit("the API answered a call without a token")
            directory = Path(tmp)
            originals = make_sample_files(directory)
            names = sorted(originals)

            print("== ZIP task: upload 3 files, archive them, publish a manifest")
            task_id = submit_zip(client, directory, names, fail=False)
            status = follow(client, task_id)
            if status["status"] != "Completed":
                raise SystemExit(f"ZIP task ended {status['status']}: {status['end_reason']}")
            response = status["response"]
            print(f"  archive: artifact sha256 {response['archive_sha256']}"
                  f" ({response['archive_size']} bytes, {len(response['archive_parts'])} part(s)"
                  f" in s3://{response['archive_bucket']})")
            print("  verifying the archive's content against the uploaded files:")
            verify_archive(store, response["archive_bucket"], response["archive_parts"],
                           originals)

            print("== the same task, failing at its last step (compensation)")
            failed_id = submit_zip(client, directory, names, fail=True)
            status = follow(client, failed_id)
            print(f"  ended {status['status']}: {status['end_reason']}")
            print("  audit trail:")
            for entry in client.get(f"/tasks/{failed_id}/audit").json()["entries"]:
                print(f"    v{entry['version']:<3} {entry['summary']}")
            data = {s["step"]: s["data"] for s in status["steps"]}
            archive = data["CreateArchive"]
            if archive["sha256"] == response["archive_sha256"]:
                # Content-addressed: the same bytes are stored once and stay while held.
                print("  the archive is byte for byte the completed task's, which still holds it")
            elif any(store.exists(archive["bucket"], key) for key in archive["parts"]):
                raise SystemExit("compensation did not release the archive")
            for upload in data["UploadFiles"]["files"]:
                if store.exists(upload["bucket"], upload["key"]):
                    raise SystemExit(f"compensation did not delete upload {upload['key']}")
            print("  the archive was released and the uploads deleted by compensation")
            if status["status"] != "Failed":
                raise SystemExit("the failing variant should end Failed (compensated)")

            run_video_examples(client, store, directory)
            run_barista(client)
        passed = True
    finally:
        if not (keep and passed):
            services.stop_all()
    print(f"== demo passed in {time.monotonic() - started:.1f} s "
          f"(service logs in {services.log_dir})")
    print(f"  dashboard: {services.api_url}/ui")
    if keep:
        local_system.record(services)
        print("== the services keep running (KEEP=1):")
        print("\n".join(local_system.usage_lines(services.api_url, services.log_dir)))
    print(f"RESULT archive_sha256={response['archive_sha256']} verified=true")
    return 0


if __name__ == "__main__":
    sys.exit(main())
