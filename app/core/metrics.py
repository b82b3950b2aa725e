"""Prometheus metrics, in multiprocess mode so that `/metrics` is right with N workers.

Every process writes its values into memory-mapped files under `PROMETHEUS_MULTIPROC_DIR`
(default: `$DATA_DIR/metrics`, shared by the workers of one data dir; a temp dir when
`DATA_DIR` is not in the environment); `/metrics` sums them. That variable must be set
before `prometheus_client` is imported, hence it is decided here, at the top.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def _multiprocess_dir() -> Path:
    configured = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if configured:
        path = Path(configured)
    elif os.environ.get("DATA_DIR"):
        path = Path(os.environ["DATA_DIR"]) / "metrics"
    else:
        path = Path(tempfile.mkdtemp(prefix="image-service-metrics-"))
    path.mkdir(parents=True, exist_ok=True)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(path)
    return path


METRICS_DIR = _multiprocess_dir()

from prometheus_client import (  # noqa: E402 (the directory above must be set first)
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
    values,
)

from app.core.processes import current_pid, is_live_peer  # noqa: E402

# Every update of a multiprocess value first checks that the process has not forked, by
# default with `os.getpid()`: a system call for each of the ~9 updates of a request. The same
# check with the id kept by `current_pid` (renewed in a forked child) costs none. Set before
# any metric below is made: each takes `values.ValueClass` when it is created.
values.ValueClass = values.MultiProcessValue(current_pid)

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)

REQUEST_SECONDS = Histogram(
    "http_request_duration_seconds",
    "Time to answer a request, by route template, method and status",
    ["route", "method", "status"],
    buckets=LATENCY_BUCKETS,
)
IN_FLIGHT = Gauge("http_requests_in_flight", "Requests being served", multiprocess_mode="livesum")
SHED = Counter("http_requests_shed_total", "Requests refused at the door (connection caps)", ["reason"])
# Saturation at the door: in flight / capacity is the share of admission in use; a worker
# counts in the reserve gauge while its last ADMISSION_RESERVE_FRACTION is being handed out.
REQUEST_CAPACITY = Gauge(
    "http_requests_capacity",
    "Requests admitted at once (MAX_CONCURRENT_REQUESTS of each worker)",
    multiprocess_mode="livesum",
)
ADMISSION_RESERVE_IN_USE = Gauge(
    "http_admission_reserve_in_use",
    "Workers whose requests in flight reach into the admission reserve (saturated)",
    multiprocess_mode="livesum",
)
CONNECTIONS = Gauge(
    "http_connections",
    "Open connections: awaiting or reading a request head, serving a request, idle keep-alive",
    ["state"],
    multiprocess_mode="livesum",
)
CONNECTIONS_CLOSED = Counter(
    "http_connections_closed_total",
    "Connections the service closed: request head too slow, over the per-address cap",
    ["reason"],
)
BODIES_CUT = Counter(
    "http_request_bodies_cut_total",
    "Request bodies cut with 408: stalled, too slow, past the deadline",
    ["reason"],
)
UPLOAD_BYTES = Counter("upload_bytes_total", "Bytes of images accepted by uploads and downloads")
ANALYSES = Counter(
    "analyses_total", "Analyses answered, computed or served from the cache", ["analyzer", "outcome"]
)
INFERENCE_SECONDS = Histogram(
    "analysis_inference_seconds",
    "Time an analyzer ran on a worker thread",
    ["analyzer"],
    buckets=LATENCY_BUCKETS,
)
QUEUE_WAIT_SECONDS = Histogram(
    "analysis_queue_wait_seconds",
    "Time an analysis waited for a worker thread",
    ["analyzer"],
    buckets=LATENCY_BUCKETS,
)
QUEUE_DEPTH = Gauge(
    "analysis_queue_depth", "Analyses waiting for a worker thread", ["analyzer"], multiprocess_mode="livesum"
)
QUEUE_REJECTED = Counter(
    "analysis_queue_rejected_total",
    "Analyses refused at once: their queue was full or their expected wait too long",
    ["analyzer"],
)
QUEUE_EXPIRED = Counter(
    "analysis_queue_expired_total",
    "Queued analyses dropped unstarted when their wait passed ANALYSIS_MAX_QUEUE_WAIT_SECONDS",
    ["analyzer"],
)
JOBS = Counter(
    "jobs_total",
    "Contour jobs: each once pending (accepted), at most once running, once completed or failed",
    ["state"],
)
CREDIT_CHARGES = Counter("credit_charges_total", "Credits charged for computed analyses", ["reason"])
RATE_LIMITED = Counter("rate_limited_total", "Requests refused by a rate limit", ["limit"])
LOGIN_FAILURES = Counter("login_failures_total", "Failed logins")
LOGIN_REFUSED = Counter("login_refused_total", "Logins refused before their password was checked", ["reason"])
DEPENDENCY_ERRORS = Counter(
    "dependency_errors_total",
    "Calls to a dependency (redis, database, storage) that failed or timed out, by what they were for",
    ["dependency", "use"],
)


def clear_dead_processes() -> None:
    """Drop the value files of processes that are gone (start-up), so the directory stays small."""
    for entry in METRICS_DIR.glob("*.db"):
        pid = entry.stem.rpartition("_")[2]
        if pid.isdigit() and int(pid) != os.getpid() and not is_live_peer(int(pid)):
            multiprocess.mark_process_dead(int(pid), str(METRICS_DIR))
            entry.unlink(missing_ok=True)


def initialize(analyzers: list[str], route_classes: tuple[str, ...]) -> None:
    """Create every label set at zero, so that dashboards see a series before its first event
    (and the value files exist before any request: a refused request changes no file name)."""
    for analyzer in analyzers:
        for outcome in ("computed", "cached"):
            ANALYSES.labels(analyzer, outcome)
        QUEUE_DEPTH.labels(analyzer)
        QUEUE_REJECTED.labels(analyzer)
        QUEUE_EXPIRED.labels(analyzer)
        INFERENCE_SECONDS.labels(analyzer)
        QUEUE_WAIT_SECONDS.labels(analyzer)
    # Every value file this process writes exists from start-up, not from its first request.
    REQUEST_SECONDS.labels("/health", "GET", "200")
    IN_FLIGHT.inc(0)
    for state in ("pending", "running", "completed", "failed"):
        JOBS.labels(state)
    for reason in ("max_concurrent", "max_per_address", "reserve"):
        SHED.labels(reason)
    ADMISSION_RESERVE_IN_USE.inc(0)
    for state in ("head", "request", "idle"):
        CONNECTIONS.labels(state)
    for reason in ("head_timeout", "max_per_address"):
        CONNECTIONS_CLOSED.labels(reason)
    for reason in ("stalled", "too_slow", "deadline"):
        BODIES_CUT.labels(reason)
    for route_class in route_classes:
        RATE_LIMITED.labels(route_class)
    LOGIN_FAILURES.inc(0)
    for dependency, use in (
        ("redis", "rate_limit"),
        ("redis", "login_throttle"),
        ("database", "request"),
        ("database", "history"),
        ("storage", "full"),
    ):
        DEPENDENCY_ERRORS.labels(dependency, use)
    for reason in ("locked_out", "hash_busy"):
        LOGIN_REFUSED.labels(reason)
    UPLOAD_BYTES.inc(0)


def exposition() -> bytes:
    """The current values of every worker, in Prometheus' text format."""
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry, path=str(METRICS_DIR))
    return generate_latest(registry)
