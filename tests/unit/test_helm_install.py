"""tools/stacklib/helm.py: helm is built with go install at the pinned module into the stack's
bin directory once, kept while its stamp names that module, rebuilt otherwise, and a machine
without Go is told what to install (go itself is replaced by a recorder here)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import pytest
from stacklib import helm
from stacklib.common import HELM_MODULE, MissingPrerequisite, Settings


class GoInstall:
    """Stands in for ``go install``: writes a binary named helm into GOBIN."""

    def __init__(self) -> None:
        self.calls: list[tuple[list[str], str]] = []

    def __call__(self, argv: list[str], *, what: str, env_extra: Mapping[str, str],
                 timeout: float) -> str:
        self.calls.append((argv, env_extra["GOBIN"]))
        (Path(env_extra["GOBIN"]) / "helm").write_text("built")
        return ""


@pytest.fixture
def go(monkeypatch: pytest.MonkeyPatch) -> GoInstall:
    recorder = GoInstall()
    monkeypatch.setattr(helm, "run", recorder)
    monkeypatch.setattr("stacklib.helm.shutil.which", lambda name: f"/usr/bin/{name}")
    return recorder


def test_helm_is_built_once_at_the_pinned_version(tmp_path: Path, go: GoInstall) -> None:
    settings = Settings(stack_dir=tmp_path)
    binary = helm.ensure_helm(settings)
    assert binary == tmp_path / "bin" / "helm" and binary.read_text() == "built"
    assert HELM_MODULE == "helm.sh/helm/v3/cmd/helm@v3.22.0"
    [(argv, gobin)] = go.calls
    assert argv == ["go", "install", HELM_MODULE]
    assert Path(gobin).parent == tmp_path / "bin" and not Path(gobin).exists()  # renamed in
    assert helm.ensure_helm(settings) == binary
    assert len(go.calls) == 1, "an installed helm of the pinned version is kept"


def test_a_helm_of_another_version_is_rebuilt(tmp_path: Path, go: GoInstall) -> None:
    settings = Settings(stack_dir=tmp_path)
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin" / "helm").write_text("old")
    (tmp_path / "bin" / "helm.module").write_text("helm.sh/helm/v3/cmd/helm@v3.18.4\n")
    assert helm.ensure_helm(settings).read_text() == "built"
    assert (tmp_path / "bin" / "helm.module").read_text().strip() == HELM_MODULE


def test_without_go_the_message_names_what_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("stacklib.helm.shutil.which", lambda name: None)
    with pytest.raises(MissingPrerequisite, match=r"go is needed to build helm once "
                                                  r"\(helm.sh/helm/v3/cmd/helm@v3.22.0\)"):
        helm.ensure_helm(Settings(stack_dir=tmp_path))
