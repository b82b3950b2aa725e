"""Delete benchmark: DELETE of an image and account erasure, with 0 and 100,000 stored analyses.

For each fill level, each variant (this checkout, and every `--ref`, a git worktree) gets a
fresh server and data dir. The analysis folder is then filled with `--files` result files of
images the catalog does not know (written straight to disk in the layout of that variant's
code: `{id}.json` and `{id}.classify.json` flat before the per-image folders, `{id}.json` and
`{id}/classify.json` after), then:

1. DELETE of an image: `--deletes` anonymous uploads, each with a skin analysis (through the
   API) and a classify result (on disk), deleted one at a time; p50/p95 of the DELETE and the
   server's CPU per DELETE. Target: p50 < 10 ms at every fill level.
2. Account erasure: `--erasures` users with `--images` uploads and skin analyses each;
   DELETE /api/v1/auth/me timed once per user; the median (inf: still running after
   `--erase-timeout` seconds).

Variants run one after the other at each level (rounds rotate which goes first). Writes
bench/delete-results.json.

    .venv/bin/python bench/delete.py --ref main          # before (main) and after (this checkout)
"""

from __future__ import annotations

import argparse
import io
import math
import os
import statistics
import time
import uuid
from contextlib import ExitStack
from pathlib import Path
from tempfile import TemporaryDirectory

import harness as h
import httpx
from PIL import Image

TARGET_P50_MS = 10.0
PASSWORD = "bench-password-1"


def small_jpeg() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (64, 48), (120, 80, 40)).save(buf, "JPEG")
    return buf.getvalue()


def body_of(jpeg: bytes) -> bytes:
    head = f'--{h.BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="a.jpg"\r\n'
    return head.encode() + b"Content-Type: image/jpeg\r\n\r\n" + jpeg + f"\r\n--{h.BOUNDARY}--\r\n".encode()


def per_image_folders(src: Path) -> bool:
    """Whether the code at `src` keeps non-default results in a folder per image."""
    return "def result_key" in (src / "app" / "storage" / "base.py").read_text()


def write_result(analysis: Path, image_id: str, folders: bool) -> None:
    """A classify result of `image_id` on disk, where that variant's code puts it."""
    if folders:
        (analysis / image_id).mkdir(exist_ok=True)
        (analysis / image_id / "classify.json").write_bytes(b"{}")
    else:
        (analysis / f"{image_id}.classify.json").write_bytes(b"{}")


def fill(analysis: Path, count: int, folders: bool) -> float:
    """`count` result files of unknown images (two per image); seconds taken."""
    started = time.perf_counter()
    for _ in range(count // 2):
        image_id = str(uuid.uuid4())
        (analysis / f"{image_id}.json").write_bytes(b"{}")
        write_result(analysis, image_id, folders)
    os.sync()
    return time.perf_counter() - started


def upload(client: httpx.Client, s: h.Server, body: bytes, auth: dict[str, str]) -> str:
    r = client.post(s.url + "/api/v1/upload", content=body, headers={"Content-Type": h.MULTIPART, **auth})
    if r.status_code != 201:
        raise RuntimeError(f"{s.name}: upload answered {r.status_code}: {r.text[:300]}")
    image_id = str(r.json()["image_id"])
    if client.post(s.url + "/api/v1/analyze", json={"image_id": image_id}, headers=auth).status_code != 200:
        raise RuntimeError(f"{s.name}: analyze failed")
    return image_id


def measure_deletes(client: httpx.Client, s: h.Server, body: bytes, n: int, folders: bool) -> dict:
    analysis = s.store.parent / "analysis"
    ids = [upload(client, s, body, {}) for _ in range(n)]
    for image_id in ids:
        write_result(analysis, image_id, folders)
    times = []
    cpu = h.cpu_seconds(s.pid)
    for image_id in ids:
        started = time.perf_counter()
        r = client.delete(f"{s.url}/api/v1/images/{image_id}")
        times.append((time.perf_counter() - started) * 1000)
        if r.status_code != 204:
            raise RuntimeError(f"{s.name}: DELETE answered {r.status_code}: {r.text[:300]}")
    cpu = h.cpu_seconds(s.pid) - cpu
    left = [i for i in ids if (analysis / f"{i}.json").exists() or (analysis / i).exists()]
    if left or any((analysis / f"{i}.classify.json").exists() for i in ids):
        raise RuntimeError(f"{s.name}: DELETE left results behind")
    return {
        "p50_ms": h.percentile(times, 50),
        "p95_ms": h.percentile(times, 95),
        "cpu_ms_per_request": cpu * 1000 / n,
    }


def measure_erasures(
    client: httpx.Client, s: h.Server, body: bytes, users: int, images: int, timeout: float
) -> dict:
    seconds = []
    for u in range(users):
        account = {"username": f"bench-{u}-{uuid.uuid4().hex[:8]}", "password": PASSWORD}
        if client.post(s.url + "/api/v1/auth/register", json=account).status_code != 201:
            raise RuntimeError(f"{s.name}: register failed")
        token = client.post(s.url + "/api/v1/auth/login", json=account).json()["access_token"]
        auth = {"Authorization": f"Bearer {token}"}
        for _ in range(images):
            upload(client, s, body, auth)
        started = time.perf_counter()
        try:
            r = client.delete(s.url + "/api/v1/auth/me", headers=auth, timeout=timeout)
        except httpx.TimeoutException:  # reported as such; the server is stopped afterwards
            h.log(f"{s.name}: erasure still running after {timeout:g} s")
            seconds.append(math.inf)
            break
        seconds.append(time.perf_counter() - started)
        if r.status_code != 204:
            raise RuntimeError(f"{s.name}: erasure answered {r.status_code}: {r.text[:300]}")
    return {"erase_s": statistics.median(seconds), "erase_runs_s": seconds}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--ref", action="append", default=[], help="also measure the service at this git ref")
    p.add_argument("--levels", default="0,100000", help="analysis files stored (default 0,100000)")
    p.add_argument(
        "--deletes", type=int, default=200, help="images deleted per variant and level (default 200)"
    )
    p.add_argument(
        "--erasures", type=int, default=3, help="accounts erased per variant and level (default 3)"
    )
    p.add_argument("--images", type=int, default=200, help="images per erased account (default 200)")
    p.add_argument(
        "--erase-timeout", type=float, default=600, help="seconds an erasure may take (default 600)"
    )
    p.add_argument("--output", type=Path, default=h.BENCH_DIR / "delete-results.json")
    args = p.parse_args()
    body = body_of(small_jpeg())
    rows = []
    with ExitStack() as stack, httpx.Client(timeout=120) as client:
        variants = [("service", h.REPO_ROOT)]
        variants += [(f"service@{ref}", Path(stack.enter_context(h.checkout(ref)))) for ref in args.ref]
        h.WORK_DIR.mkdir(exist_ok=True)
        work = Path(stack.enter_context(TemporaryDirectory(prefix="delete-", dir=h.WORK_DIR)))
        for r, level in enumerate(int(x) for x in args.levels.split(",")):
            for name, src in variants[r % len(variants) :] + variants[: r % len(variants)]:
                folders = per_image_folders(src)
                with h.service(f"{name}-{level}", work, src) as s:
                    filled = fill(s.store.parent / "analysis", level, folders)
                    h.log(f"{name} @ {level} files (filled in {filled:.1f} s)")
                    deletes = measure_deletes(client, s, body, args.deletes, folders)
                    erasures = measure_erasures(
                        client, s, body, args.erasures, args.images, args.erase_timeout
                    )
                row = {"variant": name, "files": level, **deletes, "erase_s": erasures["erase_s"]}
                row["result"] = h.verdict(deletes["p50_ms"], lambda ms: ms < TARGET_P50_MS)
                h.log(f"  {row}")
                rows.append(row | {"runs": erasures})
    h.report(args.output, rows, vars(args) | {"target_p50_ms": TARGET_P50_MS})
    return 0


if __name__ == "__main__":
    h.run_cli(main)
