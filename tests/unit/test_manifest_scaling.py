"""Scaling and disruption, on the rendered chart and the kustomize manifests: KEDA scales the
orchestrators and each worker pool on their own consumer groups' lag, never past the
partitions, with the HPA behaviour spelled out; every service has a PodDisruptionBudget,
spreads over zones and nodes, is ready by its health endpoint, and gets a grace period that
holds its preStop pause and its drain.
"""

from __future__ import annotations

import pytest
import yaml

from tasksaga.adapters.wire import Topics
from tasksaga.orchestrator.settings import OrchestratorSettings
from tasksaga.worker.settings import WorkerSettings
from tests.unit.manifests import (
    PRODUCTION_VALUES,
    RELEASE,
    SOURCES,
    Document,
    component,
    containers,
    documents_of,
    name_of,
    of_kind,
    pod_labels,
    pod_spec,
    render_chart,
    selects,
    workloads,
)

WORKER_GROUP = WorkerSettings.model_fields["worker_group"].default
ORCHESTRATOR_GROUP = OrchestratorSettings.model_fields["orchestrator_group"].default
WORKER_SHUTDOWN_S = WorkerSettings.model_fields["worker_shutdown_seconds"].default
# worker/main.py joins its threads for worker_shutdown_seconds + 5 after SIGTERM.
WORKER_JOIN_SLACK_S = 5
# The api, orchestrator and notifier finish the batch in hand and commit (deploy/README.md).
SERVICE_DRAIN_S = 20


def services(documents: list[Document]) -> list[Document]:
    return [w for w in workloads(documents) if w["kind"] in ("Deployment", "StatefulSet")]


def settings_of(documents: list[Document], workload: Document) -> dict[str, str]:
    """The container's literal variables, ConfigMaps' included."""
    config_maps = {d["metadata"]["name"]: d["data"] for d in of_kind(documents, "ConfigMap")}
    container = next(containers(workload))
    found: dict[str, str] = {}
    for source in container.get("envFrom", []):
        found.update(config_maps[source["configMapRef"]["name"]])
    found.update({e["name"]: str(e["value"]) for e in container.get("env", []) if "value" in e})
    return found


# -- KEDA ------------------------------------------------------------------------------------


def test_keda_scales_the_orchestrators_and_every_worker_pool_on_their_groups_lag() -> None:
    documents = render_chart(PRODUCTION_VALUES)
    scaled = {(s["spec"]["scaleTargetRef"]["kind"], s["spec"]["scaleTargetRef"]["name"]): s
              for s in of_kind(documents, "ScaledObject")}
    targets = {(w["kind"], w["metadata"]["name"]): w for w in services(documents)
               if component(w) in ("orchestrator", "worker")}
    assert set(scaled) == set(targets)
    for key, workload in targets.items():
        env = settings_of(documents, workload)
        topics = Topics(env["TASKSAGA_TOPIC_PREFIX"])
        triggers = scaled[key]["spec"]["triggers"]
        assert {t["type"] for t in triggers} == {"kafka"}
        watched = {(t["metadata"]["consumerGroup"], t["metadata"]["topic"]) for t in triggers}
        if component(workload) == "orchestrator":
            group = f"{topics.prefix}-{ORCHESTRATOR_GROUP}"
            expected = {(group, topics.task_commands), (group, topics.step_results)}
        else:
            expected = {(f"{topics.prefix}-{WORKER_GROUP}-{queue}", topics.step_commands(queue))
                        for queue in env["TASKSAGA_WORKER_QUEUES"].split(",")}
        assert watched == expected, key
        for trigger in triggers:
            assert trigger["metadata"]["bootstrapServers"] == env["TASKSAGA_KAFKA_BOOTSTRAP"]
            assert trigger["metadata"]["allowIdleConsumers"] == "false"
            assert int(trigger["metadata"]["lagThreshold"]) > 0


def test_each_autoscaler_carries_its_values_bounds_and_none_scales_to_zero() -> None:
    """The chart refuses a maximum past the partitions and a minimum below 1
    (test_helm_chart.py); here each ScaledObject must carry exactly the bounds its values
    give, and the production values use every partition at most."""
    values = yaml.safe_load(PRODUCTION_VALUES.read_text())
    expected = {f"{RELEASE}-orchestrator": values["orchestrator"]["autoscaling"]} | {
        f"{RELEASE}-worker-{pool['name']}": pool["autoscaling"] for pool in values["workers"]}
    scaled = {s["metadata"]["name"]: s["spec"]
              for s in of_kind(render_chart(PRODUCTION_VALUES), "ScaledObject")}
    assert set(scaled) == set(expected)
    for name, spec in scaled.items():
        bounds = (spec["minReplicaCount"], spec["maxReplicaCount"])
        assert bounds == (expected[name]["minReplicas"], expected[name]["maxReplicas"]), name
        assert "idleReplicaCount" not in spec, "the orchestrator's timers need a live replica"
    assert max(s["maxReplicaCount"] for s in scaled.values()) == values["topics"]["partitions"]


def test_the_hpa_behaviour_is_spelled_out_both_ways() -> None:
    for scaled_object in of_kind(render_chart(PRODUCTION_VALUES), "ScaledObject"):
        behavior = scaled_object["spec"]["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]
        for direction in ("scaleUp", "scaleDown"):
            rules = behavior[direction]
            assert {"stabilizationWindowSeconds", "selectPolicy", "policies"} <= set(rules)
            assert rules["policies"], direction
        # Down slowly: one pod (one rebalance and drain) a minute, after 5 minutes of calm.
        assert behavior["scaleDown"]["stabilizationWindowSeconds"] >= 300
        assert behavior["scaleDown"]["policies"] == [
            {"type": "Pods", "value": 1, "periodSeconds": 60}]


# -- disruption, spread, probes, shutdown ----------------------------------------------------


@pytest.mark.parametrize("source", sorted(SOURCES))
def test_every_service_has_a_disruption_budget_of_one_pod(source: str) -> None:
    documents = documents_of(source)
    budgets = of_kind(documents, "PodDisruptionBudget")
    for workload in services(documents):
        mine = [b for b in budgets if selects(b["spec"]["selector"], pod_labels(workload))]
        assert len(mine) == 1, name_of(workload)
        assert mine[0]["spec"]["maxUnavailable"] == 1
        assert mine[0]["spec"]["unhealthyPodEvictionPolicy"] == "AlwaysAllow"
        others = [w for w in services(documents) if w is not workload]
        assert not any(selects(mine[0]["spec"]["selector"], pod_labels(o)) for o in others)


@pytest.mark.parametrize("source", sorted(SOURCES))
def test_every_service_spreads_over_zones_and_nodes(source: str) -> None:
    for workload in services(documents_of(source)):
        constraints = pod_spec(workload)["topologySpreadConstraints"]
        assert {c["topologyKey"] for c in constraints} == {
            "topology.kubernetes.io/zone", "kubernetes.io/hostname"}, name_of(workload)
        for constraint in constraints:
            assert selects(constraint["labelSelector"], pod_labels(workload))
            assert constraint["whenUnsatisfiable"] == "ScheduleAnyway"


@pytest.mark.parametrize("source", sorted(SOURCES))
def test_readiness_and_liveness_use_the_health_endpoints(source: str) -> None:
    documents = documents_of(source)
    for workload in services(documents):
        container = next(containers(workload))
        ports = {p["name"]: p["containerPort"] for p in container["ports"]}
        ops_port = int(settings_of(documents, workload)["TASKSAGA_METRICS_PORT"])
        for probe, path in (("readinessProbe", "/health/ready"),
                            ("livenessProbe", "/health/live")):
            http = container[probe]["httpGet"]
            assert http["path"] == path, name_of(workload)
            if component(workload) == "api":
                assert http["port"] == "http"  # its public port serves the same checks
            else:
                assert ports[http["port"]] == ops_port, name_of(workload)


@pytest.mark.parametrize("source", sorted(SOURCES))
def test_the_grace_period_holds_the_pre_stop_pause_and_the_drain(source: str) -> None:
    documents = documents_of(source)
    for workload in services(documents):
        container = next(containers(workload))
        pause = container["lifecycle"]["preStop"]["sleep"]["seconds"]
        assert pause >= 1, name_of(workload)
        if component(workload) == "worker":
            env = settings_of(documents, workload)
            shutdown = float(env.get("TASKSAGA_WORKER_SHUTDOWN_SECONDS", WORKER_SHUTDOWN_S))
            drain = shutdown + WORKER_JOIN_SLACK_S
        else:
            drain = SERVICE_DRAIN_S
        grace = pod_spec(workload)["terminationGracePeriodSeconds"]
        assert grace >= pause + drain + 5, f"{name_of(workload)}: {grace} s"


def test_a_longer_worker_drain_lengthens_its_grace_period() -> None:
    graces = {w["metadata"]["name"]: pod_spec(w)["terminationGracePeriodSeconds"]
              for w in workloads(render_chart(PRODUCTION_VALUES)) if component(w) == "worker"}
    # shutdownSeconds 30 and 120 (values-production.yaml): 5 + drain + 5 (join) + 5.
    assert graces == {"tasksaga-worker-zip": 45, "tasksaga-worker-video": 135}


@pytest.mark.parametrize("source", sorted(SOURCES))
def test_rollouts_replace_one_pod_at_a_time(source: str) -> None:
    for workload in services(documents_of(source)):
        if workload["kind"] == "Deployment":
            rolling = workload["spec"]["strategy"]["rollingUpdate"]
            assert (rolling["maxSurge"], rolling["maxUnavailable"]) == (1, 0), \
                name_of(workload)
        else:  # a StatefulSet replaces one pod at a time, waiting for each to be ready
            assert workload["spec"].get("updateStrategy", {}).get(
                "type", "RollingUpdate") == "RollingUpdate"
