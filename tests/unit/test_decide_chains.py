"""Chains: a step's first dispatch hands the worker the steps after it that need nothing of the
orchestrator; every transition is still recorded, no success is lost whatever overtakes what,
and attempt 1 of a chain's step is never dispatched twice (decide(), fake clock)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from tasksaga.core import RetryPolicy
from tasksaga.core import events as ev
from tasksaga.core import messages as msg
from tasksaga.core.chains import MAX_CHAIN, chain_after, chained_command, read_by
from tasksaga.core.definition import TaskDefinition
from tasksaga.core.state import StepStatus, TaskStatus
from tasksaga.core.steps import StepCondition
from tests.unit.sagas import Data, Driver, Req, _noop, grouped, is_4k, linear


def _chained(steps: int = 3, retry: RetryPolicy | None = None) -> Driver:
    d = Driver(linear(steps, retry=retry), chains=True)
    d.submit()
    return d


def _success(d: Driver, step: str, attempt: int = 1, started_next: str = "",
             token: int | None = None) -> msg.StepSucceeded:
    """A success as a chain's worker sends it: under the chain command's lease."""
    lease = d.state.step(step).fencing_token if token is None else token
    return msg.StepSucceeded(d.state.task_id, step, attempt, Data(value=f"{step}@{attempt}")
                             .model_dump_json(), lease, started_next=started_next)


def _first_token(d: Driver) -> int:
    return next(c for c in d.commands if isinstance(c, msg.ExecuteStep)).fencing_token


def test_a_first_dispatch_hands_the_worker_the_steps_that_need_no_orchestrator() -> None:
    d = _chained(3)
    (command,) = [c for c in d.commands if isinstance(c, msg.ExecuteStep)]
    (dispatched,) = [e for e in d.events if isinstance(e, ev.StepDispatched)]
    assert (command.step, command.then) == ("S1", ["S2", "S3"])
    assert dispatched.chain == ["S2", "S3"] and dispatched.chained_after is None
    assert [d.state.step(n).chain_reserved for n in ("S1", "S2", "S3")] == [False, True, True]


def test_a_chain_runs_the_saga_with_one_command_and_every_transition_recorded() -> None:
    d = _chained(3)
    token = _first_token(d)
    d.send(_success(d, "S1", started_next="S2"))
    started = [e for e in d.events if isinstance(e, ev.StepDispatched)][-1]
    assert (started.step, started.attempt, started.chained_after) == ("S2", 1, "S1")
    assert started.fencing_token == token  # the chain's lease
    assert [t.timer.step for t in d.timers if t.timer.kind is msg.TimerKind.STEP_TIMEOUT] \
        == ["S2"]
    d.send(_success(d, "S2", started_next="S3"))
    d.send(_success(d, "S3"))
    assert d.state.status is TaskStatus.COMPLETED
    assert d.dispatched() == ["S1"]  # one command for three steps
    assert [e.step for e in d.events if isinstance(e, ev.StepCompleted)] == ["S1", "S2", "S3"]


def test_groups_conditions_other_queues_and_capabilities_end_a_chain() -> None:
    grouped_run = Driver(grouped(), chains=True)
    grouped_run.submit()
    assert [c.then for c in grouped_run.commands if isinstance(c, msg.ExecuteStep)] == [[]]

    task = TaskDefinition("Mixed", queue="q", request=Req, step_timeout_seconds=30)
    task.step("A", order=1, data=Data)(_noop)
    task.step("B", order=2, data=Data)(_noop)
    task.step("C", order=3, data=Data, queue="gpu")(_noop)
    task.step("D", order=4, data=Data)(_noop)
    task.step("E", order=5, data=Data, requires={"ffmpeg"})(_noop)
    task.step("F", order=6, data=Data)(_noop)
    task.step("G", order=7, data=Data, condition=None)(_noop)
    task.step("H", order=8, data=Data, condition=StepCondition("4K", is_4k))(_noop)
    run = Driver(task)  # a running task whose steps no chain reserved yet
    run.submit()
    assert chain_after(task, run.state, task.get_step("A"), 1) == ["B"]
    assert chain_after(task, run.state, task.get_step("D"), 1) == []  # E needs a capability
    assert chain_after(task, run.state, task.get_step("F"), 1) == ["G"]  # H has a condition
    assert chain_after(task, run.state, task.get_step("A"), 2) == []  # only first dispatches


def test_a_chain_is_bounded() -> None:
    task = linear(MAX_CHAIN + 5)
    d = Driver(task, chains=True)
    d.submit()
    (command,) = [c for c in d.commands if isinstance(c, msg.ExecuteStep)]
    assert len(command.then) == MAX_CHAIN


def test_without_chains_every_step_gets_its_command() -> None:
    d = Driver(linear(3))
    d.submit()
    for name in ("S1", "S2", "S3"):
        d.succeed(name)
    assert d.dispatched() == ["S1", "S2", "S3"]
    assert all(not c.then for c in d.commands if isinstance(c, msg.ExecuteStep))


def test_a_chain_that_stopped_leaves_its_next_step_to_the_orchestrator_at_attempt_2() -> None:
    """Attempt 1 is the chain's (its worker may still run it): the orchestrator's own
    dispatch is attempt 2, with the retry budget of a first attempt."""
    d = _chained(3, retry=RetryPolicy(max_retries=1, delay_ms=0))
    d.send(_success(d, "S1"))  # the chain stopped: no started_next
    s2 = d.state.step("S2")
    assert (s2.status, s2.attempt, s2.retry_base) == (StepStatus.RUNNING, 2, 1)
    assert d.dispatched() == ["S1", "S2"]
    (command,) = [c for c in d.commands if isinstance(c, msg.ExecuteStep) and c.step == "S2"]
    assert command.attempt == 2 and command.then == []  # not a first dispatch: no chain
    d.fail("S2")
    assert d.state.step("S2").status is StepStatus.RETRY_SCHEDULED  # one retry left, as usual


def test_a_cancelled_task_asks_the_step_its_chain_started_to_stop_and_compensates_it() -> None:
    d = _chained(3)
    d.send(msg.CancelTask("t1", "user", d.now))
    assert d.cancels() == ["S1"]
    d.send(_success(d, "S1", started_next="S2"))  # S1 finished before the cancel reached it
    assert d.state.step("S2").status is StepStatus.RUNNING
    assert d.cancels() == ["S1", "S2"]
    d.send(_success(d, "S2"))  # S2 did not stop in time: its effect is recorded, then undone
    assert d.compensations() == ["S2"]
    d.compensated("S2")
    assert d.compensations() == ["S2", "S1"]
    d.compensated("S1")
    assert d.state.status is TaskStatus.CANCELLED
    assert d.state.step("S3").status is StepStatus.PENDING


def _s1_retried_and_completed_by_attempt_2(d: Driver) -> None:
    d.start("S1")
    d.advance(30_000)  # S1 attempt 1 (the chain's) times out
    d.fire_due()
    assert d.state.step("S1").attempt == 2
    d.send(_success(d, "S1", 2))


def test_a_chain_overtaken_by_a_retry_runs_only_an_earlier_attempt_of_each_step() -> None:
    d = _chained(3, retry=RetryPolicy(max_retries=3, delay_ms=0))
    chain_token = _first_token(d)
    _s1_retried_and_completed_by_attempt_2(d)
    assert (d.state.step("S2").attempt, d.dispatched()) == (2, ["S1", "S1", "S2"])
    # The old chain comes back: S1's first attempt also succeeded, then it ran S2 itself.
    d.send(_success(d, "S1", 1, started_next="S2", token=chain_token))
    assert d.state.step("S1").surplus_of(1) is not None  # a surplus effect, compensated
    assert d.state.step("S2").attempt == 2  # the claim is not honoured: S2 moved on
    d.send(_success(d, "S2", 1, started_next="S3", token=chain_token))
    s2 = d.state.step("S2")
    assert (s2.status, s2.attempt) == (StepStatus.COMPLETED, 1)  # the late success counts
    assert ("S2", 2) in [(c.step, c.attempt) for c in d.commands if isinstance(c, msg.CancelStep)]
    assert d.state.step("S3").status is StepStatus.RUNNING  # its claim of S3 holds
    d.send(_success(d, "S3", 1, token=chain_token))
    assert d.state.status is TaskStatus.COMPLETED


def test_a_chain_run_of_a_step_the_task_never_started_is_a_surplus_effect_undone() -> None:
    d = _chained(3, retry=RetryPolicy(max_retries=3, delay_ms=0))
    chain_token = _first_token(d)
    _s1_retried_and_completed_by_attempt_2(d)
    d.fail("S2", retryable=False)  # the task fails: S1 is compensated
    d.compensated("S1")
    assert d.state.status is TaskStatus.FAILED
    for step, following in (("S1", "S2"), ("S2", "S3"), ("S3", "")):
        d.send(_success(d, step, 1, started_next=following, token=chain_token))
    for step in ("S1", "S2", "S3"):
        assert d.state.step(step).surplus_of(1) is not None, step
    undone = [c.step for c in d.commands if isinstance(c, msg.CompensateStep) and c.surplus_attempt]
    assert undone == ["S1", "S2", "S3"]


def test_the_fold_reserves_attempt_1_of_a_chains_steps() -> None:
    d = _chained(3)
    assert d.state.step("S2").chain_reserved and d.state.step("S3").chain_reserved


def test_a_first_dispatch_carries_what_its_chain_reads_and_each_step_gets_only_its_own() -> None:
    task = TaskDefinition("Reads", queue="q", request=Req, step_timeout_seconds=30)
    task.step("A", order=1, data=Data, reads=())(_noop)
    task.step("B", order=2, data=Data, reads=("A",))(_noop)
    task.step("C", order=3, data=Data)(_noop)
    d = Driver(task, chains=True)
    d.submit()
    (command,) = [c for c in d.commands if isinstance(c, msg.ExecuteStep)]
    assert command.then == ["B", "C"] and command.step_data == {}
    available = {"A": '{"value":"a"}'}
    b = chained_command(command, task, "B", available, 5)
    assert (b.step, b.attempt, b.fencing_token, b.step_data) == ("B", 1, command.fencing_token,
                                                                   available)
    assert b.idempotency_key == f"{command.task_id}:B:1"
    assert read_by(task.get_step("A"), available) == {}
    assert read_by(task.get_step("C"), {**available, "B": "{}"}) == {**available, "B": "{}"}


@settings(max_examples=150, deadline=None)
@given(st.lists(st.sampled_from(["chain", "timeout", "retry_ok", "cancel"]), max_size=6))
def test_no_success_of_a_chain_is_lost_whatever_overtakes_it(moves: list[str]) -> None:
    """Each success a worker reports is either its step's recorded effect or a surplus one:
    none is dropped while its effect stands (the attempts' rule, chains included)."""
    d = _chained(3, retry=RetryPolicy(max_retries=5, delay_ms=0))
    chain_token = _first_token(d)
    chain = ["S1", "S2", "S3"]
    sent: list[tuple[str, int]] = []
    for move in moves:
        if d.state.status.is_terminal:
            break
        if move == "chain" and chain:
            step = chain.pop(0)
            d.send(_success(d, step, 1, chain[0] if chain else "", chain_token))
            sent.append((step, 1))
        elif move == "timeout":
            d.advance(31_000 + 30_000)
        elif move == "retry_ok":
            running = [s for s in d.running() if d.state.step(s).attempt > 1]
            for step in running:
                d.send(_success(d, step, d.state.step(step).attempt))
                sent.append((step, d.state.step(step).attempt))
        elif move == "cancel":
            d.send(msg.CancelTask("t1", "user", d.now))
    for step, attempt in sent:
        record = d.state.step(step)
        kept = record.attempt == attempt and record.data_json is not None
        assert kept or record.surplus_of(attempt) is not None, (step, attempt, moves)
