"""What checking a definition reports: diagnostics, and the error that refuses a definition."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Diagnostic:
    code: str
    message: str
    severity: str = "error"

    def __str__(self) -> str:
        return f"{self.code} {self.severity}: {self.message}"


class DefinitionError(ValueError):
    def __init__(self, task_name: str, diagnostics: list[Diagnostic]) -> None:
        self.task_name = task_name
        self.diagnostics = diagnostics
        lines = "\n".join(f"  {d}" for d in diagnostics)
        super().__init__(f"task {task_name!r} is not a valid definition:\n{lines}")
