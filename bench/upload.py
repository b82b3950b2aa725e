"""Upload and analyze-path benchmark of the service against the raw ASGI baseline and the
typical FastAPI endpoint, in one run.

Uploads of 100 KB / 1 MB / 5 MB as ratios to bench/raw_baseline.py and to
bench/fastapi_typical.py (copies of ../shared/bench's; wrk, medians of the rounds, every data
dir emptied before each round), with server CPU per upload and its ratio to the raw
baseline's (target: at most 2); the analyze cache hit as a ratio to GET /health on the same
server, anonymous and for a logged-in user; context switches per request of each server (all
threads: a count that machine load does not inflate as it does CPU time; hand-offs between
threads, GIL included, show there); analyze miss latency (skin); peak RSS under 32
concurrent 5 MB uploads from a warm process. Rate limits are on, far above what one
benchmark address sends (`harness.HIGH_RATE_LIMITS`). `--ref GITREF` also starts the service
as it was at GITREF (a git worktree in bench/.work/) and measures it in the same rounds, so
that a change can be compared before/after in one run. Writes bench/results.json.
"""

from __future__ import annotations

import argparse
from contextlib import ExitStack
from pathlib import Path
from tempfile import TemporaryDirectory

import harness as h
import httpx
from photos import upload_image

TARGETS = {
    "upload 100k": 0.70,
    "upload 1m": 0.90,
    "upload 5m": 0.90,
    "analyze hit": 0.90,
    "analyze hit, user": 0.90,
}  # minimum throughput ratios (to the raw baseline; the hit to /health)
MAX_CPU_RATIO = 2.0  # server CPU per upload over the raw baseline's
PHASES = ("upload", "hit", "miss", "rss")


def ratio_row(metric: str, variant: str, mine: list[dict], ref: list[dict], cpu_target: bool = False) -> dict:
    """A variant's median req/s over its reference's, each round's ratio, CPU ms per request of
    both and their ratio (judged against MAX_CPU_RATIO when `cpu_target`, else the throughput
    against TARGETS[metric] when the metric has one)."""
    value, base = h.med(mine, "rps"), h.med(ref, "rps")
    cpu, cpu_ref = h.med(mine, "cpu_ms_per_request"), h.med(ref, "cpu_ms_per_request")
    row = {
        "metric": metric,
        "variant": variant,
        "value": f"{value:,.1f} req/s",
        "reference": f"{base:,.1f} req/s",
        "ratio": value / base,
        "rounds": " ".join(f"{a['rps'] / b['rps']:.2f}" for a, b in zip(mine, ref, strict=True)),
        "CPU ms/req": f"{cpu:.2f} / {cpu_ref:.2f}",
        "CPU ratio": cpu / cpu_ref,
        # Context switches per request (all threads): a count, so it does not drift with the
        # machine's load the way CPU time does; GIL hand-offs between threads show here.
        "switches/req": " / ".join(f"{h.med(runs, 'switches_per_request'):.1f}" for runs in (mine, ref)),
    }
    errors = sum(r["errors"] for r in mine + ref)
    if cpu_target:
        row |= {"target": f"CPU <= {MAX_CPU_RATIO:.1f}x"}
        row["result"] = h.verdict(cpu / cpu_ref, lambda x: x <= MAX_CPU_RATIO, errors)
    elif metric in TARGETS:
        row |= {"target": f">= {TARGETS[metric]:.2f}"}
        row["result"] = h.verdict(value / base, lambda x: x >= TARGETS[metric], errors)
    return row | {"runs": {"service": mine, "reference": ref}}


def logged_in_hit(client: httpx.Client, s: h.Server, image: bytes, request: Path) -> tuple[Path, str] | None:
    """Register and log in a user, upload and analyze an image as that user: (the analyze
    request file, the Authorization header); None for a version without accounts."""
    account = {"username": "bench-user", "password": "bench-password-1"}
    if client.post(s.url + "/v1/register", json=account).status_code != 201:
        return None
    token = client.post(s.url + "/v1/login", json=account).json()["access_token"]
    auth = f"Bearer {token}"
    up = client.post(
        s.url + "/api/v1/upload", content=image, headers={"Content-Type": h.MULTIPART, "Authorization": auth}
    )
    image_id = up.json()["image_id"]
    for _ in range(2):
        client.post(s.url + "/api/v1/analyze", json={"image_id": image_id}, headers={"Authorization": auth})
    request.write_text(f'{{"image_id": "{image_id}", "analyzer": "skin"}}')
    return request, auth


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--ref", action="append", default=[], help="also measure the service at this git ref")
    p.add_argument("--duration", type=float, default=8.0, help="seconds per wrk run (default 8)")
    p.add_argument("--rounds", type=int, default=3, help="rounds per load (default 3)")
    p.add_argument("--connections", type=int, default=8, help="wrk connections (default 8)")
    p.add_argument("--only", default=",".join(PHASES), help=f"comma-separated subset of {','.join(PHASES)}")
    p.add_argument("--miss-count", type=int, default=50, help="analyze misses timed per variant (default 50)")
    p.add_argument("--rss-connections", type=int, default=32, help="concurrent 5 MB uploads (default 32)")
    p.add_argument("--rss-duration", type=float, default=4.0, help="seconds of the RSS load (default 4)")
    p.add_argument("--output", type=Path, default=h.BENCH_DIR / "results.json")
    p.add_argument("--strict", action="store_true", help="exit 1 when a target fails")
    args = p.parse_args()
    phases = set(args.only.split(","))
    if phases - set(PHASES):
        p.error(f"--only: choose from {', '.join(PHASES)}")
    h.ensure_wrk()
    bodies = {size: h.WORK_DIR / f"upload-{size}.body" for size in ("100k", "1m", "5m")}
    for size, path in bodies.items():
        path.write_bytes(h.multipart(upload_image(size)))
    small = bodies["100k"].read_bytes()
    rows: list[dict] = []

    def load(
        s: h.Server,
        path: str,
        body: Path | None = None,
        ctype: str = h.MULTIPART,
        rss: bool = False,
        auth: str = "",
    ):
        """A wrk run of `s`, to call later: with the rounds' settings, or the RSS load's."""
        seconds, conns = (
            (args.rss_duration, args.rss_connections) if rss else (args.duration, args.connections)
        )
        return lambda: h.wrk(s, path, seconds, conns, body, ctype, auth)

    with ExitStack() as stack:
        work = Path(stack.enter_context(TemporaryDirectory(prefix="bench-")))
        services = [stack.enter_context(h.service("service", work, **h.HIGH_RATE_LIMITS))]
        for ref in args.ref:
            src = Path(stack.enter_context(h.checkout(ref)))
            services.append(stack.enter_context(h.service(f"@{ref}", work, src, **h.HIGH_RATE_LIMITS)))
        typ = stack.enter_context(h.typical(work))
        base = stack.enter_context(h.baseline(work))
        servers = [*services, typ, base]

        def upload_path(s: h.Server) -> str:
            return "/upload" if s is typ else "/api/v1/upload"

        h.log("; ".join(f"{s.name} pid {s.pid}" for s in servers))

        def empty_all() -> None:
            for s in servers:
                s.empty()

        client = stack.enter_context(httpx.Client(timeout=60))
        for s in servers:  # every server takes the exact bodies wrk sends, before anything is timed
            for body in bodies.values():
                h.upload(client, s, body.read_bytes(), upload_path(s))
        if "upload" in phases:
            for size, body in bodies.items():
                runs = {s.name: load(s, upload_path(s), body) for s in servers}
                title = f"upload {size}: wrk -c{args.connections} -d{args.duration:g}s x {args.rounds} rounds"
                got = h.alternate(args.rounds, runs, title, before_round=empty_all)
                for s in services:
                    rows.append(
                        ratio_row(f"upload {size}", s.name, got[s.name], got[base.name], cpu_target=True)
                    )
                    rows.append(ratio_row(f"upload {size} vs typical", s.name, got[s.name], got[typ.name]))
                rows.append(
                    ratio_row(f"upload {size} typical vs raw", typ.name, got[typ.name], got[base.name])
                )
            empty_all()
        if "hit" in phases:
            runs = {}
            for i, s in enumerate(services):
                image_id = h.upload(client, s, small)
                for expect in ("MISS", "HIT"):
                    h.analyze(client, s, image_id, "skin", expect)
                request = work / f"hit-{i}.json"
                request.write_text(f'{{"image_id": "{image_id}", "analyzer": "skin"}}')
                runs[f"{s.name} analyze"] = load(s, "/api/v1/analyze", request, "application/json")
                runs[f"{s.name} /health"] = load(s, "/health")
                user = logged_in_hit(client, s, small, work / f"hit-user-{i}.json")
                if user is not None:  # a version with accounts: the same hit for a logged-in user
                    runs[f"{s.name} analyze, user"] = load(
                        s, "/api/v1/analyze", user[0], "application/json", auth=user[1]
                    )
            got = h.alternate(args.rounds, runs, "analyze cache hit (skin) vs GET /health")
            rows += [
                ratio_row("analyze hit", s.name, got[f"{s.name} analyze"], got[f"{s.name} /health"])
                for s in services
            ]
            rows += [
                ratio_row(
                    "analyze hit, user", s.name, got[f"{s.name} analyze, user"], got[f"{s.name} /health"]
                )
                for s in services
                if f"{s.name} analyze, user" in got
            ]
        if "miss" in phases:  # one client, one call at a time, the variants interleaved call by call
            h.log(f"analyze miss (skin) x {args.miss_count}")
            ids = {s.name: [h.upload(client, s, small) for _ in range(args.miss_count)] for s in services}
            ms: dict[str, list[float]] = {s.name: [] for s in services}
            for i in range(args.miss_count):
                for s in services:
                    ms[s.name].append(h.analyze(client, s, ids[s.name][i], "skin", "MISS")[0])
            for s in services:
                value = f"{h.percentile(ms[s.name], 50):.2f} / {h.percentile(ms[s.name], 95):.2f} ms"
                rows.append(
                    {
                        "metric": "analyze miss p50 / p95",
                        "variant": s.name,
                        "value": value,
                        "runs": ms[s.name],
                    }
                )
        if "rss" in phases:
            h.log(f"peak RSS: {args.rss_connections} concurrent 5 MB uploads for {args.rss_duration:g} s")
            for s in [*services, base]:
                s.empty()
                fig = h.peak_rss(s.pid, load(s, "/api/v1/upload", bodies["5m"], rss=True))
                row = {"metric": f"peak RSS, {args.rss_connections} x 5 MB", "variant": s.name, "runs": fig}
                rows.append(
                    row | {"value": f"{fig['peak_mib']:.1f} MiB", "reference": f"idle {fig['idle_mib']:.1f}"}
                )
            empty_all()

    h.report(args.output, rows, vars(args) | {"bodies": {k: v.stat().st_size for k, v in bodies.items()}})
    if any(r.get("result", "").startswith("INVALID") for r in rows):
        return 2
    return int(args.strict and any(r.get("result") == "FAIL" for r in rows))


if __name__ == "__main__":
    h.run_cli(main)
