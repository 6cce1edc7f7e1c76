"""Golden histories: record every decision of a real (in-process) run, and replay it.

A history is the list of the orchestrator's decisions for one task, each with the inbound
message, the time it was decided at, the versions deployed then, and what was decided: the
events (Avro-encoded envelopes, base64: the replay reads them with the current codec), the
step commands (Avro too) and the timers; and the task's final state. ``replay`` decides each
recorded message again, with the current codec, fold and decide, on the state folded from
the recorded events before it, and lists every difference: a change that decides an old run
differently, or can no longer read its log, fails.

Heartbeats are not recorded: they are not events, and the timers they move are recorded as
the ``TimerFired`` messages that were decided.
"""

from __future__ import annotations

import base64
import dataclasses
import json
from collections.abc import Iterable
from typing import Any

from tasksaga.adapters.avro_codec import AvroCodec
from tasksaga.adapters.wire import Envelope
from tasksaga.core import events as ev
from tasksaga.core import messages as msg
from tasksaga.core.decision import Decision
from tasksaga.core.definition import TaskDefinition
from tasksaga.core.registry import TaskRegistry
from tasksaga.core.state import TaskState, fold
from tasksaga.orchestrator.processor import Orchestrator
from tasksaga.orchestrator.versioning import VersionRouter
from tasksaga.testing.harness import SagaTestRun
from tasksaga.workflow.decide import decide_workflow
from tasksaga.workflow.definition import WorkflowDefinition
from tasksaga.workflow.replay import replay as replay_workflow

FORMAT = 1


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _envelope(payload: Any, task_id: str, index: int) -> Envelope:
    return Envelope(payload=payload, message_id=f"{task_id}:{index}", task_id=task_id,
                    correlation_id=task_id, causation_id=None, occurred_at_ms=0)


def state_document(state: TaskState) -> Any:
    """The state as plain JSON (enums by value, tuples as lists)."""
    return json.loads(json.dumps(dataclasses.asdict(state), default=str, sort_keys=True))


def _timer(timer: msg.TimerFired) -> dict[str, Any]:
    return {"kind": str(timer.kind), "step": timer.step, "attempt": timer.attempt}


class HistoryRecorder:
    """Records the decisions the run's orchestrator takes (wraps its transaction body)."""

    def __init__(self, run: SagaTestRun) -> None:
        self.run = run
        self.decisions: list[dict[str, Any]] = []
        self._task_of: list[str] = []  # the task of each decision (a run may hold several)
        orchestrator: Orchestrator = run.orchestrator
        decide_and_write = orchestrator._decide_and_write
        write = orchestrator._write
        current: dict[str, Any] = {}

        def recording_decide(work: Any, message: msg.Inbound, cause: str,
                             envelope: Any = None) -> None:
            current.clear()
            current["message"] = self._message(message, envelope)
            current["now_ms"] = work.now_ms()
            current["deployed"] = {name: run.registry.versions(name)
                                   for name in run.registry.names()}
            decide_and_write(work, message, cause, envelope)
            if "events" in current:
                self.decisions.append(dict(current))
                self._task_of.append(message.task_id)

        def recording_write(tx: Any, before: TaskState, decision: Decision, cause: str,
                            now: int) -> None:
            current.update(self._decision(before.task_id or decision.state.task_id, decision))
            write(tx, before, decision, cause, now)

        orchestrator._decide_and_write = recording_decide  # type: ignore[method-assign]
        orchestrator._write = recording_write  # type: ignore[method-assign]

    def _message(self, message: msg.Inbound, envelope: Any) -> dict[str, Any]:
        if isinstance(message, msg.TimerFired):
            return {"timer": _timer(message), "task_id": message.task_id}
        return {"type": type(message).__name__, "avro_b64": _b64(self.run.codec.encode(envelope))}

    def _decision(self, task_id: str, decision: Decision) -> dict[str, Any]:
        codec = self.run.codec
        return {
            "event_types": [type(e).__name__ for e in decision.events],  # for the reviewer
            "events": [_b64(codec.encode(_envelope(e, task_id, i)))
                       for i, e in enumerate(decision.events)],
            "commands": [_b64(codec.encode(_envelope(c, task_id, i)))
                         for i, c in enumerate(decision.commands)],
            "timers": [{"fire_at_ms": t.fire_at_ms, **_timer(t.timer)} for t in decision.timers],
        }

    def history(self, task_id: str, description: str) -> dict[str, Any]:
        decisions = [d for d, task in zip(self.decisions, self._task_of, strict=True)
                     if task == task_id]
        return {"format": FORMAT, "description": description, "task_id": task_id,
                "decisions": decisions,
                "final_state": state_document(self.run.task(task_id).state)}


def replay(history: dict[str, Any], definitions: Iterable[TaskDefinition],
           codec: AvroCodec) -> list[str]:
    """Every difference between the recorded decisions and the current code's; [] if none."""
    if history.get("format") != FORMAT:
        return [f"history format {history.get('format')!r}, this replay reads {FORMAT}"]
    catalog = {(d.name, d.version): d for d in definitions}
    problems: list[str] = []
    events: list[ev.TaskEvent] = []
    for index, recorded in enumerate(history["decisions"]):
        registry = TaskRegistry(catalog[(name, v)] for name, versions in
                                recorded["deployed"].items() for v in versions)
        router = VersionRouter(registry, codec, lambda: 0.0)
        message, envelope = _inbound(recorded["message"], codec)
        state = fold(events)
        workflow = _workflow_of(registry, state, message)
        if workflow is not None:  # as the orchestrator does on a cache miss: replay the body
            driver = (None if not events else
                      replay_workflow(workflow, events, [0] * len(events), lambda: 0.0))
            decision = decide_workflow(workflow, state, driver, message, recorded["now_ms"],
                                       lambda: 0.0)[0]
        else:
            decision = router.decide_message(state, message, envelope, recorded["now_ms"])
        expected = [codec.decode(base64.b64decode(e)).payload for e in recorded["events"]]
        commands = [codec.decode(base64.b64decode(c)).payload for c in recorded["commands"]]
        timers = [{"fire_at_ms": t.fire_at_ms, **_timer(t.timer)} for t in decision.timers]
        where = f"decision {index} ({recorded['message'].get('type', 'TimerFired')})"
        if _parked_decoded(decision.events, codec) != _parked_decoded(expected, codec):
            problems.append(f"{where}: events {[type(e).__name__ for e in decision.events]} "
                            f"!= recorded {[type(e).__name__ for e in expected]}"
                            + ("" if len(decision.events) != len(expected) else
                               f": {_first_difference(decision.events, expected)}"))
        if decision.commands != commands:
            problems.append(f"{where}: commands differ: "
                            f"{_first_difference(decision.commands, commands)}")
        if timers != recorded["timers"]:
            problems.append(f"{where}: timers {timers} != recorded {recorded['timers']}")
        events.extend(expected)  # go on from what was recorded
    # Compared on the recorded fields: a field added to the state later (with its default)
    # is not a difference in how the old run is decided.
    final, recorded_final = state_document(fold(events)), history["final_state"]
    keys = sorted(k for k in set(recorded_final) | set(final)
                  if not _same(final.get(k, _MISSING), recorded_final.get(k, _MISSING)))
    if keys:
        problems.append(f"final state differs in {keys}")
    return problems


_MISSING = "<missing>"


def _parked_decoded(events: list[ev.TaskEvent], codec: AvroCodec) -> list[Any]:
    """The events, a parked message as what it decodes to: its bytes change with every new
    field of its contract (each written with its default), what it says does not."""
    return [(type(e).__name__, codec.decode(base64.b64decode(e.encoded_b64)), e.message_type,
             e.parked_at_ms) if isinstance(e, ev.MessageParked) else e for e in events]


def _same(current: Any, recorded: Any) -> bool:
    """Equal, where a field the recording lacks (added to the state later, nested ones
    included) counts as the same while it holds its empty default."""
    if recorded == _MISSING:
        return current in (None, "", 0, False, [], {}, _MISSING)
    if isinstance(current, dict) and isinstance(recorded, dict):
        return all(_same(current.get(k, _MISSING), recorded.get(k, _MISSING))
                   for k in set(current) | set(recorded))
    if isinstance(current, list) and isinstance(recorded, list):  # a fan-out's step states
        return len(current) == len(recorded) and all(
            _same(mine, theirs) for mine, theirs in zip(current, recorded, strict=True))
    return bool(current == recorded)


def _workflow_of(registry: TaskRegistry, state: TaskState,
                 message: msg.Inbound) -> WorkflowDefinition | None:
    task_type = message.task_type if isinstance(message, msg.SubmitTask) else state.task_type
    definition = registry.get(task_type)
    return definition if isinstance(definition, WorkflowDefinition) else None


def _first_difference(actual: list[Any], expected: list[Any]) -> str:
    for mine, theirs in zip(actual, expected, strict=False):
        if mine != theirs:
            return f"{mine!r} != recorded {theirs!r}"
    return f"{len(actual)} vs {len(expected)} items"


def _inbound(recorded: dict[str, Any], codec: AvroCodec) -> tuple[msg.Inbound, Any]:
    if "timer" in recorded:
        timer = recorded["timer"]
        return msg.TimerFired(recorded["task_id"], msg.TimerKind(timer["kind"]), timer["step"],
                              timer["attempt"]), None
    envelope = codec.decode(base64.b64decode(recorded["avro_b64"]))
    return envelope.payload, envelope
