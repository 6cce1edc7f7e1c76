"""Offline checks of the image: the Dockerfile, what .dockerignore keeps in the build context,
and the console scripts the deployment runs. No Docker engine is needed.
"""

from __future__ import annotations

import importlib
import re
from pathlib import Path

import pytest
import yaml

import tasksaga
from tasksaga.adapters.avro_codec import DEFAULT_CONTRACTS_DIR
from tasksaga.adapters.migrations import DEFAULT_MIGRATIONS_DIR
from tasksaga.config import CommonSettings
from tests.unit.deploy_artifacts import (
    APP_COMMANDS,
    PYPROJECT,
    ROOT,
    SCRIPTS,
    SETUP_COMMANDS,
    dockerfile_instructions,
    dockerignored,
)


def test_dockerfile_builds_one_non_root_image_of_the_whole_repository() -> None:
    instructions = dockerfile_instructions()
    by_keyword: dict[str, list[str]] = {}
    for keyword, rest in instructions:
        by_keyword.setdefault(keyword, []).append(rest)
    assert by_keyword["FROM"] == ["python:3.11-slim"]
    assert by_keyword["WORKDIR"] == ["/app"]
    assert ". ." in by_keyword["COPY"]
    runs = " ".join(by_keyword["RUN"])
    assert re.search(r"apt-get install [^&]*\bffmpeg\b", runs)
    assert re.search(r"apt-get install [^&]*\btini\b", runs)
    assert "pip install --no-deps -e ." in runs
    assert by_keyword["USER"][-1].split(":")[0] not in ("root", "0")
    keywords = [k for k, _ in instructions]
    last_run = max(i for i, k in enumerate(keywords) if k == "RUN")
    assert keywords.index("USER") > last_run, "switch to the non-root user after installing"
    assert yaml.safe_load(by_keyword["ENTRYPOINT"][-1]) == ["/usr/bin/tini", "--"]
    [command] = yaml.safe_load(by_keyword["CMD"][-1])
    assert command in SCRIPTS


def test_code_finds_contracts_and_migrations_in_the_copied_tree() -> None:
    # The code looks beside its source tree; with the repository at /app and an editable
    # install, that is /app/contracts and /app/event-store/migrations.
    source_root = Path(tasksaga.__file__).resolve().parents[2]
    assert DEFAULT_CONTRACTS_DIR.relative_to(source_root) == Path("contracts")
    assert DEFAULT_MIGRATIONS_DIR.relative_to(source_root) == Path("event-store/migrations")
    assert list((ROOT / "contracts").glob("*.avsc"))
    assert list((ROOT / "event-store" / "migrations").glob("*.sql"))


@pytest.mark.parametrize(
    "path",
    [
        "pyproject.toml",
        "README.md",  # pyproject's `readme`: the install fails without it
        "services/tasksaga/config.py",
        "examples/tasksaga_examples/__init__.py",
        *sorted(str(p.relative_to(ROOT)) for p in (ROOT / "contracts").glob("*.avsc")),
        *sorted(str(p.relative_to(ROOT)) for p in (ROOT / "event-store/migrations").glob("*.sql")),
    ],
)
def test_build_context_keeps_what_the_image_needs(path: str) -> None:
    assert not dockerignored(path)


@pytest.mark.parametrize(
    "path",
    [
        ".venv/bin/python",
        ".git/HEAD",
        ".stack/pg/PG_VERSION",
        "tests/unit/test_x.py",
        "services/tasksaga.egg-info/PKG-INFO",
        "services/tasksaga/__pycache__/config.cpython-311.pyc",
        "deploy/k8s/api.yaml",
    ],
)
def test_build_context_leaves_out_local_state(path: str) -> None:
    assert dockerignored(path)


def test_task_modules_are_installed_by_the_image() -> None:
    where = PYPROJECT["tool"]["setuptools"]["packages"]["find"]["where"]
    default_module = CommonSettings.model_fields["task_modules"].default[0]
    package = default_module.split(".")[0]
    homes = [d for d in ("services", "examples") if (ROOT / d / package).is_dir()]
    assert homes, f"package {package} not found under services/ or examples/"
    assert homes[0] in where, f"pyproject's packages.find.where must include {homes[0]!r}"


# -- entry points ---------------------------------------------------------------------------------


@pytest.mark.parametrize("script", sorted([*APP_COMMANDS.values(), *SETUP_COMMANDS]))
def test_console_scripts_used_by_the_deployment_resolve(script: str) -> None:
    module_name, _, function = SCRIPTS[script].partition(":")
    module = importlib.import_module(module_name)
    assert callable(getattr(module, function)), SCRIPTS[script]
