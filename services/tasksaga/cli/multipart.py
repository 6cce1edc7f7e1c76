"""A multipart/form-data body streamed from disk, its length known before the first byte.

The files are never read into memory: the body is a sequence of small byte strings (part
headers, field values) and file parts read in chunks as the request is sent. Knowing the
length up front lets the request carry ``Content-Length`` (the API's body limit refuses an
oversized upload at once) and lets the progress bar show a total.
"""

from __future__ import annotations

import mimetypes
import secrets
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

CHUNK_BYTES = 64 * 1024


@dataclass(frozen=True)
class FilePart:
    field: str
    path: Path
    size: int


Segment = bytes | FilePart


def _quoted(value: str) -> str:
    # As browsers and httpx do (WHATWG): the quote and line breaks percent-encoded.
    return value.replace("\\", "\\\\").replace('"', "%22").replace("\r", "%0D").replace(
        "\n", "%0A")


def layout(fields: Sequence[tuple[str, str]], files: Sequence[tuple[str, Path]],
           boundary: str | None = None) -> tuple[str, list[Segment]]:
    """The boundary and the body's segments: text fields first, then the files in order."""
    mark = boundary or secrets.token_hex(16)
    segments: list[Segment] = []
    for name, value in fields:
        segments.append(f'--{mark}\r\nContent-Disposition: form-data; name="{_quoted(name)}"'
                        f"\r\n\r\n".encode() + value.encode() + b"\r\n")
    for name, path in files:
        kind = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        segments.append(f'--{mark}\r\nContent-Disposition: form-data; name="{_quoted(name)}"; '
                        f'filename="{_quoted(path.name)}"\r\nContent-Type: {kind}\r\n\r\n'
                        .encode())
        segments.append(FilePart(name, path, path.stat().st_size))
        segments.append(b"\r\n")
    segments.append(f"--{mark}--\r\n".encode())
    return mark, segments


def body_length(segments: Sequence[Segment]) -> int:
    return sum(s.size if isinstance(s, FilePart) else len(s) for s in segments)


def stream(segments: Sequence[Segment], sent: Callable[[int], None] | None = None,
           chunk_bytes: int = CHUNK_BYTES) -> Iterator[bytes]:
    """The body's bytes; ``sent(n)`` is called after each chunk is handed to the transport.

    A file that changed size since :func:`layout` measured it is an error, not a silently
    truncated or overlong upload.
    """
    for segment in segments:
        if not isinstance(segment, FilePart):
            yield segment
            if sent:
                sent(len(segment))
            continue
        remaining = segment.size
        with segment.path.open("rb") as handle:
            while remaining > 0:
                chunk = handle.read(min(chunk_bytes, remaining))
                if not chunk:
                    raise OSError(f"{segment.path} shrank while it was uploaded "
                                  f"({remaining} bytes missing)")
                remaining -= len(chunk)
                yield chunk
                if sent:
                    sent(len(chunk))
            if handle.read(1):
                raise OSError(f"{segment.path} grew while it was uploaded")
