"""Locked-down pods and NetworkPolicies, checked on the rendered chart (default and production
values) and on the kustomize manifests: non-root, read-only root filesystems with emptyDir
scratch, no capabilities, seccomp RuntimeDefault, no service-account token; ingress only to
the API; egress only to Kafka, Postgres, MinIO and DNS, the notifier's also to the public
internet but to no private range.
"""

from __future__ import annotations

import ipaddress
from typing import Any

import pytest

from tests.unit.manifests import (
    PRODUCTION_VALUES,
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

KAFKA, POSTGRES, MINIO, DNS = 9092, 5432, 9000, 53
# The ports each component may open connections to (its egress), DNS included.
EGRESS_PORTS = {
    "api": {KAFKA, POSTGRES, MINIO, DNS},
    "orchestrator": {KAFKA, POSTGRES, DNS},
    "worker": {KAFKA, POSTGRES, MINIO, DNS},
    "notifier": {KAFKA, POSTGRES, DNS},
    "projector": {POSTGRES, DNS},
    "migrate": {KAFKA, POSTGRES, DNS},
}
# Never reachable through the notifier's internet rule.
PRIVATE_RANGES = [ipaddress.ip_network(n) for n in (
    "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "169.254.0.0/16", "127.0.0.0/8",
    "100.64.0.0/10", "0.0.0.0/8", "fc00::/7", "fe80::/10", "::1/128", "::ffff:0:0/96")]
EVERYWHERE = {"0.0.0.0/0", "::/0"}
# The chart's policy of networkPolicy.extraEgress: what the operator declared (an OTLP
# collector), checked for open rules only.
EXTRA_EGRESS = "-extra-egress"


# -- pods -------------------------------------------------------------------------------------


def pod_problems(documents: list[Document]) -> list[str]:
    """What is not locked down in each pod of the documents."""
    problems: list[str] = []
    accounts = {a["metadata"]["name"]: a for a in of_kind(documents, "ServiceAccount")}
    for workload in workloads(documents):
        where, pod = name_of(workload), pod_spec(workload)
        security = pod.get("securityContext", {})
        if pod.get("automountServiceAccountToken") is not False:
            problems.append(f"{where}: mounts a service-account token")
        account = accounts.get(pod.get("serviceAccountName", "default"))
        if account is None or account.get("automountServiceAccountToken") is not False:
            problems.append(f"{where}: its service account is not one without a token")
        for host in ("hostNetwork", "hostPID", "hostIPC"):
            if pod.get(host):
                problems.append(f"{where}: {host}")
        volumes = {v["name"]: v for v in pod.get("volumes", [])}
        for container in containers(workload):
            here = f"{where}/{container['name']}"
            own = container.get("securityContext", {})

            def setting(key: str, own: dict[str, Any] = own,
                        pod_level: dict[str, Any] = security) -> Any:
                return own.get(key, pod_level.get(key))

            if setting("runAsNonRoot") is not True or setting("runAsUser") in (None, 0):
                problems.append(f"{here}: may run as root")
            if (setting("seccompProfile") or {}).get("type") != "RuntimeDefault":
                problems.append(f"{here}: no RuntimeDefault seccomp profile")
            if own.get("allowPrivilegeEscalation") is not False or own.get("privileged"):
                problems.append(f"{here}: may escalate privileges")
            if own.get("readOnlyRootFilesystem") is not True:
                problems.append(f"{here}: writable root filesystem")
            capabilities = own.get("capabilities", {})
            if "ALL" not in capabilities.get("drop", []) or capabilities.get("add"):
                problems.append(f"{here}: keeps or adds capabilities")
            mounts = {m["mountPath"]: m["name"] for m in container.get("volumeMounts", [])}
            if "emptyDir" not in volumes.get(mounts.get("/tmp", ""), {}):
                problems.append(f"{here}: no emptyDir at /tmp (its only writable place)")
            for name in mounts.values():
                if set(volumes.get(name, {})) - {"name", "emptyDir"}:
                    problems.append(f"{here}: mounts {name}, which is not an emptyDir")
    return problems


@pytest.mark.parametrize("source", sorted(SOURCES))
def test_every_pod_is_locked_down(source: str) -> None:
    documents = documents_of(source)
    assert {component(w) for w in workloads(documents)} == set(EGRESS_PORTS)
    assert pod_problems(documents) == []


def test_the_pod_check_names_what_is_not_locked_down() -> None:
    documents = render_chart()
    worker = next(w for w in workloads(documents) if component(w) == "worker")
    pod_spec(worker)["automountServiceAccountToken"] = True
    worker_container = next(containers(worker))
    worker_container["securityContext"]["readOnlyRootFilesystem"] = False
    worker_container["securityContext"]["capabilities"] = {"add": ["NET_ADMIN"]}
    name = name_of(worker)
    assert pod_problems(documents) == [
        f"{name}: mounts a service-account token",
        f"{name}/worker: writable root filesystem",
        f"{name}/worker: keeps or adds capabilities"]


# -- network policies -------------------------------------------------------------------------


def policies_for(documents: list[Document], workload: Document, kind: str) -> list[Document]:
    return [p for p in of_kind(documents, "NetworkPolicy")
            if kind in p["spec"].get("policyTypes", [])
            and selects(p["spec"]["podSelector"], pod_labels(workload))]


def rule_ports(rule: dict[str, Any]) -> set[int]:
    return {int(p["port"]) for p in rule.get("ports", [])}


def is_internet(rule: dict[str, Any]) -> bool:
    peers = rule.get("to", [])
    return bool(peers) and all(p.get("ipBlock", {}).get("cidr") in EVERYWHERE for p in peers)


Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def within(inner: Network, outer: Network) -> bool:
    return inner.version == outer.version and (
        int(outer.network_address) <= int(inner.network_address)
        and int(inner.broadcast_address) <= int(outer.broadcast_address))


def internet_leaks(rule: dict[str, Any]) -> list[str]:
    """The private ranges an internet rule's ipBlocks let through (not in their except)."""
    leaks = []
    for peer in rule["to"]:
        block = peer["ipBlock"]
        cidr = ipaddress.ip_network(block["cidr"])
        excepted = [ipaddress.ip_network(e) for e in block.get("except", [])]
        for private in PRIVATE_RANGES:
            if private.version == cidr.version and not any(
                    within(private, e) for e in excepted):
                leaks.append(f"{block['cidr']} reaches {private}")
    return leaks


def network_problems(documents: list[Document]) -> list[str]:
    problems: list[str] = []
    for workload in workloads(documents):
        where, kind = name_of(workload), component(workload)
        policies = {t: policies_for(documents, workload, t) for t in ("Ingress", "Egress")}
        if not any(not p["spec"].get("ingress") and not p["spec"].get("egress")
                   and set(p["spec"]["policyTypes"]) == {"Ingress", "Egress"}
                   for p in policies["Ingress"]):
            problems.append(f"{where}: no default-deny policy")
        for policy in policies["Ingress"]:
            for rule in policy["spec"].get("ingress", []):
                ports = rule_ports(rule)
                scrape = bool(rule.get("from")) and ports == {9100}
                if not scrape and not (kind == "api" and ports == {8000}):
                    problems.append(f"{where}: ingress {ports or 'all ports'} "
                                    f"from {rule.get('from', 'anywhere')}")
        opened: set[int] = set()
        internet = []
        for policy in policies["Egress"]:
            declared = policy["metadata"]["name"].endswith(EXTRA_EGRESS)
            for rule in policy["spec"].get("egress", []):
                if is_internet(rule):
                    internet.append(rule)
                    continue
                ports = rule_ports(rule)
                if not rule.get("to") or not ports:
                    problems.append(f"{where}: egress rule open to any destination or port")
                if not declared:
                    opened |= ports
        if opened != EGRESS_PORTS[kind]:
            problems.append(f"{where}: egress to ports {sorted(opened)}, "
                            f"not {sorted(EGRESS_PORTS[kind])}")
        if kind == "notifier" and not internet:
            problems.append(f"{where}: no egress to the internet (webhooks)")
        if kind != "notifier" and internet:
            problems.append(f"{where}: egress to the internet")
        problems += [f"{where}: {leak}" for rule in internet for leak in internet_leaks(rule)]
    return problems


@pytest.mark.parametrize("source", sorted(SOURCES))
def test_network_policies_let_in_only_the_api_and_out_only_the_dependencies(
    source: str,
) -> None:
    documents = documents_of(source)
    assert of_kind(documents, "NetworkPolicy")
    assert network_problems(documents) == []


@pytest.mark.parametrize("source", sorted(SOURCES))
def test_the_notifiers_internet_egress_covers_ipv4_and_ipv6(source: str) -> None:
    documents = documents_of(source)
    notifier = next(w for w in workloads(documents) if component(w) == "notifier")
    internet = [r for p in policies_for(documents, notifier, "Egress")
                for r in p["spec"].get("egress", []) if is_internet(r)]
    assert {peer["ipBlock"]["cidr"] for rule in internet for peer in rule["to"]} == EVERYWHERE


def test_the_network_check_catches_a_private_range_and_an_open_port() -> None:
    documents = render_chart(PRODUCTION_VALUES)
    policies = {p["metadata"]["name"]: p for p in of_kind(documents, "NetworkPolicy")}
    internet = policies["tasksaga-notifier-egress"]["spec"]["egress"][-1]
    internet["to"][0]["ipBlock"]["except"].remove("10.0.0.0/8")
    policies["tasksaga-worker-egress"]["spec"]["egress"].append({"to": [{"podSelector": {}}]})
    policies["tasksaga-api-ingress"]["spec"]["ingress"][0]["ports"].append({"port": 9100})
    problems = network_problems(documents)
    assert "Deployment/tasksaga-notifier: 0.0.0.0/0 reaches 10.0.0.0/8" in problems
    assert any("tasksaga-worker-zip: egress rule open to any destination" in p
               for p in problems)
    assert any(p.startswith("Deployment/tasksaga-api: ingress {8000, 9100}") for p in problems)


def test_metrics_may_be_scraped_only_by_the_named_peers() -> None:
    documents = render_chart(PRODUCTION_VALUES)
    scrape = next(p for p in of_kind(documents, "NetworkPolicy")
                  if p["metadata"]["name"] == "tasksaga-metrics-ingress")
    [rule] = scrape["spec"]["ingress"]
    assert rule_ports(rule) == {9100}
    assert rule["from"] == [{"namespaceSelector": {"matchLabels": {
        "kubernetes.io/metadata.name": "monitoring"}}, "podSelector": {"matchLabels": {
            "app.kubernetes.io/name": "prometheus"}}}]
    assert not any(p["metadata"]["name"].endswith("metrics-ingress")
                   for p in of_kind(render_chart(), "NetworkPolicy"))


def test_extra_egress_is_only_what_the_values_declare() -> None:
    names = {p["metadata"]["name"] for p in of_kind(render_chart(), "NetworkPolicy")}
    assert f"tasksaga{EXTRA_EGRESS}" not in names
    [extra] = [p for p in of_kind(render_chart(PRODUCTION_VALUES), "NetworkPolicy")
               if p["metadata"]["name"].endswith(EXTRA_EGRESS)]
    assert [rule_ports(r) for r in extra["spec"]["egress"]] == [{4318}]
    assert all(r["to"] for r in extra["spec"]["egress"])


def test_the_kustomize_policies_are_the_charts_defaults() -> None:
    """deploy/k8s/networkpolicies.yaml is the chart's default render without Helm's labels:
    a change to one must be made to the other."""
    helm_only = {"app.kubernetes.io/instance", "app.kubernetes.io/managed-by",
                 "app.kubernetes.io/version", "helm.sh/chart"}

    def plain(policy: Document) -> Document:
        policy["metadata"]["labels"] = {k: v for k, v in policy["metadata"]["labels"].items()
                                        if k not in helm_only}
        policy["spec"]["podSelector"]["matchLabels"].pop("app.kubernetes.io/instance", None)
        return policy

    chart = [plain(p) for p in of_kind(render_chart(), "NetworkPolicy")]
    assert of_kind(documents_of("kustomize"), "NetworkPolicy") == chart
