"""The benchmarks' shared harness: uvicorn servers, wrk, alternating rounds, /proc figures, output.

Every server is `python -m uvicorn` with the same flags (one worker, no access log, warning
level) on a free loopback port with a fresh DATA_DIR; `checkout(ref)` gives a git worktree to
start the service as it was at an older commit. `alternate` runs loads in rounds, rotating the
order each round so machine noise hits every server alike; figures are medians of the rounds.
"""

from __future__ import annotations

import fcntl
import itertools
import json
import math
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, suppress
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import uvicorn

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent
WORK_DIR = BENCH_DIR / ".work"
MODEL_DIR = REPO_ROOT / "models"
BASELINE = BENCH_DIR / "raw_baseline.py"  # copied from ../shared/bench (DESIGN.md, Measuring speed)
TYPICAL = BENCH_DIR / "fastapi_typical.py"  # the typical FastAPI upload endpoint, same source
# Rate limits on (their cost is measured), far above what one benchmark address sends
HIGH_RATE_LIMITS = {
    "RATE_LIMITS_ENABLED": "true",
    **{
        f"RATE_LIMIT_{n}": "100000000/minute"
        for n in ("UPLOAD", "ANALYZE", "AUTH", "LOGIN_USERNAME", "DEFAULT")
    },
}
BOUNDARY = "bench-7d3c0a5e9b1f4c2a"
MULTIPART = f"multipart/form-data; boundary={BOUNDARY}"
SHOWN = {
    "rps": "{:9.1f} req/s",
    "p50_ms": "p50 {:.1f} ms",
    "cpu_ms_per_request": "{:.2f} ms CPU/req",
    "switches_per_request": "{:.1f} switches/req",
}


def log(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


_MOVED = itertools.count()  # unique names for the files `Server.empty` moves


@dataclass
class Server:
    """One uvicorn process (itself, not a wrapper: its /proc figures are the server's)."""

    name: str
    pid: int
    url: str
    store: Path  # where it keeps what it was sent
    emptied: Path | None = None  # where `empty` moves it (default: beside the store)

    def empty(self) -> None:
        """Move the files the server stored (not its database, for one) out of its store, into
        a folder beside its data dir that goes with the bench's work dir, and truncate them
        there; the directories stay.

        Moved, not deleted: on an ext4 without a journal (this machine's) a new inode skips
        every inode freed in the last 60-360 s, one buffer lookup each (`recently_deleted` in
        the kernel's `find_inode_bit`), so that after a round's files were deleted, each file
        the next round creates cost ~0.2-0.5 ms of kernel CPU until they aged, a cost every
        server paid alike and that shrank their ratios. The sync writes the round's data now,
        not during the next measurement. First the server finishes what it was doing: the
        uploads wrk left in flight must not lose their temp files."""
        self.settle()
        emptied = self.emptied or self.store.with_name(f"{self.store.name}-emptied")
        emptied.mkdir(exist_ok=True)
        for root, _dirs, files in os.walk(self.store):
            for name in files:
                moved = emptied / f"{next(_MOVED)}-{name}"
                with suppress(FileNotFoundError):
                    os.rename(Path(root, name), moved)
                    os.truncate(moved, 0)  # its blocks go now (a run writes tens of GB), its inode stays
        os.sync()

    def settle(self, quiet: float = 0.2, limit: float = 5.0) -> None:
        """Wait (at most `limit` s) until the server's CPU time stops moving for `quiet` s."""
        deadline = time.monotonic() + limit
        before = cpu_seconds(self.pid)
        while time.monotonic() < deadline:
            time.sleep(quiet)
            now = cpu_seconds(self.pid)
            if now == before:
                return
            before = now


_FS_IOC_GETFLAGS, _FS_IOC_SETFLAGS, _FS_TOPDIR_FL = 0x80086601, 0x40086602, 0x00020000


def spread_children(directory: Path) -> None:
    """Mark `directory` so that ext4 places each new subdirectory in a block group of its own
    choosing (a "top of hierarchy" directory, `chattr +T`), where it would otherwise keep it near
    its parent's; silently nothing on a filesystem without the flag.

    Why: on an ext4 without a journal (this machine's) a new inode skips every inode of its
    group freed in the last 60-360 s, one buffer lookup each (`recently_deleted` in the
    kernel's `find_inode_bit`). A test run or an earlier benchmark that deleted thousands of
    files shortly before made each file a server creates cost 0.2-0.5 ms of kernel CPU, more
    for the server whose data dir landed in the busier group: perf put the service's file
    creation at 0.29 ms per upload (most of it there) and the raw baseline's at 0.05 ms in one
    run. Data dirs spread over the disk's ~2000 groups almost never meet such a group."""
    with suppress(OSError):
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
        try:
            flags = bytearray(4)
            fcntl.ioctl(fd, _FS_IOC_GETFLAGS, flags)
            value = int.from_bytes(flags, sys.byteorder) | _FS_TOPDIR_FL
            fcntl.ioctl(fd, _FS_IOC_SETFLAGS, value.to_bytes(4, sys.byteorder))
        finally:
            os.close(fd)


@contextmanager
def serve(name: str, app: str, app_dir: Path, work: Path, env: dict, store: str) -> Iterator[Server]:
    """Run `uvicorn app` from `app_dir` with a DATA_DIR in `work` (`store` in it) until GET /health is 200."""
    stem = re.sub(r"\W+", "_", name)
    data_dir, log_path = work / f"{stem}-data", work / f"{stem}.log"
    spread_children(work)
    data_dir.mkdir(parents=True)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cmd = [sys.executable, "-m", "uvicorn", app, "--app-dir", str(app_dir), "--host", "127.0.0.1"]
    cmd += ["--port", str(port), "--workers", "1", "--log-level", "warning", "--no-access-log"]
    env = {**os.environ, "DATA_DIR": str(data_dir), "LOG_LEVEL": "WARNING", **env}
    with open(log_path, "wb") as out:  # its own session: a Ctrl-C reaches us only, and we stop it
        proc = subprocess.Popen(cmd, cwd=app_dir, env=env, stdout=out, stderr=out, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while not _healthy(url):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{name} did not start:\n{log_path.read_text(errors='replace')[-3000:]}")
            time.sleep(0.2)
        yield Server(name, proc.pid, url, data_dir / store, work / f"{stem}-emptied")
    finally:
        if tracebacks := (text := log_path.read_text(errors="replace")).count("Traceback"):
            log(f"warning: {name} logged {tracebacks} tracebacks; its log ends:\n{text[-3000:]}")
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _healthy(url: str) -> bool:
    with suppress(httpx.TransportError):
        return httpx.get(url + "/health", timeout=2).status_code == 200
    return False


def service(name: str, work: Path, src: Path = REPO_ROOT, **env: str) -> AbstractContextManager[Server]:
    """The service (`app.main:app`) from the checkout `src`, with this checkout's models, no rate limits."""
    env = {"API_KEYS": "", "MODEL_DIR": str(MODEL_DIR), "RATE_LIMITS_ENABLED": "false", **env}
    return serve(name, "app.main:app", src, work, env, store="images")


def baseline(work: Path) -> AbstractContextManager[Server]:
    """The raw ASGI upload baseline (bench/raw_baseline.py, a copy of ../shared/bench's)."""
    return serve("baseline", f"{BASELINE.stem}:app", BASELINE.parent, work, {}, store="")


def typical(work: Path) -> AbstractContextManager[Server]:
    """The typical FastAPI upload endpoint (bench/fastapi_typical.py; it serves POST /upload)."""
    return serve("typical", f"{TYPICAL.stem}:app", TYPICAL.parent, work, {}, store="images")


def git(*args: str | Path) -> str:
    done = subprocess.run(["git", *map(str, args)], cwd=REPO_ROOT, capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"bench: git {' '.join(map(str, args))}: {done.stderr.strip()}")
    return done.stdout.strip()


@contextmanager
def checkout(ref: str) -> Iterator[str]:
    """A detached git worktree of `ref` in bench/.work/, removed afterwards."""
    sha = git("rev-parse", "--verify", f"{ref}^{{commit}}")
    WORK_DIR.mkdir(exist_ok=True)
    path = tempfile.mkdtemp(prefix=f"ref-{sha[:12]}-", dir=WORK_DIR)
    git("worktree", "add", "--detach", "--quiet", path, sha)
    try:
        yield path
    finally:
        git("worktree", "remove", "--force", path)


def multipart(image: Path) -> bytes:
    """A multipart/form-data body with `image` as its `file` part."""
    head = f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="{image.name}"\r\n'
    head += "Content-Type: image/jpeg\r\n\r\n"
    return head.encode() + image.read_bytes() + f"\r\n--{BOUNDARY}--\r\n".encode()


def upload(client: httpx.Client, server: Server, body: bytes, path: str = "/api/v1/upload") -> str:
    """POST the multipart `body` to `path`; the image_id of its 201 (anything else stops the run)."""
    r = client.post(server.url + path, content=body, headers={"Content-Type": MULTIPART})
    if r.status_code != 201:
        raise RuntimeError(f"{server.name}: upload answered {r.status_code}: {r.text[:300]}")
    return str(r.json()["image_id"])


def analyze(client: httpx.Client, server: Server, image_id: str, analyzer: str, expect: str = "") -> tuple:
    """POST /api/v1/analyze: milliseconds and X-Cache of its 200 (which must be `expect`, if given)."""
    started = time.perf_counter()
    r = client.post(server.url + "/api/v1/analyze", json={"image_id": image_id, "analyzer": analyzer})
    ms, cache = (time.perf_counter() - started) * 1000, r.headers.get("x-cache")
    if r.status_code != 200 or cache != (expect or cache):
        raise RuntimeError(f"{server.name}: analyze {r.status_code}, X-Cache {cache}: {r.text[:300]}")
    return ms, cache


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far, all threads."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def context_switches(pid: int) -> int:
    """Voluntary + involuntary context switches of every thread of a process so far (threads
    that have ended are not counted: the service's pools keep theirs)."""
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        with suppress(FileNotFoundError):  # a thread that ended meanwhile
            total += sum(map(int, re.findall(r"ctxt_switches:\s+(\d+)", (task / "status").read_text())))
    return total


def peak_rss(pid: int, load: Callable[[], Any]) -> dict[str, Any]:
    """Idle RSS of `pid` and its peak (VmHWM, reset first: Linux >= 4.0) while `load()` runs, MiB."""

    def status(key: str) -> float:
        return int(re.search(rf"{key}:\s+(\d+)", Path(f"/proc/{pid}/status").read_text())[1]) / 1024

    idle = status("VmRSS")
    Path(f"/proc/{pid}/clear_refs").write_text("5")
    return {"load": load(), "idle_mib": idle, "peak_mib": status("VmHWM")}


def ensure_wrk() -> str:
    """wrk's path, installing Debian's package with apt-get when it is missing."""
    if not shutil.which("wrk"):
        log("wrk not found; trying `apt-get install -y wrk` ...")
        for cmd in (["apt-get", "update"], ["apt-get", "install", "-y", "wrk"]):
            if subprocess.run(cmd, stdout=subprocess.DEVNULL).returncode:
                raise SystemExit("bench: wrk is required (Debian/Ubuntu: apt-get install wrk)")
    return shutil.which("wrk") or "wrk"


def wrk(
    server: Server,
    path: str,
    seconds: float,
    conns: int,
    body: Path | None = None,
    ctype: str = "",
    auth: str = "",
):
    """One wrk run (1 thread) against `server`: req/s, errors, latency, the server's CPU ms per request."""
    cmd = [ensure_wrk(), "-t1", f"-c{conns}", f"-d{seconds:g}s", "--timeout", "30s", "--latency"]
    env = dict(os.environ)
    if body is not None:  # POST the file's bytes
        cmd += ["-s", str(BENCH_DIR / "post.lua")]
        env |= {"BENCH_BODY_FILE": str(body), "BENCH_CONTENT_TYPE": ctype, "BENCH_AUTHORIZATION": auth}
    cpu, switches = cpu_seconds(server.pid), context_switches(server.pid)
    done = subprocess.run([*cmd, server.url + path], env=env, capture_output=True, text=True)
    cpu, out = cpu_seconds(server.pid) - cpu, done.stdout
    switches = context_switches(server.pid) - switches
    rps, total = re.search(r"Requests/sec:\s+([\d.]+)", out), re.search(r"(\d+) requests in", out)
    if done.returncode or not rps or not total or not int(total[1]):
        raise RuntimeError(f"wrk failed ({done.returncode}):\n{out}\n{done.stderr}")
    return {
        "rps": float(rps[1]),
        "requests": int(total[1]),
        "errors": sum(int(n) for n in re.findall(r"(?:responses:|connect|read|write|timeout) (\d+)", out)),
        "latency": dict(re.findall(r"^\s+(50|90|99)%\s+(\S+)", out, re.M)),
        "cpu_ms_per_request": cpu * 1000 / int(total[1]),
        "switches_per_request": switches / int(total[1]),
    }


def alternate(
    rounds: int,
    runs: dict[str, Callable[[], dict]],
    title: str,
    before_round=lambda: None,
    show: Callable[[dict], str] | None = None,
):
    """Every run once per round, the order rotated each round so that none always goes first;
    each result logged by `show` (default: the `SHOWN` figures it has)."""
    out: dict[str, list[dict[str, Any]]] = {name: [] for name in runs}
    names = list(runs)
    log(title)
    for r in range(rounds):
        before_round()
        for name in names[r % len(names) :] + names[: r % len(names)]:
            out[name].append(result := runs[name]())
            if show is not None:
                shown = show(result)
            else:
                shown = "  ".join(form.format(result[key]) for key, form in SHOWN.items() if key in result)
            log(f"  round {r + 1} {name:24} {shown}" + "  !! errors" * bool(result.get("errors")))
    return out


def med(runs: list[dict[str, Any]], key: str) -> float:
    return statistics.median(r[key] for r in runs)


def percentile(values: list[float], p: float) -> float:
    """Nearest-rank percentile."""
    return sorted(values)[max(1, math.ceil(len(values) * p / 100)) - 1]


def verdict(value: float, ok: Callable[[float], bool], errors: int = 0) -> str:
    return f"INVALID ({errors} errors)" if errors else "PASS" if ok(value) else "FAIL"


def report(path: Path, rows: list[dict[str, Any]], settings: dict[str, Any], **results: Any) -> None:
    """Print `rows` as a table (columns: their keys but `runs`; floats as x.xx); write everything as JSON."""
    columns = list(dict.fromkeys(key for row in rows for key in row if key != "runs"))
    cells = [
        [f"{r[c]:.2f}" if isinstance(r.get(c), float) else str(r.get(c, "")) for c in columns] for r in rows
    ]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(columns)]
    for line in [[""] * len(columns), columns, ["-" * w for w in widths], *cells] if rows else []:
        print("  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip())
    doc = {
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "git": {"commit": git("rev-parse", "HEAD"), "app_dirty": bool(git("status", "--porcelain", "app"))},
        "host": {"cpus": os.cpu_count(), "python": platform.python_version(), "uvicorn": uvicorn.__version__},
        "settings": settings,
        "rows": rows,
        **results,
    }
    path.write_text(json.dumps(doc, indent=2, default=str) + "\n")
    log(f"\nresults written to {path}")


def run_cli(main: Callable[[], int]) -> None:
    """Run a benchmark's `main`; Ctrl-C, SIGTERM and SIGHUP unwind it: servers stopped, worktrees removed."""
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, lambda signum, _frame: sys.exit(128 + signum))
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        sys.exit(130)
