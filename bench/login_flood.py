"""Login flood: logins sent open-loop at `--rate` per second from several loopback addresses,
while a separate thread polls GET /health; against the service (and `--ref`s, e.g. main).

Every login costs an argon2id verification (~40 ms of CPU) unless refused first. Reports, per
server and rate: /health p50/p99/max while the flood runs, the login answer mix (200, 401,
429, 503, other, client timeouts), the p50/p99 time to each kind of answer, logins served per
second, and the server's CPU per login sent. The service runs once per PASSWORD_HASH_CONCURRENCY
in `--concurrency` (1 and 2 by default) with its other defaults; rate limits are off (as in
every benchmark of bench/harness.py), lockouts are at their defaults. Servers run side by side;
rounds alternate their order (bench/harness.py). Writes bench/login_flood_results.json.

    .venv/bin/python bench/login_flood.py --ref main                 # 30 and 100 logins/s
    .venv/bin/python bench/login_flood.py --ref main --rates 30 --seconds 20
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import threading
import time
from collections import Counter
from contextlib import ExitStack
from pathlib import Path
from tempfile import TemporaryDirectory

import harness as h
import httpx

PASSWORD = "flood password 1234"
ADDRESSES = [f"127.0.0.{i}" for i in range(2, 7)]  # the flood's; /health polls from 127.0.0.1


def register_users(server: h.Server, count: int) -> list[str]:
    names = [f"flood-user-{i}" for i in range(count)]
    with httpx.Client(timeout=60) as c:
        for name in names:
            r = c.post(server.url + "/api/v1/auth/register", json={"username": name, "password": PASSWORD})
            if r.status_code != 201:
                raise RuntimeError(f"{server.name}: register answered {r.status_code}: {r.text[:300]}")
    return names


class HealthPoller(threading.Thread):
    """GET /health every `interval` s on a thread and connection of its own: latencies in ms."""

    def __init__(self, url: str, interval: float = 0.05) -> None:
        super().__init__(daemon=True)
        self.url, self.interval = url + "/health", interval
        self.stopping = threading.Event()
        self.latencies: list[float] = []
        self.failures = 0

    def run(self) -> None:
        with httpx.Client(timeout=30) as c:
            while not self.stopping.is_set():
                started = time.perf_counter()
                try:
                    ok = c.get(self.url).status_code == 200
                except httpx.HTTPError:
                    ok = False
                self.latencies.append((time.perf_counter() - started) * 1000)
                self.failures += not ok
                self.stopping.wait(self.interval)


async def flood(server: h.Server, users: list[str], args: argparse.Namespace, rate: float) -> list[tuple]:
    """(answer, ms) of each login sent at `rate`/s for `args.seconds`; answer "timeout" if none came."""
    clients = [
        httpx.AsyncClient(
            transport=httpx.AsyncHTTPTransport(local_address=address),
            timeout=args.timeout,
            limits=httpx.Limits(max_connections=200),
        )
        for address in ADDRESSES
    ]
    rng = random.Random(7)

    async def one(i: int) -> tuple:
        wrong = rng.random() < args.wrong_share
        body = {"username": users[i % len(users)], "password": "wrong guess" if wrong else PASSWORD}
        client = clients[i % len(clients)]
        client.cookies.clear()  # curl-like clients: no device cookie
        started = time.perf_counter()
        try:
            answer: int | str = (await client.post(server.url + "/api/v1/auth/login", json=body)).status_code
        except httpx.TimeoutException:
            answer = "timeout"
        except httpx.HTTPError as error:
            answer = type(error).__name__
        return answer, (time.perf_counter() - started) * 1000

    tasks = []
    start = time.perf_counter()
    for i in range(int(rate * args.seconds)):
        await asyncio.sleep(max(0.0, start + i / rate - time.perf_counter()))
        tasks.append(asyncio.create_task(one(i)))
    answers = await asyncio.gather(*tasks)
    for client in clients:
        await client.aclose()
    return answers


def measure(server: h.Server, users: list[str], args: argparse.Namespace, rate: float) -> dict:
    poller = HealthPoller(server.url)
    cpu = h.cpu_seconds(server.pid)
    poller.start()
    started = time.perf_counter()
    answers = asyncio.run(flood(server, users, args, rate))
    elapsed = time.perf_counter() - started
    poller.stopping.set()
    poller.join()
    cpu = h.cpu_seconds(server.pid) - cpu
    mix = Counter(str(a) for a, _ in answers)
    by_answer = {
        kind: {
            "p50_ms": h.percentile([ms for a, ms in answers if str(a) == kind], 50),
            "p99_ms": h.percentile([ms for a, ms in answers if str(a) == kind], 99),
        }
        for kind in mix
    }
    health = poller.latencies
    time.sleep(args.pause)  # let the queue drain and lockout delays pass before the next run
    return {
        "health_p50_ms": h.percentile(health, 50),
        "health_p99_ms": h.percentile(health, 99),
        "health_max_ms": max(health),
        "health_polls": len(health),
        "health_failures": poller.failures,
        "mix": dict(mix),
        "answer_ms": by_answer,
        "served_per_s": mix.get("200", 0) / elapsed,
        "cpu_ms_per_login": cpu * 1000 / len(answers),
    }


def answer_p99(runs: list[dict], kind: str) -> float | str:
    """The median over rounds of the p99 time to an answer of `kind` ("" if none came)."""
    values = [r["answer_ms"][kind]["p99_ms"] for r in runs if kind in r["answer_ms"]]
    return statistics.median(values) if values else ""


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rates", type=float, nargs="+", default=[30, 100])
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--users", type=int, default=40)
    parser.add_argument(
        "--wrong-share", type=float, default=0.0, help="share of logins with a wrong password"
    )
    parser.add_argument(
        "--concurrency", type=int, nargs="+", default=[1, 2], help="PASSWORD_HASH_CONCURRENCY"
    )
    parser.add_argument("--timeout", type=float, default=10)
    parser.add_argument("--pause", type=float, default=3)
    parser.add_argument("--ref", action="append", default=[], help="also measure the service at this git ref")
    parser.add_argument("--output", type=Path, default=h.BENCH_DIR / "login_flood_results.json")
    args = parser.parse_args()
    env = {"RATE_LIMITS_ENABLED": "false", "ANALYZERS": ""}
    h.WORK_DIR.mkdir(exist_ok=True)
    with TemporaryDirectory(dir=h.WORK_DIR) as tmp, ExitStack() as stack:
        variants = [
            (f"hash-concurrency-{n}", h.REPO_ROOT, {"PASSWORD_HASH_CONCURRENCY": str(n)})
            for n in args.concurrency
        ]
        variants += [(f"service@{ref}", Path(stack.enter_context(h.checkout(ref))), {}) for ref in args.ref]
        servers = {
            name: stack.enter_context(h.service(name, Path(tmp), src, **env, **extra))
            for name, src, extra in variants
        }
        users = {name: register_users(server, args.users) for name, server in servers.items()}
        rounds = {}
        for rate in args.rates:
            runs = {
                name: (lambda s=server, r=rate: measure(s, users[s.name], args, r))
                for name, server in servers.items()
            }
            rounds[rate] = h.alternate(
                args.rounds, runs, f"\n{rate:g} logins/s for {args.seconds:g} s, {args.rounds} rounds"
            )
    rows = []
    for rate, results in rounds.items():
        for name, runs in results.items():
            mix = Counter()
            for run in runs:
                mix.update(run["mix"])
            rows.append(
                {
                    "rate": f"{rate:g}/s",
                    "server": name,
                    "health_p50_ms": h.med(runs, "health_p50_ms"),
                    "health_p99_ms": h.med(runs, "health_p99_ms"),
                    "health_max_ms": max(r["health_max_ms"] for r in runs),
                    "served_per_s": h.med(runs, "served_per_s"),
                    "cpu_ms_per_login": h.med(runs, "cpu_ms_per_login"),
                    "answers": " ".join(f"{k}:{v}" for k, v in sorted(mix.items())),
                    "p99_200_ms": answer_p99(runs, "200"),
                    "p99_503_ms": answer_p99(runs, "503"),
                    "runs": runs,
                }
            )
    h.report(args.output, rows, vars(args) | {"output": str(args.output)})
    return 0


if __name__ == "__main__":
    h.run_cli(main)
