"""Metrics, health and traces of the four services, run as processes on the local stack.

The services export spans to a local OTLP receiver (the standard OTEL_* variables) and serve
/metrics and /health/* on their TASKSAGA_METRICS_PORT.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from localrun import REPO
from tests.e2e.conftest import System, running_system
from tests.e2e.otlp_receiver import ReceivedSpan, SpanSink, otlp_receiver
from tests.integration.http_receivers import QuietHandler, port_of, serving

SERVICES = {"api": "tasksaga-api", "orchestrator": "tasksaga-orchestrator",
            "worker": "tasksaga-worker", "notifier": "tasksaga-notifier"}
RECEIVER_HOST = "127.0.0.2"  # allowlisted for local webhook receivers (localrun.service_env)
SERVER_SPAN = 2  # SpanKind SERVER in OTLP


@pytest.fixture(scope="module")
def observed(stack_env: dict[str, str]) -> Iterator[tuple[System, SpanSink]]:
    with otlp_receiver() as (endpoint, sink), running_system(
        stack_env,
        OTEL_TRACES_EXPORTER="otlp",
        OTEL_EXPORTER_OTLP_ENDPOINT=endpoint,
        OTEL_BSP_SCHEDULE_DELAY="200",
        TASKSAGA_METRICS_SAMPLE_INTERVAL_S="1",
        TASKSAGA_LAG_WATCH_INTERVAL_S="1",
        TASKSAGA_TASK_MODULES="tasksaga_examples.zip_archive,tasksaga_examples.order_fulfilment",
    ) as system:
        yield system, sink


@pytest.fixture(scope="module")
def webhook_url() -> Iterator[str]:
    class Handler(QuietHandler):
        def do_POST(self) -> None:
            self.read_body()
            self.answer(200)

    with serving(Handler, RECEIVER_HOST) as server:
        yield f"http://{RECEIVER_HOST}:{port_of(server)}/hooks"


def submit(system: System, fail: bool = False, callback_url: str | None = None) -> str:
    reply = system.client.post(
        "/tasks/CreateZip", params={"callback_url": callback_url} if callback_url else {},
        data={"archive_name": "t.zip", "fail_at_last_step": str(fail).lower()},
        files=[("files", ("a.txt", b"alpha", "application/octet-stream"))])
    assert reply.status_code == 202, reply.text
    task_id: str = reply.json()["task_id"]
    return task_id


def trace_problems(spans: list[ReceivedSpan], task_id: str) -> list[str]:
    """Why the spans of ``task_id`` are not one connected trace across the four services."""
    traces = {s.trace_id for s in spans if s.attributes.get("tasksaga.task_id") == task_id}
    if len(traces) != 1:
        where = {t: sorted({(s.service, s.name) for s in spans if s.trace_id == t})
                 for t in traces}
        return [f"spans of the task are in {len(traces)} traces: {where}"]
    trace = [s for s in spans if s.trace_id in traces]
    problems = []
    missing = set(SERVICES.values()) - {s.service for s in trace}
    if missing:
        problems.append(f"no span from {sorted(missing)}")
    ids = {s.span_id for s in trace}
    roots = [s for s in trace if not s.parent_id]
    if len(roots) != 1 or roots[0].service != SERVICES["api"] or roots[0].kind != SERVER_SPAN:
        problems.append(f"roots {[(r.service, r.name) for r in roots]}: want one API server span")
    orphans = [(s.service, s.name) for s in trace if s.parent_id and s.parent_id not in ids]
    if orphans:
        problems.append(f"spans whose parent is not in the trace: {orphans}")
    return problems


def wait_for(condition: Any, timeout_s: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        result = condition()
        if not result or time.monotonic() > deadline:
            return result
        time.sleep(0.3)


def test_each_task_is_one_trace_from_the_api_through_orchestrator_worker_and_notifier(
    observed: tuple[System, SpanSink], webhook_url: str,
) -> None:
    system, sink = observed
    # With a callback: the notifier acts on their events (it skips, without a span, the
    # events of tasks that have none).
    task_ids = [submit(system, callback_url=webhook_url), submit(system, callback_url=webhook_url),
                submit(system, fail=True, callback_url=webhook_url)]
    for task_id in task_ids:
        system.wait_terminal(task_id)
    problems = wait_for(lambda: {t: p for t in task_ids
                                 if (p := trace_problems(sink.spans(), t))})
    assert not problems
    traces = {s.trace_id for s in sink.spans() if s.attributes.get("tasksaga.task_id")
              in task_ids}
    assert len(traces) == len(task_ids)  # one trace per task, not one for all


def metrics_of(system: System, service: str) -> str:
    reply = httpx.get(f"{system.services.ops_url(service)}/metrics", timeout=5)
    assert reply.status_code == 200
    return reply.text


def sample(text: str, name: str, **labels: str) -> float | None:
    """The value of the first series ``name`` whose labels include ``labels``."""
    for line in text.splitlines():
        match = re.match(rf"{re.escape(name)}\{{(.*)\}} (\S+)$", line)
        if match and all(f'{k}="{v}"' in match.group(1) for k, v in labels.items()):
            return float(match.group(2))
    return None


def test_every_service_reports_live_and_ready_on_its_ops_port(
    observed: tuple[System, SpanSink],
) -> None:
    system, _ = observed
    for service in SERVICES:
        base = system.services.ops_url(service)
        assert httpx.get(f"{base}/health/live", timeout=5).status_code == 200
        ready = httpx.get(f"{base}/health/ready", timeout=10)
        assert ready.status_code == 200, (service, ready.text)
        assert set(ready.json()["checks"].values()) == {"ok"}, (service, ready.text)


def test_metrics_show_steps_retries_compensations_tasks_lags_and_webhooks(
    observed: tuple[System, SpanSink], webhook_url: str,
) -> None:
    system, _ = observed
    done = submit(system, callback_url=webhook_url)
    failed = submit(system, fail=True)
    # The shipping service is down for one attempt: Ship is retried, then the order completes.
    order = system.client.post("/tasks/FulfilOrder", json={
        "order_id": "o-metrics", "sku": "MUG-42", "quantity": 1, "amount_cents": 500,
        "email": "ada@example.com", "outage_at": "Ship", "outage_attempts": 1})
    assert order.status_code == 202, order.text
    assert system.wait_terminal(done)["status"] == "Completed"
    assert system.wait_terminal(failed)["status"] == "Failed"
    assert system.wait_terminal(order.json()["task_id"])["status"] == "Completed"

    def missing() -> list[str]:
        orchestrator = metrics_of(system, "orchestrator")
        wanted = {
            "step duration": sample(orchestrator, "tasksaga_step_duration_seconds_count",
                                    task_type="CreateZip", outcome="completed"),
            "final failure": sample(orchestrator, "tasksaga_step_failures_total",
                                    task_type="CreateZip", outcome="failed"),
            "retry": sample(orchestrator, "tasksaga_step_retries_total",
                            task_type="FulfilOrder", step="Ship"),
            "compensation": sample(orchestrator, "tasksaga_step_compensations_total",
                                   task_type="CreateZip", outcome="compensated"),
            "completed tasks": sample(orchestrator, "tasksaga_tasks", task_type="CreateZip",
                                      state="Completed"),
            "consumer lag": sample(orchestrator, "tasksaga_consumer_lag",
                                   group=f"{system.prefix}-notifier"),
            "worker compensations": sample(metrics_of(system, "worker"),
                                           "tasksaga_worker_commands_total",
                                           task_type="CreateZip", kind="compensate",
                                           outcome="succeeded"),
            "webhook delivered": sample(metrics_of(system, "notifier"),
                                        "tasksaga_webhook_attempts_total",
                                        outcome="delivered"),
            "api requests": sample(metrics_of(system, "api"),
                                   "http_server_duration_milliseconds_count",
                                   http_target="/tasks/{task_type}"),
        }
        found = [name for name, value in wanted.items() if value is None or
                 (name != "consumer lag" and value < 1)]
        for gauge in ("tasksaga_outbox_backlog", "tasksaga_outbox_oldest_age_seconds",
                      "tasksaga_projection_lag_seconds", "tasksaga_projection_lag_events"):
            if not re.search(rf"^{gauge}\{{.*\}} \S+$", orchestrator, re.MULTILINE):
                found.append(gauge)
        return found

    assert not wait_for(missing)
    exposed = "\n".join(metrics_of(system, service) for service in SERVICES)
    assert done not in exposed and failed not in exposed  # no task ids in the labels
    # Every series the Grafana dashboard queries is one the services expose.
    dashboard = json.loads((REPO / "deploy" / "grafana" / "tasksaga-dashboard.json").read_text())
    queried = {name for panel in dashboard["panels"] for target in panel["targets"]
               for name in re.findall(r"\b((?:tasksaga|http)_[a-z_]+)\b",
                                      re.sub(r"by \([^)]*\)", "", target["expr"]))}
    assert len(queried) >= 12
    absent = {n for n in queried if not re.search(rf"^{n}[{{ ]", exposed, re.MULTILINE)}
    assert not absent
