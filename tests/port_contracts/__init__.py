"""One contract suite per port, written once: tests/unit runs each against the in-memory adapter
of tasksaga.testing, tests/integration against the real one (Postgres, Kafka, MinIO, the system
clock), so the fakes users test their sagas with behave as production does."""
