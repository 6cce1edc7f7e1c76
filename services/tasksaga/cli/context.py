"""What every command gets: the profile it talks with, the consoles, how to make a client."""

from __future__ import annotations

from dataclasses import dataclass

import httpx
import typer
from rich.console import Console

from tasksaga.cli.client import api_client
from tasksaga.cli.profile import CliProfile

console = Console()
errors = Console(stderr=True)


@dataclass
class CliState:
    profile: CliProfile
    # Tests hand the CLI an httpx.MockTransport through ``CliRunner.invoke(obj=...)``.
    transport: httpx.BaseTransport | None = None

    def client(self, timeout_s: float | None = None) -> httpx.Client:
        return api_client(self.profile, transport=self.transport, timeout_s=timeout_s)


def state(ctx: typer.Context) -> CliState:
    obj = ctx.find_root().obj
    assert isinstance(obj, CliState), "the root callback sets the CLI state"
    return obj
