"""ffprobe and ffmpeg, streaming: inputs are read over HTTP (a presigned MinIO URL, with range
requests), outputs are written to a pipe and streamed to MinIO, so no video is ever held in
memory or copied to local disk. Progress is read from ffmpeg's -progress output; a cancellation
signal kills ffmpeg."""

from __future__ import annotations

import json
import subprocess
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import IO

from tasksaga.core import StepCancelled
from tasksaga.core.ports import CancellationSignal


@dataclass(frozen=True)
class VideoInfo:
    width: int
    height: int
    duration_s: float
    codec: str
    frame_rate: str


class FfmpegFailed(RuntimeError):
    """ffmpeg or ffprobe exited with an error (retryable: a worker may just be overloaded)."""


def probe(url: str, timeout_s: float = 60.0) -> VideoInfo:
    done = subprocess.run(
        ["ffprobe", "-v", "error", "-select_streams", "v:0", "-show_entries",
         "stream=width,height,codec_name,r_frame_rate:format=duration", "-of", "json", url],
        capture_output=True, text=True, timeout=timeout_s, check=False,
    )
    if done.returncode != 0:
        raise FfmpegFailed(f"ffprobe failed: {done.stderr.strip()[-500:]}")
    info = json.loads(done.stdout)
    stream = info["streams"][0]
    return VideoInfo(
        width=int(stream["width"]), height=int(stream["height"]),
        duration_s=float(info["format"].get("duration", 0.0)),
        codec=str(stream.get("codec_name", "")), frame_rate=str(stream.get("r_frame_rate", "")),
    )


def run_ffmpeg(
    args: list[str],
    consume_output: Callable[[IO[bytes]], object],
    duration_s: float,
    cancelled: CancellationSignal | None,
    on_progress: Callable[[float], None],
) -> None:
    """Run ffmpeg writing to stdout; ``consume_output`` streams stdout (e.g. to MinIO)."""
    process = subprocess.Popen(
        ["ffmpeg", "-hide_banner", "-nostats", "-loglevel", "error", "-progress", "pipe:2",
         *args],
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )
    assert process.stdout is not None and process.stderr is not None
    errors: deque[str] = deque(maxlen=20)
    killed = threading.Event()

    def read_progress(stream: IO[bytes]) -> None:
        for raw in stream:
            line = raw.decode(errors="replace").strip()
            if line.startswith("out_time_us=") and duration_s > 0:
                value = line.split("=", 1)[1]
                if value.isdigit():
                    on_progress(min(int(value) / 1e6 / duration_s, 1.0))
            elif "=" not in line and line:
                errors.append(line)

    def watch_cancellation() -> None:
        while process.poll() is None:
            if cancelled is not None and cancelled.wait(0.2):
                killed.set()
                process.kill()
                return

    threads = [threading.Thread(target=read_progress, args=(process.stderr,), daemon=True),
               threading.Thread(target=watch_cancellation, daemon=True)]
    for thread in threads:
        thread.start()
    try:
        consume_output(process.stdout)
    finally:
        process.stdout.close()
        returncode = process.wait()
        for thread in threads:
            thread.join(timeout=5)
    if killed.is_set():
        raise StepCancelled("ffmpeg stopped: the step was cancelled")
    if returncode != 0:
        raise FfmpegFailed(f"ffmpeg exited {returncode}: {' | '.join(errors)[-500:]}")


def transcode_args(url: str, height: int) -> list[str]:
    # Fragmented MP4 can be written to a pipe (no seek back to write the index).
    return ["-i", url, "-map", "0:v:0", "-map", "0:a?", "-vf", f"scale=-2:{height}",
            "-c:v", "libx264", "-preset", "ultrafast", "-crf", "30", "-c:a", "aac",
            "-movflags", "frag_keyframe+empty_moov", "-f", "mp4", "pipe:1"]


def thumbnail_args(url: str, at_s: float) -> list[str]:
    return ["-ss", f"{at_s:.3f}", "-i", url, "-frames:v", "1", "-vf", "scale=320:-2",
            "-c:v", "mjpeg", "-f", "image2pipe", "pipe:1"]
