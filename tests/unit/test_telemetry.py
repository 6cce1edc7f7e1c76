"""Trace propagation: a message handled inside a batch continues its own trace."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from tasksaga.adapters import telemetry


@pytest.fixture(scope="module")
def spans() -> InMemorySpanExporter:
    provider = trace.get_tracer_provider()
    if not isinstance(provider, TracerProvider):
        provider = TracerProvider()
        trace.set_tracer_provider(provider)
    exporter = InMemorySpanExporter()
    assert isinstance(provider, TracerProvider)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return exporter


@dataclass
class FakeMessage:
    _headers: list[tuple[str, bytes]]

    def headers(self) -> list[tuple[str, bytes]]:
        return self._headers

    def topic(self) -> str:
        return "tasksaga.task-commands"


@dataclass
class FakeEnvelope:
    message_id: str
    task_id: str
    payload: Any = None


def sent_from_a_span(name: str) -> tuple[FakeMessage, int]:
    with telemetry.span(name):
        headers = telemetry.inject_headers()
        trace_id = trace.get_current_span().get_span_context().trace_id
    return FakeMessage(headers), trace_id


def test_each_message_of_a_batch_continues_its_own_trace_and_links_the_batch(
    spans: InMemorySpanExporter,
) -> None:
    (first, first_trace), (second, second_trace) = (sent_from_a_span("api a"),
                                                    sent_from_a_span("api b"))
    envelopes = [FakeEnvelope("m1", "task-a"), FakeEnvelope("m2", "task-b")]
    caused: dict[str, list[tuple[str, bytes]]] = {}
    with telemetry.batch_span("orchestrator", [first, second], envelopes):
        for envelope in envelopes:
            with telemetry.message_span(envelope):
                caused[envelope.task_id] = telemetry.inject_headers()
    handled = {s.attributes["tasksaga.task_id"]: s for s in spans.get_finished_spans()
               if s.attributes and "tasksaga.task_id" in s.attributes}
    batch = next(s for s in spans.get_finished_spans() if s.name == "orchestrator handle batch")
    assert handled["task-a"].context.trace_id == first_trace
    assert handled["task-b"].context.trace_id == second_trace
    assert {link.context.trace_id for link in batch.links} == {first_trace, second_trace}
    assert all(s.links[0].context.span_id == batch.context.span_id for s in handled.values())
    # What a message's handling sends on continues that message's trace, not the batch's.
    outgoing = trace.get_current_span(
        telemetry.extract_context(caused["task-b"])).get_span_context()
    assert outgoing.trace_id == second_trace
    assert outgoing.span_id == handled["task-b"].context.span_id


def test_outside_a_batch_message_span_adds_nothing(spans: InMemorySpanExporter) -> None:
    spans.clear()
    with telemetry.message_span(FakeEnvelope("m3", "task-c")):
        pass
    assert spans.get_finished_spans() == ()


def test_otel_traces_exporter_names_are_checked() -> None:
    assert telemetry.exporters_from_env({}) == []
    assert telemetry.exporters_from_env({"OTEL_TRACES_EXPORTER": "none"}) == []
    assert telemetry.exporters_from_env({"OTEL_TRACES_EXPORTER": "otlp, console"}) == [
        "otlp", "console"]
    with pytest.raises(ValueError, match="jaeger"):
        telemetry.exporters_from_env({"OTEL_TRACES_EXPORTER": "jaeger"})


def test_api_http_metrics_keep_no_client_chosen_host_and_no_raw_path() -> None:
    from fastapi import FastAPI
    from fastapi.testclient import TestClient
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader

    from tasksaga.api.main import instrument

    reader = InMemoryMetricReader()
    app = FastAPI()

    @app.get("/tasks/{task_id}")
    def task(task_id: str) -> dict[str, str]:
        return {}

    instrument(app, MeterProvider(metric_readers=[reader], views=telemetry.metric_views()))
    with TestClient(app) as client:
        client.get("/tasks/secret-task-id", headers={"Host": "attacker-1.example"})
        client.get("/no/such/secret-path", headers={"Host": "attacker-2.example"})
    data = reader.get_metrics_data()
    assert data is not None
    labels = [dict(point.attributes or {}) for rm in data.resource_metrics
              for sm in rm.scope_metrics for metric in sm.metrics
              if metric.name.startswith("http.server") for point in metric.data.data_points]
    assert labels and all(set(a) <= telemetry.HTTP_METRIC_ATTRIBUTES for a in labels)
    assert {"/tasks/{task_id}"} <= {a.get("http.target") for a in labels}
    assert "secret" not in repr(labels) and "attacker" not in repr(labels)


def test_without_an_exporter_traces_are_carried_but_not_recorded() -> None:
    from opentelemetry import propagate

    sampler = telemetry.default_sampler(exporting=False, environ={})
    tracer = TracerProvider(sampler=sampler).get_tracer("test")
    with tracer.start_as_current_span("submit") as root:
        assert not root.is_recording()
        carrier: dict[str, str] = {}
        propagate.inject(carrier)
    assert root.get_span_context().is_valid  # an id all the same, for the events and logs
    with tracer.start_as_current_span("handle", context=propagate.extract(carrier)) as child:
        assert not child.is_recording()
        assert child.get_span_context().trace_id == root.get_span_context().trace_id


def test_a_trace_sampled_upstream_is_recorded_even_without_an_exporter_here() -> None:
    from opentelemetry import propagate

    upstream = TracerProvider(sampler=telemetry.default_sampler(exporting=True, environ={}))
    with upstream.get_tracer("api").start_as_current_span("submit") as root:
        assert root.is_recording()
        carrier: dict[str, str] = {}
        propagate.inject(carrier)
    here = TracerProvider(sampler=telemetry.default_sampler(exporting=False, environ={}))
    with here.get_tracer("worker").start_as_current_span(
            "handle", context=propagate.extract(carrier)) as child:
        assert child.is_recording()  # an exporting process after this one gets its spans


def test_an_explicit_otel_traces_sampler_is_left_to_the_sdk() -> None:
    assert telemetry.default_sampler(
        exporting=False, environ={"OTEL_TRACES_SAMPLER": "always_on"}) is None
