"""Three real replicas (`python -m uvicorn app.main:app`) in scale-out mode, nginx in front.

Each replica has its own `DATA_DIR` (no shared disk); they share one fresh PostgreSQL
database (created in the `TEST_POSTGRES_URL` server, dropped afterwards), one prefix of the
test S3 bucket and one Redis database number (flushed before and after). nginx runs from
`deploy/nginx.conf` (filled in here) as a subprocess: `nginx -c CONF -p PREFIX -g 'daemon off;'`.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from sqlalchemy.engine import make_url

from app.core.config import Settings
from app.storage.s3 import S3ObjectStore
from tests.processes import REPO_ROOT, Server, free_port

REQUIRE_ENVS = ("CI_REQUIRE_POSTGRES", "CI_REQUIRE_S3")
REDIS_DB = 11  # a database number of the shared Redis no other test uses: flushed here
SECRET_KEY = "scale-out-test-signing-key-0123456789abcdef"


def missing(what: str) -> None:
    """Skip for want of `what`, or fail when CI provides the servers (CI_REQUIRE_*=1)."""
    if any(os.environ.get(name) == "1" for name in REQUIRE_ENVS):
        pytest.fail(f"scale-out tests: {what} (CI provides the servers, so this is a failure)")
    pytest.skip(f"scale-out tests: {what}")


def nginx_binary() -> str:
    """CI's nginx (TEST_NGINX_BIN), else one on PATH or Debian's."""
    found = os.environ.get("TEST_NGINX_BIN") or shutil.which("nginx")
    if not found and Path("/usr/sbin/nginx").exists():
        found = "/usr/sbin/nginx"
    if not found:
        missing("no nginx (TEST_NGINX_BIN)")
    return str(found)


def flush_redis_db(server_url: str, db: int) -> None:
    """Empty database number `db` of the Redis server (SELECT, FLUSHDB over a raw socket)."""
    parsed = make_url(server_url.replace("redis://", "redis+x://", 1))
    with socket.create_connection((parsed.host or "127.0.0.1", parsed.port or 6379), timeout=5) as s:
        s.sendall(f"*2\r\n$6\r\nSELECT\r\n${len(str(db))}\r\n{db}\r\n*1\r\n$7\r\nFLUSHDB\r\n".encode())
        reply = b""
        while reply.count(b"\r\n") < 2:
            chunk = s.recv(1024)
            assert chunk, reply
            reply += chunk
    assert reply == b"+OK\r\n+OK\r\n", reply


def render_nginx_conf(values: dict[str, str]) -> str:
    """deploy/nginx.conf with its ${NGINX_*} placeholders filled in (as envsubst does)."""
    template = (REPO_ROOT / "deploy" / "nginx.conf").read_text()
    rendered = re.sub(r"\$\{(NGINX_[A-Z_]+)\}", lambda m: values[m.group(1)], template)
    assert "${" not in rendered
    return rendered


class Nginx:
    """nginx in the foreground as a subprocess, its pid, logs and temp files in `prefix`."""

    def __init__(self, prefix: Path, upstream_ports: list[int], max_body_bytes: int) -> None:
        prefix.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.prefix = prefix
        servers = " ".join(f"server 127.0.0.1:{p} max_fails=1 fail_timeout=2s;" for p in upstream_ports)
        conf = prefix / "nginx.conf"
        conf.write_text(
            render_nginx_conf(
                {
                    "NGINX_LISTEN": f"127.0.0.1:{self.port}",
                    "NGINX_UPSTREAMS": servers,
                    "NGINX_MAX_BODY_BYTES": str(max_body_bytes),
                    "NGINX_RUN_DIR": str(prefix),
                    "NGINX_ERROR_LOG": str(prefix / "error.log"),
                    "NGINX_ACCESS_LOG": str(prefix / "access.log"),
                }
            )
        )
        self.process = subprocess.Popen(
            [nginx_binary(), "-c", str(conf), "-p", str(prefix), "-g", "daemon off;"],
            stdout=subprocess.DEVNULL,
            stderr=open(prefix / "stderr.log", "wb"),  # noqa: SIM115 (closed with the process)
        )
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            assert self.process.poll() is None, (prefix / "stderr.log").read_text()
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", self.port)) == 0:
                    return
            time.sleep(0.05)
        raise AssertionError("nginx does not listen")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()  # SIGTERM: fast shutdown
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)


@dataclass
class Cluster:
    replicas: list[Server]
    nginx: Nginx
    tmp: Path
    database_url: str

    @property
    def urls(self) -> list[str]:
        return [r.base_url for r in self.replicas]

    def live_urls(self) -> list[str]:
        return [r.base_url for r in self.replicas if r.process.poll() is None]

    def metric(self, name: str, **labels: str) -> float:
        """`name{labels}` summed over the live replicas' /metrics."""
        total = 0.0
        for url in self.live_urls():
            text = httpx.get(url + "/metrics", timeout=10).text
            for line in text.splitlines():
                if not line.startswith(name + "{") and not line.startswith(name + " "):
                    continue
                if all(f'{k}="{v}"' in line for k, v in labels.items()):
                    total += float(line.rsplit(" ", 1)[1])
        return total


def admin_sql(server_url: str, statement: str) -> None:
    """Run `statement` (CREATE/DROP DATABASE) on the server's own database."""
    asyncio.run(fetch(server_url, statement, execute=True))


async def fetch(database_url: str, query: str, *args: object, execute: bool = False) -> list[Any]:
    """The rows of `query` on `database_url` (asyncpg, one connection)."""
    dsn = make_url(database_url).set(drivername="postgresql").render_as_string(hide_password=False)
    connection = await asyncpg.connect(dsn)
    try:
        if execute:
            await connection.execute(query, *args)
            return []
        return list(await connection.fetch(query, *args))
    finally:
        await connection.close()


@contextlib.contextmanager
def start_cluster(tmp: Path, s3: dict[str, Any], replicas: int = 3, **env: str) -> Iterator[Cluster]:
    """`replicas` replicas (started in parallel) and nginx; everything removed afterwards."""
    pg_server = os.environ.get("TEST_POSTGRES_URL", "").strip()
    redis_server = os.environ.get("TEST_REDIS_URL", "").strip()
    if not pg_server:
        missing("no TEST_POSTGRES_URL")
    if not redis_server:
        missing("no TEST_REDIS_URL")
    nginx_binary()
    database = f"scaleout_{uuid.uuid4().hex}"
    admin_sql(pg_server, f'CREATE DATABASE "{database}"')
    database_url = make_url(pg_server).set(database=database).render_as_string(hide_password=False)
    redis_url = f"{redis_server.rsplit('/', 1)[0]}/{REDIS_DB}"
    flush_redis_db(redis_server, REDIS_DB)
    prefix = f"scaleout-{uuid.uuid4().hex}"
    started: list[Server] = []
    nginx: Nginx | None = None
    try:
        # Migrate once first: replicas would also do it, one at a time under an advisory lock
        subprocess.run(
            [sys.executable, "-m", "app.db.migrate", "upgrade"],
            env={**os.environ, "DATABASE_URL": database_url},
            cwd=REPO_ROOT,
            check=True,
            capture_output=True,
            timeout=120,
        )
        common = {
            "DATABASE_URL": database_url,
            "REDIS_URL": redis_url,
            "STORAGE_URL": f"s3://{s3['bucket']}/{prefix}",
            "S3_ENDPOINT_URL": s3["endpoint_url"],
            "S3_REGION": s3["region"],
            "AWS_ACCESS_KEY_ID": s3["access_key_id"],
            "AWS_SECRET_ACCESS_KEY": s3["secret_access_key"],
            "SECRET_KEY": SECRET_KEY,
            # A limit skipped for want of Redis fails loudly; a loaded test machine is not an outage
            "REDIS_OUTAGE_POLICY": "fail-closed",
            "REDIS_TIMEOUT_SECONDS": "30",
            **env,
        }
        for i in range(replicas):
            data_dir = tmp / f"replica{i}"
            data_dir.mkdir(parents=True)
            started.append(Server(data_dir, tmp / f"replica{i}.log", common))
        for server in started:
            server.wait_ready(timeout=120)
        limits = Settings(_env_file=None, **{k.lower(): v for k, v in env.items() if k.startswith("MAX_")})
        nginx = Nginx(tmp / "nginx", [s.port for s in started], limits.max_request_body_bytes)
        yield Cluster(started, nginx, tmp, database_url)
    finally:
        if nginx is not None:
            nginx.stop()
        for server in started:
            server.stop()
        with contextlib.suppress(Exception):
            flush_redis_db(redis_server, REDIS_DB)
        admin_sql(pg_server, f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
        with contextlib.suppress(Exception):
            _delete_prefix(s3, prefix)


def _delete_prefix(s3: dict[str, Any], prefix: str) -> None:
    """Remove the cluster's objects from the shared bucket."""

    async def run() -> None:
        async with S3ObjectStore(**s3, prefix=prefix) as store:
            await store.delete_prefix("images/")

    asyncio.run(run())
