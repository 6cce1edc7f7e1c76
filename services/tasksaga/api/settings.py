from __future__ import annotations

from tasksaga.config import CommonSettings


class ApiSettings(CommonSettings):
    api_host: str = "127.0.0.1"
    api_port: int = 8000
    api_pool_size: int = 8
    # Form parts above this size spool to a temporary file, never to memory.
    api_max_files_per_request: int = 100
