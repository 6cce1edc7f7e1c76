"""Events of a task whose definition version is not deployed (docs/dsl.md, "Versions"): parked,
its messages kept, then migrated or refused. Part of the TaskEvent union of
``tasksaga.core.events``, which re-exports them."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class TaskVersionMissing:
    """A message came for a task whose definition version is not deployed: the task is
    parked (status VersionMissing), never dead-lettered; an operator migrates or cancels it."""

    definition_version: int
    deployed_versions: list[int]
    parked_at_ms: int


@dataclass(frozen=True)
class MessageParked:
    """A message for a parked task, kept (Avro-encoded envelope, base64) to be decided once
    the task resumes."""

    message_type: str
    encoded_b64: str
    parked_at_ms: int


@dataclass(frozen=True)
class TaskMigrated:
    """The task goes on with another deployed version (or the same one, deployed again);
    its parked messages are decided right after."""

    from_version: int
    to_version: int
    fingerprint: str
    reason: str
    migrated_at_ms: int


@dataclass(frozen=True)
class MigrationRefused:
    """An operator's move (or cancel) of a parked task was refused: why, in words."""

    to_version: int
    reason: str
    refused_at_ms: int
