"""`tools/stack up` installs the browser the dashboard's test drives, once, from Debian."""

from __future__ import annotations

from pathlib import Path

import pytest
from stacklib import system
from stacklib.common import StackError


def test_a_missing_chromium_is_installed_from_debian(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    browser = tmp_path / "chromium"
    installed: list[tuple[str, ...]] = []

    def apt_install(*packages: str) -> None:
        installed.append(packages)
        browser.touch()

    monkeypatch.setattr(system, "apt_install", apt_install)
    assert system.install_test_browser(browser) is True
    assert installed == [("chromium",)]
    assert system.install_test_browser(browser) is False  # idempotent: present, nothing run
    assert installed == [("chromium",)]


def test_an_install_that_leaves_no_browser_is_an_error(tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(system, "apt_install", lambda *packages: None)
    with pytest.raises(StackError, match=r"no .*chromium"):
        system.install_test_browser(tmp_path / "chromium")
