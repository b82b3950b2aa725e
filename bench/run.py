"""Benchmark the service against the raw ASGI baseline, in one run: `python bench/run.py`.

Starts `uvicorn app.main:app` and `uvicorn raw_baseline:app` (same interpreter, same flags,
fresh data dirs, different loopback ports), drives them with `wrk` from a separate process,
alternating service and baseline so that machine noise hits both, prints a table of
ratios against the targets and writes every figure to `bench/results.json`.
"""

from __future__ import annotations

import argparse
import json
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
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from images import SERVICE_LIMIT, TARGETS, ensure_image

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent
DEFAULT_BASELINE = Path(__file__).resolve().parents[2] / "shared" / "bench" / "raw_baseline.py"
POST_LUA = BENCH_DIR / "post.lua"
HOST = "127.0.0.1"
UPLOAD_PATH = "/api/v1/upload"
ANALYZE_PATH = "/api/v1/analyze"
HEALTH_PATH = "/health"
BOUNDARY = "----bench-" + "7d3c0a5e9b1f4c2a"

SIZES = tuple(TARGETS)  # "100k", "1m", "5m"
METRICS = (*(f"upload-{s}" for s in SIZES), "analyze-hit", "analyze-miss", "rss")
# metric -> (minimum service/baseline ratio, gating?); informational targets never fail the run.
RATIO_TARGETS: dict[str, tuple[float, bool]] = {
    "upload-100k": (0.70, True),
    "upload-1m": (0.80, False),
    "upload-5m": (0.90, True),
    "analyze-hit": (0.80, True),
}
RSS_LIMIT_MIB = 150.0


# --------------------------------------------------------------------------- servers


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


@dataclass
class Server:
    """One uvicorn process (the process itself, never a shell wrapper) and its log."""

    name: str
    proc: subprocess.Popen[bytes]
    port: int
    data_dir: Path
    log_path: Path

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    @property
    def pid(self) -> int:
        return self.proc.pid

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


def uvicorn_cmd(app: str, port: int, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "uvicorn",
        app,
        *extra,
        "--host",
        HOST,
        "--port",
        str(port),
        "--workers",
        "1",
        "--log-level",
        "warning",
        "--no-access-log",
    ]


def start_server(name: str, cmd: list[str], env: dict[str, str], data_dir: Path, log_dir: Path) -> Server:
    log_path = log_dir / f"{name}.log"
    with open(log_path, "wb") as log:
        # Own session: a Ctrl-C in the terminal reaches us, and we stop the servers in order.
        proc = subprocess.Popen(
            cmd,
            cwd=REPO_ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    port = int(cmd[cmd.index("--port") + 1])
    return Server(name, proc, port, data_dir, log_path)


def wait_ready(server: Server, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    with httpx.Client(timeout=2.0) as client:
        while time.monotonic() < deadline:
            if server.proc.poll() is not None:
                raise RuntimeError(
                    f"{server.name} exited with {server.proc.returncode} before it was ready:\n"
                    + server.log_tail()
                )
            try:
                if client.get(server.url + HEALTH_PATH).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        else:
            raise RuntimeError(f"{server.name} not ready after {timeout:.0f} s:\n{server.log_tail()}")
    # The pid we measure must be the serving process: uvicorn itself, one worker, no children.
    cmdline = Path(f"/proc/{server.pid}/cmdline").read_bytes().split(b"\0")
    if b"uvicorn" not in cmdline:
        raise RuntimeError(f"pid {server.pid} is not uvicorn: {cmdline!r}")
    if child_pids(server.pid):
        raise RuntimeError(f"{server.name} (pid {server.pid}) has child processes; expected one worker")


def child_pids(pid: int) -> list[int]:
    children: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            children += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            pass
    return children


def stop_server(server: Server) -> None:
    if server.proc.poll() is None:
        server.proc.send_signal(signal.SIGTERM)
        try:
            server.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.proc.kill()
            server.proc.wait(timeout=10)


@contextmanager
def running(
    name: str, cmd: list[str], env: dict[str, str], data_dir: Path, log_dir: Path
) -> Iterator[Server]:
    server = start_server(name, cmd, env, data_dir, log_dir)
    try:
        wait_ready(server)
        yield server
    finally:
        stop_server(server)


def proc_status_kib(pid: int, key: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{key} missing from /proc/{pid}/status")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used so far (all its threads)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def reset_peak_rss(pid: int) -> bool:
    """Reset VmHWM to the current RSS (Linux >= 4.0); False when not permitted."""
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def prune_images(server: Server, keep: set[str]) -> None:
    """Delete the images a load run published (the disk would fill), keeping `keep` ids."""
    images = server.data_dir / "images"
    if not images.is_dir():
        return
    for entry in os.scandir(images):
        stem = entry.name.split(".", 1)[0]
        if entry.name.startswith(".") or stem in keep:
            continue
        try:
            os.unlink(entry.path)
        except FileNotFoundError:
            pass


# --------------------------------------------------------------------------- wrk


def ensure_wrk() -> str:
    path = shutil.which("wrk")
    if path:
        return path
    print("wrk not found; trying `apt-get install -y wrk` ...", file=sys.stderr)
    try:
        subprocess.run(["apt-get", "update"], check=True, stdout=subprocess.DEVNULL)
        subprocess.run(["apt-get", "install", "-y", "wrk"], check=True, stdout=subprocess.DEVNULL)
    except (OSError, subprocess.CalledProcessError) as exc:
        raise SystemExit(
            f"bench: wrk is required and could not be installed ({exc}).\n"
            "Install it yourself (Debian/Ubuntu: `sudo apt-get install wrk`, macOS: `brew install wrk`)."
        ) from None
    path = shutil.which("wrk")
    if not path:
        raise SystemExit("bench: apt-get reported success but wrk is still not on PATH")
    return path


_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3, "h": 3600e3}


def _ms(text: str) -> float:
    m = re.fullmatch(r"([\d.]+)(us|ms|s|m|h)", text)
    if not m:
        raise ValueError(f"unparsable wrk duration {text!r}")
    return float(m.group(1)) * _UNITS[m.group(2)]


@dataclass
class WrkResult:
    """The figures of one wrk run."""

    target: str
    rps: float
    requests: int
    non_2xx: int
    socket_errors: dict[str, int]
    latency_ms: dict[str, float]
    seconds: float
    cpu_ms_per_request: float | None = None

    @property
    def errors(self) -> int:
        return self.non_2xx + sum(self.socket_errors.values())


def parse_wrk(output: str, target: str) -> WrkResult:
    rps = re.search(r"Requests/sec:\s+([\d.]+)", output)
    total = re.search(r"(\d+) requests in ([\d.]+\w+),", output)
    if not rps or not total:
        raise RuntimeError(f"unexpected wrk output:\n{output}")
    non_2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", output)
    sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output)
    socket_errors = dict(zip(("connect", "read", "write", "timeout"), (0, 0, 0, 0), strict=True))
    if sock:
        socket_errors = dict(
            zip(("connect", "read", "write", "timeout"), map(int, sock.groups()), strict=True)
        )
    latency = {f"p{p}": _ms(v) for p, v in re.findall(r"^\s+(50|75|90|99)%\s+(\S+)", output, re.M)}
    return WrkResult(
        target=target,
        rps=float(rps.group(1)),
        requests=int(total.group(1)),
        non_2xx=int(non_2xx.group(1)) if non_2xx else 0,
        socket_errors=socket_errors,
        latency_ms=latency,
        seconds=_ms(total.group(2)) / 1000,
    )


@dataclass
class Load:
    """How wrk drives a server: a path and, for POSTs, a body file and its content type."""

    path: str
    body_file: Path | None = None
    content_type: str = ""


class Wrk:
    """Runs wrk in its own process against a URL and parses what it prints."""

    def __init__(self, exe: str, threads: int) -> None:
        self.exe = exe
        self.threads = threads

    def run(self, server: Server, load: Load, duration: float, connections: int) -> WrkResult:
        cmd = [
            self.exe,
            "-t",
            str(max(1, min(self.threads, connections))),
            "-c",
            str(connections),
            "-d",
            f"{duration:g}s",
            "--timeout",
            "30s",
            "--latency",
        ]
        env = dict(os.environ)
        if load.body_file is not None:
            cmd += ["-s", str(POST_LUA)]
            env["BENCH_BODY_FILE"] = str(load.body_file)
            env["BENCH_CONTENT_TYPE"] = load.content_type
        cmd.append(server.url + load.path)
        cpu_before = cpu_seconds(server.pid)
        done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=duration + 60)
        cpu = cpu_seconds(server.pid) - cpu_before
        if done.returncode != 0:
            raise RuntimeError(f"wrk failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
        result = parse_wrk(done.stdout, server.name)
        if result.requests:
            result.cpu_ms_per_request = cpu * 1000 / result.requests
        return result


# --------------------------------------------------------------------------- bodies


def multipart_body(image: Path) -> bytes:
    head = (
        f"--{BOUNDARY}\r\n"
        f'Content-Disposition: form-data; name="file"; filename="{image.name}"\r\n'
        "Content-Type: image/jpeg\r\n\r\n"
    ).encode()
    return head + image.read_bytes() + f"\r\n--{BOUNDARY}--\r\n".encode()


MULTIPART_TYPE = f"multipart/form-data; boundary={BOUNDARY}"


def upload_once(client: httpx.Client, server: Server, body: bytes) -> httpx.Response:
    return client.post(server.url + UPLOAD_PATH, content=body, headers={"Content-Type": MULTIPART_TYPE})


def check_upload(client: httpx.Client, server: Server, body: bytes) -> str:
    """One upload must answer 201 with an image_id before anything is timed."""
    response = upload_once(client, server, body)
    if response.status_code != 201:
        raise RuntimeError(
            f"{server.name}: upload answered {response.status_code}, not 201: {response.text[:500]}"
        )
    return str(response.json()["image_id"])


# --------------------------------------------------------------------------- results


@dataclass
class Metric:
    """One row of the table: the service's figure, its baseline's, and every run behind them."""

    name: str
    unit: str
    service: float | None = None
    baseline: float | None = None
    baseline_label: str = "raw baseline"
    target: str = ""
    min_ratio: float | None = None
    gating: bool = True
    status: str = ""
    notes: list[str] = field(default_factory=list)
    runs: list[dict[str, Any]] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def ratio(self) -> float | None:
        if self.service is None or not self.baseline:
            return None
        return self.service / self.baseline

    def judge(self) -> None:
        errors = sum(r.get("errors", 0) for r in self.runs)
        if errors:
            self.notes.insert(0, f"{errors} failed requests")
            self.status = "INVALID"
            return
        if self.min_ratio is not None and self.ratio is not None:
            ok = self.ratio >= self.min_ratio
        elif self.name == "rss" and self.service is not None:
            ok = self.service < RSS_LIMIT_MIB
        else:
            self.status = "info"
            return
        self.status = ("PASS" if ok else "FAIL") if self.gating else ("ok" if ok else "below") + " (info)"

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["ratio"] = self.ratio
        return d


def run_record(result: WrkResult, round_no: int) -> dict[str, Any]:
    d = asdict(result)
    d["errors"] = result.errors
    d["round"] = round_no
    return d


def fmt(value: float | None, unit: str) -> str:
    if value is None:
        return "-"
    if unit == "req/s":
        return f"{value:,.0f} req/s" if value >= 100 else f"{value:.1f} req/s"
    return f"{value:.1f} {unit}"


def print_table(metrics: list[Metric]) -> None:
    headers = ("metric", "service", "baseline", "ratio", "target", "result", "CPU ms/req svc/base")
    rows = []
    for m in metrics:
        ratio = f"{m.ratio:.2f}" if m.ratio is not None else "-"
        baseline = fmt(m.baseline, m.unit)
        if m.baseline is not None and m.baseline_label != "raw baseline":
            baseline += f" ({m.baseline_label})"
        per_round = m.extra.get("per_round_ratio", [])
        notes = [
            *m.notes,
            *(["rounds " + " ".join(f"{r:.2f}" for r in per_round)] if len(per_round) > 1 else []),
        ]
        result = m.status + (f"  [{'; '.join(notes)}]" if notes else "")
        cpu = m.extra.get("cpu_ms_per_request", {})
        cpu_text = "/".join(f"{cpu[k]:.2f}" for k in ("service", "baseline") if cpu.get(k) is not None)
        rows.append((m.name, fmt(m.service, m.unit), baseline, ratio, m.target, result, cpu_text or "-"))
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]
    line = "  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True))
    print("\n" + line + "\n" + "-" * len(line))
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)))
    print()


# --------------------------------------------------------------------------- measurements


@dataclass
class Context:
    """What the measurements share: options, servers, wrk, body files."""

    args: argparse.Namespace
    wrk: Wrk
    service: Server
    baseline: Server | None
    work: Path
    keep: set[str] = field(default_factory=set)

    def log(self, text: str) -> None:
        print(text, file=sys.stderr, flush=True)


def alternate(
    ctx: Context, metric: Metric, rounds: int, first: Callable[[], WrkResult], second: Callable[[], WrkResult]
) -> tuple[list[float], list[float]]:
    """Run the pair `rounds` times, swapping which goes first each round."""
    a_rps: list[float] = []
    b_rps: list[float] = []
    for r in range(rounds):
        order = [(first, a_rps), (second, b_rps)]
        if r % 2:
            order.reverse()
        for fn, out in order:
            result = fn()
            out.append(result.rps)
            metric.runs.append(run_record(result, r + 1))
            flag = f"  !! {result.non_2xx} non-2xx, socket {result.socket_errors}" if result.errors else ""
            cpu = f"{result.cpu_ms_per_request:7.2f} ms CPU/req" if result.cpu_ms_per_request else ""
            ctx.log(f"  {metric.name:12} round {r + 1} {result.target:8} {result.rps:9.1f} req/s {cpu}{flag}")
    return a_rps, b_rps


def measure_upload(ctx: Context, size: str, body_file: Path) -> Metric:
    args = ctx.args
    min_ratio, gating = RATIO_TARGETS[f"upload-{size}"]
    metric = Metric(
        f"upload-{size}", "req/s", target=f">= {min_ratio:.2f}x", min_ratio=min_ratio, gating=gating
    )
    load = Load(UPLOAD_PATH, body_file, MULTIPART_TYPE)
    assert ctx.baseline is not None

    def service() -> WrkResult:
        result = ctx.wrk.run(ctx.service, load, args.duration, args.connections)
        prune_images(ctx.service, ctx.keep)
        return result

    def baseline() -> WrkResult:
        assert ctx.baseline is not None
        return ctx.wrk.run(ctx.baseline, load, args.duration, args.connections)

    svc, base = alternate(ctx, metric, args.rounds, service, baseline)
    metric.service, metric.baseline = statistics.median(svc), statistics.median(base)
    metric.extra = {
        "body_bytes": body_file.stat().st_size,
        "per_round_ratio": [s / b for s, b in zip(svc, base, strict=True) if b],
        "cpu_ms_per_request": cpu_medians(metric.runs, service="service", baseline="baseline"),
    }
    return metric


def measure_analyze_hit(ctx: Context, image_body: bytes) -> Metric:
    args = ctx.args
    min_ratio, gating = RATIO_TARGETS["analyze-hit"]
    metric = Metric(
        "analyze-hit",
        "req/s",
        baseline_label="GET /health",
        target=f">= {min_ratio:.2f}x /health",
        min_ratio=min_ratio,
        gating=gating,
    )
    with httpx.Client(timeout=30) as client:
        image_id = check_upload(client, ctx.service, image_body)
        ctx.keep.add(image_id)
        payload = json.dumps({"image_id": image_id}).encode()
        headers = {"Content-Type": "application/json"}
        for expected in ("MISS", "HIT"):
            r = client.post(ctx.service.url + ANALYZE_PATH, content=payload, headers=headers)
            if r.status_code != 200 or r.headers.get("x-cache") != expected:
                raise RuntimeError(f"analyze warm-up: {r.status_code} X-Cache={r.headers.get('x-cache')}")
    body_file = ctx.work / "analyze.json"
    body_file.write_bytes(payload)
    analyze = Load(ANALYZE_PATH, body_file, "application/json")
    health = Load(HEALTH_PATH)
    hit, ref = alternate(
        ctx,
        metric,
        args.rounds,
        lambda: ctx.wrk.run(ctx.service, analyze, args.duration, args.connections),
        lambda: _labelled(ctx.wrk.run(ctx.service, health, args.duration, args.connections), "health"),
    )
    metric.service, metric.baseline = statistics.median(hit), statistics.median(ref)
    metric.extra = {
        "per_round_ratio": [s / b for s, b in zip(hit, ref, strict=True) if b],
        "cpu_ms_per_request": cpu_medians(metric.runs, service="service", baseline="health"),
    }
    return metric


def cpu_medians(runs: list[dict[str, Any]], **targets: str) -> dict[str, float | None]:
    """Median server CPU ms per request of the runs against each target, by role."""
    out: dict[str, float | None] = {}
    for role, target in targets.items():
        values = [r["cpu_ms_per_request"] for r in runs if r["target"] == target and r["cpu_ms_per_request"]]
        out[role] = statistics.median(values) if values else None
    return out


def _labelled(result: WrkResult, target: str) -> WrkResult:
    result.target = target
    return result


def percentile(values: list[float], p: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * p // 100))
    return ordered[int(rank) - 1]


def measure_analyze_miss(ctx: Context, image_body: bytes) -> list[Metric]:
    count = ctx.args.miss_count
    latencies: list[float] = []
    failures = 0
    with httpx.Client(timeout=30) as client:
        ids = [check_upload(client, ctx.service, image_body) for _ in range(count)]
        ctx.keep.update(ids)
        url = ctx.service.url + ANALYZE_PATH
        for image_id in ids:
            started = time.perf_counter()
            r = client.post(url, json={"image_id": image_id})
            latencies.append((time.perf_counter() - started) * 1000)
            if r.status_code != 200 or r.headers.get("x-cache") != "MISS":
                failures += 1
    ctx.log(f"  analyze-miss {count} sequential calls, p50 {percentile(latencies, 50):.2f} ms")
    rows = []
    for p in (50, 95):
        m = Metric(f"analyze-miss p{p}", "ms", target="report")
        m.service = percentile(latencies, p)
        m.runs = [{"errors": failures, "count": count}]
        m.extra = {
            "latencies_ms": latencies,
            "mean_ms": statistics.fmean(latencies),
            "max_ms": max(latencies),
        }
        rows.append(m)
    return rows


def measure_rss(ctx: Context, body_file: Path) -> Metric:
    args = ctx.args
    metric = Metric("rss", "MiB", target=f"< {RSS_LIMIT_MIB:.0f} MiB")
    load = Load(UPLOAD_PATH, body_file, MULTIPART_TYPE)
    figures: dict[str, dict[str, Any]] = {}
    servers = [s for s in (ctx.service, ctx.baseline) if s is not None]
    for server in servers:
        idle = proc_status_kib(server.pid, "VmRSS")
        lifetime_before = proc_status_kib(server.pid, "VmHWM")
        reset = reset_peak_rss(server.pid)
        sampled = [idle]
        # wrk runs in its own process (waited on from a thread here) while we sample VmRSS.
        with ThreadPoolExecutor(1) as pool:
            future = pool.submit(ctx.wrk.run, server, load, args.rss_duration, args.rss_connections)
            while not future.done():
                sampled.append(proc_status_kib(server.pid, "VmRSS"))
                time.sleep(0.05)
            result = _labelled(future.result(), server.name)
        peak = proc_status_kib(server.pid, "VmHWM")
        if server is ctx.service:
            prune_images(server, ctx.keep)
        figures[server.name] = {
            "pid": server.pid,
            "idle_rss_mib": idle / 1024,
            "peak_rss_mib": peak / 1024,
            "peak_reset_before_load": reset,
            "lifetime_peak_before_load_mib": lifetime_before / 1024,
            "max_sampled_rss_mib": max(sampled) / 1024,
            "rps": result.rps,
        }
        metric.runs.append(run_record(result, 1))
        flag = f"  !! {result.errors} failed" if result.errors else ""
        ctx.log(
            f"  rss          {server.name:8} peak {peak / 1024:6.1f} MiB "
            f"(idle {idle / 1024:.1f}) at {result.rps:.1f} req/s{flag}"
        )
    metric.service = figures["service"]["peak_rss_mib"]
    if "baseline" in figures:
        metric.baseline = figures["baseline"]["peak_rss_mib"]
    if not figures["service"]["peak_reset_before_load"]:
        metric.notes.append("VmHWM not reset: lifetime peak")
    metric.extra = figures
    return metric


# --------------------------------------------------------------------------- main


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--duration", type=float, default=8.0, help="seconds per wrk run (default 8)")
    p.add_argument("--rounds", type=int, default=2, help="rounds per service/baseline pair (default 2)")
    p.add_argument("--connections", type=int, default=8, help="wrk connections (default 8)")
    p.add_argument("--threads", type=int, default=1, help="wrk threads, capped at connections (default 1)")
    p.add_argument(
        "--only",
        default="",
        help="comma-separated subset of: " + ", ".join(METRICS) + ", upload (all sizes), analyze (both)",
    )
    p.add_argument("--skip-rss", action="store_true", help="skip the peak-RSS measurement")
    p.add_argument("--rss-duration", type=float, default=4.0, help="seconds of the RSS load (default 4)")
    p.add_argument("--rss-connections", type=int, default=32, help="concurrent 5m uploads (default 32)")
    p.add_argument("--miss-count", type=int, default=50, help="images for the cache-miss timing (default 50)")
    p.add_argument(
        "--baseline",
        type=Path,
        default=Path(os.environ.get("BENCH_BASELINE", DEFAULT_BASELINE)),
        help="raw ASGI baseline module (default $BENCH_BASELINE or ../shared/bench/raw_baseline.py)",
    )
    p.add_argument("--output", type=Path, default=BENCH_DIR / "results.json")
    p.add_argument("--strict", action="store_true", help="exit 1 when a gating target fails")
    args = p.parse_args(argv)
    selected: list[str] = []
    for item in filter(None, (s.strip() for s in args.only.split(","))):
        expanded = {
            "upload": [m for m in METRICS if m.startswith("upload-")],
            "analyze": ["analyze-hit", "analyze-miss"],
        }
        names = expanded.get(item, [item])
        for name in names:
            if name not in METRICS:
                p.error(f"--only: unknown metric {item!r}; choose from {', '.join(METRICS)}")
            selected.append(name)
    args.metrics = [m for m in METRICS if (m in selected or not selected)]
    if args.skip_rss and "rss" in args.metrics:
        args.metrics.remove("rss")
    if args.rounds < 1 or args.duration <= 0 or args.connections < 1:
        p.error("--rounds, --duration and --connections must be positive")
    return args


def git_describe() -> dict[str, Any]:
    def git(*a: str) -> str:
        r = subprocess.run(["git", *a], cwd=REPO_ROOT, capture_output=True, text=True)
        return r.stdout.strip()

    return {"commit": git("rev-parse", "HEAD"), "app_dirty": bool(git("status", "--porcelain", "--", "app"))}


def versions(wrk_exe: str) -> dict[str, str]:
    import uvicorn

    wrk = subprocess.run([wrk_exe, "--version"], capture_output=True, text=True)
    return {
        "python": platform.python_version(),
        "uvicorn": uvicorn.__version__,
        "wrk": (wrk.stdout + wrk.stderr).splitlines()[0] if (wrk.stdout + wrk.stderr) else "?",
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if not args.baseline.is_file():
        raise SystemExit(f"bench: baseline not found at {args.baseline} (set --baseline or BENCH_BASELINE)")
    wrk = Wrk(ensure_wrk(), args.threads)
    needs_baseline = any(m.startswith("upload-") or m == "rss" for m in args.metrics)

    images = {size: ensure_image(size) for size in SIZES}
    for path in images.values():
        assert path.stat().st_size < SERVICE_LIMIT, f"{path} is over the service limit"

    metrics: list[Metric] = []
    started = time.monotonic()
    with ExitStack() as stack:
        work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-")))
        bodies: dict[str, Path] = {}
        for size, path in images.items():
            bodies[size] = work / f"upload-{size}.body"
            bodies[size].write_bytes(multipart_body(path))
        base_env = {k: v for k, v in os.environ.items() if not k.startswith(("BENCH_",))}
        service_dir = work / "service-data"
        service_env = {
            **base_env,
            "DATA_DIR": str(service_dir),
            "LOG_LEVEL": "WARNING",
            "API_KEYS": "",
            "PYTHONDONTWRITEBYTECODE": "1",
        }
        service = stack.enter_context(
            running("service", uvicorn_cmd("app.main:app", free_port()), service_env, service_dir, work)
        )
        baseline = None
        if needs_baseline:
            baseline_dir = work / "baseline-data"
            baseline_env = {**base_env, "DATA_DIR": str(baseline_dir), "LOG_LEVEL": "WARNING"}
            cmd = uvicorn_cmd(
                f"{args.baseline.stem}:app", free_port(), "--app-dir", str(args.baseline.parent)
            )
            baseline = stack.enter_context(running("baseline", cmd, baseline_env, baseline_dir, work))
        ctx = Context(args, wrk, service, baseline, work)
        print(
            f"service pid {service.pid} at {service.url}"
            + (f", baseline pid {baseline.pid} at {baseline.url}" if baseline else "")
            + f"; wrk -t{min(args.threads, args.connections)} -c{args.connections} -d{args.duration:g}s"
            f" x {args.rounds} rounds",
            file=sys.stderr,
        )

        # Every server must accept the exact bodies wrk will send before anything is timed.
        with httpx.Client(timeout=60) as client:
            for size in SIZES:
                if f"upload-{size}" in args.metrics or (size == "5m" and "rss" in args.metrics):
                    body = bodies[size].read_bytes()
                    for server in (service, baseline):
                        if server is not None:
                            for _ in range(3):  # warm-up, then keep the disk clean
                                check_upload(client, server, body)
                    prune_images(service, ctx.keep)

        for size in SIZES:
            if f"upload-{size}" in args.metrics:
                metrics.append(measure_upload(ctx, size, bodies[size]))
        small_body = multipart_body(images["100k"])
        if "analyze-hit" in args.metrics:
            metrics.append(measure_analyze_hit(ctx, small_body))
        if "analyze-miss" in args.metrics:
            metrics.extend(measure_analyze_miss(ctx, small_body))
        if "rss" in args.metrics:
            metrics.append(measure_rss(ctx, bodies["5m"]))

        problems = [
            line for line in service.log_path.read_text(errors="replace").splitlines() if "Traceback" in line
        ]
        if problems:
            ctx.log(
                f"warning: the service logged {len(problems)} tracebacks; see its log:\n{service.log_tail()}"
            )

    for m in metrics:
        m.judge()
    print_table(metrics)
    results = {
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "elapsed_s": round(time.monotonic() - started, 1),
        "git": git_describe(),
        "host": {"cpus": os.cpu_count(), "platform": platform.platform(), **versions(wrk.exe)},
        "settings": {
            "duration_s": args.duration,
            "rounds": args.rounds,
            "connections": args.connections,
            "wrk_threads": min(args.threads, args.connections),
            "rss_connections": args.rss_connections,
            "rss_duration_s": args.rss_duration,
            "miss_count": args.miss_count,
            "baseline": str(args.baseline),
            "baseline_fsync": os.environ.get("RAW_FSYNC", "1") != "0",
            "images": {size: {"path": str(p), "bytes": p.stat().st_size} for size, p in images.items()},
            "aggregate": "median over rounds",
        },
        "metrics": {m.name: m.as_dict() for m in metrics},
    }
    args.output.write_text(json.dumps(results, indent=2) + "\n")
    print(f"results written to {args.output}", file=sys.stderr)
    if any(m.status == "INVALID" for m in metrics):
        return 2
    if args.strict and any(m.status == "FAIL" for m in metrics):
        return 1
    return 0


def _terminate(signum: int, _frame: object) -> None:
    raise SystemExit(128 + signum)  # unwind: the ExitStack stops the servers and removes temp dirs


def run_cli(main: Callable[[], int]) -> None:
    """Run a benchmark's `main`, turning SIGINT/SIGTERM/SIGHUP into a clean unwind."""
    signal.signal(signal.SIGINT, signal.default_int_handler)  # even when started with SIGINT ignored
    signal.signal(signal.SIGTERM, _terminate)
    signal.signal(signal.SIGHUP, _terminate)
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        print("\nbench: interrupted; servers stopped", file=sys.stderr)
        sys.exit(130)


if __name__ == "__main__":
    run_cli(main)
