"""Real server processes for the tests that SIGKILL them: `python -m uvicorn app.main:app`,
and `python -m app.worker` job workers; and a forked copy of the test process (`in_fork`)."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx

from tests.factories import TEST_RATE_LIMITS

REPO_ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def in_fork(work: Callable[[], bytes]) -> tuple[int, bytes]:
    """(pid, what it returned) of `work` run in a forked copy of this process, which then leaves
    at once (`os._exit`: nothing of the test's own clean-up runs twice)."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        status = 1  # `work` failed
        try:
            os.write(write, work())
            status = 0
        finally:
            os._exit(status)
    os.close(write)
    try:
        assert os.waitpid(pid, 0)[1] == 0
        return pid, os.read(read, 4096)
    finally:
        os.close(read)


class ChildProcess:
    """A `python ...` child of the tests, run from the repo root with this process's environment
    (less its metrics dir: a child writes its own) plus `env`, its output in `log_path`."""

    stop_grace = 5.0  # seconds between SIGTERM and SIGKILL in `stop`

    def __init__(self, argv: list[str], env: dict[str, str], log_path: Path) -> None:
        self.log_path = log_path
        self.log = open(log_path, "wb")  # closed in stop()
        inherited = {k: v for k, v in os.environ.items() if k != "PROMETHEUS_MULTIPROC_DIR"}
        self.process = subprocess.Popen(
            [sys.executable, *argv],
            env={**inherited, **env},
            cwd=REPO_ROOT,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )

    @property
    def pid(self) -> int:
        return self.process.pid

    def logs(self) -> str:
        self.log.flush()
        return self.log_path.read_text(errors="replace")[-5000:]

    def kill(self) -> None:
        """SIGKILL, then reap (a zombie would still look alive to the start-up sweep)."""
        if self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=self.stop_grace)
            except subprocess.TimeoutExpired:
                self.kill()
        self.log.close()


class Server(ChildProcess):
    """One `python -m uvicorn app.main:app` process over `data_dir`."""

    def __init__(
        self, data_dir: Path, log_path: Path, env: dict[str, str] | None = None, args: tuple[str, ...] = ()
    ) -> None:
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        # As a server is started for real: its metrics go to DATA_DIR/metrics.
        server_env = {
            "DATA_DIR": str(data_dir),
            "API_KEYS": "",
            "ENVIRONMENT": "test",
            "LOG_LEVEL": "WARNING",
            # Limits on, far above what a test sends: no test depends on the defaults.
            **{name.upper(): value for name, value in TEST_RATE_LIMITS.items()},
            **(env or {}),
        }
        argv = ["-m", "uvicorn", "app.main:app", "--host", "127.0.0.1", "--port", str(self.port)]
        super().__init__([*argv, "--no-access-log", *args], server_env, log_path)

    def wait_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"server exited with {self.process.returncode}:\n{self.logs()}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(self.base_url + "/health", timeout=0.5).status_code == 200:
                    return
            time.sleep(0.05)
        raise AssertionError(f"server not ready after {timeout}s:\n{self.logs()}")


class Worker(ChildProcess):
    """One `python -m app.worker` process (scale-out mode: the job worker on its own)."""

    stop_grace = 10.0

    def __init__(self, env: dict[str, str], log_path: Path) -> None:
        super().__init__(["-m", "app.worker"], env, log_path)

    def wait_started(self, timeout: float = 60.0) -> None:
        """Until its log says the worker started (it logs at INFO: `LOG_LEVEL=INFO`)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"worker exited with {self.process.returncode}:\n{self.logs()}")
            if re.search(r"job worker \S+ started", self.logs()):
                return
            time.sleep(0.1)
        raise AssertionError(f"worker not started after {timeout}s:\n{self.logs()}")


def start_server(
    started: list[Server],
    data_dir: Path,
    name: str,
    env: dict[str, str] | None = None,
    args: tuple[str, ...] = (),
) -> Server:
    """A server (uvicorn's extra command-line `args`) started and answering /health."""
    server = Server(data_dir, data_dir.parent / f"{name}.log", env, args)
    started.append(server)
    server.wait_ready()
    return server
