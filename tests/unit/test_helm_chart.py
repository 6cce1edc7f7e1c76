"""The Helm chart (deploy/helm/tasksaga): helm lint and helm template pass for the default
and the production values, the values reach the objects they name, and values the chart
cannot honour are refused with a message. helm is built by tools/stacklib/helm.py.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.unit.deploy_artifacts import SERVICE_SETTINGS, variables_read_by
from tests.unit.manifests import (
    CHART,
    KUBERNETES_VERSION,
    PRODUCTION_VALUES,
    ChartRefused,
    Document,
    component,
    containers,
    env_value,
    helm_run,
    name_of,
    of_kind,
    pod_spec,
    render_chart,
    schema_errors,
    workloads,
)

VALUES_FILES = {"default": (), "production": (PRODUCTION_VALUES,)}


@pytest.mark.parametrize("values", sorted(VALUES_FILES))
def test_helm_lint_passes_strictly(values: str) -> None:
    args = ["lint", str(CHART), "--strict", "--kube-version", KUBERNETES_VERSION]
    for path in VALUES_FILES[values]:
        args += ["--values", str(path)]
    done = helm_run(*args)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "0 chart(s) failed" in done.stdout


@pytest.mark.parametrize("values", sorted(VALUES_FILES))
def test_helm_template_renders_every_service_and_the_set_up_job(values: str) -> None:
    documents = render_chart(*VALUES_FILES[values])
    components = {component(w) for w in workloads(documents)}
    assert components == {"api", "orchestrator", "worker", "notifier", "projector", "migrate"}
    assert [d["metadata"]["namespace"] for d in documents] == ["tasksaga"] * len(documents)
    orchestrator = next(containers(by_name(documents, "StatefulSet")["tasksaga-orchestrator"]))
    assert env_value(orchestrator, "TASKSAGA_ORCHESTRATOR_RUN_PROJECTOR") == "false"
    assert len({name_of(d) for d in documents}) == len(documents), "duplicate object names"


def by_name(documents: list[Document], kind: str) -> dict[str, Document]:
    return {d["metadata"]["name"]: d for d in of_kind(documents, kind)}


def test_production_values_reach_replicas_resources_image_and_topics() -> None:
    documents = render_chart(PRODUCTION_VALUES)
    deployments = by_name(documents, "Deployment")
    assert deployments["tasksaga-api"]["spec"]["replicas"] == 3
    # With KEDA on, the ScaledObjects own the replica counts of the consumers.
    assert "replicas" not in deployments["tasksaga-worker-video"]["spec"]
    assert "replicas" not in by_name(documents, "StatefulSet")["tasksaga-orchestrator"]["spec"]
    video = next(containers(deployments["tasksaga-worker-video"]))
    assert video["resources"]["limits"] == {"cpu": "8", "memory": "8Gi"}
    assert video["image"] == "registry.example.com/tasksaga:0.1.0"
    assert env_value(video, "TASKSAGA_WORKER_QUEUES") == "video-processing"
    assert env_value(video, "TASKSAGA_WORKER_CONCURRENCY") == "2"
    config = by_name(documents, "ConfigMap")["tasksaga-config"]["data"]
    assert config["TASKSAGA_TOPIC_PARTITIONS"] == "24"
    assert config["TASKSAGA_TOPIC_REPLICATION_FACTOR"] == "3"
    assert config["TASKSAGA_TOPIC_MIN_INSYNC_REPLICAS"] == "2"


def test_without_the_projector_deployment_the_orchestrators_project(tmp_path: Path) -> None:
    values = tmp_path / "no-projector.yaml"
    values.write_text(yaml.safe_dump({"projector": {"enabled": False}}))
    documents = render_chart(values)
    assert "projector" not in {component(w) for w in workloads(documents)}
    assert not any(d["metadata"]["name"].endswith("projector-egress")
                   for d in of_kind(documents, "NetworkPolicy"))
    orchestrator = next(containers(by_name(documents, "StatefulSet")["tasksaga-orchestrator"]))
    assert env_value(orchestrator, "TASKSAGA_ORCHESTRATOR_RUN_PROJECTOR") is None


def test_default_values_give_fixed_replicas_and_no_autoscaler() -> None:
    documents = render_chart()
    assert of_kind(documents, "ScaledObject") == []
    assert by_name(documents, "Deployment")["tasksaga-worker-default"]["spec"]["replicas"] == 2
    assert by_name(documents, "StatefulSet")["tasksaga-orchestrator"]["spec"]["replicas"] == 2


def test_secrets_are_references_to_existing_secrets_only() -> None:
    documents = render_chart(PRODUCTION_VALUES)
    assert of_kind(documents, "Secret") == []
    refs = {(item["name"], item["valueFrom"]["secretKeyRef"]["name"],
             item["valueFrom"]["secretKeyRef"]["key"])
            for w in workloads(documents) for c in containers(w) for item in c.get("env", [])
            if "secretKeyRef" in item.get("valueFrom", {})}
    assert ("TASKSAGA_DATABASE_URL", "tasksaga-postgres", "url") in refs
    assert ("TASKSAGA_WEBHOOK_SECRET", "tasksaga-webhooks", "signing-secret") in refs
    assert {name for name, _, _ in refs} == {
        "TASKSAGA_DATABASE_URL", "TASKSAGA_PAYLOAD_KEYS", "TASKSAGA_S3_ACCESS_KEY",
        "TASKSAGA_S3_SECRET_KEY", "TASKSAGA_WEBHOOK_SECRET", "TASKSAGA_AUTH_HS256_SECRET",
        "TASKSAGA_TASK_ID_SECRET"}


@pytest.mark.parametrize("values", sorted(VALUES_FILES))
def test_every_variable_the_chart_sets_is_read_by_the_service(values: str) -> None:
    documents = render_chart(*VALUES_FILES[values])
    config_maps = {d["metadata"]["name"]: d["data"] for d in of_kind(documents, "ConfigMap")}
    extra = {"OTEL_TRACES_EXPORTER", "OTEL_EXPORTER_OTLP_ENDPOINT"}  # OpenTelemetry's own
    for workload in workloads(documents):
        read = variables_read_by(SERVICE_SETTINGS[component(workload)])
        container = next(containers(workload))
        names = {item["name"] for item in container.get("env", [])}
        for source in container.get("envFrom", []):
            names |= set(config_maps[source["configMapRef"]["name"]])
        assert names - read - extra == set(), name_of(workload)


def pools_file(tmp_path: Path, *pools: dict[str, Any]) -> Path:
    # A new file each time: renders are cached by path.
    path = tmp_path / f"pools-{len(list(tmp_path.iterdir()))}.yaml"
    path.write_text(yaml.safe_dump({"workers": [
        {"replicas": 1, "concurrency": 1, "shutdownSeconds": 20, "resources": {},
         "autoscaling": {"minReplicas": 1, "maxReplicas": 2, "lagThreshold": 5}, **pool}
        for pool in pools]}))
    return path


def test_the_chart_refuses_more_autoscaled_replicas_than_partitions(tmp_path: Path) -> None:
    too_many = pools_file(tmp_path, {"name": "big", "queues": ["zip"],
                                     "autoscaling": {"minReplicas": 1, "maxReplicas": 7}})
    with pytest.raises(ChartRefused, match=r"workers\[big\]: autoscaling.maxReplicas 7 "
                                           r"exceeds topics.partitions 6"):
        render_chart(too_many, sets=("keda.enabled=true",))
    with pytest.raises(ChartRefused, match=r"orchestrator: autoscaling.maxReplicas 12"):
        render_chart(sets=("orchestrator.autoscaling.maxReplicas=12",))
    with pytest.raises(ChartRefused, match=r"orchestrator: autoscaling.minReplicas must be "
                                           r"between 1 and maxReplicas"):
        render_chart(sets=("keda.enabled=true", "orchestrator.autoscaling.minReplicas=0"))
    # The same bound with more partitions renders.
    assert render_chart(too_many, sets=("topics.partitions=12",))


def test_the_chart_refuses_a_queue_in_two_pools_and_a_pool_without_queues(
    tmp_path: Path,
) -> None:
    twice = pools_file(tmp_path, {"name": "a", "queues": ["zip"]},
                       {"name": "b", "queues": ["video-processing", "zip"]})
    with pytest.raises(ChartRefused, match=r"queue zip is in two pools \(a and b\)"):
        render_chart(twice)
    without = pools_file(tmp_path, {"name": "a", "queues": []})
    with pytest.raises(ChartRefused, match=r"workers\[a\].queues: name the step queues"):
        render_chart(without)
    unbounded = pools_file(tmp_path, {"name": "a", "queues": ["zip"], "autoscaling": None})
    with pytest.raises(ChartRefused, match=r"workers\[a\].autoscaling: minReplicas and "):
        render_chart(unbounded)


def test_the_chart_refuses_an_open_extra_egress_rule(tmp_path: Path) -> None:
    values = tmp_path / "open-egress.yaml"
    values.write_text(yaml.safe_dump({"networkPolicy": {"extraEgress": [{"ports": [443]}]}}))
    with pytest.raises(ChartRefused, match=r"every rule needs `to` and `ports`"):
        render_chart(values)


def test_every_worker_pod_runs_only_its_pools_queues() -> None:
    documents = render_chart(PRODUCTION_VALUES)
    queues = {w["metadata"]["name"]: env_value(next(containers(w)), "TASKSAGA_WORKER_QUEUES")
              for w in workloads(documents) if component(w) == "worker"}
    assert queues == {"tasksaga-worker-zip": "zip", "tasksaga-worker-video": "video-processing"}
    capabilities = {w["metadata"]["name"]: env_value(next(containers(w)),
                                                     "TASKSAGA_WORKER_CAPABILITIES")
                    for w in workloads(documents) if component(w) == "worker"}
    assert capabilities == {"tasksaga-worker-zip": None, "tasksaga-worker-video": "ffmpeg"}
    for workload in workloads(documents):
        assert pod_spec(workload)["serviceAccountName"] == "tasksaga"


def test_shards_from_an_existing_secret_reach_orchestrator_api_projector_and_migrate_only(
    tmp_path: Path,
) -> None:
    values = tmp_path / "shards.yaml"
    values.write_text(yaml.safe_dump({"shards": {
        "secret": {"name": "tasksaga-shards", "key": "shards"}, "buckets": "a:0-127;b:128-255"}}))
    lint = helm_run("lint", str(CHART), "--strict", "--kube-version", KUBERNETES_VERSION,
                    "--values", str(PRODUCTION_VALUES), "--values", str(values))
    assert lint.returncode == 0, lint.stdout + lint.stderr
    documents = render_chart(PRODUCTION_VALUES, values)
    assert of_kind(documents, "Secret") == []
    problems = {name_of(d): errors for d in documents if (errors := schema_errors(d))}
    assert problems == {}
    given = {}
    for workload in workloads(documents):
        container = next(containers(workload))
        refs = {item["name"]: item["valueFrom"]["secretKeyRef"] for item in container["env"]
                if "secretKeyRef" in item.get("valueFrom", {})}
        given[component(workload)] = (refs.get("TASKSAGA_SHARDS"),
                                      env_value(container, "TASKSAGA_SHARD_BUCKETS"))
    shards = ({"name": "tasksaga-shards", "key": "shards"}, "a:0-127;b:128-255")
    assert given == {"api": shards, "orchestrator": shards, "migrate": shards,
                     "projector": shards, "worker": (None, None), "notifier": (None, None)}
    # Off by default: no shard variable anywhere.
    assert all("TASKSAGA_SHARD" not in item["name"] for w in workloads(render_chart())
               for c in containers(w) for item in c.get("env", []))


def test_the_chart_refuses_shard_buckets_without_the_shards_secret() -> None:
    with pytest.raises(ChartRefused, match=r"shards.buckets is set but shards.secret.name is "
                                           r"not: name the Secret holding TASKSAGA_SHARDS"):
        render_chart(sets=("shards.buckets=a:0-255",))
