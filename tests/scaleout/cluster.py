"""Three real replicas (`python -m uvicorn app.main:app`) in scale-out mode, two job workers
(`python -m app.worker`; the replicas run none: `JOB_WORKER_IN_PROCESS=false`), nginx in front.

Each replica and worker has its own `DATA_DIR` (no shared disk); they share one fresh
PostgreSQL database (created in the `TEST_POSTGRES_URL` server, dropped afterwards), one prefix
of the test S3 bucket and one Redis database number, claimed for the cluster's lifetime so that
concurrent runs on one Redis never share one (`claim_redis_db`). With `relays=True` they reach
S3 and PostgreSQL through TCP relays (`tests/relay.py`) that a test closes to make a server
unreachable for every process at once, and opens again. nginx runs from `deploy/nginx.conf`
(filled in here) as a subprocess: `nginx -c CONF -p PREFIX -g 'daemon off;'`.
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
from tests.processes import REPO_ROOT, Server, Worker, free_port
from tests.relay import ThreadRelay

REQUIRE_ENVS = ("CI_REQUIRE_POSTGRES", "CI_REQUIRE_S3")
# Database numbers of the shared Redis that other tests leave alone; a cluster claims one
REDIS_DBS = range(11, 16)
REDIS_CLAIM_KEY = "scaleout-test:claim"
REDIS_CLAIM_SECONDS = 3600  # a claim a crashed run never released lapses after this
SECRET_KEY = "scale-out-test-signing-key-0123456789abcdef"


def ci_provides_servers() -> bool:
    """CI_REQUIRE_*=1 (`.ci/run` started PostgreSQL, Redis, S3), or TEST_NGINX_BIN set (a run
    that names its nginx means to run these tests)."""
    return any(os.environ.get(name) == "1" for name in REQUIRE_ENVS) or bool(os.environ.get("TEST_NGINX_BIN"))


def missing(what: str) -> None:
    """Skip for want of `what`, or fail when CI provides the servers."""
    if ci_provides_servers():
        pytest.fail(f"scale-out tests: {what} (CI provides the servers, so this is a failure)")
    pytest.skip(f"scale-out tests: {what}")


def nginx_binary() -> str:
    """CI's nginx (TEST_NGINX_BIN), else one on PATH or Debian's."""
    named = os.environ.get("TEST_NGINX_BIN", "").strip()
    if named and not os.access(named, os.X_OK):
        pytest.fail(f"scale-out tests: TEST_NGINX_BIN={named} is not an executable")
    found = named or shutil.which("nginx")
    if not found and Path("/usr/sbin/nginx").exists():
        found = "/usr/sbin/nginx"
    if not found:
        missing("no nginx (TEST_NGINX_BIN)")
    return str(found)


class RedisConnection:
    """A minimal RESP client over a raw socket (the tests need a handful of commands)."""

    def __init__(self, server_url: str) -> None:
        parsed = make_url(server_url.replace("redis://", "redis+x://", 1))
        self.socket = socket.create_connection((parsed.host or "127.0.0.1", parsed.port or 6379), timeout=5)
        self.reader = self.socket.makefile("rb")

    def __enter__(self) -> RedisConnection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.reader.close()
        self.socket.close()

    def call(self, *args: str | int) -> Any:
        """Send one command, return its reply (an error reply raises AssertionError)."""
        parts = [str(a).encode() for a in args]
        self.socket.sendall(b"*%d\r\n" % len(parts) + b"".join(b"$%d\r\n%s\r\n" % (len(p), p) for p in parts))
        return self._reply()

    def _reply(self) -> Any:
        line = self.reader.readline()
        assert line.endswith(b"\r\n"), line
        kind, rest = line[:1], line[1:-2]
        if kind == b"+":
            return rest.decode()
        if kind == b"-":
            raise AssertionError(f"Redis: {rest.decode()}")
        if kind == b":":
            return int(rest)
        if kind == b"$":
            return None if int(rest) < 0 else self.reader.read(int(rest) + 2)[:-2].decode()
        if kind == b"*":
            return None if int(rest) < 0 else [self._reply() for _ in range(int(rest))]
        raise AssertionError(f"Redis: unexpected reply {line!r}")


def claim_redis_db(server_url: str, token: str) -> int:
    """A database number of `REDIS_DBS` that no other live cluster holds, claimed (`SET NX` of
    a key with an expiry) and emptied for this one (atomically: FLUSHDB and the claim again)."""
    with RedisConnection(server_url) as redis:
        for db in REDIS_DBS:
            redis.call("SELECT", db)
            if redis.call("SET", REDIS_CLAIM_KEY, token, "NX", "EX", REDIS_CLAIM_SECONDS) == "OK":
                redis.call("MULTI")
                redis.call("FLUSHDB")
                redis.call("SET", REDIS_CLAIM_KEY, token, "EX", REDIS_CLAIM_SECONDS)
                assert redis.call("EXEC") == ["OK", "OK"]
                return db
    raise AssertionError(f"scale-out tests: Redis databases {list(REDIS_DBS)} are all claimed by other runs")


def release_redis_db(server_url: str, db: int, token: str) -> None:
    """Empty database `db` (which drops the claim) if this cluster still holds it."""
    with RedisConnection(server_url) as redis:
        redis.call("SELECT", db)
        redis.call("WATCH", REDIS_CLAIM_KEY)
        if redis.call("GET", REDIS_CLAIM_KEY) != token:
            redis.call("UNWATCH")
            return
        redis.call("MULTI")
        redis.call("FLUSHDB")
        redis.call("EXEC")  # None if the claim changed meanwhile (lapsed and taken): left alone


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
    workers: list[Worker]
    nginx: Nginx
    tmp: Path
    database_url: str  # the database itself (not through the relay)
    s3: dict[str, Any]  # the S3 server itself (not through the relay)
    prefix: str
    s3_relay: ThreadRelay | None = None
    pg_relay: ThreadRelay | None = None

    @property
    def urls(self) -> list[str]:
        return [r.base_url for r in self.replicas]

    def live_urls(self) -> list[str]:
        return [r.base_url for r in self.replicas if r.process.poll() is None]

    @property
    def data_dirs(self) -> list[Path]:
        """Every replica's and worker's `DATA_DIR`."""
        return sorted(self.tmp.glob("replica*/")) + sorted(self.tmp.glob("worker*/"))

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
def start_cluster(
    tmp: Path,
    s3: dict[str, Any],
    replicas: int = 3,
    workers: int = 2,
    relays: bool = False,
    **env: str,
) -> Iterator[Cluster]:
    """`replicas` replicas and `workers` job workers (started in parallel; with no worker each
    replica runs one in-process) and nginx; S3 and PostgreSQL through relays with `relays`;
    everything removed afterwards."""
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
    claim = uuid.uuid4().hex
    redis_db = claim_redis_db(redis_server, claim)
    redis_url = f"{redis_server.rsplit('/', 1)[0]}/{redis_db}"
    prefix = f"scaleout-{uuid.uuid4().hex}"
    started: list[Server] = []
    started_workers: list[Worker] = []
    nginx: Nginx | None = None
    s3_relay = pg_relay = None
    try:
        s3_endpoint, served_database_url = s3["endpoint_url"], database_url
        if relays:
            s3_relay = ThreadRelay(s3["endpoint_url"])
            s3_relay.open()
            pg = make_url(database_url)
            pg_relay = ThreadRelay(f"{pg.host or '127.0.0.1'}:{pg.port or 5432}")
            pg_relay.open()
            s3_endpoint = s3_relay.url
            served_database_url = pg.set(host="127.0.0.1", port=pg_relay.port).render_as_string(
                hide_password=False
            )
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
            "DATABASE_URL": served_database_url,
            "REDIS_URL": redis_url,
            "STORAGE_URL": f"s3://{s3['bucket']}/{prefix}",
            "S3_ENDPOINT_URL": s3_endpoint,
            "S3_REGION": s3["region"],
            "AWS_ACCESS_KEY_ID": s3["access_key_id"],
            "AWS_SECRET_ACCESS_KEY": s3["secret_access_key"],
            "SECRET_KEY": SECRET_KEY,
            # A limit skipped for want of Redis fails loudly; a loaded test machine is not an outage
            "REDIS_OUTAGE_POLICY": "fail-closed",
            "REDIS_TIMEOUT_SECONDS": "30",
            **({"JOB_WORKER_IN_PROCESS": "false"} if workers else {}),
            **env,
        }
        for i in range(replicas):
            data_dir = tmp / f"replica{i}"
            data_dir.mkdir(parents=True)
            started.append(Server(data_dir, tmp / f"replica{i}.log", common))
        for i in range(workers):
            data_dir = tmp / f"worker{i}"
            data_dir.mkdir(parents=True)
            worker_env = {"DATA_DIR": str(data_dir), "ENVIRONMENT": "test", "LOG_LEVEL": "INFO"}
            started_workers.append(Worker({**common, **worker_env}, tmp / f"worker{i}.log"))
        for server in started:
            server.wait_ready(timeout=120)
        for worker in started_workers:
            worker.wait_started(timeout=120)
        limits = Settings(_env_file=None, **{k.lower(): v for k, v in env.items() if k.startswith("MAX_")})
        nginx = Nginx(tmp / "nginx", [s.port for s in started], limits.max_request_body_bytes)
        yield Cluster(started, started_workers, nginx, tmp, database_url, s3, prefix, s3_relay, pg_relay)
    finally:
        if nginx is not None:
            nginx.stop()
        _stop_all([*started, *started_workers])
        for relay in (s3_relay, pg_relay):
            if relay is not None:
                relay.stop()
        with contextlib.suppress(Exception):
            release_redis_db(redis_server, redis_db, claim)
        admin_sql(pg_server, f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
        with contextlib.suppress(Exception):
            _delete_prefix(s3, prefix)


def _stop_all(processes: list[Server | Worker]) -> None:
    """SIGTERM to every process at once (their graceful shutdowns overlap), then reap each."""
    for process in processes:
        if process.process.poll() is None:
            process.process.terminate()
    for process in processes:
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.process.wait(timeout=10)
        process.kill()  # only if still running
        process.stop()  # closes its log


def _delete_prefix(s3: dict[str, Any], prefix: str) -> None:
    """Remove the cluster's objects from the shared bucket."""

    async def run() -> None:
        async with S3ObjectStore(**s3, prefix=prefix) as store:
            await store.delete_prefix("images/")

    asyncio.run(run())
