"""What the chaos ledger says: every run of every step (``chaos_ledger``) and the effects they
made (``chaos_effects``), counted the ways the R rows assert on (re-executions, runs of one
command twice, effects doubled or never compensated). Pure: ``Chaos.ledger`` reads the rows."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class LedgerRun:
    task_id: str
    step: str
    kind: str
    idempotency_key: str
    attempt: int
    applied: bool
    stable_key: bool
    started_at: float
    ended_at: float


@dataclass(frozen=True)
class Ledger:
    runs: list[LedgerRun]
    effects: dict[tuple[str, str, str], int]

    def executions(self, kind: str = "execute") -> list[LedgerRun]:
        return [r for r in self.runs if r.kind == kind]

    def steps_run(self) -> int:
        """Distinct (task, step) that started at least once."""
        return len({(r.task_id, r.step) for r in self.executions("start")})

    def reexecutions(self) -> int:
        """Starts beyond the first of each (task, step): redeliveries and new attempts alike."""
        return len(self.executions("start")) - self.steps_run()

    def same_key_reruns(self, kind: str = "start") -> int:
        """Runs of an (idempotency key, attempt) already run: the same command run again."""
        runs = self.executions(kind)
        return len(runs) - len({(r.idempotency_key, r.attempt) for r in runs})

    def retry_latencies(self, kill_times: Sequence[float]) -> list[float]:
        """For each step a kill cut short (started before it, not ended by it): the time from
        the kill to the end of the step's next run."""
        starts: dict[tuple[str, str], list[float]] = {}
        ends: dict[tuple[str, str], list[float]] = {}
        for run in self.runs:
            book = starts if run.kind == "start" else ends if run.kind == "execute" else None
            if book is not None:
                book.setdefault((run.task_id, run.step), []).append(
                    run.started_at if run.kind == "start" else run.ended_at)
        latencies: list[float] = []
        for kill in kill_times:
            for step, step_starts in starts.items():
                step_ends = ends.get(step, [])
                began = [s for s in step_starts if s < kill]
                if not began or any(began[-1] <= e <= kill for e in step_ends):
                    continue
                after = [e for e in step_ends if e > kill]
                if after:
                    latencies.append(min(after) - kill)
        return latencies

    def doubled_effects(self, kind: str = "execute") -> list[tuple[str, str, int]]:
        """(task, step, effects) where one step made its effect more than once."""
        return [(t, s, n) for (t, s, k), n in self.effects.items() if k == kind and n > 1]

    def uncompensated(self, failed_tasks: set[str]) -> list[tuple[str, str]]:
        """Forward effects of tasks that ended compensated but whose step was never undone."""
        undone = {(t, s) for (t, s, k) in self.effects if k == "compensate"}
        return [(t, s) for (t, s, k) in self.effects
                if k == "execute" and t in failed_tasks and (t, s) not in undone]
