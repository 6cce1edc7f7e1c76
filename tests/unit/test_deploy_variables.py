"""Offline checks of the TASKSAGA_* variables compose and Kubernetes give each service: every
one is read by that service's settings, both deployments agree, and the values load.
"""

from __future__ import annotations

import os

import pytest

from tasksaga.api.settings import ApiSettings
from tasksaga.config import CommonSettings
from tasksaga.orchestrator.settings import OrchestratorSettings
from tests.unit.deploy_artifacts import (
    APP_COMMANDS,
    K8S_ONLY_VARIABLES,
    PENDING_SERVICE_VARIABLES,
    SERVICE_SETTINGS,
    STORES_FILES,
    compose_environment,
    compose_services,
    k8s_environment,
    k8s_objects,
    k8s_workloads,
    service_environments,
    variables_read_by,
)


def test_every_tasksaga_variable_is_read_by_the_service_it_is_given_to() -> None:
    ignored = []
    for where, name, env in service_environments():
        read = variables_read_by(SERVICE_SETTINGS[name]) | PENDING_SERVICE_VARIABLES
        ignored += [
            f"{where}:{name}:{v}" for v in env if v.startswith("TASKSAGA_") and v not in read
        ]
    assert not ignored, f"set but read by no settings class of that service: {ignored}"


def test_every_config_map_and_secret_key_is_used() -> None:
    used = {variable for _, _, env in service_environments() for variable in env}
    keys = {k for c in k8s_objects("ConfigMap").values() for k in c["data"]}
    keys |= {k for c in k8s_objects("Secret").values() for k in c["stringData"]}
    assert keys <= used, sorted(keys - used)


@pytest.mark.parametrize("name", sorted([*APP_COMMANDS, "migrate"]))
def test_compose_and_k8s_give_a_service_the_same_variables(name: str) -> None:
    compose = {
        v for v in compose_environment(compose_services()[name]) if v.startswith("TASKSAGA_")
    }
    k8s = {v for v in k8s_environment(k8s_workloads()[name]) if v.startswith("TASKSAGA_")}
    assert compose == k8s - K8S_ONLY_VARIABLES
    assert ("TASKSAGA_S3_ENDPOINT" in compose) == (name in STORES_FILES)
    assert ("TASKSAGA_WEBHOOK_SECRET" in compose) == (name == "notifier")


def test_settings_accept_the_configured_values(monkeypatch: pytest.MonkeyPatch) -> None:
    for where, name, env in service_environments():
        for variable in [v for v in os.environ if v.startswith("TASKSAGA_")]:
            monkeypatch.delenv(variable)
        for variable, value in env.items():
            # A value from the downward API (fieldRef) is the pod's name.
            monkeypatch.setenv(variable, "tasksaga-orchestrator-0" if value is None else value)
        loaded = {cls: cls() for cls in SERVICE_SETTINGS[name]}
        common = next(s for s in loaded.values() if isinstance(s, CommonSettings))
        assert common.task_modules == CommonSettings.model_fields["task_modules"].default, (
            where, name)
        assert common.topic_prefix == "tasksaga", (where, name)
        if isinstance(common, ApiSettings):
            assert common.api_host == "0.0.0.0", f"{where}: the API must listen on all interfaces"
            assert common.api_port == 8000
        if isinstance(common, OrchestratorSettings) and where == "k8s":
            assert common.orchestrator_instance_id == "tasksaga-orchestrator-0"
