import pytest
from bench.capacity import Assumptions, plan_for, us_per_step


def test_us_per_step_divides_cores_by_transitions() -> None:
    assert us_per_step({"orchestrator": 0.5, "postgres": 0.25}, 500.0) == {
        "orchestrator": 1000.0, "postgres": 500.0}


def test_us_per_step_refuses_a_run_that_completed_nothing() -> None:
    with pytest.raises(ValueError, match="completed no steps"):
        us_per_step({"orchestrator": 0.5}, 0.0)


def test_plan_rounds_each_process_count_up_at_the_usable_share_of_a_core() -> None:
    cost = {"orchestrator": 1000.0, "worker": 300.0, "postgres": 600.0}
    plan = plan_for(1000.0, cost, Assumptions(core_utilisation=0.5,
                                              postgres_cores_per_shard=4.0,
                                              partitions_per_orchestrator=3))
    # 1000 steps/s x 1000 µs = 1 core of orchestrator work; 0.5 usable per process -> 2.
    assert (plan.orchestrators, plan.workers, plan.shards) == (2, 1, 1)
    assert plan.partitions == 6
    big = plan_for(100_000.0, cost, Assumptions(core_utilisation=0.5,
                                                postgres_cores_per_shard=4.0))
    assert (big.orchestrators, big.workers, big.shards) == (200, 60, 30)


def test_plan_names_the_missing_figure() -> None:
    with pytest.raises(ValueError, match="worker"):
        plan_for(1000.0, {"orchestrator": 1.0, "postgres": 1.0})


def test_assumptions_refuse_a_utilisation_above_one() -> None:
    with pytest.raises(ValueError, match="core_utilisation"):
        Assumptions(core_utilisation=1.5)
