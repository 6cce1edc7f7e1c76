from bench.report import shards_table
from bench.shard_phase import summarise


def test_summarise_divides_the_max_points_cpu_by_its_step_transitions() -> None:
    sweep = {"max_rate": 30.0, "max_point": {"transitions_per_s": 90.0,
                                             "cpu": {"orchestrator": 0.45, "postgres": 0.09}}}
    found = summarise(sweep)
    assert found["transitions_per_s"] == 90.0
    assert found["us_per_step"] == {"orchestrator": 5000.0, "postgres": 1000.0}


def test_summarise_of_a_sweep_with_no_sustainable_point_has_no_cost_per_step() -> None:
    found = summarise({"max_rate": None, "max_point": None})
    assert found["transitions_per_s"] == 0.0
    assert found["us_per_step"] == {}


def test_shards_table_shows_each_store_the_ratio_and_a_failed_check() -> None:
    shards = {"one": {"max_rate": 30.0, "transitions_per_s": 90.0,
                      "us_per_step": {"orchestrator": 5000.0}, "check_problem_count": 0},
              "two": {"max_rate": 33.0, "transitions_per_s": 99.0,
                      "us_per_step": {"orchestrator": 4000.0, "postgres-2": 900.0},
                      "check_problem_count": 2},
              "ratio": 1.1}
    rendered = shards_table(shards)
    one, two = (line for line in rendered.splitlines() if line.startswith("| one")
                or line.startswith("| two"))
    assert "5,000" in one and "passed" in one
    assert "900" in two and "FAILED (2)" in two
    assert rendered.endswith("two / one (step transitions/s): 1.1")
