"""The Kubernetes objects the manifest tests check, offline: the kustomize manifests in
deploy/k8s and the Helm chart in deploy/helm/tasksaga rendered by ``helm template`` (helm is
built once by tools/stacklib/helm.py), each validated against the schemas of one Kubernetes
version (kubernetes-validate ships them) and, for KEDA's ScaledObjects, against the schema in
deploy/schemas.
"""

from __future__ import annotations

import copy
import functools
import importlib.resources
import json
import re
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import jsonschema
import yaml
from referencing import Registry, Resource
from stacklib.common import Settings
from stacklib.helm import ensure_helm

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "deploy" / "helm" / "tasksaga"
PRODUCTION_VALUES = CHART / "values-production.yaml"
K8S_DIR = ROOT / "deploy" / "k8s"
KEDA_SCHEMA = ROOT / "deploy" / "schemas" / "keda-scaledobject-v1alpha1.json"
# The Kubernetes version the manifests are written for: helm renders for it and
# kubernetes-validate checks against its schemas (strict: unknown fields are errors).
KUBERNETES_VERSION = "1.35.0"
NAMESPACE = "tasksaga"
RELEASE = "tasksaga"
WORKLOAD_KINDS = ("Deployment", "StatefulSet", "Job")
SERVICE_COMPONENTS = ("api", "orchestrator", "worker", "notifier", "projector")

Document = dict[str, Any]


@functools.cache
def helm() -> Path:
    return ensure_helm(Settings.from_env())


def helm_run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(helm()), *args], capture_output=True, text=True, check=False,
                          timeout=120)


def render_chart(*values_files: Path, sets: tuple[str, ...] = ()) -> list[Document]:
    """``helm template`` of the chart; raises with helm's message when it refuses."""
    return [copy.deepcopy(d) for d in _rendered(values_files, sets)]


@functools.cache
def _rendered(values_files: tuple[Path, ...], sets: tuple[str, ...]) -> tuple[Document, ...]:
    args = ["template", RELEASE, str(CHART), "--namespace", NAMESPACE,
            "--kube-version", KUBERNETES_VERSION]
    for values in values_files:
        args += ["--values", str(values)]
    for item in sets:
        args += ["--set", item]
    done = helm_run(*args)
    if done.returncode != 0:
        raise ChartRefused(done.stderr.strip())
    return tuple(d for d in yaml.safe_load_all(done.stdout) if d)


class ChartRefused(Exception):
    """helm template failed (a value the chart refuses)."""


def kustomize_documents() -> list[Document]:
    """The documents of every manifest kustomization.yaml lists (they carry their namespace
    and the image name kustomize would rewrite, so they are what kubectl receives)."""
    kustomization = yaml.safe_load((K8S_DIR / "kustomization.yaml").read_text())
    documents: list[Document] = []
    for name in kustomization["resources"]:
        documents += [d for d in yaml.safe_load_all((K8S_DIR / name).read_text()) if d]
    return documents


# The rendered sets every structural test runs on.
SOURCES: dict[str, Callable[[], list[Document]]] = {
    "kustomize": kustomize_documents,
    "chart-default": lambda: render_chart(),
    "chart-production": lambda: render_chart(PRODUCTION_VALUES),
}


def documents_of(source: str) -> list[Document]:
    return SOURCES[source]()


# -- schema validation ------------------------------------------------------------------------


def schema_errors(document: Document) -> list[str]:
    """Why Kubernetes (at KUBERNETES_VERSION) or KEDA's schema would refuse the object."""
    if document.get("apiVersion", "").startswith("keda.sh/"):
        validator = jsonschema.Draft202012Validator(_keda_schema())
    else:
        validator = _kubernetes_validator(document["apiVersion"], document["kind"])
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}"
            for e in validator.iter_errors(document)]


@functools.cache
def _kubernetes_validator(api_version: str, kind: str) -> jsonschema.Draft202012Validator:
    """kubernetes-validate's strict schema of the kind, as its validate() builds it, but built
    once per kind (validate() reads the 4 MB definitions file for every object)."""
    directory = (importlib.resources.files("kubernetes_validate") / "kubernetes-json-schema"
                 / f"v{KUBERNETES_VERSION}-local-strict")
    # rbac.authorization.k8s.io/v1 -> rbac-v1, apps/v1 -> apps-v1, v1 -> v1
    group = re.sub(r"^([^./]*)(?:\.[^/]*)?/", r"\1-", api_version)
    path = directory / f"{kind.lower()}-{group}.json"
    if not path.is_file():
        raise LookupError(f"no schema of {api_version} {kind} for Kubernetes "
                          f"{KUBERNETES_VERSION} in kubernetes-validate")
    schema = json.loads(path.read_text())
    definitions = json.loads((directory / "_definitions.json").read_text())
    registry: Registry[Any] = Registry().with_resources(
        (resource.id() or "", resource)
        for resource in (Resource.from_contents(schema), Resource.from_contents(definitions)))
    return jsonschema.Draft202012Validator(schema, registry=registry)


@functools.cache
def _keda_schema() -> dict[str, Any]:
    schema: dict[str, Any] = json.loads(KEDA_SCHEMA.read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    return schema


# -- reading objects --------------------------------------------------------------------------


def name_of(document: Document) -> str:
    return f"{document['kind']}/{document['metadata']['name']}"


def of_kind(documents: list[Document], kind: str) -> list[Document]:
    return [d for d in documents if d["kind"] == kind]


def workloads(documents: list[Document]) -> list[Document]:
    return [d for d in documents if d["kind"] in WORKLOAD_KINDS]


def component(document: Document) -> str:
    return str(document["metadata"]["labels"]["app.kubernetes.io/component"])


def pod_spec(workload: Document) -> Document:
    spec: Document = workload["spec"]["template"]["spec"]
    return spec


def pod_labels(workload: Document) -> dict[str, str]:
    labels: dict[str, str] = workload["spec"]["template"]["metadata"]["labels"]
    return labels


def containers(workload: Document) -> Iterator[Document]:
    spec = pod_spec(workload)
    yield from spec.get("initContainers", [])
    yield from spec["containers"]


def env_value(container: Document, name: str) -> str | None:
    for item in container.get("env", []):
        if item["name"] == name:
            return str(item["value"]) if "value" in item else None
    return None


def selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    """A label selector's matchLabels (the only form these manifests use) matches labels."""
    assert set(selector) <= {"matchLabels"}, f"unexpected selector form {selector}"
    return bool(selector.get("matchLabels", {}).items() <= labels.items())
