"""Offline checks of the Kubernetes manifests in deploy/k8s: complete documents, bounded
non-root workloads, probes, the orchestrator's identity, worker scaling, resolvable references.
No cluster is needed.
"""

from __future__ import annotations

import pytest
import yaml

from tests.unit.deploy_artifacts import (
    APP_COMMANDS,
    K8S_DIR,
    TOPIC_PARTITIONS,
    compose_environment,
    compose_services,
    joined,
    k8s_documents,
    k8s_environment,
    k8s_files,
    k8s_objects,
    k8s_workloads,
    only_container,
)


def test_k8s_documents_are_complete_and_in_one_namespace() -> None:
    documents = k8s_documents()
    assert documents
    for path, document in documents:
        assert {"apiVersion", "kind", "metadata"} <= set(document), path.name
        if document["kind"] != "Namespace":
            assert document["metadata"]["namespace"] == "tasksaga", path.name
    assert set(k8s_objects("Namespace")) == {"tasksaga"}
    assert set(k8s_workloads()) == {*APP_COMMANDS, "migrate"}


def test_kustomization_lists_every_manifest() -> None:
    kustomization = yaml.safe_load((K8S_DIR / "kustomization.yaml").read_text())
    assert kustomization["kind"] == "Kustomization"
    assert kustomization["namespace"] == "tasksaga"
    assert sorted(kustomization["resources"]) == sorted(p.name for p in k8s_files())
    assert [i["name"] for i in kustomization["images"]] == ["tasksaga"]


@pytest.mark.parametrize("component", sorted([*APP_COMMANDS, "migrate"]))
def test_k8s_workloads_are_bounded_non_root_and_stop_gracefully(component: str) -> None:
    workload = k8s_workloads()[component]
    pod = workload["spec"]["template"]["spec"]
    container = only_container(workload)
    assert container["image"] == "tasksaga"
    resources = container["resources"]
    for bound in ("requests", "limits"):
        assert {"cpu", "memory"} <= set(resources[bound]), f"{component}: {bound}"
    # The grace period fits each service's drain: tests/unit/test_manifest_scaling.py.
    assert pod["terminationGracePeriodSeconds"] >= 30
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    if container["securityContext"].get("readOnlyRootFilesystem"):
        mounts = {m["mountPath"] for m in container.get("volumeMounts", [])}
        assert "/tmp" in mounts, f"{component}: a read-only root needs a writable /tmp"
    labels = workload["spec"]["template"]["metadata"]["labels"]
    if "selector" in workload["spec"]:
        assert workload["spec"]["selector"]["matchLabels"].items() <= labels.items()


@pytest.mark.parametrize("component", sorted(APP_COMMANDS))
def test_k8s_services_run_their_console_script(component: str) -> None:
    container = only_container(k8s_workloads()[component])
    assert "command" not in container, "keep the image's tini entrypoint: set args only"
    assert container["args"] == [APP_COMMANDS[component]]


def test_k8s_migrate_job_runs_migrations_then_topics() -> None:
    job = k8s_workloads()["migrate"]
    assert job["kind"] == "Job"
    container = only_container(job)
    assert "command" not in container
    command = joined(container["args"])
    assert command == joined(compose_services()["migrate"]["command"]).replace("$$", "$")
    assert job["spec"]["template"]["spec"]["restartPolicy"] in ("OnFailure", "Never")


def test_k8s_api_has_probes_and_a_service() -> None:
    api = k8s_workloads()["api"]
    assert api["kind"] == "Deployment"
    container = only_container(api)
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"http": 8000, "metrics": 9100}
    for probe, path in (("readinessProbe", "/health/ready"), ("livenessProbe", "/health/live")):
        http = container[probe]["httpGet"]
        assert http["path"] == path and http["port"] in ("http", 8000), probe
    service = k8s_objects("Service")["tasksaga-api"]
    pod_labels = api["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= pod_labels.items()
    assert [p["targetPort"] for p in service["spec"]["ports"]] == ["http"]


def test_k8s_worker_rejoins_as_its_pod_after_a_container_restart() -> None:
    env = {e["name"]: e for e in only_container(k8s_workloads()["worker"])["env"]}
    field = env["TASKSAGA_WORKER_INSTANCE_ID"]["valueFrom"]["fieldRef"]["fieldPath"]
    assert field == "metadata.name"


def test_k8s_orchestrator_is_a_statefulset_named_by_its_pod() -> None:
    orchestrator = k8s_workloads()["orchestrator"]
    assert orchestrator["kind"] == "StatefulSet"
    env = {e["name"]: e for e in only_container(orchestrator)["env"]}
    field = env["TASKSAGA_ORCHESTRATOR_INSTANCE_ID"]["valueFrom"]["fieldRef"]["fieldPath"]
    assert field == "metadata.name"
    service = k8s_objects("Service")[orchestrator["spec"]["serviceName"]]
    assert service["spec"]["clusterIP"] == "None"


def test_workers_scale_within_the_partition_count() -> None:
    # Members of a step queue's group: one per replica, each running up to
    # TASKSAGA_WORKER_CONCURRENCY steps at once.
    worker = k8s_workloads()["worker"]
    assert worker["kind"] == "Deployment"
    assert 0 < worker["spec"]["replicas"] <= TOPIC_PARTITIONS
    assert int(k8s_environment(worker)["TASKSAGA_WORKER_CONCURRENCY"] or 0) > 0
    assert int(compose_environment(compose_services()["worker"])["TASKSAGA_WORKER_CONCURRENCY"]) > 0
    note = f"({TOPIC_PARTITIONS}, TASKSAGA_TOPIC_PARTITIONS)"
    assert note in (K8S_DIR / "worker.yaml").read_text(), "worker.yaml explains the scaling"


def test_k8s_references_resolve_and_secrets_are_marked_as_examples() -> None:
    config_maps, secrets = k8s_objects("ConfigMap"), k8s_objects("Secret")
    for component, workload in k8s_workloads().items():
        container = only_container(workload)
        for source in container.get("envFrom", []):
            assert source["configMapRef"]["name"] in config_maps, component
        for item in container.get("env", []):
            ref = item.get("valueFrom", {}).get("secretKeyRef")
            if ref:
                assert ref["key"] in secrets[ref["name"]]["stringData"], component
    secret_text = (K8S_DIR / "secret.yaml").read_text()
    assert "REPLACE" in secret_text.split("apiVersion")[0]
    for secret in secrets.values():
        assert "data" not in secret, "keep example values readable (stringData)"
        for key, value in secret["stringData"].items():
            assert "REPLACE" in value, f"{key} must be an obvious placeholder"
