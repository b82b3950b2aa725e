"""Redis for the tests: the shared server of `TEST_REDIS_URL`, or a throw-away one a test starts
and stops itself (outages). Without `TEST_REDIS_URL` the Redis cases are skipped, unless
`CI_REQUIRE_POSTGRES=1` (set by `.ci/run`, which starts both servers), where they fail."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest

from tests.processes import free_port

REDIS_URL_ENV = "TEST_REDIS_URL"
REQUIRE_ENV = "CI_REQUIRE_POSTGRES"


def _missing(what: str) -> None:
    if os.environ.get(REQUIRE_ENV) == "1":
        pytest.fail(f"{REQUIRE_ENV}=1 but {what}: no Redis to test on")
    pytest.skip(f"Redis: {what} (.ci/run starts one on 127.0.0.1:6390)")


def redis_url() -> str:
    """The shared test Redis; skips (or fails, when required) without one."""
    url = os.environ.get(REDIS_URL_ENV, "").strip()
    if not url:
        _missing(f"{REDIS_URL_ENV} is not set")
    return url


class RedisServer:
    """A redis-server of this test's own on a free loopback port, no persistence."""

    def __init__(self, directory: Path) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            _missing("redis-server is not installed")
        self.binary = str(binary)
        self.directory = directory
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        cmd = [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", ""]
        cmd += ["--appendonly", "no", "--dir", str(self.directory)]
        self.process = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while not self.answers():
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"redis-server on port {self.port} did not start")
            time.sleep(0.05)

    def answers(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as s:
                s.sendall(b"PING\r\n")
                return s.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)
        self.process = None
