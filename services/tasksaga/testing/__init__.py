"""A test kit for sagas: run a definition in process on in-memory ports, with a clock that
skips ahead and injected failures, and assert on its steps, compensations and audit trail.

    from tasksaga.testing import SagaTestRun

    run = SagaTestRun(create_zip)
    run.faults.fail("CreateArchive", times=2)
    task = run.submit(ZipRequest(files=[run.upload("a.txt", b"hello")]))
    task.assert_completed()
    assert task.dispatched[:3] == [("CreateArchive", 1), ("CreateArchive", 2), ...]

docs/testing.md walks through it. The in-memory adapters implement the ports of
``tasksaga.core.ports`` and pass the same contract suites as the real ones.
"""

from tasksaga.testing.clock import ManualClock
from tasksaga.testing.faults import FaultPlan, InjectedFailure
from tasksaga.testing.harness import SagaStuck, SagaTestRun, run_saga
from tasksaga.testing.memory_artifact_refs import InMemoryArtifactRefs
from tasksaga.testing.memory_bus import InMemoryBus, PublishedRecord
from tasksaga.testing.memory_objects import InMemoryObjectStore
from tasksaga.testing.memory_store import InMemoryEventStore
from tasksaga.testing.report import Attempt, TaskRun

__all__ = [
    "Attempt",
    "FaultPlan",
    "InMemoryArtifactRefs",
    "InMemoryBus",
    "InMemoryEventStore",
    "InMemoryObjectStore",
    "InjectedFailure",
    "ManualClock",
    "PublishedRecord",
    "SagaStuck",
    "SagaTestRun",
    "TaskRun",
    "run_saga",
]
