"""Every object of the kustomize manifests and of the rendered chart is valid for Kubernetes
(kubernetes-validate's schemas of KUBERNETES_VERSION, strict: an unknown field is an error),
and every KEDA ScaledObject for the schema in deploy/schemas. A misspelt field fails: each
check is shown to catch one.
"""

from __future__ import annotations

import pytest

from tests.unit.manifests import (
    KUBERNETES_VERSION,
    PRODUCTION_VALUES,
    SOURCES,
    Document,
    documents_of,
    name_of,
    of_kind,
    render_chart,
    schema_errors,
    workloads,
)


@pytest.mark.parametrize("source", sorted(SOURCES))
def test_every_object_is_valid_for_kubernetes(source: str) -> None:
    documents = documents_of(source)
    assert documents
    problems = {name_of(d): errors for d in documents if (errors := schema_errors(d))}
    assert problems == {}


def test_scaled_objects_are_valid_for_the_keda_schema() -> None:
    scaled = of_kind(render_chart(PRODUCTION_VALUES), "ScaledObject")
    assert len(scaled) == 3  # the orchestrator and two worker pools
    assert {name_of(d): schema_errors(d) for d in scaled} == {
        name_of(d): [] for d in scaled}


def misspell(mapping: Document, key: str, typo: str) -> None:
    mapping[typo] = mapping.pop(key)


@pytest.mark.parametrize("source", sorted(SOURCES))
def test_a_misspelt_container_field_fails_validation(source: str) -> None:
    workload = next(w for w in workloads(documents_of(source)) if w["kind"] == "Deployment")
    container = workload["spec"]["template"]["spec"]["containers"][0]
    misspell(container, "readinessProbe", "readinessProbes")
    errors = schema_errors(workload)
    assert errors and "'readinessProbes' was unexpected" in errors[0]


def test_misspelt_fields_deep_in_other_kinds_fail_validation() -> None:
    documents = render_chart(PRODUCTION_VALUES)
    policy = next(d for d in of_kind(documents, "NetworkPolicy")
                  if d["metadata"]["name"].endswith("notifier-egress"))
    misspell(policy["spec"]["egress"][-1]["to"][0]["ipBlock"], "except", "excepts")
    budget = of_kind(documents, "PodDisruptionBudget")[0]
    misspell(budget["spec"], "maxUnavailable", "maxUnavailible")
    statefulset = of_kind(documents, "StatefulSet")[0]
    misspell(statefulset["spec"]["template"]["spec"], "securityContext", "securityContex")
    for broken, typo in ((policy, "excepts"), (budget, "maxUnavailible"),
                         (statefulset, "securityContex")):
        errors = schema_errors(broken)
        assert errors and f"'{typo}' was unexpected" in errors[0], name_of(broken)


def test_a_wrong_type_fails_validation() -> None:
    api = next(w for w in workloads(documents_of("kustomize")) if w["kind"] == "Deployment")
    api["spec"]["replicas"] = "two"
    assert any("is not of type 'integer'" in e for e in schema_errors(api))


def test_misspelt_scaled_object_fields_fail_the_keda_schema() -> None:
    def fresh() -> Document:
        return of_kind(render_chart(PRODUCTION_VALUES), "ScaledObject")[0]

    top = fresh()
    misspell(top["spec"], "maxReplicaCount", "maxReplicaCont")
    behavior = fresh()
    scale_down = behavior["spec"]["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]
    misspell(scale_down["scaleDown"], "stabilizationWindowSeconds", "stabilisationWindowSeconds")
    kafka = fresh()
    misspell(kafka["spec"]["triggers"][0]["metadata"], "lagThreshold", "lagTreshold")
    for broken, typo in ((top, "maxReplicaCont"), (behavior, "stabilisationWindowSeconds"),
                         (kafka, "lagTreshold")):
        errors = schema_errors(broken)
        assert any(f"'{typo}' was unexpected" in e for e in errors), errors


def test_the_validation_agrees_with_kubernetes_validates_own() -> None:
    """schema_errors builds kubernetes-validate's strict validator once per kind; its
    verdicts are the package's own validate()'s."""
    import kubernetes_validate

    for source in sorted(SOURCES):
        workload = workloads(documents_of(source))[0]
        kubernetes_validate.validate(workload, KUBERNETES_VERSION, strict=True)
        assert schema_errors(workload) == []
        misspell(workload["spec"], "template", "templates")
        with pytest.raises(kubernetes_validate.ValidationError):
            kubernetes_validate.validate(workload, KUBERNETES_VERSION, strict=True)
        assert schema_errors(workload)
