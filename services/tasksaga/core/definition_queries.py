"""What a declared task answers about its steps: stages, queues, routes, timeouts, policies.

A mixin of ``TaskDefinition`` (``tasksaga.core.definition``), so the declaration API stays one
object while each module stays small.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pydantic import BaseModel

from tasksaga.core.capabilities import Route
from tasksaga.core.fan_out_shape import instance_step, parent_name
from tasksaga.core.retry import RetryPolicy
from tasksaga.core.steps import GroupDef, Placement, Stage, StepDef

if TYPE_CHECKING:
    from tasksaga.core.definition import _Declarations


class DefinitionQueries:
    """Reads a definition's declarations (``TaskDefinition`` sets these attributes)."""

    name: str
    queue: str
    default_retry: RetryPolicy
    step_timeout_seconds: float
    start_timeout_seconds: float
    _declared: _Declarations
    _steps: dict[str, StepDef]
    _groups: dict[str, GroupDef]

    @property
    def declared_steps(self) -> list[StepDef]:
        """Every declaration, duplicates included (diagnostics report them)."""
        return list(self._declared.steps)

    @property
    def declared_groups(self) -> list[GroupDef]:
        return list(self._declared.groups)

    @property
    def attachments(self) -> list[tuple[str, str]]:
        """(kind, step name) of everything attached by name."""
        return [(a.kind, a.step) for a in self._declared.attachments]

    @property
    def steps(self) -> list[StepDef]:
        return sorted(self._steps.values(), key=lambda s: s.order)

    @property
    def groups(self) -> dict[str, GroupDef]:
        return dict(self._groups)

    def get_step(self, name: str) -> StepDef:
        """The step ``name``; an instance of a for_each step (``Each[3]``) is that step's
        declaration under the instance's name."""
        step = self._steps.get(name) or instance_step(self._steps, name)
        if step is None:
            raise KeyError(f"task {self.name!r} has no step {name!r}")
        return step

    def has_step(self, name: str) -> bool:
        return name in self._steps or instance_step(self._steps, name) is not None

    def pivots(self) -> list[StepDef]:
        return [s for s in self.steps if s.pivot]

    def stages(self) -> list[Stage]:
        """Steps by order; a declared group brings its await mode."""
        by_order: dict[int, list[StepDef]] = {}
        for step in self.steps:
            by_order.setdefault(step.order, []).append(step)
        stages = []
        for order in sorted(by_order):
            members = tuple(by_order[order])
            group = self._groups.get(members[0].group or "")
            if group is not None:
                stages.append(Stage(order, members, group.mode, group.quorum, group.name))
            else:
                stages.append(Stage(order, members))
        return stages

    def stage_of(self, step_name: str) -> Stage:
        step_name = parent_name(step_name, self._steps)  # an instance is in its step's stage
        return next(s for s in self.stages() if any(m.name == step_name for m in s.steps))

    def queue_of(self, step: StepDef) -> str:
        return step.queue or self.queue

    def retry_policy_of(self, step: StepDef) -> RetryPolicy:
        return step.retry or self.default_retry

    def compensation_retry_of(self, step: StepDef) -> RetryPolicy:
        return step.compensation_retry or self.default_retry

    def step_timeout_ms(self, step: StepDef) -> int:
        """How long an attempt may run once a worker started it."""
        return int((step.timeout_seconds or self.step_timeout_seconds) * 1000)

    def dispatch_timeout_ms(self, step: StepDef) -> int:
        """How long after its dispatch an attempt that no worker reported started times out."""
        return int(self.start_timeout_seconds * 1000) + self.step_timeout_ms(step)

    def step_for_data_type(self, data_type: type[BaseModel]) -> StepDef:
        # A for_each step's data is the list of its instances' (ctx.results_of).
        matches = [s for s in self.steps if s.data_type is data_type and s.for_each is None]
        if len(matches) != 1:
            raise LookupError(
                f"task {self.name!r} has {len(matches)} steps with data type "
                f"{data_type.__name__}; use data_of(step_name, type) instead"
            )
        return matches[0]

    def upload_steps(self) -> list[StepDef]:
        return [s for s in self.steps if s.upload is not None]

    def api_steps(self) -> list[StepDef]:
        return [s for s in self.steps if s.placement is Placement.API]

    def queues(self) -> set[str]:
        return {self.queue_of(s) for s in self.steps if s.placement is Placement.WORKER
                or (s.has_compensation and s.child is None)}

    def route_of(self, step: StepDef) -> Route:
        """The queue and capabilities whose topic carries the step's commands."""
        return Route(self.queue_of(step), step.requires)

    def routes(self) -> set[Route]:
        """Every queue's plain route, and the capability routes of the steps requiring some."""
        plain = {Route(queue) for queue in self.queues()}  # first: a workflow discovers steps
        return plain | {self.route_of(s) for s in self.steps
                        if s.requires and self.queue_of(s) in {r.queue for r in plain}}
