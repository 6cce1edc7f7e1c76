"""The set of task definitions a service knows, loaded from importable modules."""

from __future__ import annotations

import importlib
from collections.abc import Iterable, Iterator

from tasksaga.core.definition import DefinitionError, Diagnostic, TaskDefinition
from tasksaga.core.diagnostics import diagnose


class UnknownTaskType(LookupError):
    pass


class TaskRegistry:
    def __init__(self, definitions: Iterable[TaskDefinition] = ()) -> None:
        self._definitions: dict[str, TaskDefinition] = {}
        for definition in definitions:
            self.register(definition)

    def register(self, definition: TaskDefinition) -> None:
        problems = [d for d in diagnose(definition) if d.severity == "error"]
        if problems:
            raise DefinitionError(definition.name, problems)
        if definition.name in self._definitions:
            raise DefinitionError(
                definition.name,
                [Diagnostic("TS100", f"task type {definition.name!r} is registered twice")],
            )
        self._definitions[definition.name] = definition

    def get(self, task_type: str) -> TaskDefinition:
        try:
            return self._definitions[task_type]
        except KeyError:
            known = ", ".join(sorted(self._definitions)) or "none"
            raise UnknownTaskType(
                f"unknown task type {task_type!r}; known task types: {known}"
            ) from None

    def names(self) -> list[str]:
        return sorted(self._definitions)

    def __iter__(self) -> Iterator[TaskDefinition]:
        return iter(self._definitions.values())

    def queues(self) -> set[str]:
        return {q for d in self._definitions.values() for q in d.queues()}



def load_registry(module_names: Iterable[str]) -> TaskRegistry:
    """Import each module and register every TaskDefinition it defines at top level."""
    registry = TaskRegistry()
    for module_name in module_names:
        module = importlib.import_module(module_name)
        for value in vars(module).values():
            if isinstance(value, TaskDefinition):
                registry.register(value)
    return registry
