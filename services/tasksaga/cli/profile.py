"""Where the CLI talks to and as whom: a profile from the environment or a config file.

Precedence, strongest first: command-line options, ``TASKSAGA_URL`` / ``TASKSAGA_TOKEN``,
the chosen profile of the config file (``TASKSAGA_CONFIG`` or ``~/.config/tasksaga/config.toml``),
then the defaults (the local stack's API on localhost:8000, no token).

    # ~/.config/tasksaga/config.toml
    default_profile = "local"

    [profiles.local]
    url = "http://127.0.0.1:8000"
    token_file = "~/.config/tasksaga/local.token"

    [profiles.prod]
    url = "https://tasksaga.example.com"
    token = "eyJ..."
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass
from pathlib import Path

DEFAULT_URL = "http://127.0.0.1:8000"


class ProfileError(ValueError):
    """The config file or the chosen profile is unusable; the message says how to fix it."""


@dataclass(frozen=True)
class CliProfile:
    name: str
    url: str
    token: str | None
    timeout_s: float = 30.0


def config_path(environ: dict[str, str] | None = None) -> Path:
    env = os.environ if environ is None else environ
    if env.get("TASKSAGA_CONFIG"):
        return Path(env["TASKSAGA_CONFIG"]).expanduser()
    return Path("~/.config/tasksaga/config.toml").expanduser()


def _read_config(path: Path) -> dict[str, object]:
    if not path.exists():
        return {}
    try:
        return tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as error:
        raise ProfileError(f"{path} is not valid TOML: {error}") from error


def load_profile(name: str | None = None, *, url: str | None = None, token: str | None = None,
                 environ: dict[str, str] | None = None) -> CliProfile:
    """The profile to use: ``name`` (or the config's default), overridden by env and options."""
    env = dict(os.environ if environ is None else environ)
    path = config_path(env)
    config = _read_config(path)
    profiles = config.get("profiles", {})
    if not isinstance(profiles, dict):
        raise ProfileError(f"{path}: [profiles] must be a table of tables")
    chosen = name or env.get("TASKSAGA_PROFILE") or str(config.get("default_profile", "")) or None
    section: dict[str, object] = {}
    if chosen is not None:
        if chosen not in profiles:
            known = ", ".join(sorted(profiles)) or "none"
            raise ProfileError(f"profile {chosen!r} is not in {path} (profiles: {known}); "
                               f"add a [profiles.{chosen}] table or pick another with --profile")
        section = profiles[chosen]
    file_token: str | None = None
    if isinstance(section.get("token_file"), str):
        token_path = Path(str(section["token_file"])).expanduser()
        if not token_path.exists():
            raise ProfileError(f"profile {chosen!r}: token_file {token_path} does not exist")
        file_token = token_path.read_text().strip()
    section_token = section.get("token")
    resolved_token = (token or env.get("TASKSAGA_TOKEN")
                      or (str(section_token) if section_token else None) or file_token)
    resolved_url = url or env.get("TASKSAGA_URL") or str(section.get("url") or DEFAULT_URL)
    timeout = section.get("timeout_s", 30.0)
    if not isinstance(timeout, int | float):
        raise ProfileError(f"profile {chosen!r}: timeout_s must be a number of seconds")
    return CliProfile(name=chosen or "default", url=resolved_url.rstrip("/"),
                      token=resolved_token, timeout_s=float(timeout))
