"""A definition's version and the fingerprint of its step graph, and when a task may move from
one version to another. Pure.

What counts in the fingerprint is what a running task's log depends on: the steps (name,
order, placement, queue, group and its await mode, whether it has a compensation, whether it is
the pivot, an upload's bucket and source) and each step's resolved retry policies and timeouts.
Handler code, conditions' functions, data models and the response builder do not count: they
change behaviour, not the graph a recorded log must fit. The hash is SHA-256 over a canonical
JSON form, so it is stable across processes and Python versions.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from tasksaga.core.definition import TaskDefinition
from tasksaga.core.fan_out_declaration import describe_for_each
from tasksaga.core.retry import RetryPolicy
from tasksaga.core.state import StepStatus, TaskState
from tasksaga.core.steps import StepDef

#: Recorded before definitions had versions: such a log folds as version 1.
UNVERSIONED = 1


def _policy(policy: RetryPolicy) -> dict[str, Any]:
    return {"max_retries": policy.max_retries, "backoff": str(policy.backoff),
            "delay_ms": policy.delay_ms, "max_delay_ms": policy.max_delay_ms,
            "jitter": policy.jitter, "retry_on": sorted(policy.retry_on),  # type: ignore[arg-type]
            "never_retry_on": sorted(policy.never_retry_on)}  # type: ignore[arg-type]


def step_identity(definition: TaskDefinition, step: StepDef) -> dict[str, Any]:
    """What a recorded step must keep for a task to move between versions."""
    group = definition.groups.get(step.group or "")
    # Only child steps carry the key, so the fingerprints of every other graph stay as they were.
    child = {} if step.child is None else {"child": step.child.task_type}
    # Likewise only steps with artifacts: a recorded reference must keep its name and role.
    artifacts = ({} if not (step.produces or step.consumes)
                 else {"artifacts": [sorted(step.produces), sorted(step.consumes)]})
    return {
        **child, **artifacts,
        "order": step.order, "placement": str(step.placement),
        "queue": definition.queue_of(step),
        "group": None if group is None else [group.name, str(group.mode), group.quorum],
        "compensation": step.has_compensation, "pivot": step.pivot,
        "upload": None if step.upload is None else [step.upload.bucket, step.upload.source],
    }


def step_graph(definition: TaskDefinition) -> dict[str, dict[str, Any]]:
    """The canonical step graph, step by step (what the fingerprint hashes)."""
    return {
        step.name: {
            **step_identity(definition, step),
            "retry": _policy(definition.retry_policy_of(step)),
            "compensation_retry": _policy(definition.compensation_retry_of(step)),
            "timeout_ms": definition.step_timeout_ms(step),
            "heartbeat_timeout_s": step.heartbeat_timeout_seconds,
            # Only for_each steps have it: the fingerprints of other graphs do not change.
            **({} if step.for_each is None else {"for_each": describe_for_each(step.for_each)}),
        }
        for step in definition.steps
    }


def fingerprint_of(graph: Mapping[str, Any]) -> str:
    canonical = json.dumps(graph, sort_keys=True, separators=(",", ":"))
    return "sha256:" + hashlib.sha256(canonical.encode()).hexdigest()[:32]


def fingerprint(definition: TaskDefinition) -> str:
    return fingerprint_of(step_graph(definition))


def graph_changes(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
    """What differs between two step graphs, in words (for diagnostics)."""
    changes = [f"step {name!r} was removed" for name in old if name not in new]
    changes += [f"step {name!r} was added" for name in new if name not in old]
    for name in (n for n in old if n in new):
        for key in sorted(set(old[name]) | set(new[name])):
            if old[name].get(key) != new[name].get(key):
                changes.append(f"step {name!r}: {key} {old[name].get(key)!r} -> "
                               f"{new[name].get(key)!r}")
    return changes


@dataclass(frozen=True)
class Incompatible:
    reason: str


def migration_problem(state: TaskState, source: TaskDefinition | None,
                      target: TaskDefinition) -> Incompatible | None:
    """Why a task recorded on ``source`` may not continue on ``target``; None when it may.

    Compatible means: every step the task has touched (dispatched, completed, skipped, failed,
    compensated) exists in the target with the same identity (order, placement, queue, group,
    compensation presence, pivot, upload), and the target adds no step at or before the
    task's furthest touched order (it would run out of place, or never be compensated). The
    source, when it is still deployed, must agree with what the log says; when it is gone, the
    log alone is the witness. Retry policies and timeouts may differ.
    """
    if target.name != state.task_type:
        return Incompatible(f"version {target.version} is a {target.name}, the task is a "
                            f"{state.task_type}")
    touched = [name for name, step in state.steps.items()
               if step.status is not StepStatus.PENDING or step.attempt > 0]
    for name in touched:
        if not target.has_step(name):
            return Incompatible(f"step {name!r}, recorded in the task, is not in "
                                f"{target.name} version {target.version}")
        if source is not None and source.has_step(name):
            before = step_identity(source, source.get_step(name))
            after = step_identity(target, target.get_step(name))
            if before != after:
                diff = graph_changes({name: before}, {name: after})
                return Incompatible("; ".join(diff))
    furthest = max((target.get_step(n).order for n in touched), default=0)
    added = sorted(s.name for s in target.steps if s.order <= furthest and s.name not in touched
                   and (source is None or not source.has_step(s.name)))
    if added:
        return Incompatible(f"version {target.version} adds steps {added} at or before the "
                            f"task's progress (order {furthest})")
    return None
