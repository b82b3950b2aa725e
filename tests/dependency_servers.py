"""Real Redis and PostgreSQL servers that a test may stop and start again (on a port of its own).

The shared servers of `.ci/run` are never stopped: outage tests start their own. The binaries
are `redis-server` and PostgreSQL's `initdb`/`pg_ctl` (the newest under
/usr/lib/postgresql/*/bin, else on PATH); as root these run as the `postgres` user. Without
them a test is skipped, unless `CI_REQUIRE_POSTGRES=1`, where it fails.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from tests.processes import free_port

REQUIRE_ENV = "CI_REQUIRE_POSTGRES"


def missing(what: str) -> None:
    """Skip the test for want of `what`, or fail it in CI."""
    if os.environ.get(REQUIRE_ENV) == "1":
        pytest.fail(f"{REQUIRE_ENV}=1 but {what} is not installed")
    pytest.skip(f"{what} is not installed")


def _wait_port(port: int, up: bool, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            s.settimeout(0.2)
            listening = s.connect_ex(("127.0.0.1", port)) == 0
        if listening == up:
            return
        time.sleep(0.05)
    raise AssertionError(f"port {port} still {'closed' if up else 'open'} after {timeout}s")


class RedisServer:
    """`redis-server` on loopback, no persistence; `stop()` and `start()` keep the port."""

    def __init__(self, workdir: Path) -> None:
        self.binary = shutil.which("redis-server")
        if self.binary is None:
            missing("redis-server")
        self.workdir = workdir
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        args = [str(self.binary), "--port", str(self.port), "--bind", "127.0.0.1"]
        args += ["--save", "", "--appendonly", "no", "--dir", str(self.workdir)]
        self.process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        _wait_port(self.port, up=True)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)
        self.process = None
        _wait_port(self.port, up=False)


def _pg_bindir() -> Path | None:
    dirs = sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=lambda p: p.parent.name.zfill(8))
    on_path = shutil.which("pg_ctl")
    for candidate in [*reversed(dirs), *([Path(on_path).parent] if on_path else [])]:
        if (candidate / "initdb").exists() and (candidate / "pg_ctl").exists():
            return candidate
    return None


class PostgresCluster:
    """A throw-away PostgreSQL cluster (initdb into a temp dir); `stop()`/`start()` keep port and data."""

    def __init__(self) -> None:
        bindir = _pg_bindir()
        if bindir is None:
            missing("PostgreSQL (initdb, pg_ctl)")
        self.bindir = bindir
        self.as_root = os.geteuid() == 0
        # Not under pytest's tmp_path: as root that is private to root, and the server runs as postgres.
        workdir = self.workdir = Path(tempfile.mkdtemp(prefix="outage-pg-"))
        self.data = workdir / "pg-data"
        self.sockets = workdir / "pg-sock"
        self.port = free_port()
        self.url = f"postgresql+asyncpg://postgres@127.0.0.1:{self.port}/postgres"
        for path in (workdir, self.data, self.sockets):
            path.mkdir(parents=True, exist_ok=True)
        if self.as_root:
            workdir.chmod(0o755)
            shutil.chown(self.data, "postgres", "postgres")
            shutil.chown(self.sockets, "postgres", "postgres")
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust", "--no-sync", "-E", "UTF8")

    def _run(self, tool: str, *args: str) -> None:
        command = [str(self.bindir / tool), *args]
        if self.as_root:
            command = ["runuser", "-u", "postgres", "--", *command]
        result = subprocess.run(command, capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, f"{tool} failed: {result.stdout}\n{result.stderr}"

    def start(self) -> None:
        options = f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.sockets} -c fsync=off"
        log = str(self.data / "server.log")
        self._run("pg_ctl", "-D", str(self.data), "-l", log, "-o", options, "-w", "-t", "60", "start")

    def stop(self) -> None:
        """A fast shutdown: open connections are closed by the server, as when it goes down."""
        self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop")
        _wait_port(self.port, up=False)

    def close(self) -> None:
        if (self.data / "postmaster.pid").exists():
            self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")
        shutil.rmtree(self.workdir, ignore_errors=True)
