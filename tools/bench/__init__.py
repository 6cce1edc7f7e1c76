"""`make bench`: the open-loop benchmark of tasksaga and its peers (see docs/benchmarks.md).

Kept import-free: the services import ``bench.bench_tasks`` as a task module.
"""
