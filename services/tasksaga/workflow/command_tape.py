"""The commands a workflow's history records, checked one by one against those its body
issues: the half of the driver that makes a replay catch a changed body (``Diverged``)."""

from __future__ import annotations

from tasksaga.workflow.commands import Command, Recorded
from tasksaga.workflow.errors import Diverged


class CommandTape:
    def __init__(self, history: list[Recorded]) -> None:
        self._history = history
        self.cursor = 0  # how many recorded commands the body has issued again
        self._count = 0  # how many commands the body has issued in all
        self.issued: list[Recorded] = []  # every command the body issued, in order
        self.new: list[Command] = []  # issued, not in the history yet

    @property
    def next_index(self) -> int:
        """The position (from 1) of the body's next command."""
        return self._count + 1

    def replayed(self) -> Recorded | None:
        """The recorded command the body's next command must match (None past the history)."""
        return self._history[self.cursor] if self.cursor < len(self._history) else None

    def check(self, command: Command) -> Command:
        """Count the command; in a replay, it must be the one the history records here."""
        self._count += 1
        self.issued.append(Recorded(command.kind, command.name, command.value_json))
        recorded = self.replayed()
        if recorded is None:
            self.new.append(command)
            return command
        if (recorded.kind, recorded.name) != (command.kind, command.name):
            raise Diverged(command.index, command.location, recorded.describe(),
                           command.describe())
        self.cursor += 1
        return command

    def take_new(self) -> list[Command]:
        new, self.new = self.new, []
        return new
