"""One stream's part of a projector's batch: its state as the batch's events evolve it, and
the rows of each projection table it ends with (adapters/projections.py writes them)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from tasksaga.adapters.payload_crypto import PayloadCipher, column_context
from tasksaga.core import events as ev
from tasksaga.core.audit import step_of
from tasksaga.core.fan_out_names import instance_name
from tasksaga.core.state import StreamFold, TaskState


def timestamp(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=UTC)


class StreamRows:
    """One stream's part of a batch: its state as it evolves (one fold, in place, for the
    batch: ``state`` is valid until the next ``apply``), and what its rows will say."""

    def __init__(self, state: TaskState, cipher: PayloadCipher) -> None:
        self.fold = StreamFold(state)
        self.cipher = cipher  # seals the payload columns (request, response, step data)
        self.updated_at: datetime | None = None
        self.idempotency_key: str | None = None
        # The step a task stopped at for an operator (its failure column).
        self.compensation_failure: ev.TaskCompensationFailed | ev.TaskNeedsAttention | None = None
        self.steps_updated_at: dict[str, datetime] = {}
        self.conditions: dict[str, ev.ConditionEvaluated] = {}

    @property
    def state(self) -> TaskState:
        return self.fold.current

    def apply(self, event: ev.TaskEvent, at: datetime) -> None:
        self.fold.apply(event)
        self.updated_at = at
        if isinstance(event, ev.TaskSubmitted):
            self.idempotency_key = event.idempotency_key
        elif isinstance(event, ev.TaskCompensationFailed | ev.TaskNeedsAttention):
            self.compensation_failure = event
        elif isinstance(event, ev.ConditionEvaluated):
            self.conditions[event.step] = event
        elif isinstance(event, ev.FanOutExpanded):  # every instance has its row from now on
            for index in range(len(event.items_json)):
                self.steps_updated_at[instance_name(event.step, index)] = at
        step = step_of(event)
        if step is not None:
            self.steps_updated_at[step] = at

    def task_row(self, stream_id: str) -> tuple[Any, ...]:
        state, failure = self.state, self.compensation_failure
        return (stream_id, state.task_type, state.status.value, state.version,
                self.cipher.seal(state.request_json,
                                 column_context(stream_id, "task_status.request_json")),
                self.cipher.seal_optional(state.response_json,
                                          column_context(stream_id, "task_status.response_json")),
                state.callback_url,
                self.idempotency_key, state.end_reason, timestamp(state.submitted_at_ms),
                self.updated_at, failure.step if failure and failure.step else None,
                failure.trace_id if failure else None, state.tenant, state.submitted_by,
                state.parent_task_id, state.parent_step)

    def step_rows(self, stream_id: str) -> list[tuple[Any, ...]]:
        rows = []
        for step, at in self.steps_updated_at.items():
            record = self.state.step(step)
            order = self.state.completion_order
            rank = order.index(step) + 1 if step in order else None
            rows.append((stream_id, step, record.status.value, record.attempt,
                         record.compensation_attempt,
                         self.cipher.seal_optional(record.data_json, column_context(
                             stream_id, "step_records.data_json", step)), record.error_type,
                         record.error_message, rank, at, record.trace_id,
                         None if record.waiting_until_ms is None
                         else timestamp(record.waiting_until_ms), record.child_task_id))
        return rows

    def condition_rows(self, stream_id: str) -> list[tuple[Any, ...]]:
        return [(stream_id, e.step, e.description, e.function, e.result, e.context_summary,
                 timestamp(e.evaluated_at_ms)) for e in self.conditions.values()]
