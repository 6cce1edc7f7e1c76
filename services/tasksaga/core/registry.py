"""The set of task definitions a service knows, loaded from importable modules."""

from __future__ import annotations

import importlib
from collections.abc import Iterable, Iterator

from tasksaga.core.capabilities import Route
from tasksaga.core.definition import DefinitionError, Diagnostic, TaskDefinition
from tasksaga.core.diagnostics import diagnose
from tasksaga.core.diagnostics_children import task_links


class UnknownTaskType(LookupError):
    pass


class UnknownVersion(UnknownTaskType):
    """The type is deployed, but not the version a task started with."""

    def __init__(self, task_type: str, version: int, deployed: list[int]) -> None:
        self.task_type, self.version, self.deployed = task_type, version, deployed
        super().__init__(f"task type {task_type!r} has no version {version} deployed; "
                         f"deployed versions: {deployed}")


class TaskRegistry:
    """Definitions by (type, version). A type may have several versions deployed at once:
    new submissions take the newest, a running task keeps the version it started with."""

    def __init__(self, definitions: Iterable[TaskDefinition] = ()) -> None:
        self._definitions: dict[str, dict[int, TaskDefinition]] = {}
        for definition in definitions:
            self.register(definition)

    def register(self, definition: TaskDefinition) -> None:
        problems = [d for d in diagnose(definition) if d.severity == "error"]
        if problems:
            raise DefinitionError(definition.name, problems)
        versions = self._definitions.setdefault(definition.name, {})
        if definition.version in versions:
            raise DefinitionError(
                definition.name,
                [Diagnostic("TS100", f"task type {definition.name!r} version "
                                     f"{definition.version} is registered twice")],
            )
        versions[definition.version] = definition

    def unregister(self, task_type: str, version: int) -> None:
        """Stop serving one version (a deployment without it): its tasks are parked."""
        self.get(task_type, version)  # a clear error when it is not there
        del self._definitions[task_type][version]
        if not self._definitions[task_type]:
            del self._definitions[task_type]

    def get(self, task_type: str, version: int | None = None) -> TaskDefinition:
        """The given version of the type; without a version, the newest."""
        versions = self._definitions.get(task_type)
        if not versions:
            known = ", ".join(sorted(self._definitions)) or "none"
            raise UnknownTaskType(
                f"unknown task type {task_type!r}; known task types: {known}"
            )
        if version is None:
            return versions[max(versions)]
        try:
            return versions[version]
        except KeyError:
            raise UnknownVersion(task_type, version, sorted(versions)) from None

    def versions(self, task_type: str) -> list[int]:
        return sorted(self._definitions.get(task_type, {}))

    def names(self) -> list[str]:
        return sorted(self._definitions)

    def __iter__(self) -> Iterator[TaskDefinition]:
        """The newest version of each type."""
        return iter([v[max(v)] for v in self._definitions.values()])

    def dependents_of(self, task_type: str) -> list[TaskDefinition]:
        """The types that start when a task of ``task_type`` completes (depends_on), newest
        versions."""
        return [d for d in self if d.depends_on == task_type]

    def all_versions(self) -> list[TaskDefinition]:
        return [d for v in self._definitions.values() for _, d in sorted(v.items())]

    def queues(self) -> set[str]:
        # Every deployed version's queues: a running task of an older version uses them too.
        return {q for d in self.all_versions() for q in d.queues()}

    def routes(self) -> set[Route]:
        """Every deployed version's routes (queue and capabilities, one topic each)."""
        return {r for d in self.all_versions() for r in d.routes()}


def load_registry(module_names: Iterable[str]) -> TaskRegistry:
    """Import each module and register every TaskDefinition it defines at top level."""
    registry = TaskRegistry()
    for module_name in module_names:
        module = importlib.import_module(module_name)
        for value in vars(module).values():
            if isinstance(value, TaskDefinition):
                registry.register(value)
    # Child steps and depends_on name other types: every one must be deployed with them.
    for task_type, diagnostic in task_links(registry):
        if diagnostic.severity == "error":
            raise DefinitionError(task_type, [diagnostic])
    return registry
